"""Metrics the worker keeps, exposed in the Prometheus format.

Counting happens here, in plain dicts: the worker adds whole rounds at a time, and importing prometheus_client
costs about 0.1 s, which `eventbus run` should not pay before its first event. `prometheus_registry` builds a
prometheus_client collector over these values when something asks to expose them (the /metrics endpoint, tests).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_lock = threading.Lock()


@dataclass
class _Metric:
    name: str
    help: str
    labels: tuple[str, ...]
    kind: str  # "counter" or "gauge"
    values: dict[tuple[str, ...], float] = field(default_factory=dict)

    def add(self, labels: tuple[str, ...], amount: float) -> None:
        with _lock:
            self.values[labels] = self.values.get(labels, 0.0) + amount

    def set(self, labels: tuple[str, ...], value: float) -> None:
        with _lock:
            self.values[labels] = value

    def value(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)


PROCESSED = _Metric("eventbus_events_processed", "Events a processor finished successfully.", ("processor",), "counter")
FAILED_ATTEMPTS = _Metric(
    "eventbus_failed_attempts", "Invocations that raised or timed out.", ("processor", "error"), "counter"
)
RETRIES = _Metric("eventbus_retries", "Attempts scheduled again after a failure.", ("processor",), "counter")
DEAD_LETTERED = _Metric(
    "eventbus_events_dead_lettered",
    "Events written to a dead-letter topic, by why they were given up on.",
    ("processor", "topic", "reason"),
    "counter",
)
DUPLICATES = _Metric(
    "eventbus_duplicates_skipped", "Events an idempotent processor had already processed.", ("processor",), "counter"
)
BREAKER_STATE = _Metric(
    "eventbus_circuit_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.", ("breaker",), "gauge"
)
BREAKER_TRANSITIONS = _Metric(
    "eventbus_circuit_breaker_transitions", "Circuit breaker state changes.", ("breaker", "to"), "counter"
)
PAUSED_PARTITIONS = _Metric(
    "eventbus_paused_partitions", "Partitions whose fetching is paused (backpressure, open breakers).", (), "gauge"
)
ALL = (
    PROCESSED,
    FAILED_ATTEMPTS,
    RETRIES,
    DEAD_LETTERED,
    DUPLICATES,
    BREAKER_STATE,
    BREAKER_TRANSITIONS,
    PAUSED_PARTITIONS,
)

_BREAKER_VALUES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}


def processed(processor: str, count: int) -> None:
    if count:
        PROCESSED.add((processor,), count)


def failed_attempt(processor: str, error: BaseException) -> None:
    FAILED_ATTEMPTS.add((processor, type(error).__name__), 1)


def retried(processor: str) -> None:
    RETRIES.add((processor,), 1)


def dead_lettered(processor: str, topic: str, reason: str) -> None:
    DEAD_LETTERED.add((processor, topic, reason), 1)


def duplicate_skipped(processor: str) -> None:
    DUPLICATES.add((processor,), 1)


def breaker_state(breaker: str, state: str) -> None:
    BREAKER_STATE.set((breaker,), _BREAKER_VALUES[state])
    BREAKER_TRANSITIONS.add((breaker, state), 1)


def paused_partitions(count: int) -> None:
    PAUSED_PARTITIONS.set((), count)


class _Collector:
    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for metric in ALL:
            family_class = CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily
            family = family_class(metric.name, metric.help, labels=list(metric.labels))
            with _lock:
                values = list(metric.values.items())
            for labels, value in values:
                family.add_metric(list(labels), value)
            yield family


def prometheus_registry() -> Any:
    """A prometheus_client registry holding eventbus's metrics (imports prometheus_client)."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return registry


def exposition() -> bytes:
    """The metrics in the Prometheus text format."""
    from prometheus_client import generate_latest

    return generate_latest(prometheus_registry())
