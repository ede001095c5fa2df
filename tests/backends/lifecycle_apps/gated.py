"""An app whose processor holds each event until a file named ``release`` appears in the working directory, and
says it holds one by making ``holding-<pid>``: a test can then signal a worker in the middle of a round."""

from __future__ import annotations

import os
import time
from pathlib import Path

from eventbus import App, Event

app = App("gated")


@app.processor("in", to="out")
def gated(event: Event) -> Event:
    Path(f"holding-{os.getpid()}").touch()
    while not Path("release").exists():
        time.sleep(0.02)
    return Event("done", event.data)
