"""Metrics the worker keeps, exposed in the Prometheus format.

Counting happens here, in plain dicts: the worker adds whole rounds at a time, and importing prometheus_client
costs about 0.1 s, which `eventbus run` should not pay before its first event. `prometheus_registry` builds a
prometheus_client collector over these values when something asks to expose them (the /metrics endpoint, tests).

Under ``eventbus run --workers N --http PORT`` one process serves /metrics for N. The supervisor makes a directory
(`shared_directory`) and each worker writes its values there about once a second (`share_with_supervisor`), and
once more as it exits; the serving worker adds the others' files to its own values. Counters of workers that have
exited stay counted, so a total never goes down when a worker is started again; gauges count only while their
process lives.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import orjson

# Set by the supervisor of ``--workers`` (with ``--http``) in its workers' environment: where they share values.
METRICS_DIR_ENV: Final = "EVENTBUS_METRICS_DIR"
# How stale a worker's values may be on another worker's /metrics: well under any Prometheus scrape interval.
SHARE_INTERVAL_S: Final = 1.0

_lock = threading.Lock()
logger = logging.getLogger("eventbus.metrics")


@dataclass
class _Metric:
    name: str
    help: str
    labels: tuple[str, ...]
    kind: Literal["counter", "gauge"]
    # How one gauge's values from several worker processes make the value shown: partitions paused add up, while
    # a breaker is shown in the worst state any process has it in.
    across_workers: Literal["sum", "max"] = "sum"
    values: dict[tuple[str, ...], float] = field(default_factory=dict)

    def add(self, labels: tuple[str, ...], amount: float) -> None:
        with _lock:
            self.values[labels] = self.values.get(labels, 0.0) + amount
            _sharing.changes += 1

    def set(self, labels: tuple[str, ...], value: float) -> None:
        with _lock:
            self.values[labels] = value
            _sharing.changes += 1

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
    "eventbus_circuit_breaker_state",
    "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
    ("breaker",),
    "gauge",
    across_workers="max",
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
    value = _BREAKER_VALUES[state]
    before = BREAKER_STATE.values.get((breaker,))
    BREAKER_STATE.set((breaker,), value)
    # A breaker starting closed has made no transition: counting one would read as a flapping breaker.
    if before is not None and before != value:
        BREAKER_TRANSITIONS.add((breaker, state), 1)


def paused_partitions(count: int) -> None:
    PAUSED_PARTITIONS.set((), count)


class _Sharing:
    """This process's part in sharing values between the workers of one supervisor."""

    def __init__(self) -> None:
        self.changes = 0  # bumped under `_lock` by every update, so an unchanged process writes nothing
        self.directory: Path | None = None
        self._written = -1
        self._write_lock = threading.Lock()
        self._interval = threading.Event()  # never set: waiting on it is the pause between writes

    def start(self, directory: Path) -> None:
        self.directory = directory
        self.write()  # at once: a worker that has counted nothing yet is still one the others can see
        threading.Thread(target=self._write_every_interval, name="eventbus-metrics", daemon=True).start()
        atexit.register(self.write)

    def _write_every_interval(self) -> None:
        while not self._interval.wait(SHARE_INTERVAL_S):
            self.write()

    def write(self) -> None:
        directory = self.directory
        if directory is None:
            return
        with self._write_lock:
            with _lock:
                if self.changes == self._written:
                    return
                changes = self.changes
                snapshot = {m.name: [[*labels, value] for labels, value in m.values.items()] for m in ALL}
            path = directory / f"worker-{os.getpid()}.json"
            temporary = path.with_suffix(".tmp")
            try:
                temporary.write_bytes(orjson.dumps(snapshot))
                os.replace(temporary, path)  # whole or not at all: a reader never sees half a file
            except OSError:
                return  # the supervisor removed the directory as it stopped; nobody is left to read it
            self._written = changes

    def others(self) -> Iterator[tuple[bool, dict[str, list[list[Any]]]]]:
        """Each other worker's values, with whether that worker still runs."""
        directory = self.directory
        if directory is None:
            return
        own = f"worker-{os.getpid()}.json"
        for path in directory.glob("worker-*.json"):
            if path.name == own:
                continue
            try:
                pid = int(path.stem.removeprefix("worker-"))
                values = orjson.loads(path.read_bytes())
            except (OSError, ValueError):
                continue
            if isinstance(values, dict):
                yield _alive(pid), values


_sharing = _Sharing()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def shared_directory() -> Iterator[None]:
    """In the supervisor of ``--workers``: a directory for its workers' values, named in their environment, and
    removed once they have all stopped."""
    import shutil
    import tempfile

    directory = tempfile.mkdtemp(prefix="eventbus-metrics-")
    before = os.environ.get(METRICS_DIR_ENV)
    os.environ[METRICS_DIR_ENV] = directory
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(METRICS_DIR_ENV, None)
        else:
            os.environ[METRICS_DIR_ENV] = before
        shutil.rmtree(directory, ignore_errors=True)


def share_with_supervisor() -> None:
    """In a worker of ``--workers``: share this process's values with the one that serves /metrics."""
    directory = os.environ.get(METRICS_DIR_ENV)
    if directory and _sharing.directory is None and os.path.isdir(directory):
        _sharing.start(Path(directory))


def _combined() -> Iterator[tuple[_Metric, dict[tuple[str, ...], float]]]:
    """Each metric's values: this process's, plus those the other workers of its supervisor shared."""
    with _lock:
        combined = {metric.name: dict(metric.values) for metric in ALL}
    for alive, shared in _sharing.others():
        for metric in ALL:
            if metric.kind == "gauge" and not alive:
                continue  # what a stopped worker had paused or opened is paused or open no more
            values = combined[metric.name]
            for row in shared.get(metric.name, ()):
                labels, value = tuple(str(label) for label in row[:-1]), float(row[-1])
                if len(labels) != len(metric.labels):
                    continue  # written by another version of eventbus
                if labels not in values:
                    values[labels] = value
                elif metric.across_workers == "max" and metric.kind == "gauge":
                    values[labels] = max(values[labels], value)
                else:
                    values[labels] += value
    for metric in ALL:
        values = combined[metric.name]
        if not metric.labels and not values:
            values[()] = 0.0  # a metric without labels has a value from the start, as prometheus_client's do
        yield metric, values


class _PartitionWatermarks(Protocol):
    @property
    def partition(self) -> int: ...
    @property
    def start_offset(self) -> int: ...
    @property
    def end_offset(self) -> int: ...


class LagSource(Protocol):
    """What consumer lag is read from: a log (`eventbus.backends.base.Log`)."""

    def watermarks(self, topic: str) -> Sequence[_PartitionWatermarks]: ...
    def committed(self, group: str, topic: str) -> Mapping[int, int]: ...


CONSUMER_LAG_NAME: Final = "eventbus_consumer_lag"
CONSUMER_LAG_HELP: Final = (
    "Records of a partition after the group's committed offset (from the first record still held if it never "
    "committed), read from the log at each scrape: the lag of every worker of the group."
)
_lag_watches: list[tuple[LagSource, str, tuple[str, ...]]] = []


def watch_consumer_lag(log: LagSource, group: str, topics: Sequence[str]) -> Callable[[], None]:
    """Show ``group``'s lag on ``topics`` in ``log`` on /metrics; returns what stops it.

    Read when scraped rather than kept by the worker: the committed offsets are the group's, so the one process
    serving /metrics for ``--workers N`` shows the lag of all of them, and the hot path does nothing for it."""
    watch = (log, group, tuple(topics))
    with _lock:
        _lag_watches.append(watch)

    def unwatch() -> None:
        with _lock, contextlib.suppress(ValueError):
            _lag_watches.remove(watch)

    return unwatch


def _consumer_lag() -> Iterator[tuple[tuple[str, str, str], float]]:
    with _lock:
        watches = list(_lag_watches)
    for log, group, topics in watches:
        for topic in topics:
            try:
                committed = log.committed(group, topic)
                marks = log.watermarks(topic)
            except Exception as exc:  # a topic not created yet, a broker away: the other metrics still answer
                logger.debug("no consumer lag for group %r on %s: %s", group, topic, exc)
                continue
            for mark in marks:
                position = committed.get(mark.partition, mark.start_offset)
                yield (group, topic, str(mark.partition)), float(max(0, mark.end_offset - position))


class _Collector:
    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for metric, values in _combined():
            family_class = CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily
            family = family_class(metric.name, metric.help, labels=list(metric.labels))
            for labels, value in values.items():
                family.add_metric(list(labels), value)
            yield family
        lag = GaugeMetricFamily(CONSUMER_LAG_NAME, CONSUMER_LAG_HELP, labels=["group", "topic", "partition"])
        for labels, value in _consumer_lag():
            lag.add_metric(list(labels), value)
        yield lag


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
