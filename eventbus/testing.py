"""A harness to test processors without a broker: publish events, run an app until idle, read topics.

>>> bus = TestBus()
>>> bus.publish("orders", Event("order.placed", {"id": "o-1", "amount": 30}))
>>> bus.run(app)                 # every processor of ``app`` until nothing is left to do
>>> [e.type for e in bus.events("payments")]

Everything runs in memory (or on a log you pass in), in the calling thread, through the same worker
`eventbus run` uses.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import weakref
from collections.abc import Iterable
from typing import Any, TypeVar

from eventbus.app import App
from eventbus.backends.base import ConsumerSettings, Log
from eventbus.backends.group import EmbeddedLog
from eventbus.backends.memory import MemoryLog
from eventbus.backends.sqlite import SQLiteLog
from eventbus.codecs import decode_record
from eventbus.errors import TopicNotFoundError
from eventbus.event import Event
from eventbus.publisher import Position, Publisher
from eventbus.runtime import AppRunner, WorkerSettings, WorkerStats, run_coroutine

T = TypeVar("T")

_names = itertools.count()


class TestBus:
    """An in-memory log with helpers for tests; each instance is independent."""

    __test__ = False  # not a pytest test class, whatever module imports it

    def __init__(self, *, partitions: int = 1, source: str = "/tests", log: Log | None = None) -> None:
        self.log = log if log is not None else MemoryLog(f"testbus-{next(_names)}", default_partitions=partitions)
        self._publisher = Publisher(self.log, source=source)
        self._avro: Any = None
        self._idempotency_store: str | None = None

    def create_topic(self, name: str, partitions: int) -> None:
        self.log.create_topic(name, partitions)

    def publish(self, topic: str, *events: Event | object) -> list[Position]:
        """Publish events (or typed instances) to ``topic``."""
        return self._publisher.publish_many(topic, events)

    def run(self, app: App, *, group: str | None = None, **settings: Any) -> WorkerStats:
        """Run every processor of ``app`` until each partition it reads is caught up and nothing waits for a
        retry, including events its own processors emitted to topics it reads. Raises what a processor raised
        when it stops on failure. ``settings`` are `WorkerSettings` fields (e.g. ``retry_seed``)."""
        return run_coroutine(self.run_async(app, group=group, **settings))

    async def run_async(self, app: App, *, group: str | None = None, **settings: Any) -> WorkerStats:
        """`run`, for async tests."""
        # One member, no rebalances to wait for: a long session on the embedded logs. A Kafka broker holds a new
        # member's join for part of its session, so there the session is as short as brokers accept.
        embedded = isinstance(self.log, EmbeddedLog)
        session = (
            ConsumerSettings(session_timeout_s=60.0, heartbeat_interval_s=30.0)
            if embedded
            else (ConsumerSettings(session_timeout_s=6.0, heartbeat_interval_s=1.0))
        )
        options: dict[str, Any] = {"group": group, "until_idle": True, "idle_poll_s": 0.01, "consumer": session}
        if not isinstance(self.log, MemoryLog | SQLiteLog):
            # Idempotency keys live with the log on the embedded logs; elsewhere a worker keeps them in a directory
            # of the working directory, which every test would share. This bus's runs share one of their own.
            options["idempotency_store"] = self._own_idempotency_store()
        options.update(settings)
        stats = await AppRunner(app, self.log, WorkerSettings(**options)).run()
        return stats.processors or WorkerStats()

    def _own_idempotency_store(self) -> str:
        if self._idempotency_store is None:
            self._idempotency_store = tempfile.mkdtemp(prefix="eventbus-testbus-idempotency-")
            weakref.finalize(self, shutil.rmtree, self._idempotency_store, ignore_errors=True)
        return self._idempotency_store

    def dead_letters(self, topic: str) -> list[tuple[Event | None, dict[str, str]]]:
        """Every record of dead-letter topic ``topic``: the event (None if it could not be decoded) and its
        failure headers by name (``error.class``, ``attempts``, ``origin.offset``, ...)."""
        from eventbus.errors import DecodeError
        from eventbus.runtime.dead_letter import failure_of

        found: list[tuple[Event | None, dict[str, str]]] = []
        try:
            states = self.log.watermarks(topic)
        except TopicNotFoundError:
            return found
        for state in states:
            for record in self.log.read(topic, state.partition, 0, state.end_offset).records():
                event: Event | None = None
                # Attributes with the data as bytes when the data itself does not decode: that may be why it died.
                for avro in (self._avro_reader(), None):
                    try:
                        event = Event.wrap(decode_record(record.value, record.headers, avro))
                        break
                    except DecodeError:
                        continue
                found.append((event, failure_of(record.headers)))
        return found

    def events(self, topic: str) -> list[Event]:
        """Every event in ``topic``, partition by partition, in offset order."""
        try:
            states = self.log.watermarks(topic)
        except TopicNotFoundError:
            return []
        found: list[Event] = []
        for state in states:
            batch = self.log.read(topic, state.partition, 0, state.end_offset)
            found.extend(Event.wrap(decode_record(v, h)) for v, h in zip(batch.values, batch.headers, strict=True))
        return found

    def _avro_reader(self) -> Any:
        from eventbus.codecs.avro import reading_decoder

        if self._avro is None:
            self._avro = reading_decoder(self.log)
        return self._avro

    def data(self, topic: str) -> list[Any]:
        """The ``data`` of every event in ``topic``."""
        return [e.data for e in self.events(topic)]

    def typed(self, topic: str, cls: type[T]) -> list[T]:
        """Every event in ``topic`` as an instance of a typed event class."""
        return [e.as_type(cls) for e in self.events(topic)]

    def committed(self, group: str, topic: str) -> dict[int, int]:
        return self.log.committed(group, topic)

    def publish_data(self, topic: str, type_: str, items: Iterable[Any], **attributes: Any) -> list[Position]:
        """Publish one event of ``type_`` per item of ``items`` (its data)."""
        return self.publish(topic, *(Event(type_, item, **attributes) for item in items))
