"""A plain pipeline step: every event of ``in`` goes on to ``out``."""

from __future__ import annotations

from eventbus import App, Event

app = App("echo")


@app.processor("in", to="out")
def echo(event: Event) -> Event:
    return Event("echoed", event.data)
