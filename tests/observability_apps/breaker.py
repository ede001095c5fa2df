"""A processor whose every call fails, behind a breaker that opens after two failures and stays open."""

from __future__ import annotations

from eventbus import App, CircuitBreaker, Event, Retry

app = App("obs-breaker")


@app.processor(
    "obs-calls",
    retry=Retry(max_attempts=1),
    breaker=CircuitBreaker("obs-gateway", failure_threshold=2, window_s=60, open_s=600),
    dead_letter_topic="obs-calls.dlq",
)
def call_gateway(event: Event) -> None:
    raise ConnectionError("the gateway is down")
