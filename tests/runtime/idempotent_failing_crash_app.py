"""An idempotent worker whose first event fails while the three after it succeed, killed (SIGKILL) before the
round's commit; then run again.

usage: python idempotent_failing_crash_app.py DB crash|resume always|once — prints outputs, dead letters and
committed offsets when it finishes. ``always``: event 0 fails in both runs (given up at once); ``once``: it fails
in the crash run and once more after the restart, then succeeds.
"""

import os
import signal
import sys

from eventbus import App, Event, Idempotency, Retry
from eventbus.backends.sqlite import SQLiteLog
from eventbus.testing import TestBus

path, mode, failing = sys.argv[1], sys.argv[2], sys.argv[3]
app = App("idem")
tries: list[int] = []


@app.processor(
    "in",
    to="out",
    idempotency=Idempotency(),
    retry=Retry(max_attempts=3 if failing == "once" and mode == "resume" else 1, initial_delay_ms=1, max_delay_ms=1),
)
def handle(event: Event) -> Event:
    if event.data["n"] == 0 and (failing == "always" or mode == "crash" or not tries):
        tries.append(1)
        raise ConnectionError("event 0 fails")
    return Event("done", {"n": event.data["n"]})


if mode == "crash":

    def commit_owned(self, group, member_id, offsets, outputs):  # type: ignore[no-untyped-def]
        os.kill(os.getpid(), signal.SIGKILL)  # before the round's commit: events 1-3 are done, not committed

    SQLiteLog.commit_owned = commit_owned  # type: ignore[method-assign]

log = SQLiteLog(path)
bus = TestBus(log=log)
if mode == "crash":
    bus.publish("in", *[Event("n", {"n": n}) for n in range(4)])
bus.run(app)
outputs = sorted(e.data["n"] for e in bus.events("out"))
dead = [e.data["n"] for e, _ in bus.dead_letters("in.dlq") if e is not None]
print("outputs:", outputs, "dead letters:", dead, "committed:", log.committed("idem", "in"))
