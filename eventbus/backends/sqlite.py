"""The embedded log on one SQLite file: the default backend, safe for many processes at once.

Durability: the file is in WAL mode. An append returns only after its transaction commits, so an acknowledged
append survives SIGKILL of any process (the WAL is written before commit returns). ``synchronous`` is ``NORMAL``
by default, which also survives a crash of the process but may lose the last transactions on power loss;
``?synchronous=full`` syncs the WAL on every commit and survives power loss too, at a cost per commit.

Concurrency: writers take SQLite's write lock with ``BEGIN IMMEDIATE`` and assign offsets inside it, so appends
from several processes get distinct, gap-free offsets. Readers never block writers (WAL).

URL: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``, with optional query parameters
``synchronous=normal|full``, ``partitions=N`` (for topics created on first use) and ``auto_create=true|false``.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from itertools import cycle
from pathlib import Path
from typing import Any

import orjson

from eventbus.backends.base import (
    Headers,
    Message,
    PartitionState,
    RecordBatch,
    TopicInfo,
    TopicPartition,
    check_position,
    check_topic_name,
    partition_for_key,
)
from eventbus.backends.group import EmbeddedLog, Member, host_identity, process_is_gone
from eventbus.errors import (
    BackendError,
    ConfigurationError,
    EventbusError,
    PartitionRevokedError,
    TopicNotFoundError,
)
from eventbus.sqlite_files import APPLICATION_ID, foreign_file_reason, retry_while_busy
from eventbus.sqlite_files import is_busy as _is_busy

SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    partitions INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS partitions (
    topic_id INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    start_offset INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (topic_id, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    topic_id INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    key BLOB,
    value BLOB,
    headers BLOB,
    PRIMARY KEY (topic_id, partition, offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_offsets (
    group_name TEXT NOT NULL,
    topic_id INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    committed_ms INTEGER NOT NULL,
    PRIMARY KEY (group_name, topic_id, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_members (
    group_name TEXT NOT NULL,
    member_id TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    topics TEXT NOT NULL,
    session_timeout_ms INTEGER NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    PRIMARY KEY (group_name, member_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_epochs (
    group_name TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_owners (
    group_name TEXT NOT NULL,
    topic_id INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    member_id TEXT NOT NULL,
    PRIMARY KEY (group_name, topic_id, partition)
) WITHOUT ROWID;
"""

_SYNCHRONOUS_MODES = {"normal": "NORMAL", "full": "FULL"}
_BUSY_TIMEOUT_S = 30.0
# Waiting for another process's write transaction: SQLite's own busy handler sleeps 1, 2, 5, 10 ... up to 100 ms
# between tries, which leaves the lock idle most of the time when several workers share a file (their write
# transactions take a few milliseconds). Write transactions therefore start with no busy handler and retry
# after pauses from 50 us doubling to 1 ms, still giving up after _BUSY_TIMEOUT_S.
_FIRST_BUSY_PAUSE_S = 0.00005
_MAX_BUSY_PAUSE_S = 0.001


def _is_readonly(exc: sqlite3.Error) -> bool:
    """SQLITE_READONLY in any of its forms (the file, its directory, its -shm file cannot be written)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_READONLY


def _not_a_log(db: sqlite3.Connection) -> str | None:
    """Why the file ``db`` has open is no eventbus log, or None if it is one or can become one (it holds no other
    application's tables; see eventbus.sqlite_files). Only reads, so that a file it refuses is left as it was."""
    # One snapshot: another process may be making the file a log meanwhile, and a mark read before its commit
    # beside tables read after it would look like someone else's file.
    db.execute("BEGIN")
    try:
        return _not_a_log_in(db)
    finally:
        if db.in_transaction:
            db.execute("COMMIT")


def _not_a_log_in(db: sqlite3.Connection) -> str | None:
    (application_id,) = db.execute("PRAGMA application_id").fetchone()
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if application_id == APPLICATION_ID and version > SCHEMA_VERSION:
        return f"it was made by a newer eventbus (log schema {version}; this one knows up to {SCHEMA_VERSION})"
    return foreign_file_reason(db)


def _prepare(db: sqlite3.Connection, synchronous: str) -> None:
    """WAL mode, durability, and the schema if the file lacks it (or has an older one)."""
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            db.executescript(
                f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version={SCHEMA_VERSION};"
                f"PRAGMA application_id={APPLICATION_ID};COMMIT;"
            )
    except sqlite3.OperationalError:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _encode_headers(headers: Headers | None) -> bytes | None:
    if not headers:
        return None
    # latin-1 maps every byte to one code point, so any header value survives the JSON round trip.
    return orjson.dumps([[k, v.decode("latin-1")] for k, v in headers])


def _decode_headers(blob: bytes | None) -> Headers | None:
    if blob is None:
        return None
    return tuple((k, v.encode("latin-1")) for k, v in orjson.loads(blob))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SharedTransaction:
    """A transaction on a SQLite log's file, for a component keeping its own tables in the same file."""

    def __init__(self, log: SQLiteLog, db: sqlite3.Connection) -> None:
        self._log = log
        self.db = db

    def append(self, topic: str, messages: Sequence[Message]) -> list[tuple[int, int]]:
        """Append to the log as part of this transaction."""
        return self._log._append_in(self.db, topic, messages)


class SQLiteLog(EmbeddedLog):
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "normal",
        default_partitions: int = 1,
        auto_create: bool = True,
    ) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        if synchronous not in _SYNCHRONOUS_MODES:
            raise ConfigurationError(
                f"{self.url}: synchronous must be one of {sorted(_SYNCHRONOUS_MODES)}, got {synchronous!r}"
            )
        self.default_partitions = default_partitions
        self.auto_create = auto_create
        self._lock = threading.RLock()
        self._topics: dict[str, tuple[int, int]] = {}
        # Topics created by the transaction under way: cached when it commits.
        self._created: list[tuple[str, tuple[int, int]]] = []
        self._round_robin: dict[str, Iterator[int]] = {}
        self._host = host_identity()
        self._db = self._connect(_SYNCHRONOUS_MODES[synchronous])
        # Reads go through a connection of their own: in WAL mode they then proceed while the other connection
        # commits (a worker reads round N+1 while it writes round N) instead of queueing behind it.
        self._reads = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_S)
        self._read_lock = threading.RLock()

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        self._check_path()
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_S)
        except sqlite3.DatabaseError as exc:
            raise ConfigurationError(f"{self.url}: cannot open {self.path} as an eventbus log: {exc}") from None
        try:
            # Before anything writes: even switching to WAL mode changes the file's header.
            reason = retry_while_busy(lambda: _not_a_log(db))
            if reason is not None:
                raise ConfigurationError(
                    f"{self.url}: {self.path} is not an eventbus log: {reason}; it was left unchanged (check the "
                    "path, or give the log a file of its own)"
                )
            retry_while_busy(lambda: _prepare(db, synchronous))
            db.execute("PRAGMA busy_timeout = 0")  # see _begin
        except BaseException as exc:
            db.close()
            if not isinstance(exc, sqlite3.DatabaseError):
                raise
            if _is_readonly(exc):
                raise self._cannot_write(exc) from None
            raise ConfigurationError(f"{self.url}: cannot open {self.path} as an eventbus log: {exc}") from None
        return db

    def _check_path(self) -> None:
        """A `ConfigurationError` saying what is wrong with a path SQLite could not open a log at, before SQLite
        answers only "unable to open database file" (or "disk I/O error") whatever the cause."""
        path = self.path
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            self._check_directory_for_new_file()
            return
        except OSError as exc:
            raise self._unreachable(path, exc) from None
        if stat.S_ISDIR(mode):
            raise ConfigurationError(f"{self.url}: {path} is a directory, not a database file")
        if not stat.S_ISREG(mode):
            raise ConfigurationError(
                f"{self.url}: {path} is not a regular file (a device, pipe or socket); give the log a file of its own"
            )
        if not os.access(path, os.R_OK):
            raise ConfigurationError(
                f"{self.url}: cannot read {path}: it is not readable for this user; check the permissions"
            )

    def _check_directory_for_new_file(self) -> None:
        path = self.path
        # A link to a file that does not exist yet: SQLite creates the file it points to, beside that one.
        target = Path(os.path.realpath(path)) if os.path.islink(path) else path
        shown = str(target.parent) if target is path else f"{target.parent} (where the link {path} points)"
        try:
            mode = target.parent.stat().st_mode
        except FileNotFoundError:
            raise ConfigurationError(f"{self.url}: directory {shown} does not exist") from None
        except OSError as exc:
            raise self._unreachable(target.parent, exc) from None
        if not stat.S_ISDIR(mode):
            raise ConfigurationError(f"{self.url}: {shown} is not a directory")
        if not os.access(target.parent, os.W_OK | os.X_OK):
            raise ConfigurationError(
                f"{self.url}: cannot create {path}: its directory {shown} is read-only for this user; check the "
                "permissions"
            )

    def _unreachable(self, path: Path, exc: OSError) -> ConfigurationError:
        """The error for a path whose lookup failed other than for a missing last part."""
        if isinstance(exc, NotADirectoryError):
            on_the_way = next(
                (p for p in reversed(path.parents) if os.path.exists(p) and not os.path.isdir(p)), path.parent
            )
            return ConfigurationError(f"{self.url}: {on_the_way} is a file, not a directory")
        if isinstance(exc, PermissionError):
            return ConfigurationError(
                f"{self.url}: cannot reach {path}: a directory on its way is not searchable for this user; check "
                "the permissions"
            )
        return ConfigurationError(f"{self.url}: cannot use {path}: {exc.strerror or exc}")

    def _cannot_write(self, exc: sqlite3.Error) -> ConfigurationError:
        """The error for a write SQLite refused as read-only: a matter of permissions, which the user can fix."""
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_READONLY_DIRECTORY:
            return ConfigurationError(
                f"{self.url}: cannot use {self.path}: its directory {self.path.parent} is read-only for this user, "
                "and SQLite keeps the -wal and -shm files beside the database; check the permissions"
            )
        return ConfigurationError(
            f"{self.url}: cannot write {self.path}: the file (or its -wal or -shm file) is read-only for this user; "
            "check the permissions"
        )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding SQLite's write lock from the start (so offsets can be assigned)."""
        with self._lock:
            db = self._db
            self._begin(db)
            self._created = []
            try:
                yield db
            except BaseException as exc:
                self._roll_back(db)
                if isinstance(exc, sqlite3.OperationalError):
                    raise self._write_failed(exc) from None
                raise
            try:
                db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._roll_back(db)
                raise self._write_failed(exc) from None
            self._topics.update(self._created)

    @staticmethod
    def _roll_back(db: sqlite3.Connection) -> None:
        # SQLite ends some failed transactions itself (a full disk, an I/O error): a ROLLBACK then fails too, and
        # would hide the error that matters.
        if db.in_transaction:
            with suppress(sqlite3.Error):
                db.execute("ROLLBACK")

    def _write_failed(self, exc: sqlite3.OperationalError) -> EventbusError:
        """The error for a write transaction SQLite refused or could not finish: nothing of it was kept."""
        if _is_readonly(exc):
            return self._cannot_write(exc)
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL:
            return BackendError(
                f"{self.url}: cannot write {self.path}: the disk is full; nothing of this write was kept (free some "
                "space; what was written before is kept)"
            )
        return BackendError(f"{self.url}: cannot write {self.path}: {exc}; nothing of this write was kept")

    def _begin(self, db: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE``, waiting for other processes' write transactions in short pauses (see
        _FIRST_BUSY_PAUSE_S); `BackendError` when the lock stays taken for _BUSY_TIMEOUT_S."""
        deadline = 0.0
        pause_s = _FIRST_BUSY_PAUSE_S
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if _is_readonly(exc):
                    raise self._cannot_write(exc) from None
                if not _is_busy(exc):
                    raise BackendError(f"{self.url}: cannot start a write transaction: {exc}") from None
                now = time.monotonic()
                if not deadline:
                    deadline = now + _BUSY_TIMEOUT_S
                elif now >= deadline:
                    raise BackendError(
                        f"{self.url}: cannot start a write transaction: another process has held the database's "
                        f"write lock for more than {_BUSY_TIMEOUT_S:g} s"
                    ) from None
            time.sleep(pause_s)
            pause_s = min(2 * pause_s, _MAX_BUSY_PAUSE_S)

    def close(self) -> None:
        with self._lock:
            self._db.close()
        with self._read_lock:
            self._reads.close()

    @contextmanager
    def shared_transaction(self) -> Iterator[SharedTransaction]:
        """A write transaction other components of the same file join (the event store writes its streams and
        appends their events to the log in one transaction): everything in it commits or nothing does."""
        with self._transaction() as db:
            yield SharedTransaction(self, db)

    # -- topics -----------------------------------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int = 1, *, exist_ok: bool = False) -> TopicInfo:
        check_topic_name(name)
        if partitions < 1:
            raise ValueError(f"topic {name!r}: partitions must be at least 1, got {partitions}")
        with self._transaction() as db:
            row = db.execute("SELECT id, partitions FROM topics WHERE name = ?", (name,)).fetchone()
            if row is not None:
                if exist_ok:
                    return TopicInfo(name, row[1])
                raise ValueError(f"topic {name!r} already exists")
            self._insert_topic(db, name, partitions)
        return TopicInfo(name, partitions)

    def _insert_topic(self, db: sqlite3.Connection, name: str, partitions: int) -> tuple[int, int]:
        cursor = db.execute(
            "INSERT INTO topics (name, partitions, created_ms) VALUES (?, ?, ?)",
            (name, partitions, _now_ms()),
        )
        topic_id = cursor.lastrowid
        assert topic_id is not None
        db.executemany(
            "INSERT INTO partitions (topic_id, partition, next_offset, start_offset) VALUES (?, ?, 0, 0)",
            [(topic_id, p) for p in range(partitions)],
        )
        # Cached once the transaction commits (see _transaction): a rolled-back creation must leave no trace.
        self._created.append((name, (topic_id, partitions)))
        return topic_id, partitions

    def list_topics(self) -> list[TopicInfo]:
        with self._read_lock:
            rows = self._reads.execute("SELECT name, partitions FROM topics ORDER BY name").fetchall()
        return [TopicInfo(name, partitions) for name, partitions in rows]

    def _lookup(self, name: str) -> tuple[int, int]:
        cached = self._topics.get(name)
        if cached is not None:
            return cached
        with self._read_lock:
            row = self._reads.execute("SELECT id, partitions FROM topics WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise TopicNotFoundError(name)
        # Topics are never renamed or resized, so a cached id stays right for the life of the file.
        self._topics[name] = (row[0], row[1])
        return row[0], row[1]

    def topic(self, name: str) -> TopicInfo:
        return TopicInfo(name, self._lookup(name)[1])

    # -- records ----------------------------------------------------------------------------------------------

    def append(self, topic: str, messages: Sequence[Message]) -> list[tuple[int, int]]:
        if not messages:
            return []
        with self._transaction() as db:
            return self._append_in(db, topic, messages)

    def _append_in(self, db: sqlite3.Connection, topic: str, messages: Sequence[Message]) -> list[tuple[int, int]]:
        try:
            topic_id, count = self._lookup(topic)
        except TopicNotFoundError:
            if not self.auto_create:
                raise
            row = db.execute("SELECT id, partitions FROM topics WHERE name = ?", (topic,)).fetchone()
            topic_id, count = (
                (row[0], row[1]) if row else self._insert_topic(db, check_topic_name(topic), self.default_partitions)
            )
        by_partition: dict[int, list[int]] = {}
        chosen = [self._choose_partition(topic, m, count) for m in messages]
        for index, partition in enumerate(chosen):
            by_partition.setdefault(partition, []).append(index)
        positions: list[tuple[int, int]] = [(0, 0)] * len(messages)
        now_ms = _now_ms()
        rows: list[tuple[Any, ...]] = []
        for partition, indexes in by_partition.items():
            (next_offset,) = db.execute(
                "SELECT next_offset FROM partitions WHERE topic_id = ? AND partition = ?",
                (topic_id, partition),
            ).fetchone()
            for offset, index in enumerate(indexes, next_offset):
                message = messages[index]
                positions[index] = (partition, offset)
                rows.append(
                    (
                        topic_id,
                        partition,
                        offset,
                        message.timestamp_ms or now_ms,
                        message.key,
                        message.value,
                        _encode_headers(message.headers) if message.headers else None,
                    )
                )
            db.execute(
                "UPDATE partitions SET next_offset = ? WHERE topic_id = ? AND partition = ?",
                (next_offset + len(indexes), topic_id, partition),
            )
        db.executemany(
            "INSERT INTO records (topic_id, partition, offset, timestamp_ms, key, value, headers)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        return positions

    def _choose_partition(self, topic: str, message: Message, count: int) -> int:
        if message.partition is not None:
            if not 0 <= message.partition < count:
                raise ValueError(f"topic {topic!r} has no partition {message.partition} (it has {count})")
            return message.partition
        if message.key is not None:
            return partition_for_key(message.key, count)
        spread = self._round_robin.get(topic)
        if spread is None:
            spread = self._round_robin[topic] = cycle(range(count))
        return next(spread)

    def read(self, topic: str, partition: int, offset: int, max_records: int) -> RecordBatch:
        topic_id, _ = self._lookup(topic)
        with self._read_lock:
            rows = self._reads.execute(
                "SELECT offset, timestamp_ms, key, value, headers FROM records"
                " WHERE topic_id = ? AND partition = ? AND offset >= ? ORDER BY offset LIMIT ?",
                (topic_id, partition, offset, max_records),
            ).fetchall()
        if not rows:
            return RecordBatch.empty(topic, partition, offset)
        offsets, timestamps, keys, values, header_blobs = (list(column) for column in zip(*rows, strict=True))
        headers = [None if b is None else _decode_headers(b) for b in header_blobs]
        return RecordBatch(topic, partition, offsets, timestamps, keys, values, headers, offsets[-1] + 1)

    def watermarks(self, topic: str) -> list[PartitionState]:
        topic_id, _ = self._lookup(topic)
        with self._read_lock:
            rows = self._reads.execute(
                "SELECT partition, start_offset, next_offset FROM partitions WHERE topic_id = ? ORDER BY partition",
                (topic_id,),
            ).fetchall()
        return [PartitionState(partition, start, end) for partition, start, end in rows]

    def offsets_for_time(self, topic: str, time_ms: int) -> dict[int, int]:
        # The first record stamped at or after time_ms, whatever was stamped before it (a producer's clock can
        # step back): what Kafka's time index answers. A scan, for a tool, not for the hot path.
        topic_id, _ = self._lookup(topic)
        found: dict[int, int] = {}
        for state in self.watermarks(topic):
            with self._read_lock:
                (offset,) = self._reads.execute(
                    "SELECT MIN(offset) FROM records WHERE topic_id = ? AND partition = ? AND offset >= ?"
                    " AND timestamp_ms >= ?",
                    (topic_id, state.partition, state.start_offset, time_ms),
                ).fetchone()
            found[state.partition] = state.end_offset if offset is None else offset
        return found

    def delete_records(self, topic: str, before: Mapping[int, int]) -> None:
        topic_id, _ = self._lookup(topic)
        with self._transaction() as db:
            for partition, offset in before.items():
                db.execute(
                    "UPDATE partitions SET start_offset = MAX(start_offset, MIN(?, next_offset))"
                    " WHERE topic_id = ? AND partition = ?",
                    (offset, topic_id, partition),
                )
                db.execute(
                    "DELETE FROM records WHERE topic_id = ? AND partition = ? AND offset < ?",
                    (topic_id, partition, offset),
                )

    # -- groups -----------------------------------------------------------------------------------------------

    def committed(self, group: str, topic: str) -> dict[int, int]:
        topic_id, _ = self._lookup(topic)
        with self._read_lock:
            rows = self._reads.execute(
                "SELECT partition, next_offset FROM group_offsets WHERE group_name = ? AND topic_id = ?",
                (group, topic_id),
            ).fetchall()
        return dict(rows)

    def commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        with self._transaction() as db:
            self._write_offsets(db, group, offsets)

    def append_and_commit(
        self,
        outputs: Mapping[str, Sequence[Message]],
        group: str,
        offsets: Mapping[TopicPartition, int],
        expected: Mapping[TopicPartition, int | None],
    ) -> None:
        # One transaction: the check sees what no other writer can change before the commit.
        with self._transaction() as db:

            def committed(group: str, topic: str) -> dict[int, int]:
                topic_id, _ = self._lookup(topic)
                rows = db.execute(
                    "SELECT partition, next_offset FROM group_offsets WHERE group_name = ? AND topic_id = ?",
                    (group, topic_id),
                ).fetchall()
                return dict(rows)

            check_position(group, committed, expected)
            for topic, messages in outputs.items():
                if messages:
                    self._append_in(db, topic, messages)
            if offsets:
                self._write_offsets(db, group, offsets)

    def _write_offsets(self, db: sqlite3.Connection, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        now_ms = _now_ms()
        db.executemany(
            "INSERT INTO group_offsets (group_name, topic_id, partition, next_offset, committed_ms)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (group_name, topic_id, partition)"
            " DO UPDATE SET next_offset = excluded.next_offset, committed_ms = excluded.committed_ms",
            [(group, self._lookup(tp.topic)[0], tp.partition, offset, now_ms) for tp, offset in offsets.items()],
        )

    def groups(self) -> list[str]:
        with self._read_lock:
            rows = self._reads.execute("SELECT DISTINCT group_name FROM group_offsets ORDER BY group_name").fetchall()
        return [name for (name,) in rows]

    def group_members(self, group: str) -> list[str]:
        now_ms = _now_ms()
        with self._read_lock:
            rows = self._reads.execute(
                "SELECT member_id, host, pid, topics, session_timeout_ms, heartbeat_ms FROM group_members"
                " WHERE group_name = ?",
                (group,),
            ).fetchall()
        live = []
        for member_id, host, pid, topics, timeout_ms, heartbeat_ms in rows:
            member = Member(member_id, host, pid, tuple(orjson.loads(topics)), timeout_ms / 1000)
            if now_ms - heartbeat_ms <= timeout_ms and not process_is_gone(member, self._host):
                live.append(member_id)
        return sorted(live)

    def membership_epoch(self, group: str) -> int:
        with self._read_lock:
            row = self._reads.execute("SELECT epoch FROM group_epochs WHERE group_name = ?", (group,)).fetchone()
        return 0 if row is None else int(row[0])

    def heartbeat(self, group: str, member: Member) -> list[Member]:
        now_ms = _now_ms()
        with self._transaction() as db:
            known = db.execute(
                "SELECT 1 FROM group_members WHERE group_name = ? AND member_id = ?", (group, member.member_id)
            ).fetchone()
            if known is None:
                self._next_epoch(db, group)
            db.execute(
                "INSERT INTO group_members"
                " (group_name, member_id, host, pid, topics, session_timeout_ms, heartbeat_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (group_name, member_id)"
                " DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms, topics = excluded.topics",
                (
                    group,
                    member.member_id,
                    member.host,
                    member.pid,
                    orjson.dumps(member.topics),
                    int(member.session_timeout_s * 1000),
                    now_ms,
                ),
            )
            rows = db.execute(
                "SELECT member_id, host, pid, topics, session_timeout_ms, heartbeat_ms FROM group_members"
                " WHERE group_name = ?",
                (group,),
            ).fetchall()
            live: list[Member] = []
            gone: list[Member] = []
            for member_id, host, pid, topics, timeout_ms, heartbeat_ms in rows:
                other = Member(member_id, host, pid, tuple(orjson.loads(topics)), timeout_ms / 1000)
                expired = now_ms - heartbeat_ms > timeout_ms
                (gone if expired or process_is_gone(other, self._host) else live).append(other)
            for other in gone:
                self._remove_member(db, group, other.member_id)
        return sorted(live, key=lambda m: m.member_id)

    def keep_alive(self, group: str, member_id: str) -> bool:
        # Called from a consumer's heartbeat thread: the write connection is shared with the polling and
        # committing threads, and `_transaction` holds `_lock` for the whole transaction, so they take turns.
        # The time is read once the write lock is held, so waiting for it cannot make the beat look older.
        with self._transaction() as db:
            now_ms = _now_ms()
            refreshed = db.execute(
                "UPDATE group_members SET heartbeat_ms = ?"
                " WHERE group_name = ? AND member_id = ? AND ? - heartbeat_ms <= session_timeout_ms",
                (now_ms, group, member_id, now_ms),
            ).rowcount
        return refreshed > 0

    @classmethod
    def _remove_member(cls, db: sqlite3.Connection, group: str, member_id: str) -> None:
        removed = db.execute(
            "DELETE FROM group_members WHERE group_name = ? AND member_id = ?", (group, member_id)
        ).rowcount
        db.execute("DELETE FROM group_owners WHERE group_name = ? AND member_id = ?", (group, member_id))
        if removed:
            cls._next_epoch(db, group)

    @staticmethod
    def _next_epoch(db: sqlite3.Connection, group: str) -> None:
        db.execute(
            "INSERT INTO group_epochs (group_name, epoch) VALUES (?, 1)"
            " ON CONFLICT (group_name) DO UPDATE SET epoch = epoch + 1",
            (group,),
        )

    def claim(self, group: str, member_id: str, partitions: Sequence[TopicPartition]) -> set[TopicPartition]:
        claimed: set[TopicPartition] = set()
        with self._transaction() as db:
            live = {m for (m,) in db.execute("SELECT member_id FROM group_members WHERE group_name = ?", (group,))}
            if member_id not in live:
                return claimed
            for tp in partitions:
                topic_id = self._lookup(tp.topic)[0]
                row = db.execute(
                    "SELECT member_id FROM group_owners WHERE group_name = ? AND topic_id = ? AND partition = ?",
                    (group, topic_id, tp.partition),
                ).fetchone()
                if row is None or row[0] == member_id or row[0] not in live:
                    db.execute(
                        "INSERT INTO group_owners (group_name, topic_id, partition, member_id) VALUES (?, ?, ?, ?)"
                        " ON CONFLICT (group_name, topic_id, partition) DO UPDATE SET member_id = excluded.member_id",
                        (group, topic_id, tp.partition, member_id),
                    )
                    claimed.add(tp)
        return claimed

    def release(self, group: str, member_id: str, partitions: Sequence[TopicPartition]) -> None:
        with self._transaction() as db:
            db.executemany(
                "DELETE FROM group_owners WHERE group_name = ? AND topic_id = ? AND partition = ? AND member_id = ?",
                [(group, self._lookup(tp.topic)[0], tp.partition, member_id) for tp in partitions],
            )

    def leave(self, group: str, member_id: str) -> None:
        with self._transaction() as db:
            self._remove_member(db, group, member_id)

    def commit_owned(
        self,
        group: str,
        member_id: str,
        offsets: Mapping[TopicPartition, int],
        outputs: Mapping[str, Sequence[Message]],
    ) -> None:
        with self._transaction() as db:
            owned = {
                (topic_id, partition)
                for topic_id, partition in db.execute(
                    "SELECT topic_id, partition FROM group_owners WHERE group_name = ? AND member_id = ?",
                    (group, member_id),
                )
            }
            lost = sorted(str(tp) for tp in offsets if (self._lookup(tp.topic)[0], tp.partition) not in owned)
            if lost:
                raise PartitionRevokedError(f"group {group!r}: partitions moved to another member: {lost}")
            for topic, messages in outputs.items():
                if messages:
                    self._append_in(db, topic, messages)
            self._write_offsets(db, group, offsets)

    def wait_for_append(self, timeout_s: float) -> None:
        # SQLite has no cross-process notification; PRAGMA data_version changes whenever another connection
        # commits, and reading it costs microseconds, so back off from 1 ms to 20 ms between looks.
        deadline = time.monotonic() + timeout_s
        with self._read_lock:
            (start,) = self._reads.execute("PRAGMA data_version").fetchone()
        pause = 0.001
        while (remaining := deadline - time.monotonic()) > 0:
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.02)
            with self._read_lock:
                (now,) = self._reads.execute("PRAGMA data_version").fetchone()
            if now != start:
                return
