"""Idempotency keys: which events a processor has already handled, and what it emitted for them.

A key must be durable the moment an invocation succeeds, before the round is committed: if the worker is killed
in between, the event is delivered again and its key must already be there, or its side effect happens twice. A
SQLite transaction per event would cost more than the event; instead each key is appended to a per-process
*journal* file with one ``write`` — durable against a crash of the process, like the log's own WAL — and the
journal is folded into a SQLite table after each commit.

Each invocation writes two journal lines: *begin* before the function is called and *done* (with its outputs)
after it returns. A worker starting up folds the journals that processes now gone left behind; a key with a
*begin* and no *done* belongs to an event that was being processed when its worker died — its side effects may or
may not have happened. Such a key is kept *in doubt*: the event is not processed again but dead-lettered, for a
person to decide, so it is neither repeated nor silently dropped.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
import weakref
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import orjson

from eventbus.backends.base import Message
from eventbus.errors import ConfigurationError

Outputs = list[tuple[str, Message]]


class InDoubt:
    """What `IdempotencyStore.seen` returns for a key whose invocation was cut short by a crash."""

    def __repr__(self) -> str:
        return "IN_DOUBT"


IN_DOUBT = InDoubt()
Seen = dict[str, "Outputs | InDoubt"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    processor TEXT NOT NULL,
    key TEXT NOT NULL,
    recorded_ms INTEGER NOT NULL,
    in_doubt INTEGER NOT NULL DEFAULT 0,
    outputs BLOB,
    PRIMARY KEY (processor, key)
) WITHOUT ROWID;
"""
# Longest IN (...) list per query: well under SQLite's limit on bound variables.
_LOOKUP_CHUNK = 500
# Journals of stores open in this process: never folded by another store of the same process.
_open_journals: set[str] = set()


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else value.encode("latin-1")


def encode_outputs(outputs: Outputs) -> bytes:
    return orjson.dumps(
        [
            [topic, _text(m.value), _text(m.key), None if not m.headers else [[k, _text(v)] for k, v in m.headers]]
            for topic, m in outputs
        ]
    )


def decode_outputs(blob: bytes | None) -> Outputs:
    if not blob:
        return []
    outputs: Outputs = []
    for topic, value, key, headers in orjson.loads(blob):
        decoded_headers = None if headers is None else tuple((k, _bytes(v) or b"") for k, v in headers)
        outputs.append((topic, Message(_bytes(value), _bytes(key), decoded_headers)))
    return outputs


class IdempotencyStore(ABC):
    @abstractmethod
    def seen(self, processor: str, keys: Sequence[str], ttl_s: float) -> Seen:
        """The keys among ``keys`` recorded within ``ttl_s``, each with the outputs recorded with it (or
        `IN_DOUBT`)."""

    def begin(self, processor: str, key: str) -> None:  # noqa: B027 - only stores that survive a crash need it
        """Note that ``key``'s invocation starts (durable when it returns)."""

    def abandon(self, processor: str, key: str) -> None:  # noqa: B027
        """Note that ``key``'s invocation failed: it will be tried again, not doubted."""

    @abstractmethod
    def record(self, processor: str, key: str, outputs: Outputs) -> None:
        """Remember ``key`` (and what its invocation emitted); durable against a crash when it returns."""

    def flush(self) -> None:  # noqa: B027 - stores without a journal have nothing to fold
        """Move recorded keys to long-term storage (after a commit; not needed for durability)."""

    def close(self) -> None:  # noqa: B027
        """Release files and connections."""


class MemoryIdempotencyStore(IdempotencyStore):
    """Keys in a dict: for the memory log and tests."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], tuple[float, Outputs]] = {}

    def seen(self, processor: str, keys: Sequence[str], ttl_s: float) -> Seen:
        oldest = time.time() - ttl_s
        found: Seen = {}
        for key in keys:
            entry = self._keys.get((processor, key))
            if entry is not None and entry[0] >= oldest:
                found[key] = entry[1]
        return found

    def record(self, processor: str, key: str, outputs: Outputs) -> None:
        self._keys[(processor, key)] = (time.time(), outputs)


_memory_stores: weakref.WeakKeyDictionary[object, MemoryIdempotencyStore] = weakref.WeakKeyDictionary()


def memory_store_for(log: object) -> MemoryIdempotencyStore:
    """The in-memory store that lives as long as a memory log, shared by every worker on it."""
    store = _memory_stores.get(log)
    if store is None:
        store = _memory_stores[log] = MemoryIdempotencyStore()
    return store


class SQLiteIdempotencyStore(IdempotencyStore):
    """Keys in a SQLite table shared by the workers of one host, with a journal per worker process."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ConfigurationError(f"idempotency store {self.path}: cannot open it: {exc}") from None
        self._lock = threading.Lock()
        self._fold_orphaned_journals()
        self._journal_path = self.path.with_name(f"{self.path.name}.journal.{os.getpid()}.{uuid.uuid4().hex[:8]}")
        self._journal = os.open(self._journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        _open_journals.add(str(self._journal_path))
        self._pending: dict[tuple[str, str], tuple[int, bytes]] = {}
        self._journal_used = False
        self._last_expiry = time.monotonic()

    # -- journals ---------------------------------------------------------------------------------------------

    def _fold_orphaned_journals(self) -> None:
        for journal in self.path.parent.glob(f"{self.path.name}.journal.*"):
            pid = journal.name.rsplit(".", 2)[-2]
            if str(journal) in _open_journals or (pid.isdigit() and _alive(int(pid))):
                continue
            self._insert(list(_replay_journal(journal.read_bytes()).values()))
            journal.unlink(missing_ok=True)

    def _insert(self, rows: list[tuple[str, str, int, int, bytes | None]]) -> None:
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO idempotency_keys VALUES (?, ?, ?, ?, ?)", rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- the contract -----------------------------------------------------------------------------------------

    def seen(self, processor: str, keys: Sequence[str], ttl_s: float) -> Seen:
        oldest_ms = int((time.time() - ttl_s) * 1000)
        found: Seen = {}
        missing = []
        for key in keys:
            pending = self._pending.get((processor, key))
            if pending is not None and pending[0] >= oldest_ms:
                found[key] = decode_outputs(pending[1])
            else:
                missing.append(key)
        for start in range(0, len(missing), _LOOKUP_CHUNK):
            chunk = missing[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = self._db.execute(
                    f"SELECT key, in_doubt, outputs FROM idempotency_keys WHERE processor = ? AND recorded_ms >= ?"
                    f" AND key IN ({marks})",
                    (processor, oldest_ms, *chunk),
                ).fetchall()
            for key, in_doubt, outputs in rows:
                found[key] = IN_DOUBT if in_doubt else decode_outputs(outputs)
        return found

    def _journal_line(self, *fields: object) -> None:
        os.write(self._journal, orjson.dumps(fields) + b"\n")
        self._journal_used = True

    def begin(self, processor: str, key: str) -> None:
        self._journal_line("begin", processor, key)

    def abandon(self, processor: str, key: str) -> None:
        self._journal_line("abandon", processor, key)

    def record(self, processor: str, key: str, outputs: Outputs) -> None:
        now_ms = time.time_ns() // 1_000_000
        blob = encode_outputs(outputs) if outputs else b""
        self._journal_line("done", processor, key, now_ms, _text(blob) if blob else None)
        self._pending[(processor, key)] = (now_ms, blob)

    def flush(self) -> None:
        if self._pending:
            rows = [(p, k, ms, 0, blob or None) for (p, k), (ms, blob) in self._pending.items()]
            self._insert(rows)
            self._pending.clear()
        if self._journal_used:
            # Only between rounds: no invocation is under way, so no begun key is left without its outcome.
            os.ftruncate(self._journal, 0)
            self._journal_used = False

    def expire(self, processor: str, ttl_s: float) -> None:
        """Delete keys older than ``ttl_s`` (run now and then, not per round)."""
        oldest_ms = int((time.time() - ttl_s) * 1000)
        with self._lock:
            self._db.execute(
                "DELETE FROM idempotency_keys WHERE processor = ? AND recorded_ms < ?", (processor, oldest_ms)
            )

    def close(self) -> None:
        self.flush()
        os.close(self._journal)
        self._journal_path.unlink(missing_ok=True)
        _open_journals.discard(str(self._journal_path))
        with self._lock:
            self._db.close()


def _replay_journal(text: bytes) -> dict[tuple[str, str], tuple[str, str, int, int, bytes | None]]:
    """The rows a journal stands for: done keys with their outputs, and begun-but-not-done keys in doubt."""
    rows: dict[tuple[str, str], tuple[str, str, int, int, bytes | None]] = {}
    now_ms = time.time_ns() // 1_000_000
    for line in text.splitlines():
        try:
            entry = orjson.loads(line)
            kind, processor, key = entry[0], entry[1], entry[2]
        except (orjson.JSONDecodeError, ValueError, IndexError, TypeError):
            continue  # the last line of a journal whose writer was killed mid-write
        if kind == "begin":
            rows[(processor, key)] = (processor, key, now_ms, 1, None)
        elif kind == "abandon":
            rows.pop((processor, key), None)
        elif kind == "done":
            rows[(processor, key)] = (processor, key, entry[3], 0, _bytes(entry[4]))
    return rows


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a journal of this pid is from an earlier process that had the same pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
