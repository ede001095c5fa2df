"""Event store backends on SQLite: in the log's own file (streams and log records in one transaction), or in a file
of its own with an outbox relayed to the log."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from eventbus.backends.base import Headers, Log, Message
from eventbus.backends.sqlite import SQLiteLog
from eventbus.errors import BackendError, ConfigurationError
from eventbus.projections.aggregates import ConcurrencyError
from eventbus.projections.eventstore import Append, EventStoreBackend, publish_outbox_rows
from eventbus.sqlite_files import prepare_file, refusal

# How long a write waits for another process's write transaction on the store's file.
_BUSY_TIMEOUT_MS = 30_000

_STREAMS = """
CREATE TABLE IF NOT EXISTS event_streams (
    stream_type TEXT NOT NULL,
    stream_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    event BLOB NOT NULL,
    PRIMARY KEY (stream_type, stream_id, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS event_snapshots (
    stream_type TEXT NOT NULL,
    stream_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (stream_type, stream_id)
) WITHOUT ROWID;
"""
_OUTBOX = """
CREATE TABLE IF NOT EXISTS event_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    key BLOB,
    value BLOB,
    headers BLOB
);
"""


def _statements(script: str) -> list[str]:
    return [statement for statement in script.split(";") if statement.strip()]


def _read(db: sqlite3.Connection, stream_type: str, stream_id: str, after: int) -> list[tuple[int, bytes]]:
    return db.execute(
        "SELECT version, event FROM event_streams WHERE stream_type = ? AND stream_id = ? AND version > ?"
        " ORDER BY version",
        (stream_type, stream_id, after),
    ).fetchall()


def _snapshot(db: sqlite3.Connection, stream_type: str, stream_id: str) -> tuple[int, bytes] | None:
    row = db.execute(
        "SELECT version, state FROM event_snapshots WHERE stream_type = ? AND stream_id = ?", (stream_type, stream_id)
    ).fetchone()
    return None if row is None else (int(row[0]), bytes(row[1]))


def _write_stream(db: sqlite3.Connection, append: Append) -> None:
    """Check the stream is where the writer thinks, then add its rows (inside the caller's transaction)."""
    (actual,) = db.execute(
        "SELECT COALESCE(MAX(version), 0) FROM event_streams WHERE stream_type = ? AND stream_id = ?",
        (append.stream_type, append.stream_id),
    ).fetchone()
    if actual != append.expected_version:
        raise ConcurrencyError(f"{append.stream_type}/{append.stream_id}", append.expected_version, actual)
    db.executemany(
        "INSERT INTO event_streams VALUES (?, ?, ?, ?, ?)",
        [(append.stream_type, append.stream_id, r.version, r.event_id, r.event) for r in append.rows],
    )
    if append.snapshot is not None:
        db.execute(
            "INSERT INTO event_snapshots VALUES (?, ?, ?, ?) ON CONFLICT (stream_type, stream_id)"
            " DO UPDATE SET version = excluded.version, state = excluded.state",
            (append.stream_type, append.stream_id, *append.snapshot),
        )


class SharedFileEvents(EventStoreBackend):
    """Streams in the SQLite log's own file: the append and the log records commit in one transaction."""

    def __init__(self, log: SQLiteLog) -> None:
        self._log = log
        with log.shared_transaction() as tx:
            # One statement at a time: executescript would commit the transaction it runs in.
            for statement in _statements(_STREAMS):
                tx.db.execute(statement)

    def read(self, stream_type: str, stream_id: str, after_version: int) -> list[tuple[int, bytes]]:
        with self._log.shared_transaction() as tx:
            return _read(tx.db, stream_type, stream_id, after_version)

    def snapshot(self, stream_type: str, stream_id: str) -> tuple[int, bytes] | None:
        with self._log.shared_transaction() as tx:
            return _snapshot(tx.db, stream_type, stream_id)

    def append(self, append: Append) -> None:
        with self._log.shared_transaction() as tx:
            _write_stream(tx.db, append)
            tx.append(append.topic, append.messages)

    def close(self) -> None:
        """The log owns the connection."""


def _encode_headers(headers: Headers | None) -> bytes | None:
    return None if not headers else orjson.dumps([[k, v.decode("latin-1")] for k, v in headers])


def _decode_headers(blob: bytes | None) -> Headers | None:
    return None if blob is None else tuple((k, v.encode("latin-1")) for k, v in orjson.loads(blob))


class SQLiteOutboxEvents(EventStoreBackend):
    """Streams in a SQLite file of their own; records reach the log through an outbox in the same file."""

    def __init__(self, path: Path, log: Log) -> None:
        self.path = path
        self._log = log
        if not path.parent.is_dir():
            raise ConfigurationError(f"sqlite:///{path}: directory {path.parent} does not exist")
        db = None
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_MS / 1000)
            reason = prepare_file(db, _statements(_STREAMS + _OUTBOX))
            db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            if db is not None:
                db.close()
            raise ConfigurationError(f"sqlite:///{path}: cannot open it as an event store: {exc}") from None
        if reason is not None:
            db.close()
            raise ConfigurationError(f"sqlite:///{path}: {refusal(path, reason)}")
        self._db = db
        self._lock = threading.RLock()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise BackendError(f"sqlite:///{self.path}: {exc}") from None
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def read(self, stream_type: str, stream_id: str, after_version: int) -> list[tuple[int, bytes]]:
        with self._lock:
            return _read(self._db, stream_type, stream_id, after_version)

    def snapshot(self, stream_type: str, stream_id: str) -> tuple[int, bytes] | None:
        with self._lock:
            return _snapshot(self._db, stream_type, stream_id)

    def append(self, append: Append) -> None:
        with self._transaction() as db:
            _write_stream(db, append)
            db.executemany(
                "INSERT INTO event_outbox (topic, key, value, headers) VALUES (?, ?, ?, ?)",
                [(append.topic, m.key, m.value, _encode_headers(m.headers)) for m in append.messages],
            )

    def relay(self, limit: int, *, wait: bool = True) -> int:
        # The write lock is held from reading the outbox to deleting what was published, so two relays never
        # publish the same rows or publish them out of order. An empty outbox takes no lock at all.
        with self._lock:
            if self._db.execute("SELECT 1 FROM event_outbox LIMIT 1").fetchone() is None:
                return 0
        if not wait:
            with self._lock:
                self._db.execute("PRAGMA busy_timeout = 0")
        try:
            with self._transaction() as db:
                rows = db.execute(
                    "SELECT seq, topic, key, value, headers FROM event_outbox ORDER BY seq LIMIT ?", (limit,)
                ).fetchall()
                queued = [
                    (seq, topic, Message(value, key, _decode_headers(headers)))
                    for seq, topic, key, value, headers in rows
                ]
                published, failure = publish_outbox_rows(self._log, queued)
                db.executemany("DELETE FROM event_outbox WHERE seq = ?", [(seq,) for seq in published])
        except BackendError:
            if wait:
                raise
            return 0  # another relay holds the outbox: it publishes these
        finally:
            if not wait:
                with self._lock:
                    self._db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        if failure is not None:
            raise failure
        return len(published)

    def close(self) -> None:
        with self._lock:
            self._db.close()
