"""A sync processor that holds each call until a gate file exists (``OBS_GATE``), after marking that it waits."""

from __future__ import annotations

import os
import time
from pathlib import Path

from eventbus import App, Event

app = App("obs-gated")


@app.processor("obs-gated")
def wait_at_the_gate(event: Event) -> None:
    gate = Path(os.environ["OBS_GATE"])
    gate.with_suffix(".waiting").touch()
    while not gate.exists():
        time.sleep(0.02)
