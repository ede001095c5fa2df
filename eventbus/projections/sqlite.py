"""Projection store on a SQLite file: one table of (key, JSON document) per projection version, checkpoints in a
table beside them, both written in one ``BEGIN IMMEDIATE`` transaction."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import orjson

from eventbus.backends.base import TopicPartition
from eventbus.errors import BackendError, ConfigurationError
from eventbus.projections.store import (
    Changes,
    CheckpointMovedError,
    Checkpoints,
    ProjectionStore,
    RowsChangedError,
    VersionChangedError,
    check_projection_name,
    stale_version,
)
from eventbus.sqlite_files import prepare_file, refusal

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS projection_versions (
        projection TEXT PRIMARY KEY,
        current INTEGER NOT NULL,
        latest INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS projection_checkpoints (
        projection TEXT NOT NULL,
        version INTEGER NOT NULL,
        topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        next_offset INTEGER NOT NULL,
        PRIMARY KEY (projection, version, topic, partition)
    ) WITHOUT ROWID""",
)


def _create_rows(db: sqlite3.Connection, projection: str, version: int) -> None:
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {rows_table(projection, version)}"
        " (key TEXT PRIMARY KEY, doc TEXT NOT NULL CHECK (json_valid(doc))) WITHOUT ROWID"
    )


def rows_table(projection: str, version: int) -> str:
    # Names are checked by check_projection_name (lowercase letters, digits, '_'), so they are safe identifiers.
    return f'"projection_{check_projection_name(projection)}_v{int(version)}"'


def json_path(field: str) -> str:
    if not field.replace("_", "").isalnum():
        raise ConfigurationError(f"query field {field!r}: use letters, digits and '_'")
    return f"$.{field}"


_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def check_query_integer(field: str, value: object) -> None:
    """Refuse an integer a query cannot compare exactly: SQLite holds 64-bit integers, and reads a document's
    larger ones as floats, which two neighbouring integers share. Refused rather than matching nothing, since a
    document may hold that very number; refused on every store, so a query means the same on each."""
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64_MIN <= value <= _INT64_MAX:
        raise ConfigurationError(
            f"query field {field!r}: {value} is outside the 64-bit integer range a query compares"
            f" ({_INT64_MIN} to {_INT64_MAX})"
        )


def _put_rows(db: sqlite3.Connection, table: str, puts: Mapping[str, str]) -> None:
    """Upsert a round's rows in one statement over a JSON array of [key, doc] pairs.

    ``executemany`` hands the rows over one at a time, taking the GIL back between them, so the folding thread
    and this one take turns; one statement does all of them in SQLite with the GIL released. A key holding a NUL
    character (SQLite text from JSON would end there) goes the slow way."""
    pairs = orjson.dumps(list(puts.items()))
    if b"\\u0000" in pairs:
        db.executemany(
            f"INSERT INTO {table} (key, doc) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET doc = excluded.doc",
            puts.items(),
        )
        return
    db.execute(
        f"INSERT INTO {table} (key, doc)"
        " SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?) WHERE true"
        " ON CONFLICT (key) DO UPDATE SET doc = excluded.doc",
        (pairs,),
    )


def _changed_rows(db: sqlite3.Connection, table: str, read: Mapping[str, str | None]) -> list[str]:
    """The keys among ``read`` whose row the store holds with another content than read (or holds, or lacks).

    One statement over a JSON array of [key, doc] pairs, as `_put_rows` (NUL characters go the slow way)."""
    pairs = orjson.dumps(list(read.items()))
    if b"\\u0000" in pairs:
        changed = []
        for key, text in read.items():
            row = db.execute(f"SELECT doc FROM {table} WHERE key = ?", (key,)).fetchone()
            if (None if row is None else row[0]) != text:
                changed.append(key)
        return changed
    rows = db.execute(
        f"SELECT json_extract(r.value, '$[0]') FROM json_each(?) AS r"
        f" WHERE (SELECT doc FROM {table} WHERE key = json_extract(r.value, '$[0]'))"
        " IS NOT json_extract(r.value, '$[1]')",
        (pairs,),
    ).fetchall()
    return [key for (key,) in rows]


def _version_checkpoints(db: sqlite3.Connection, projection: str, version: int) -> Checkpoints:
    rows = db.execute(
        "SELECT topic, partition, next_offset FROM projection_checkpoints WHERE projection = ? AND version = ?",
        (projection, version),
    ).fetchall()
    return {TopicPartition(topic, partition): offset for topic, partition, offset in rows}


def rows_changed(projection: str, keys: list[str]) -> RowsChangedError:
    shown = ", ".join(repr(key) for key in sorted(keys)[:3]) + (" ..." if len(keys) > 3 else "")
    return RowsChangedError(
        f"projection {projection!r}: {len(keys)} row(s) ({shown}) were written by another worker since this one "
        "read them; folding them again"
    )


class SQLiteStore(ProjectionStore):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        if not self.path.parent.is_dir():
            raise ConfigurationError(f"{self.url}: directory {self.path.parent} does not exist")
        db = None
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            reason = prepare_file(db, _SCHEMA)
            db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            if db is not None:
                db.close()
            raise ConfigurationError(f"{self.url}: cannot open it as a projection store: {exc}") from None
        if reason is not None:
            db.close()
            raise ConfigurationError(f"{self.url}: {refusal(self.path, reason)}")
        self._db = db
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _begin(self) -> sqlite3.Connection:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise BackendError(f"{self.url}: cannot start a write transaction: {exc}") from None
        return self._db

    # -- versions -----------------------------------------------------------------------------------------------

    def find_version(self, projection: str) -> int | None:
        check_projection_name(projection)
        with self._lock:
            row = self._db.execute(
                "SELECT current FROM projection_versions WHERE projection = ?", (projection,)
            ).fetchone()
        return None if row is None else int(row[0])

    def current_version(self, projection: str) -> int:
        check_projection_name(projection)
        with self._lock:
            row = self._db.execute(
                "SELECT current FROM projection_versions WHERE projection = ?", (projection,)
            ).fetchone()
            if row is not None:
                return int(row[0])
            db = self._begin()
            try:
                row = db.execute(
                    "SELECT current FROM projection_versions WHERE projection = ?", (projection,)
                ).fetchone()
                if row is None:
                    _create_rows(db, projection, 1)
                    db.execute("INSERT INTO projection_versions VALUES (?, 1, 1)", (projection,))
                    row = (1,)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return int(row[0])

    def create_version(self, projection: str) -> int:
        current = self.current_version(projection)
        with self._lock:
            db = self._begin()
            try:
                (latest,) = db.execute(
                    "SELECT latest FROM projection_versions WHERE projection = ?", (projection,)
                ).fetchone()
                version = max(latest, current) + 1
                db.execute(f"DROP TABLE IF EXISTS {rows_table(projection, version)}")
                _create_rows(db, projection, version)
                db.execute(
                    "DELETE FROM projection_checkpoints WHERE projection = ? AND version = ?", (projection, version)
                )
                db.execute("UPDATE projection_versions SET latest = ? WHERE projection = ?", (version, projection))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return int(version)

    def make_current(self, projection: str, version: int) -> None:
        with self._lock:
            db = self._begin()
            try:
                (current,) = db.execute(
                    "SELECT current FROM projection_versions WHERE projection = ?", (projection,)
                ).fetchone()
                if version <= current:
                    # Compare-and-set under the write lock: an older rebuild finishing last must not swap back.
                    raise stale_version(projection, version, current)
                db.execute("UPDATE projection_versions SET current = ? WHERE projection = ?", (version, projection))
                # The version just replaced stays one swap longer: a worker or reader still on it finds its rows
                # until it notices the swap at its next write.
                # Every other version below the new one goes: the one before it, and those of rebuilds that failed or
                # were overtaken (their rows were never current).
                for old in range(1, version):
                    if old != current:
                        db.execute(f"DROP TABLE IF EXISTS {rows_table(projection, old)}")
                db.execute(
                    "DELETE FROM projection_checkpoints WHERE projection = ? AND version < ? AND version <> ?",
                    (projection, version, current),
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- rows and checkpoints -----------------------------------------------------------------------------------

    def checkpoints(self, projection: str, version: int) -> Checkpoints:
        with self._lock:
            return _version_checkpoints(self._db, projection, version)

    def fetch(self, projection: str, version: int, keys: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        table = rows_table(projection, version)
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                try:
                    rows = self._db.execute(f"SELECT key, doc FROM {table} WHERE key IN ({marks})", chunk).fetchall()
                except sqlite3.OperationalError as exc:
                    if "no such table" in str(exc):
                        raise VersionChangedError(f"projection {projection!r}: version {version} is gone") from None
                    raise BackendError(f"{self.url}: reading projection {projection!r} failed: {exc}") from None
                found.update(rows)
        return found

    def write(self, projection: str, version: int, changes: Changes) -> Checkpoints:
        table = rows_table(projection, version)
        with self._lock:
            db = self._begin()
            try:
                (current,) = db.execute(
                    "SELECT current FROM projection_versions WHERE projection = ?", (projection,)
                ).fetchone()
                if version < current:
                    raise VersionChangedError(
                        f"projection {projection!r}: version {version} was replaced by version {current}"
                    )
                for tp, expected in changes.expected.items():
                    row = db.execute(
                        "SELECT next_offset FROM projection_checkpoints"
                        " WHERE projection = ? AND version = ? AND topic = ? AND partition = ?",
                        (projection, version, tp.topic, tp.partition),
                    ).fetchone()
                    stored = None if row is None else row[0]
                    if stored != expected:
                        raise CheckpointMovedError(
                            f"projection {projection!r}: {tp} is at {stored} in the store, not {expected}"
                        )
                every_checkpoint = _version_checkpoints(db, projection, version)
                if changes.read and every_checkpoint != changes.seen:
                    # Another worker wrote since this one's previous write: the rows it read may have changed.
                    changed = _changed_rows(db, table, changes.read)
                    if changed:
                        raise rows_changed(projection, changed)
                if changes.puts:
                    _put_rows(db, table, changes.puts)
                if changes.deletes:
                    db.executemany(f"DELETE FROM {table} WHERE key = ?", [(k,) for k in changes.deletes])
                db.executemany(
                    "INSERT INTO projection_checkpoints VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (projection, version, topic, partition)"
                    " DO UPDATE SET next_offset = excluded.next_offset",
                    [(projection, version, tp.topic, tp.partition, o) for tp, o in changes.checkpoints.items()],
                )
                every_checkpoint.update(changes.checkpoints)
            except sqlite3.DatabaseError as exc:
                db.execute("ROLLBACK")
                raise BackendError(f"{self.url}: writing projection {projection!r} failed: {exc}") from None
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return every_checkpoint

    def query(self, projection: str, version: int, equals: Mapping[str, object], limit: int) -> list[tuple[str, str]]:
        clauses: list[str] = []
        params: list[object] = []
        for field, value in equals.items():
            path = json_path(field)
            # JSON equality, types included (1 is not true, "1" is not 1); null matches a missing field too.
            if value is None:
                clauses.append("json_extract(doc, ?) IS NULL")
                params.append(path)
            elif isinstance(value, bool):
                clauses.append("json_type(doc, ?) = ?")
                params.extend([path, "true" if value else "false"])
            elif isinstance(value, int | float):
                check_query_integer(field, value)
                clauses.append("json_type(doc, ?) IN ('integer', 'real') AND json_extract(doc, ?) = ?")
                params.extend([path, path, value])
            else:
                clauses.append("json_type(doc, ?) = 'text' AND json_extract(doc, ?) = ?")
                params.extend([path, path, value])
        where = " AND ".join(clauses) or "1"
        with self._lock:
            rows = self._db.execute(
                f"SELECT key, doc FROM {rows_table(projection, version)} WHERE {where} ORDER BY key LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [(key, doc) for key, doc in rows]

    def rows(self, projection: str, version: int) -> Iterator[tuple[str, str]]:
        with self._lock:
            rows = self._db.execute(f"SELECT key, doc FROM {rows_table(projection, version)} ORDER BY key").fetchall()
        yield from rows

    def projections(self) -> list[str]:
        with self._lock:
            return [name for (name,) in self._db.execute("SELECT projection FROM projection_versions ORDER BY 1")]
