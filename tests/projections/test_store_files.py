"""SQLite files the stores beside the log are given: the projection store, the embedded schema registry and the
event store each refuse another application's database, leaving it as it was, and open eventbus's own files (new,
empty, a log's, another store's) as before, in any order and from several processes at once."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import pytest

from eventbus.backends.base import Message
from eventbus.backends.memory import MemoryLog
from eventbus.backends.sqlite import _SCHEMA, SQLiteLog
from eventbus.errors import ConfigurationError
from eventbus.projections.eventstore import EventStore
from eventbus.projections.store import open_store
from eventbus.schemas.embedded import open_embedded_registry
from eventbus.sqlite_files import APPLICATION_ID
from tests.conftest import PYTHON


class Closeable(Protocol):
    def close(self) -> None: ...


def projection_store(path: Path) -> Closeable:
    return open_store(f"sqlite:///{path}")


def schema_registry(path: Path) -> Closeable:
    return open_embedded_registry(f"sqlite:///{path}")


def event_store(path: Path) -> Closeable:
    return EventStore(f"sqlite:///{path}", MemoryLog())


# Each store, and how its errors start.
STORES: dict[str, tuple[Callable[[Path], Closeable], str]] = {
    "projection store": (projection_store, "sqlite:///{path}: "),
    "schema registry": (schema_registry, "schema registry sqlite:///{path}: "),
    "event store": (event_store, "sqlite:///{path}: "),
}
# The tables each store makes.
TABLES = {
    "projection store": {"projection_versions", "projection_checkpoints"},
    "schema registry": {"registry_schemas", "registry_versions", "registry_config"},
    "event store": {"event_streams", "event_snapshots", "event_outbox"},
}


@pytest.fixture(params=list(STORES))
def store(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def open_and_close(store: str, path: Path) -> None:
    STORES[store][0](path).close()


def refused(store: str, path: Path, reason: str) -> None:
    """``store`` refuses ``path`` for ``reason``, with the file's bytes unchanged and no -wal or -shm beside it."""
    before = path.read_bytes()
    opener, prefix = STORES[store]
    with pytest.raises(ConfigurationError) as raised:
        opener(path)
    assert str(raised.value) == (
        f"{prefix.format(path=path)}{path} is not an eventbus file: {reason}; it was left unchanged (check the path,"
        " or give it a file of its own)"
    )
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], "not even WAL mode was set"


def database(path: Path, script: str) -> Path:
    path.parent.mkdir(exist_ok=True)
    db = sqlite3.connect(path)
    db.executescript(script)
    db.commit()
    db.close()
    return path


def marks_and_tables(path: Path) -> tuple[int, set[str]]:
    db = sqlite3.connect(path)
    try:
        (application_id,) = db.execute("PRAGMA application_id").fetchone()
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()
    return application_id, tables - {"sqlite_sequence"}


# 1. Another application's database: refused, left as it was.


def test_another_applications_database_is_refused_and_left_unchanged(store: str, tmp_path: Path) -> None:
    path = database(
        tmp_path / "app" / "app.db",
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'ada');"
        # Named like eventbus's own tables: an application's all the same.
        "CREATE TABLE topics (title TEXT); CREATE TABLE projection_notes (text TEXT);",
    )
    refused(store, path, "it holds tables eventbus did not make (projection_notes, topics, users)")


def test_a_database_marked_by_another_application_is_refused(store: str, tmp_path: Path) -> None:
    path = database(tmp_path / "app" / "marked.db", "PRAGMA application_id = 1234;")  # its tables yet to come
    refused(store, path, "it belongs to another application (its application_id is 0x000004d2)")


def test_eventbus_tables_alone_open_one_more_table_is_refused(store: str, tmp_path: Path) -> None:
    """Tables of the log and of every store, made before the mark, open; the same with an application's table
    beside them do not."""
    eventbus_tables = [
        f"CREATE TABLE {name} (x)"
        for name in sorted(set().union(*TABLES.values()) | {"projection_orders_v1", "projection_totals_v12"})
    ]
    log_tables = _SCHEMA.replace("IF NOT EXISTS ", "")
    companions = database(tmp_path / "companions" / "events.db", ";".join(eventbus_tables))
    open_and_close(store, companions)
    assert marks_and_tables(companions)[0] == 0, "a file holding tables is not marked"
    with_log = database(
        tmp_path / "with_log" / "events.db", f"{log_tables}PRAGMA user_version = 3;" + ";".join(eventbus_tables)
    )
    open_and_close(store, with_log)
    with SQLiteLog(with_log) as log:
        log.append("orders", [Message(b"x")])
    foreign = database(tmp_path / "foreign" / "events.db", ";".join([*eventbus_tables, "CREATE TABLE notes (x)"]))
    refused(store, foreign, "it holds tables eventbus did not make (notes)")


# 2. eventbus's own files: new, empty, a log's, another store's; marked when new.


@pytest.mark.parametrize("start", ["new", "empty"])
def test_a_new_file_is_marked_and_opens_again_for_the_log_and_every_store(
    store: str, start: str, tmp_path: Path
) -> None:
    path = tmp_path / "events.db"
    if start == "empty":
        path.touch()
    open_and_close(store, path)
    assert marks_and_tables(path) == (APPLICATION_ID, TABLES[store])
    open_and_close(store, path)  # a later run
    for other in STORES:
        open_and_close(other, path)
    with SQLiteLog(path) as log:
        log.append("orders", [Message(b"x")])
        assert log.read("orders", 0, 0, 10).values == [b"x"]
    application_id, tables = marks_and_tables(path)
    assert application_id == APPLICATION_ID
    assert set().union(*TABLES.values()) <= tables


def test_a_logs_file_opens_marked_or_made_before_the_mark(store: str, tmp_path: Path) -> None:
    marked = tmp_path / "marked.db"
    SQLiteLog(marked).close()
    open_and_close(store, marked)
    assert marks_and_tables(marked)[1] >= TABLES[store]
    # A log as eventbus 3 left it: no mark, and an application's table it let the user keep there.
    earlier = database(tmp_path / "earlier" / "events.db", f"{_SCHEMA}PRAGMA user_version = 3;CREATE TABLE notes (x)")
    open_and_close(store, earlier)
    assert marks_and_tables(earlier)[1] >= TABLES[store] | {"notes"}
    # The mark keeps the file known even once an application's table is added beside eventbus's.
    new = tmp_path / "new.db"
    open_and_close(store, new)
    database(new, "CREATE TABLE notes (x)")
    open_and_close(store, new)
    SQLiteLog(new).close()


# 3. Several processes opening the same new file at once.

OPEN_STORES = """
import sys
from pathlib import Path
from tests.projections.test_store_files import STORES

path = Path(sys.argv[1])
for name in sys.argv[2:]:
    STORES[name][0](path).close()
"""


def test_processes_opening_a_new_file_at_once_all_open_it(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    path = tmp_path / "shared.db"
    orders = [list(STORES), list(reversed(STORES))] * 2
    processes = [
        subprocess.Popen(
            [PYTHON, "-c", OPEN_STORES, str(path), *order],
            env=subprocess_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for order in orders
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
    assert marks_and_tables(path) == (APPLICATION_ID, set().union(*TABLES.values()))
    with SQLiteLog(path) as log:
        log.append("orders", [Message(b"x")])
