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
from eventbus.backends.base import ConsumerSettings, Headers, Log
from eventbus.backends.group import EmbeddedLog
from eventbus.backends.memory import MemoryLog
from eventbus.backends.sqlite import SQLiteLog
from eventbus.codecs import decode_record
from eventbus.errors import DecodeError, ProcessorError, TopicNotFoundError
from eventbus.event import Event, binding_of
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
        """Publish events (or typed instances) to ``topic``: ``bus.publish("orders", first, second)``."""
        if len(events) == 1 and isinstance(events[0], list | tuple):
            raise TypeError(
                f"TestBus.publish({topic!r}, ...) takes the events one by one, got a {type(events[0]).__name__} of "
                f"them: bus.publish({topic!r}, *events)"
            )
        return self._publisher.publish_many(topic, events)

    def run(self, app: App, *, group: str | None = None, **settings: Any) -> WorkerStats:
        """Run every processor of ``app`` until each partition it reads is caught up and nothing waits for a
        retry, including events its own processors emitted to topics it reads. When a processor with
        ``on_failure="stop"`` gives up, raises `ProcessorError` (where it failed), caused by what the processor
        raised (its traceback shows the processor's own line). ``settings`` are `WorkerSettings` fields (e.g.
        ``retry_seed``)."""
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
        try:
            stats = await AppRunner(app, self.log, WorkerSettings(**options)).run()
        except ProcessorError as exc:
            # In a test, the line of the processor that raised is what matters: chained, pytest and the
            # traceback show it (and pytest.raises(...).value.__cause__ is the processor's own exception).
            if exc.__cause__ is None:
                exc.__cause__ = exc.cause
            raise
        return stats.processors or WorkerStats()

    def _own_idempotency_store(self) -> str:
        if self._idempotency_store is None:
            self._idempotency_store = tempfile.mkdtemp(prefix="eventbus-testbus-idempotency-")
            weakref.finalize(self, shutil.rmtree, self._idempotency_store, ignore_errors=True)
        return self._idempotency_store

    def dead_letters(self, topic: str) -> list[tuple[Event | None, dict[str, str]]]:
        """Every record of dead-letter topic ``topic``: the event (None if it could not be decoded) and its
        failure headers by name (``error.class``, ``attempts``, ``origin.offset``, ...)."""
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
        """Every event in ``topic``, partition by partition, in offset order (Avro data decoded)."""
        try:
            states = self.log.watermarks(topic)
        except TopicNotFoundError:
            return []
        found: list[Event] = []
        for state in states:
            batch = self.log.read(topic, state.partition, 0, state.end_offset)
            found.extend(self._decode(v, h) for v, h in zip(batch.values, batch.headers, strict=True))
        return found

    def _decode(self, value: bytes | None, headers: Headers | None) -> Event:
        """A record as an event, its Avro data decoded with the schema it was written with (as `eventbus consume`
        shows it): an app writing to a topic declared Avro is read back as data, not as the bytes of its Avro
        body. Data whose schema cannot be found stays bytes (``data_base64``)."""
        if headers:
            try:
                return Event.wrap(decode_record(value, headers, self._avro_reader()))
            except DecodeError:
                pass
        return Event.wrap(decode_record(value, headers))

    def _avro_reader(self) -> Any:
        from eventbus.codecs.avro import reading_decoder

        if self._avro is None:
            self._avro = reading_decoder(self.log)
        return self._avro

    def data(self, topic: str) -> list[Any]:
        """The ``data`` of every event in ``topic``."""
        return [e.data for e in self.events(topic)]

    def typed(self, topic: str, cls: type[T]) -> list[T]:
        """The events in ``topic`` as instances of a typed event class: those of the type it is bound to with
        ``@event_type``, as a processor taking ``cls`` receives them (every event, for a class not bound)."""
        binding = binding_of(cls)
        # Without the filter, an event of another type whose data happens to fit would pass for one of ``cls``.
        return [e.as_type(cls) for e in self.events(topic) if binding is None or e.type == binding.type]

    def committed(self, group: str, topic: str) -> dict[int, int]:
        return self.log.committed(group, topic)

    def publish_data(self, topic: str, type_: str, items: Iterable[Any], **attributes: Any) -> list[Position]:
        """Publish one event of ``type_`` per item of ``items`` (its data)."""
        if isinstance(items, dict | str | bytes):
            # Iterating them would publish one event per key (or character): never what a test means.
            raise TypeError(
                f"TestBus.publish_data({topic!r}, {type_!r}, ...) takes a list of data items, got a "
                f"{type(items).__name__}: wrap a single one in a list"
            )
        return self.publish(topic, *(Event(type_, item, **attributes) for item in items))
