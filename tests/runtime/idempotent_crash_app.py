"""A worker that kills itself (SIGKILL) just before the commit of the round carrying offset 2 lands.

usage: python idempotent_crash_app.py DB crash|resume — prints the outputs and committed offsets when it finishes.
"""

import os
import signal
import sys

from eventbus import App, Event, Idempotency
from eventbus.backends.sqlite import SQLiteLog
from eventbus.testing import TestBus

path, mode = sys.argv[1], sys.argv[2]
app = App("idem")


@app.processor("in", to="out", idempotency=Idempotency())
def handle(event: Event) -> Event:
    return Event("done", {"n": event.data["n"]})


if mode == "crash":
    original = SQLiteLog.commit_owned

    def commit_owned(self, group, member_id, offsets, outputs):  # type: ignore[no-untyped-def]
        if any(o >= 2 for o in offsets.values()):
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, group, member_id, offsets, outputs)

    SQLiteLog.commit_owned = commit_owned  # type: ignore[method-assign]

log = SQLiteLog(path)
bus = TestBus(log=log)
if mode == "crash":
    bus.publish("in", Event("n", {"n": 0}), Event("n", {"n": 1}), Event("n", {"n": 2}))
bus.run(app, max_poll_records=1)
print("outputs:", sorted(e.data["n"] for e in bus.events("out")), "committed:", log.committed("idem", "in"))
