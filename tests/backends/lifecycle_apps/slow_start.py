"""An app whose import, in a worker a supervisor started, waits until a file named ``release`` appears in the
working directory, saying so with ``importing-<pid>``: a test can then signal workers still starting."""

from __future__ import annotations

import os
import time
from pathlib import Path

from eventbus import App, Event

if "EVENTBUS_SUPERVISOR_PID" in os.environ:
    Path(f"importing-{os.getpid()}").touch()
    while not Path("release").exists():
        time.sleep(0.02)

app = App("slow_start")


@app.processor("in", to="out")
def echo(event: Event) -> Event:
    return Event("echoed", event.data)
