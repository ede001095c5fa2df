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
from eventbus.app.projection import Projection, resolve_store_url
from eventbus.backends.base import ConsumerSettings, Headers, Log
from eventbus.backends.group import EmbeddedLog
from eventbus.backends.memory import MemoryLog
from eventbus.backends.sqlite import SQLiteLog
from eventbus.codecs import decode_record
from eventbus.errors import ConfigurationError, DecodeError, ProcessorError, TopicNotFoundError
from eventbus.event import Event, binding_of
from eventbus.projections.reader import ProjectionReader
from eventbus.publisher import Position, Publisher
from eventbus.runtime import AppRunner, WorkerSettings, WorkerStats, run_coroutine

T = TypeVar("T")

_names = itertools.count()


class TestBus:
    """An in-memory log with helpers for tests; each instance is independent."""

    __test__ = False  # not a pytest test class, whatever module imports it

    def __init__(
        self, *, partitions: int = 1, source: str = "/tests", log: Log | None = None, app: App | None = None
    ) -> None:
        """``partitions``: of the topics a publish creates. ``app``: create the topics it declares now, with their
        partition counts, so events published before `run` land where the app's worker will look for them."""
        self.log = log if log is not None else MemoryLog(f"testbus-{next(_names)}", default_partitions=partitions)
        self._publisher = Publisher(self.log, source=source)
        self._avro: Any = None
        self._idempotency_store: str | None = None
        self._projection_store: str | None = None
        if app is not None:
            for spec in app.topics.values():
                self.log.ensure_topic(spec.name, spec.partitions)

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
        self._check_declared_topics(app)
        runner = AppRunner(app, self.log, WorkerSettings(**options), default_projection_store=self._own_store_url())
        try:
            stats = await runner.run()
        except ProcessorError as exc:
            # In a test, the line of the processor that raised is what matters: chained, pytest and the
            # traceback show it (and pytest.raises(...).value.__cause__ is the processor's own exception).
            if exc.__cause__ is None:
                exc.__cause__ = exc.cause
            raise
        return stats.processors or WorkerStats()

    def _check_declared_topics(self, app: App) -> None:
        """A topic a publish created with the bus's partition count, which the app declares with another: the
        worker would refuse it with no word of how a test gets it right."""
        existing = {info.name: info.partitions for info in self.log.list_topics()}
        for spec in app.topics.values():
            found = existing.get(spec.name)
            if found is not None and found != spec.partitions:
                raise ConfigurationError(
                    f"app {app.name!r} declares topic {spec.name!r} with {spec.partitions} partition(s), but this "
                    f"TestBus has it with {found} (a publish created it before the app ran): create the bus with "
                    "TestBus(app=app), which makes the app's topics first"
                )

    def _own_store_url(self) -> str:
        """The store of the projections that name none: one of this bus's own, so no test folds into (or skips
        events because of) a store in the working directory that another test or a real run left there."""
        if self._projection_store is None:
            directory = tempfile.mkdtemp(prefix="eventbus-testbus-projections-")
            weakref.finalize(self, shutil.rmtree, directory, ignore_errors=True)
            self._projection_store = f"sqlite:///{directory}/projections.db"
        return self._projection_store

    def projection(self, projection: Projection) -> ProjectionReader:
        """A reader of ``projection`` as this bus's runs folded it: ``bus.projection(balances).get("acc-1").value``.
        (Projections that name no store fold into one of the bus's own, unless ``EVENTBUS_STORE`` is set.)"""
        if not isinstance(projection, Projection):
            raise TypeError(f"TestBus.projection takes the projection app.projection(...) declared, got {projection!r}")
        return ProjectionReader(resolve_store_url(projection.store, self._own_store_url()), projection.name)

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
