"""SQLite files the log cannot use as they are: one it may not write, one another application owns. Each is a
one-line error naming the file, with nothing in the file lost or changed."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventbus.backends import open_log
from eventbus.backends.base import Message
from eventbus.backends.sqlite import _SCHEMA, APPLICATION_ID, SCHEMA_VERSION, SQLiteLog
from eventbus.errors import ConfigurationError
from eventbus.projections.sqlite import SQLiteStore
from tests.conftest import PYTHON

FAILING_APP = """
from eventbus import App, Event

app = App("failing")


@app.processor("orders")
def boom(event: Event) -> None:
    raise ValueError("no")
"""

ECHO_APP = """
from eventbus import App, Event

app = App("echo")


@app.processor("orders", to="out")
def echo(event: Event) -> Event:
    return Event("echoed", event.data)
"""

NOBODY = 65534


def eventbus(
    *args: str, cwd: Path, env: dict[str, str], stdin: str = "", user: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(user or []), PYTHON, "-m", "eventbus", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )


def refused(result: subprocess.CompletedProcess[str], *culprits: str) -> str:
    """The error of a command that exited 2 with one error line naming each of ``culprits`` (log lines aside)."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("eventbus: error: ")]
    assert len(errors) == 1, result.stderr
    for culprit in culprits:
        assert culprit in errors[0], (culprit, result.stderr)
    return errors[0]


# 1. A log file this user may not write.


@pytest.fixture
def unprivileged(subprocess_env: dict[str, str]) -> list[str]:
    """The prefix that runs a command as a user the file permissions apply to. Root passes every permission
    check, so as root the commands run as nobody (setpriv); a test faking the refusal would not show what a
    user meets."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, where file permissions do not apply, and setpriv is not there to drop them")
    prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    probe = subprocess.run(
        [*prefix, PYTHON, "-c", "import eventbus"], capture_output=True, env=subprocess_env, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"running as root, and user {NOBODY} cannot run this interpreter: {probe.stderr!r}")
    return prefix


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user may write (a shared spool directory): the file's own mode is what refuses."""
    # Not tmp_path: pytest makes its directories for their owner alone, where nobody could not even read.
    directory = Path(tempfile.mkdtemp(prefix="eventbus-readonly-"))
    directory.chmod(0o777)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


@pytest.fixture
def read_only_log(shared_dir: Path, subprocess_env: dict[str, str]) -> Path:
    """``ro.db`` in ``shared_dir``: three orders, each dead-lettered to orders.dlq, the file then made read-only."""
    for name, text in (("failing.py", FAILING_APP), ("echo_app.py", ECHO_APP)):
        (shared_dir / name).write_text(text)
        (shared_dir / name).chmod(0o644)
    lines = "\n".join(json.dumps({"n": n}) for n in range(3))
    url = "sqlite:///ro.db"
    published = eventbus(
        "publish", "orders", "--type", "order", "--broker", url, cwd=shared_dir, env=subprocess_env, stdin=lines
    )
    assert published.returncode == 0, published.stderr
    ran = eventbus("run", "failing", "--until-idle", "--broker", url, cwd=shared_dir, env=subprocess_env)
    assert ran.returncode == 0, ran.stderr
    path = shared_dir / "ro.db"
    assert not (shared_dir / "ro.db-wal").exists(), "the last connection to close removes the WAL"
    path.chmod(0o444)
    return path


def records(path: Path, topic: str) -> list[bytes]:
    """The values of ``topic``'s records, read with SQLite alone."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT value FROM records JOIN topics ON topics.id = records.topic_id WHERE topics.name = ?"
            " ORDER BY partition, offset",
            (topic,),
        ).fetchall()
    finally:
        db.close()
    return [value for (value,) in rows]


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (("publish", "orders"), '{"type": "a"}\n'),
        (("topics", "create", "more"), ""),
        (("replay", "orders", "--group", "g", "--from", "earliest"), ""),
        (("run", "echo_app", "--until-idle"), ""),
        (("dlq", "replay", "orders.dlq"), ""),
    ],
)
def test_a_write_to_a_read_only_log_is_refused_naming_the_file(
    args: tuple[str, ...],
    stdin: str,
    read_only_log: Path,
    unprivileged: list[str],
    subprocess_env: dict[str, str],
) -> None:
    before = read_only_log.read_bytes()
    result = eventbus(
        *args,
        "--broker",
        "sqlite:///ro.db",
        cwd=read_only_log.parent,
        env=subprocess_env,
        stdin=stdin,
        user=unprivileged,
    )
    refused(result, "ro.db", "cannot write", "read-only", "permissions")
    assert read_only_log.read_bytes() == before
    assert len(records(read_only_log, "orders")) == 3
    assert len(records(read_only_log, "orders.dlq")) == 3


def test_a_read_only_log_can_still_be_read(
    read_only_log: Path, unprivileged: list[str], subprocess_env: dict[str, str]
) -> None:
    refused_write = eventbus(
        "topics",
        "create",
        "more",
        "--broker",
        "sqlite:///ro.db",
        cwd=read_only_log.parent,
        env=subprocess_env,
        user=unprivileged,
    )
    refused(refused_write, "ro.db", "read-only")
    consumed = eventbus(
        "consume",
        "orders",
        "--from-beginning",
        "--until-end",
        "--broker",
        "sqlite:///ro.db",
        cwd=read_only_log.parent,
        env=subprocess_env,
        user=unprivileged,
    )
    assert consumed.returncode == 0, consumed.stderr
    assert [json.loads(line)["data"]["n"] for line in consumed.stdout.splitlines()] == [0, 1, 2]


# 2. A file that is not a log: left as it is.


def other_applications_database(path: Path) -> bytes:
    """An application's database whose tables happen to be called like the log's; returns its bytes."""
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE topics (title TEXT, body TEXT);"
        "CREATE TABLE records (artist TEXT, album TEXT);"
        "INSERT INTO topics VALUES ('hello', 'world');"
    )
    db.commit()
    db.close()
    return path.read_bytes()


@pytest.mark.parametrize(
    ("args", "stdin"),
    [(("topics", "list"), ""), (("publish", "orders"), '{"type": "a"}\n'), (("consume", "orders"), "")],
)
def test_another_applications_database_is_refused_and_left_unchanged(
    args: tuple[str, ...], stdin: str, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    before = other_applications_database(tmp_path / "app.db")
    result = eventbus(*args, "--broker", "sqlite:///app.db", cwd=tmp_path, env=subprocess_env, stdin=stdin)
    refused(result, "app.db", "is not an eventbus log", "records, topics")
    assert (tmp_path / "app.db").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"], "no -wal or -shm: not even WAL mode was set"


def test_a_database_with_other_tables_only_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'ada');")
    db.close()
    before = path.read_bytes()
    with pytest.raises(ConfigurationError, match=r"shop\.db is not an eventbus log: .*\(users\)"):
        SQLiteLog(path)
    assert path.read_bytes() == before


def test_a_database_marked_by_another_application_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "marked.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA application_id = 1234")  # its tables yet to come
    db.close()
    before = path.read_bytes()
    with pytest.raises(ConfigurationError, match=r"marked\.db is not an eventbus log: it belongs to another app"):
        open_log(f"sqlite:///{path}")
    assert path.read_bytes() == before


def test_a_log_of_a_newer_schema_is_refused_not_downgraded(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    SQLiteLog(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    before = path.read_bytes()
    with pytest.raises(ConfigurationError, match="made by a newer eventbus"):
        SQLiteLog(path)
    assert path.read_bytes() == before


# 3. Files that are (or may become) logs open as before.


def test_new_empty_and_companion_files_become_marked_logs(tmp_path: Path) -> None:
    new = tmp_path / "new.db"
    empty = tmp_path / "empty.db"
    empty.touch()
    # A projection store given the log's file and opened first: eventbus's own tables, nobody else's.
    shared = tmp_path / "shared.db"
    SQLiteStore(shared).close()
    for path in (new, empty, shared):
        with SQLiteLog(path) as log:
            log.append("orders", [Message(b"x")])
            assert log.read("orders", 0, 0, 10).values == [b"x"]
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
        db.close()


def earlier_log(path: Path, version: int) -> None:
    """A log as an earlier eventbus left it: its schema and user_version, no application_id (the mark came later).
    Version 2 had no group_epochs table."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(f"BEGIN;{_SCHEMA}PRAGMA user_version={version};COMMIT;")
    if version < 3:
        db.execute("DROP TABLE group_epochs")
    db.execute("INSERT INTO topics (id, name, partitions, created_ms) VALUES (1, 'orders', 1, 0)")
    db.execute("INSERT INTO partitions (topic_id, partition, next_offset) VALUES (1, 0, 1)")
    db.execute("INSERT INTO records VALUES (1, 0, 0, 0, NULL, CAST('kept' AS BLOB), NULL)")
    # An application's own table beside the log's, which earlier versions let it keep there.
    db.execute("CREATE TABLE notes (text TEXT)")
    db.close()


def test_logs_made_by_earlier_versions_keep_opening(tmp_path: Path) -> None:
    for version in (2, 3):
        path = tmp_path / f"v{version}.db"
        earlier_log(path, version)
        with SQLiteLog(path) as log:
            assert log.read("orders", 0, 0, 10).values == [b"kept"]
            log.append("orders", [Message(b"new")])
            assert log.read("orders", 0, 0, 10).values == [b"kept", b"new"]
        db = sqlite3.connect(path)
        application_id, user_version = (
            db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("application_id", "user_version")
        )
        db.close()
        assert user_version == SCHEMA_VERSION
        # An upgrade writes the mark with the new schema; a current schema is only read (read-only copies open).
        assert application_id == (APPLICATION_ID if version < SCHEMA_VERSION else 0), version
