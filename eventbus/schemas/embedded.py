"""The embedded schema registry: subjects, versions and schema ids in SQLite tables, so the default setup needs no
server.

Where the tables live: in the SQLite log's own file (joining the log's write transactions, so several processes
sharing the file register safely), in a file of their own (``sqlite:///registry.db``), or in memory (for the
memory log, and ``memory://name``). Ids and versions follow the Confluent registry: a schema has one id whatever
subjects hold it (the same schema text, up to formatting and namespaces, gets the same id), versions count from 1
per subject, and each subject has a compatibility mode (default BACKWARD).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import urlsplit

import orjson

from eventbus.errors import ConfigurationError
from eventbus.schemas.compatibility import DEFAULT_COMPATIBILITY, Compatibility, check
from eventbus.schemas.errors import IncompatibleSchemaError, RegistryError, SchemaNotFoundError
from eventbus.schemas.registry import RegisteredSchema, SchemaRegistry
from eventbus.sqlite_files import prepare_file, refusal

if TYPE_CHECKING:
    from eventbus.backends.base import Log
    from eventbus.backends.sqlite import SQLiteLog

_TABLES: Final = (
    """CREATE TABLE IF NOT EXISTS registry_schemas (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        fingerprint TEXT NOT NULL UNIQUE,
        schema TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS registry_versions (
        subject TEXT NOT NULL,
        version INTEGER NOT NULL,
        schema_id INTEGER NOT NULL REFERENCES registry_schemas (id),
        registered_ms INTEGER NOT NULL,
        PRIMARY KEY (subject, version)
    ) WITHOUT ROWID""",
    # The row with subject '' holds the registry's default mode.
    """CREATE TABLE IF NOT EXISTS registry_config (
        subject TEXT PRIMARY KEY,
        compatibility TEXT NOT NULL
    ) WITHOUT ROWID""",
)
_BUSY_TIMEOUT_S: Final = 30.0


class _Store(Protocol):
    def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def close(self) -> None: ...


class _LogFileStore:
    """Tables in the SQLite log's file, written in the log's own transactions."""

    def __init__(self, log: SQLiteLog) -> None:
        self._log = log

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._log.shared_transaction() as tx:
            try:
                yield tx.db
            except sqlite3.Error as exc:
                raise RegistryError(f"schema registry in {self._log.url}: {exc}") from None

    def close(self) -> None:
        """The log owns the connection."""


class _OwnStore:
    """Tables in a SQLite database of their own (a file, or memory)."""

    def __init__(self, path: str, url: str) -> None:
        self._url = url
        self._path = path
        self._lock = threading.RLock()
        db = None
        reason = None
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_S)
            if path != ":memory:":
                reason = prepare_file(db, _TABLES)
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            raise ConfigurationError(f"schema registry {url}: cannot open {path}: {exc}") from None
        if reason is not None:
            db.close()
            raise ConfigurationError(f"schema registry {url}: {refusal(path, reason)}")
        self._db = db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise RegistryError(f"schema registry {self._url}: cannot start a transaction: {exc}") from None
            try:
                yield db
            except sqlite3.Error as exc:
                db.execute("ROLLBACK")
                raise RegistryError(f"schema registry {self._url}: {exc}") from None
            except BaseException:
                db.execute("ROLLBACK")
                raise
            try:
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                db.execute("ROLLBACK")
                raise RegistryError(f"schema registry {self._url}: commit failed: {exc}") from None

    def close(self) -> None:
        # A memory database lives as long as what it belongs to (a memory log, a memory:// name): closing it
        # would lose it while that is still in use.
        if self._path != ":memory:":
            with self._lock:
                self._db.close()


def fingerprint(schema: Any) -> str:
    """What makes two schema texts the same schema: their JSON with full names, keys sorted, hashed."""
    return hashlib.sha256(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)).hexdigest()


class EmbeddedRegistry(SchemaRegistry):
    def __init__(self, store: _Store, url: str) -> None:
        self._store = store
        self.url = url
        with store.transaction() as db:
            for statement in _TABLES:
                db.execute(statement)

    def schema_uri(self, schema_id: int) -> str:
        # A fragment: the registry is a part of the database the URL names, not a path below it.
        return f"{self.url}#/schemas/ids/{schema_id}"

    def register(self, subject: str, schema: str) -> RegisteredSchema:
        from eventbus.schemas.loader import parse_registered

        _check_subject(subject)
        normal, _ = parse_registered(schema, f"schema for subject {subject!r}")
        key = fingerprint(normal)
        with self._store.transaction() as db:
            found = _version_with(db, subject, key)
            if found is not None:
                return found
            history = [
                (v.version, parse_registered(v.schema, f"{self.url} {subject!r} version {v.version}")[0])
                for v in _versions(db, subject)
            ]
            violations = check(_compatibility(db, subject), normal, history)
            if violations:
                raise IncompatibleSchemaError(subject, violations)
            row = db.execute("SELECT id, schema FROM registry_schemas WHERE fingerprint = ?", (key,)).fetchone()
            if row is None:
                inserted = db.execute("INSERT INTO registry_schemas (fingerprint, schema) VALUES (?, ?)", (key, schema))
                row = (inserted.lastrowid, schema)
            schema_id, stored = row
            version = 1 + (history[-1][0] if history else 0)
            db.execute(
                "INSERT INTO registry_versions (subject, version, schema_id, registered_ms) VALUES (?, ?, ?, ?)",
                (subject, version, schema_id, time.time_ns() // 1_000_000),
            )
        return RegisteredSchema(subject, version, schema_id, stored)

    def lookup(self, subject: str, schema: str) -> RegisteredSchema | None:
        from eventbus.schemas.loader import parse_registered

        normal, _ = parse_registered(schema, f"schema for subject {subject!r}")
        with self._store.transaction() as db:
            return _version_with(db, subject, fingerprint(normal))

    def schema_by_id(self, schema_id: int) -> str:
        with self._store.transaction() as db:
            row = db.execute("SELECT schema FROM registry_schemas WHERE id = ?", (schema_id,)).fetchone()
        if row is None:
            raise SchemaNotFoundError(f"schema id {schema_id} is not in the schema registry {self.url}")
        text: str = row[0]
        return text

    def subjects(self) -> list[str]:
        with self._store.transaction() as db:
            rows = db.execute("SELECT DISTINCT subject FROM registry_versions ORDER BY subject").fetchall()
        return [subject for (subject,) in rows]

    def versions(self, subject: str) -> list[RegisteredSchema]:
        with self._store.transaction() as db:
            return _versions(db, subject)

    def compatibility(self, subject: str | None = None) -> Compatibility:
        with self._store.transaction() as db:
            return _compatibility(db, subject)

    def set_compatibility(self, level: Compatibility, subject: str | None = None) -> None:
        if subject is not None:
            _check_subject(subject)
        with self._store.transaction() as db:
            db.execute(
                "INSERT INTO registry_config (subject, compatibility) VALUES (?, ?)"
                " ON CONFLICT (subject) DO UPDATE SET compatibility = excluded.compatibility",
                (subject or "", level.value),
            )

    def close(self) -> None:
        self._store.close()


def _check_subject(subject: str) -> None:
    if not isinstance(subject, str) or not subject.strip():
        raise ConfigurationError(f"subject names must be non-empty text, got {subject!r}")


def _versions(db: sqlite3.Connection, subject: str) -> list[RegisteredSchema]:
    rows = db.execute(
        "SELECT v.version, v.schema_id, s.schema FROM registry_versions v JOIN registry_schemas s"
        " ON s.id = v.schema_id WHERE v.subject = ? ORDER BY v.version",
        (subject,),
    ).fetchall()
    return [RegisteredSchema(subject, version, schema_id, schema) for version, schema_id, schema in rows]


def _version_with(db: sqlite3.Connection, subject: str, key: str) -> RegisteredSchema | None:
    row = db.execute(
        "SELECT v.version, v.schema_id, s.schema FROM registry_versions v JOIN registry_schemas s"
        " ON s.id = v.schema_id WHERE v.subject = ? AND s.fingerprint = ? ORDER BY v.version DESC LIMIT 1",
        (subject, key),
    ).fetchone()
    return None if row is None else RegisteredSchema(subject, row[0], row[1], row[2])


def _compatibility(db: sqlite3.Connection, subject: str | None) -> Compatibility:
    for key in (subject, ""):
        if key is None:
            continue
        row = db.execute("SELECT compatibility FROM registry_config WHERE subject = ?", (key,)).fetchone()
        if row is not None:
            return Compatibility(row[0])
    return DEFAULT_COMPATIBILITY


# Memory logs and memory:// registries live as long as the process (or the log); each has one registry.
_for_memory_logs: weakref.WeakKeyDictionary[Log, EmbeddedRegistry] = weakref.WeakKeyDictionary()
_by_memory_name: dict[str, EmbeddedRegistry] = {}
_lock = threading.Lock()


def embedded_registry_for(log: Log) -> EmbeddedRegistry:
    """The registry inside ``log``: tables in its SQLite file, or a memory registry that lives with a memory log."""
    from eventbus.backends.memory import MemoryLog
    from eventbus.backends.sqlite import SQLiteLog

    if isinstance(log, SQLiteLog):
        return EmbeddedRegistry(_LogFileStore(log), log.url)
    if isinstance(log, MemoryLog):
        with _lock:
            registry = _for_memory_logs.get(log)
            if registry is None:
                registry = _for_memory_logs[log] = EmbeddedRegistry(_OwnStore(":memory:", log.url), log.url)
            return registry
    raise ConfigurationError(
        f"{log.url}: this log has no embedded schema registry; set EVENTBUS_SCHEMA_REGISTRY (or the app's "
        "Schemas(registry=...)) to a Confluent Schema Registry URL, or to sqlite:///registry.db"
    )


def open_embedded_registry(url: str) -> EmbeddedRegistry:
    """``sqlite:///path.db`` (a file of its own) or ``memory://name`` (one per name in this process)."""
    parts = urlsplit(url)
    if parts.scheme.lower() == "memory":
        name = (parts.netloc + parts.path).strip("/") or "default"
        with _lock:
            registry = _by_memory_name.get(name)
            if registry is None:
                registry = _by_memory_name[name] = EmbeddedRegistry(_OwnStore(":memory:", url), url)
            return registry
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if parts.netloc or not path:
        raise ConfigurationError(
            f"schema registry {url!r}: a SQLite URL has three slashes before a relative path "
            "(sqlite:///registry.db) and four before an absolute one"
        )
    return EmbeddedRegistry(_OwnStore(path, url), url)
