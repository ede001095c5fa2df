"""Every event is copied; every third one fails twice and is dead-lettered: the counts are known in advance."""

from __future__ import annotations

from eventbus import App, Event, Retry

app = App("obs-counting")


@app.processor("obs-in", to="obs-out")
def copy(event: Event) -> Event:
    return Event("obs.copied", {"n": event.data["n"]})


@app.processor(
    "obs-in",
    retry=Retry(max_attempts=2, initial_delay_ms=1, max_delay_ms=1),
    dead_letter_topic="obs-in.dlq",
)
def every_third_fails(event: Event) -> None:
    if event.data["n"] % 3 == 0:
        raise ValueError(f"event {event.data['n']} is a multiple of 3")
