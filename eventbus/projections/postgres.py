"""Projection store on PostgreSQL (psycopg 3): a ``jsonb`` table per projection version, checkpoints beside it.

A round's rows go in with one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT`` statement and its checkpoints with
another, in the same transaction; the version row is read ``FOR SHARE`` first, so a rebuild's swap (which takes it
``FOR UPDATE``) cannot interleave with a write to the old version.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from eventbus.backends.base import TopicPartition
from eventbus.errors import BackendError, ConfigurationError
from eventbus.projections.sqlite import check_query_integer, rows_changed
from eventbus.projections.store import (
    Changes,
    CheckpointMovedError,
    Checkpoints,
    ProjectionStore,
    VersionChangedError,
    check_projection_name,
    stale_version,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS projection_versions (
    projection TEXT PRIMARY KEY,
    current INTEGER NOT NULL,
    latest INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    projection TEXT NOT NULL,
    version INTEGER NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (projection, version, topic, partition)
);
"""


_SCHEMA_EXISTS = (
    "SELECT to_regclass('projection_versions') IS NOT NULL AND to_regclass('projection_checkpoints') IS NOT NULL"
)


def rows_table(projection: str, version: int) -> str:
    # Names are checked by check_projection_name (lowercase letters, digits, '_'), so they are safe identifiers.
    return f'"projection_{check_projection_name(projection)}_v{int(version)}"'


class PostgresStore(ProjectionStore):
    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        self._psycopg = psycopg
        try:
            self._db = psycopg.connect(url, connect_timeout=10)
            with self._db.transaction(), self._db.cursor() as cursor:
                # Created only when missing: a reader may run as a role that can read the tables but create nothing
                # (PostgreSQL 15 lets no other role create in the public schema), and CREATE TABLE IF NOT EXISTS
                # needs that right even when the table exists.
                cursor.execute(_SCHEMA_EXISTS)
                made = cursor.fetchone()
                if made is None or not made[0]:
                    # Two workers starting at once must not both create the tables.
                    cursor.execute("SELECT pg_advisory_xact_lock(hashtext('eventbus.projections.schema'))")
                    cursor.execute(_SCHEMA)
        except psycopg.Error as exc:
            raise ConfigurationError(f"{redacted(url)}: cannot open it as a projection store: {exc}") from None
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, work: Any) -> Any:
        """Run ``work(cursor)`` in one transaction; driver errors become BackendError."""
        with self._lock:
            try:
                with self._db.transaction(), self._db.cursor() as cursor:
                    return work(cursor)
            except self._psycopg.Error as exc:
                raise BackendError(f"{redacted(self.url)}: {exc}") from None

    # -- versions -----------------------------------------------------------------------------------------------

    def find_version(self, projection: str) -> int | None:
        check_projection_name(projection)

        def work(cursor: Any) -> int | None:
            cursor.execute("SELECT current FROM projection_versions WHERE projection = %s", (projection,))
            row = cursor.fetchone()
            return None if row is None else int(row[0])

        found: int | None = self._run(work)
        return found

    def current_version(self, projection: str) -> int:
        check_projection_name(projection)

        def work(cursor: Any) -> int:
            cursor.execute("SELECT current FROM projection_versions WHERE projection = %s", (projection,))
            row = cursor.fetchone()
            if row is not None:
                return int(row[0])
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"eventbus.projection.{projection}",))
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {rows_table(projection, 1)} (key TEXT PRIMARY KEY, doc JSONB NOT NULL)"
            )
            cursor.execute(
                "INSERT INTO projection_versions VALUES (%s, 1, 1) ON CONFLICT (projection) DO NOTHING", (projection,)
            )
            cursor.execute("SELECT current FROM projection_versions WHERE projection = %s", (projection,))
            return int(cursor.fetchone()[0])

        return int(self._run(work))

    def create_version(self, projection: str) -> int:
        current = self.current_version(projection)

        def work(cursor: Any) -> int:
            cursor.execute("SELECT latest FROM projection_versions WHERE projection = %s FOR UPDATE", (projection,))
            version = max(int(cursor.fetchone()[0]), current) + 1
            table = rows_table(projection, version)
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
            cursor.execute(f"CREATE TABLE {table} (key TEXT PRIMARY KEY, doc JSONB NOT NULL)")
            cursor.execute(
                "DELETE FROM projection_checkpoints WHERE projection = %s AND version = %s", (projection, version)
            )
            cursor.execute("UPDATE projection_versions SET latest = %s WHERE projection = %s", (version, projection))
            return version

        return int(self._run(work))

    def make_current(self, projection: str, version: int) -> None:
        def work(cursor: Any) -> None:
            cursor.execute("SELECT current FROM projection_versions WHERE projection = %s FOR UPDATE", (projection,))
            current = int(cursor.fetchone()[0])
            if version <= current:
                # Compare-and-set under the row lock: an older rebuild finishing last must not swap back.
                raise stale_version(projection, version, current)
            cursor.execute("UPDATE projection_versions SET current = %s WHERE projection = %s", (version, projection))
            # The version just replaced stays one swap longer: a worker or reader still on it finds its rows
            # until it notices the swap at its next write.
            # Every other version below the new one goes: the one before it, and those of rebuilds that failed or
            # were overtaken (their rows were never current).
            for old in range(1, version):
                if old != current:
                    cursor.execute(f"DROP TABLE IF EXISTS {rows_table(projection, old)}")
            cursor.execute(
                "DELETE FROM projection_checkpoints WHERE projection = %s AND version < %s AND version <> %s",
                (projection, version, current),
            )

        self._run(work)

    # -- rows and checkpoints -----------------------------------------------------------------------------------

    def checkpoints(self, projection: str, version: int) -> Checkpoints:
        result: Checkpoints = self._run(lambda cursor: _version_checkpoints(cursor, projection, version))
        return result

    def fetch(self, projection: str, version: int, keys: list[str]) -> dict[str, str]:
        def work(cursor: Any) -> dict[str, str]:
            cursor.execute(f"SELECT key, doc::text FROM {rows_table(projection, version)} WHERE key = ANY(%s)", (keys,))
            return dict(cursor.fetchall())

        result: dict[str, str] = self._run(work)
        return result

    def write(self, projection: str, version: int, changes: Changes) -> Checkpoints:
        table = rows_table(projection, version)

        # A write that checks rows it read takes the version row exclusively: between its check and its upsert no
        # other writer of the projection may change those rows (writers that check nothing share it).
        lock = "FOR UPDATE" if changes.read else "FOR SHARE"

        def work(cursor: Any) -> Checkpoints:
            cursor.execute(f"SELECT current FROM projection_versions WHERE projection = %s {lock}", (projection,))
            current = int(cursor.fetchone()[0])
            if version < current:
                raise VersionChangedError(
                    f"projection {projection!r}: version {version} was replaced by version {current}"
                )
            for tp, expected in changes.expected.items():
                cursor.execute(
                    "SELECT next_offset FROM projection_checkpoints"
                    " WHERE projection = %s AND version = %s AND topic = %s AND partition = %s FOR UPDATE",
                    (projection, version, tp.topic, tp.partition),
                )
                row = cursor.fetchone()
                stored = None if row is None else int(row[0])
                if stored != expected:
                    raise CheckpointMovedError(
                        f"projection {projection!r}: {tp} is at {stored} in the store, not {expected}"
                    )
            every_checkpoint = _version_checkpoints(cursor, projection, version)
            if changes.read and every_checkpoint != changes.seen:
                # Another worker wrote since this one's previous write: the rows it read may have changed.
                cursor.execute(
                    f"SELECT r.k FROM unnest(%s::text[], %s::text[]) AS r(k, d) LEFT JOIN {table} AS t ON t.key = r.k"
                    " WHERE t.doc IS DISTINCT FROM r.d::jsonb",
                    (list(changes.read), list(changes.read.values())),
                )
                changed = [key for (key,) in cursor.fetchall()]
                if changed:
                    raise rows_changed(projection, changed)
            if changes.puts:
                cursor.execute(
                    f"INSERT INTO {table} (key, doc) SELECT k, d::jsonb FROM unnest(%s::text[], %s::text[]) AS u(k, d)"
                    " ON CONFLICT (key) DO UPDATE SET doc = excluded.doc",
                    (list(changes.puts), list(changes.puts.values())),
                )
            if changes.deletes:
                cursor.execute(f"DELETE FROM {table} WHERE key = ANY(%s)", (list(changes.deletes),))
            tps = list(changes.checkpoints)
            cursor.execute(
                "INSERT INTO projection_checkpoints"
                " SELECT %s, %s, t, p, o FROM unnest(%s::text[], %s::int[], %s::bigint[]) AS u(t, p, o)"
                " ON CONFLICT (projection, version, topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                (
                    projection,
                    version,
                    [tp.topic for tp in tps],
                    [tp.partition for tp in tps],
                    [changes.checkpoints[tp] for tp in tps],
                ),
            )
            every_checkpoint.update(changes.checkpoints)
            return every_checkpoint

        result: Checkpoints = self._run(work)
        return result

    def query(self, projection: str, version: int, equals: Mapping[str, object], limit: int) -> list[tuple[str, str]]:
        # Containment is JSON equality for the scalars a query holds (`ProjectionReader.query` checks); null
        # matches a missing field too, as on SQLite.
        for field, value in equals.items():
            # PostgreSQL would compare it exactly, SQLite cannot: refused here too, so both answer alike.
            check_query_integer(field, value)
        present = {field: value for field, value in equals.items() if value is not None}
        # A row's document need not be an object (a counter row holding a bare number): no condition matches every
        # row, and a scalar or array has none of the fields, so only ``None`` matches them, as on SQLite. Hence no
        # containment test without fields (``5 @> {}`` is false), and ``->`` (NULL for what has no such field)
        # rather than ``?`` (false for a scalar, whatever it is asked).
        clauses: list[str] = []
        params: list[object] = []
        if present:
            clauses.append("doc @> %s::jsonb")
            params.append(orjson.dumps(present).decode())
        for field in equals:
            if equals[field] is None:
                clauses.append("(doc -> %s::text) IS NULL OR doc -> %s::text = 'null'::jsonb")
                params.extend([field, field])
        where = " AND ".join(f"({clause})" for clause in clauses) or "true"

        def work(cursor: Any) -> list[tuple[str, str]]:
            cursor.execute(
                f"SELECT key, doc::text FROM {rows_table(projection, version)} WHERE {where}"
                ' ORDER BY key COLLATE "C" LIMIT %s',
                (*params, limit),
            )
            return [(k, d) for k, d in cursor.fetchall()]

        result: list[tuple[str, str]] = self._run(work)
        return result

    def rows(self, projection: str, version: int) -> Iterator[tuple[str, str]]:
        def work(cursor: Any) -> list[tuple[str, str]]:
            cursor.execute(f'SELECT key, doc::text FROM {rows_table(projection, version)} ORDER BY key COLLATE "C"')
            return [(k, d) for k, d in cursor.fetchall()]

        result: list[tuple[str, str]] = self._run(work)
        yield from result

    def projections(self) -> list[str]:
        def work(cursor: Any) -> list[str]:
            cursor.execute("SELECT projection FROM projection_versions ORDER BY 1")
            return [name for (name,) in cursor.fetchall()]

        result: list[str] = self._run(work)
        return result


def _version_checkpoints(cursor: Any, projection: str, version: int) -> Checkpoints:
    cursor.execute(
        "SELECT topic, partition, next_offset FROM projection_checkpoints WHERE projection = %s AND version = %s",
        (projection, version),
    )
    return {TopicPartition(t, p): int(o) for t, p, o in cursor.fetchall()}


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
