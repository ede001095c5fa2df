"""A worker that dead-letters records while an earlier event of their partition waits for a retry, then dies.

usage: python dead_letter_crash_app.py DB crash|resume

In ``crash`` mode, event 0 fails once (its retry comes 300 ms later) and the process dies at that retry; the
undecodable record at offset 1 and event 2 (given up by "picky") are dead-lettered meanwhile. In ``resume`` mode
every event succeeds; "picky" prints what it processed.
"""

import os
import sys

from eventbus import App, Event, Retry
from eventbus.backends.sqlite import SQLiteLog
from eventbus.testing import TestBus

db, mode = sys.argv[1], sys.argv[2]
app = App("g")
tries: list[int] = []


@app.processor("in", name="slow", retry=Retry(max_attempts=5, initial_delay_ms=300, max_delay_ms=300))
def slow(event: Event) -> None:
    if event.data["n"] == 0 and mode == "crash":
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionError("the gateway is down")
        os._exit(9)  # dies during the retry, before any commit moved past offset 0


@app.processor("in", name="picky", retry=Retry(max_attempts=1))
def picky(event: Event) -> None:
    if event.data["n"] == 2 and mode == "crash":
        raise ConnectionError("a transient failure, given up at once")
    print("picky processed", event.data["n"], flush=True)


TestBus(log=SQLiteLog(db)).run(app)
