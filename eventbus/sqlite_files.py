"""Knowing eventbus's SQLite files from other applications' databases.

The log and the stores beside it (projection store, embedded schema registry, event store) open the SQLite files
users name. Each checks first, only reading, that the file is eventbus's or can become so (it is new, empty, or
holds eventbus's tables alone), so that a mistaken path to an application's database leaves that database as it
was. The mark (``PRAGMA application_id``) names a file as eventbus's without relying on table names.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

_T = TypeVar("_T")

# Written into the header of every file eventbus creates (PRAGMA application_id; the bytes spell "EvBs"): a file is
# then known as eventbus's by a mark of its own, not by table names any application could use.
APPLICATION_ID = 0x45764273

# The tables every schema version of the log has had: how a log made before the mark is known.
LOG_TABLES = frozenset({"topics", "partitions", "records", "group_offsets", "group_members", "group_owners"})

# The log schema versions (PRAGMA user_version) made before the mark; every later one writes it.
_LOG_SCHEMAS_BEFORE_MARK = range(1, 4)

# The tables the stores beside the log make: the event store (eventstore_sqlite.py), the embedded schema registry
# (schemas/embedded.py), the projection store (projections/sqlite.py; rows in projection_<name>_v<version>). One of
# them may have made its tables before a log was first opened on the file: such a file holds no other
# application's data.
COMPANION_TABLES = re.compile(
    r"(event_(streams|snapshots|outbox)|registry_(schemas|versions|config)"
    r"|projection_(versions|checkpoints|[a-z][a-z0-9_]*_v[0-9]+))\Z"
)

_BUSY_TIMEOUT_S = 30.0
_FIRST_BUSY_PAUSE_S = 0.00005
_MAX_BUSY_PAUSE_S = 0.001


def foreign_file_reason(db: sqlite3.Connection) -> str | None:
    """Why the file ``db`` has open belongs to another application, or None if it is eventbus's or can become
    eventbus's (new, empty, or holding eventbus's tables alone). Only reads, so that a file it refuses is left as
    it was: in the transaction ``db`` has open, else in one read transaction of its own (one snapshot: another
    process may be making the file eventbus's meanwhile, and a mark read before its commit beside tables read after
    it would look like someone else's file)."""
    own = not db.in_transaction
    if own:
        db.execute("BEGIN")
    try:
        return _foreign_file_reason_in(db)
    finally:
        if own and db.in_transaction:
            db.execute("COMMIT")


def _foreign_file_reason_in(db: sqlite3.Connection) -> str | None:
    (application_id,) = db.execute("PRAGMA application_id").fetchone()
    if application_id == APPLICATION_ID:
        return None
    if application_id != 0:
        return f"it belongs to another application (its application_id is {application_id:#010x})"
    tables = _tables(db)
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version in _LOG_SCHEMAS_BEFORE_MARK and LOG_TABLES.issubset(tables):
        return None  # a log made by an earlier eventbus, before the mark
    others = sorted(name for name in tables if not COMPANION_TABLES.match(name))
    if not others:
        return None
    listed = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
    return f"it holds tables eventbus did not make ({listed})"


def _tables(db: sqlite3.Connection) -> set[str]:
    return {
        name
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite!_%' ESCAPE '!'"
        )
    }


def prepare_file(db: sqlite3.Connection, schema: Sequence[str] = ()) -> str | None:
    """Make the file ``db`` has open ready for a store: why it belongs to another application (the file left
    unchanged), or None once it is in WAL mode, marked as eventbus's if it was new and empty, and holds the tables
    the statements ``schema`` make.

    1. Check, only reading: even switching to WAL mode changes the file's header.
    2. Switch to WAL mode, again while busy (several processes may open a new file at once).
    3. In one write transaction: check again (another application may have made its tables since step 1), mark a
       new empty file (so the log and later runs know it by more than table names), make the tables."""
    reason = retry_while_busy(lambda: foreign_file_reason(db))  # 1
    if reason is not None:
        return reason
    retry_while_busy(lambda: db.execute("PRAGMA journal_mode=WAL"))  # 2
    return retry_while_busy(lambda: _claim(db, schema))  # 3


def _claim(db: sqlite3.Connection, schema: Sequence[str]) -> str | None:
    db.execute("BEGIN IMMEDIATE")
    try:
        reason = foreign_file_reason(db)
        if reason is None:
            if db.execute("PRAGMA application_id").fetchone()[0] == 0 and not _tables(db):
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            for statement in schema:
                db.execute(statement)
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("ROLLBACK" if reason is not None else "COMMIT")
    return reason


def refusal(path: object, reason: str) -> str:
    """The words of a store's error for a file ``foreign_file_reason`` refused."""
    return (
        f"{path} is not an eventbus file: {reason}; it was left unchanged (check the path, or give it a file of its "
        "own)"
    )


def is_busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY in any of its forms (BUSY_RECOVERY while another connection repairs the WAL index, ...)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY


def retry_while_busy(step: Callable[[], _T]) -> _T:
    """Run ``step``, again after short pauses (50 us doubling to 1 ms) while SQLite answers busy, for up to 30 s.

    Needed where SQLite does not wait itself: several processes opening a new file at once all try to switch it
    to WAL mode, and SQLite answers some of them busy at once rather than wait, since waiting could deadlock."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    pause_s = _FIRST_BUSY_PAUSE_S
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause_s)
        pause_s = min(2 * pause_s, _MAX_BUSY_PAUSE_S)
