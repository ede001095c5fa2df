"""Event store backend on PostgreSQL: streams, snapshots and an outbox in one database, relayed to the log."""

from __future__ import annotations

import threading
from typing import Any

import orjson

from eventbus.backends.base import Headers, Log, Message
from eventbus.errors import BackendError, ConfigurationError
from eventbus.projections.aggregates import ConcurrencyError
from eventbus.projections.eventstore import Append, EventStoreBackend, publish_outbox_rows
from eventbus.projections.postgres import redacted

_SCHEMA = """
CREATE TABLE IF NOT EXISTS event_streams (
    stream_type TEXT NOT NULL,
    stream_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    event BYTEA NOT NULL,
    PRIMARY KEY (stream_type, stream_id, version)
);
CREATE TABLE IF NOT EXISTS event_snapshots (
    stream_type TEXT NOT NULL,
    stream_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    state BYTEA NOT NULL,
    PRIMARY KEY (stream_type, stream_id)
);
CREATE TABLE IF NOT EXISTS event_outbox (
    seq BIGSERIAL PRIMARY KEY,
    topic TEXT NOT NULL,
    key BYTEA,
    value BYTEA,
    headers BYTEA
);
"""
# One relay at a time per database keeps the outbox published in order. A relay finding it taken waits for it: the
# holder may have read the outbox before the waiting save committed, and would leave its rows behind.
_RELAY_LOCK = "eventbus.eventstore.relay"


def _encode_headers(headers: Headers | None) -> bytes | None:
    return None if not headers else orjson.dumps([[k, v.decode("latin-1")] for k, v in headers])


def _decode_headers(blob: bytes | None) -> Headers | None:
    return None if blob is None else tuple((k, v.encode("latin-1")) for k, v in orjson.loads(blob))


class PostgresEvents(EventStoreBackend):
    # How long a relay waits for another one to finish before giving up (the rows then stay in the outbox).
    relay_wait_s = 30.0

    def __init__(self, url: str, log: Log) -> None:
        import psycopg

        self._psycopg = psycopg
        self.url = url
        self._log = log
        try:
            self._db = psycopg.connect(url, connect_timeout=10)
            with self._db.transaction(), self._db.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext('eventbus.eventstore.schema'))")
                cursor.execute(_SCHEMA)
        except psycopg.Error as exc:
            raise ConfigurationError(f"cannot open the event store at {redacted(url)}: {exc}") from None
        self._lock = threading.RLock()

    def _run(self, work: Any) -> Any:
        with self._lock:
            try:
                with self._db.transaction(), self._db.cursor() as cursor:
                    return work(cursor)
            except self._psycopg.errors.UniqueViolation:
                raise
            except self._psycopg.Error as exc:
                raise BackendError(f"event store {redacted(self.url)}: {exc}") from None

    def read(self, stream_type: str, stream_id: str, after_version: int) -> list[tuple[int, bytes]]:
        def work(cursor: Any) -> list[tuple[int, bytes]]:
            cursor.execute(
                "SELECT version, event FROM event_streams WHERE stream_type = %s AND stream_id = %s AND version > %s"
                " ORDER BY version",
                (stream_type, stream_id, after_version),
            )
            return [(int(v), bytes(e)) for v, e in cursor.fetchall()]

        rows: list[tuple[int, bytes]] = self._run(work)
        return rows

    def snapshot(self, stream_type: str, stream_id: str) -> tuple[int, bytes] | None:
        def work(cursor: Any) -> tuple[int, bytes] | None:
            cursor.execute(
                "SELECT version, state FROM event_snapshots WHERE stream_type = %s AND stream_id = %s",
                (stream_type, stream_id),
            )
            row = cursor.fetchone()
            return None if row is None else (int(row[0]), bytes(row[1]))

        found: tuple[int, bytes] | None = self._run(work)
        return found

    def append(self, append: Append) -> None:
        stream = f"{append.stream_type}/{append.stream_id}"

        def work(cursor: Any) -> None:
            # The stream's lock serialises its writers; the version check then tells the loser it lost.
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (stream,))
            cursor.execute(
                "SELECT COALESCE(MAX(version), 0) FROM event_streams WHERE stream_type = %s AND stream_id = %s",
                (append.stream_type, append.stream_id),
            )
            actual = int(cursor.fetchone()[0])
            if actual != append.expected_version:
                raise ConcurrencyError(stream, append.expected_version, actual)
            cursor.executemany(
                "INSERT INTO event_streams VALUES (%s, %s, %s, %s, %s)",
                [(append.stream_type, append.stream_id, r.version, r.event_id, r.event) for r in append.rows],
            )
            if append.snapshot is not None:
                cursor.execute(
                    "INSERT INTO event_snapshots VALUES (%s, %s, %s, %s) ON CONFLICT (stream_type, stream_id)"
                    " DO UPDATE SET version = excluded.version, state = excluded.state",
                    (append.stream_type, append.stream_id, *append.snapshot),
                )
            cursor.executemany(
                "INSERT INTO event_outbox (topic, key, value, headers) VALUES (%s, %s, %s, %s)",
                [(append.topic, m.key, m.value, _encode_headers(m.headers)) for m in append.messages],
            )

        try:
            self._run(work)
        except self._psycopg.errors.UniqueViolation:
            actual = len(self.read(append.stream_type, append.stream_id, 0))
            raise ConcurrencyError(stream, append.expected_version, actual) from None

    def relay(self, limit: int, *, wait: bool = True) -> int:
        def work(cursor: Any) -> tuple[int, Exception | None]:
            cursor.execute("SELECT EXISTS (SELECT 1 FROM event_outbox)")
            if not cursor.fetchone()[0]:
                return 0, None  # nothing to publish: no lock to take or wait for
            cursor.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", (_RELAY_LOCK,))
            if not cursor.fetchone()[0]:
                if not wait:
                    return 0, None  # the relay at work goes on until the outbox is empty
                # Another relay is publishing, but what it read may predate this save's commit, and nothing else
                # would relay these rows until some later save: wait for it (bounded), then publish what it left.
                cursor.execute("SELECT set_config('lock_timeout', %s, true)", (f"{round(self.relay_wait_s * 1000)}ms",))
                try:
                    cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_RELAY_LOCK,))
                except self._psycopg.errors.LockNotAvailable:
                    raise BackendError(
                        f"event store {redacted(self.url)}: another relay held the outbox for over "
                        f"{self.relay_wait_s:g} s; the events are saved but not yet published: call relay() later"
                    ) from None
            cursor.execute("SELECT seq, topic, key, value, headers FROM event_outbox ORDER BY seq LIMIT %s", (limit,))
            queued = [
                (seq, topic, Message(_bytes(value), _bytes(key), _decode_headers(_bytes(headers))))
                for seq, topic, key, value, headers in cursor.fetchall()
            ]
            published, failure = publish_outbox_rows(self._log, queued)
            # Exactly the rows published: a save committing meanwhile may hold a lower sequence number, and rows
            # after a failed append stay, in order, for the next relay.
            cursor.execute("DELETE FROM event_outbox WHERE seq = ANY(%s)", (published,))
            return len(published), failure

        count, failure = self._run(work)
        if failure is not None:
            raise failure
        return int(count)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _bytes(value: bytes | memoryview | None) -> bytes | None:
    return None if value is None else bytes(value)
