"""The event store: aggregates' streams, appended with optimistic concurrency and published atomically.

``store.load(Account, "acc-1")`` rebuilds an aggregate from its snapshot (if any) and the events after it;
``store.save(account, events)`` appends the events at the next versions — refused with `ConcurrencyError` when the
stream moved since the load — applies them, and publishes them to the aggregate's topic.

Publishing is atomic with the append, in one of two ways:

- *shared file*: the event store lives in the SQLite log's own file, so the stream rows and the log records are
  written in one SQLite transaction;
- *outbox*: otherwise (PostgreSQL, or another SQLite file) the events also go to an outbox table in the same
  transaction, and a relay appends outbox rows to the log in order and then deletes them. A crash between the two
  steps publishes some events twice (same event ids), never zero times; nothing is published that was not
  appended. Every save relays until the outbox is empty, and opening a store relays what a crash (or a log that
  was unreachable) left there, so those events do not wait for the next save.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import orjson

from eventbus.backends import open_log
from eventbus.backends.base import Log, Message
from eventbus.errors import BackendError, ConfigurationError
from eventbus.event import Event, complete
from eventbus.projections.aggregates import Aggregate
from eventbus.publisher import encoder_for

A = TypeVar("A", bound=Aggregate)
logger = logging.getLogger("eventbus.eventstore")

# Outbox rows published per relay transaction; a relay goes on, a batch at a time, until the outbox is empty.
RELAY_BATCH = 10_000


@dataclass(frozen=True, slots=True)
class StreamRow:
    version: int
    event_id: str
    event: bytes  # the CloudEvents JSON form


@dataclass(frozen=True, slots=True)
class Append:
    """One save: the rows for the stream, the records for the log, and perhaps a snapshot."""

    stream_type: str
    stream_id: str
    expected_version: int
    rows: list[StreamRow]
    topic: str
    messages: list[Message]
    snapshot: tuple[int, bytes] | None


def publish_outbox_rows(log: Log, rows: Sequence[tuple[int, str, Message]]) -> tuple[list[int], Exception | None]:
    """Append outbox rows ``(seq, topic, message)`` to ``log`` in order, one append per run of one topic; returns
    the sequence numbers of the rows appended, and what stopped the rest (None when all were). The caller deletes
    exactly those rows, even on a failure: a later relay must not publish them again."""
    published: list[int] = []
    start = 0
    try:
        while start < len(rows):
            topic = rows[start][1]
            end = start
            while end < len(rows) and rows[end][1] == topic:
                end += 1
            log.append(topic, [message for _, _, message in rows[start:end]])
            published.extend(seq for seq, _, _ in rows[start:end])
            start = end
    except Exception as exc:  # handed back: the rows before it are published and must be deleted all the same
        return published, exc
    return published, None


class EventStoreBackend(ABC):
    @abstractmethod
    def read(self, stream_type: str, stream_id: str, after_version: int) -> list[tuple[int, bytes]]: ...

    @abstractmethod
    def snapshot(self, stream_type: str, stream_id: str) -> tuple[int, bytes] | None: ...

    @abstractmethod
    def append(self, append: Append) -> None:
        """Write the stream rows (and snapshot) and publish or queue the records, in one transaction; raise
        `ConcurrencyError` when the stream is not at ``expected_version``."""

    def relay(self, limit: int, *, wait: bool = True) -> int:
        """Publish queued outbox records to the log; returns how many (0 for stores without an outbox).

        ``wait=False``: when another relay holds the outbox, leave it to that one and return 0."""
        return 0

    @abstractmethod
    def close(self) -> None: ...


class EventStore:
    """Aggregates' event streams in ``url`` (``sqlite:///...`` or ``postgresql://...``), published to ``log``
    (a `Log` or a broker URL; default ``EVENTBUS_BROKER`` or the embedded log)."""

    def __init__(self, url: str, log: Log | str | None = None, *, source: str = "/eventstore") -> None:
        self._owns_log = not isinstance(log, Log)
        self.log = log if isinstance(log, Log) else open_log(log)
        self.url = url
        self.source = source
        self._encode = encoder_for(self.log)
        self._backend = _open_backend(url, self.log)
        self._relay_left_over()

    def _relay_left_over(self) -> None:
        """Publish what the outbox still holds from before this store was opened. A log that cannot take them now
        does not stop the opening: they stay in the outbox for the next save or `relay`. Nor does another relay
        at work: it goes on until the outbox is empty."""
        try:
            published = self._relay(wait=False)
        except BackendError as exc:
            logger.warning("event store %s: saved events are still waiting to be published: %s", self.url, exc)
            return
        except BaseException:
            self.close()
            raise
        if published:
            logger.info("event store %s: published %d saved events left in the outbox", self.url, published)

    def load(self, cls: type[A], id: str) -> A:
        """The aggregate as of its latest event (a new, empty one when the stream has none)."""
        aggregate = cls(id)
        stream_type = cls.stream_name()
        after = 0
        snapshot = self._backend.snapshot(stream_type, id)
        if snapshot is not None:
            after, state = snapshot
            aggregate.restore(orjson.loads(state))
            aggregate.version = after
        for version, raw in self._backend.read(stream_type, id, after):
            aggregate.apply(Event.wrap(orjson.loads(raw)))
            aggregate.version = version
        return aggregate

    def events(self, cls: type[Aggregate], id: str) -> list[Event]:
        """Every event of a stream, in order."""
        return [Event.wrap(orjson.loads(raw)) for _, raw in self._backend.read(cls.stream_name(), id, 0)]

    def save(self, aggregate: Aggregate, events: Event | Sequence[Event]) -> list[Event]:
        """Append ``events`` to the aggregate's stream after the version it was loaded at, publish them, and apply
        them to the aggregate. Raises `ConcurrencyError` if another writer saved the stream first."""
        batch = [events] if isinstance(events, Event) else list(events)
        if not batch:
            return []
        cls = type(aggregate)
        if not getattr(cls, "topic", None):
            raise ConfigurationError(f'{cls.__qualname__} has no topic: set `topic = "..."` on the class')
        rows, messages, completed = [], [], []
        for n, event in enumerate(batch, start=1):
            attrs = complete(event, self.source)
            attrs.setdefault("subject", aggregate.id)
            rows.append(StreamRow(aggregate.version + n, attrs["id"], orjson.dumps(attrs)))
            messages.append(self._encode(attrs))
            completed.append(Event.wrap(attrs))
        new_version = aggregate.version + len(batch)
        snapshot = self._snapshot_after(aggregate, completed, new_version)
        self._backend.append(
            Append(cls.stream_name(), aggregate.id, aggregate.version, rows, cls.topic, messages, snapshot)
        )
        # Only once the append stands: a failed save leaves the aggregate as it was, so it can be retried.
        for event in completed:
            aggregate.apply(event)
        aggregate.version = new_version
        self.relay()
        return completed

    @staticmethod
    def _snapshot_after(aggregate: Aggregate, events: list[Event], new_version: int) -> tuple[int, bytes] | None:
        """The snapshot to store with ``events`` when they cross a ``snapshot_every`` boundary: the state after
        exactly them, computed on a copy rebuilt as `load` would (the aggregate is untouched until the append
        stands)."""
        cls = type(aggregate)
        every = cls.snapshot_every
        if not every or new_version // every == aggregate.version // every:
            return None
        after = cls(aggregate.id)
        after.restore(orjson.loads(orjson.dumps(aggregate.snapshot())))
        after.version = aggregate.version
        for event in events:
            after.apply(event)
        return new_version, orjson.dumps(after.snapshot())

    def relay(self) -> int:
        """Publish everything the outbox holds (after a crash, or when the log was unreachable), in order, a batch
        per transaction; returns how many events were published."""
        return self._relay(wait=True)

    def _relay(self, *, wait: bool) -> int:
        published = 0
        while True:
            count = self._backend.relay(RELAY_BATCH, wait=wait)
            published += count
            if count < RELAY_BATCH:
                return published

    def close(self) -> None:
        self._backend.close()
        if self._owns_log:
            self.log.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class MemoryEvents(EventStoreBackend):
    """Streams in dicts, appended and published under one lock: for the memory log and tests."""

    def __init__(self, log: Log) -> None:
        import threading

        self._log = log
        self._streams: dict[tuple[str, str], list[bytes]] = {}
        self._snapshots: dict[tuple[str, str], tuple[int, bytes]] = {}
        self._lock = threading.Lock()

    def read(self, stream_type: str, stream_id: str, after_version: int) -> list[tuple[int, bytes]]:
        with self._lock:
            stream = self._streams.get((stream_type, stream_id), [])
            return [(n, raw) for n, raw in enumerate(stream, start=1) if n > after_version]

    def snapshot(self, stream_type: str, stream_id: str) -> tuple[int, bytes] | None:
        with self._lock:
            return self._snapshots.get((stream_type, stream_id))

    def append(self, append: Append) -> None:
        from eventbus.projections.aggregates import ConcurrencyError

        key = (append.stream_type, append.stream_id)
        with self._lock:
            stream = self._streams.setdefault(key, [])
            if len(stream) != append.expected_version:
                raise ConcurrencyError(f"{key[0]}/{key[1]}", append.expected_version, len(stream))
            self._log.append(append.topic, append.messages)
            stream.extend(r.event for r in append.rows)
            if append.snapshot is not None:
                self._snapshots[key] = append.snapshot

    def close(self) -> None:
        """Nothing to release."""


def _open_backend(url: str, log: Log) -> EventStoreBackend:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        return MemoryEvents(log)
    if scheme == "sqlite":
        from eventbus.backends.sqlite import SQLiteLog
        from eventbus.projections.eventstore_sqlite import SharedFileEvents, SQLiteOutboxEvents

        path = Path(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if isinstance(log, SQLiteLog) and os.path.abspath(log.path) == os.path.abspath(path):
            return SharedFileEvents(log)
        return SQLiteOutboxEvents(path, log)
    if scheme in {"postgresql", "postgres"}:
        from eventbus.projections.eventstore_postgres import PostgresEvents

        return PostgresEvents(url, log)
    raise ConfigurationError(
        f"{url}: unknown event store URL scheme; use sqlite:///path.db, postgresql://... or memory://"
    )


def default_event_store_url(log: Log) -> str:
    """Where an app's event store goes by default: ``EVENTBUS_EVENT_STORE``, else the SQLite log's own file (so
    appends and publishes share a transaction), else memory for the memory log."""
    configured = os.environ.get("EVENTBUS_EVENT_STORE")
    if configured:
        return configured
    from eventbus.backends.memory import MemoryLog
    from eventbus.backends.sqlite import SQLiteLog

    if isinstance(log, SQLiteLog):
        return f"sqlite:///{log.path}"
    if isinstance(log, MemoryLog):
        return "memory://"
    raise ConfigurationError(
        "an event store beside a Kafka log needs a database: set EVENTBUS_EVENT_STORE=postgresql://... "
        "(or pass a URL to app.event_store)"
    )
