"""The SQLite driver with real files and real processes: concurrency, SIGKILL, bad paths."""

from __future__ import annotations

import itertools
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from eventbus.backends import open_log
from eventbus.backends.base import Message
from eventbus.backends.group import host_identity
from eventbus.backends.sqlite import SQLiteLog
from eventbus.errors import BackendError, ConfigurationError
from tests.conftest import PYTHON

APPENDER = str(Path(__file__).with_name("appender.py"))


def test_two_processes_appending_at_once_lose_nothing_and_get_distinct_offsets(
    sqlite_path: Path, subprocess_env: dict[str, str]
) -> None:
    SQLiteLog(sqlite_path).create_topic("shared", 1)
    start_at = str(time.time() + 1.0)
    writers = [
        subprocess.Popen(
            [PYTHON, APPENDER, str(sqlite_path), "shared", name, "100", "20", start_at],
            stdout=subprocess.PIPE,
            env=subprocess_env,
            text=True,
        )
        for name in ("a", "b")
    ]
    outputs = [w.communicate(timeout=120)[0] for w in writers]
    assert [w.returncode for w in writers] == [0, 0]
    log = SQLiteLog(sqlite_path)
    batch = log.read("shared", 0, 0, 10_000)
    assert batch.offsets == list(range(4000))
    assert sorted(batch.values) == sorted(f"{n}:{b}:{i}".encode() for n in "ab" for b in range(100) for i in range(20))
    # Each writer's batches are contiguous and in its own order: appends are atomic.
    for output in outputs:
        for line in output.splitlines():
            name, number, _, first, last = line.split()
            assert batch.values[int(first) : int(last) + 1] == [f"{name}:{number}:{i}".encode() for i in range(20)]
    # Readers interleave their batches: the test really ran them at once.
    names = [v.split(b":")[0] for v in batch.values]
    assert sum(1 for x, y in itertools.pairwise(names) if x != y) > 1


@pytest.mark.parametrize("seed", range(3))
def test_sigkill_of_a_publisher_mid_batch_loses_no_acknowledged_append(
    sqlite_path: Path, subprocess_env: dict[str, str], seed: int
) -> None:
    rng = random.Random(seed)
    SQLiteLog(sqlite_path).create_topic("t", 1)
    writer = subprocess.Popen(
        [PYTHON, APPENDER, str(sqlite_path), "t", "w", "100000", "200"],
        stdout=subprocess.PIPE,
        env=subprocess_env,
        text=True,
    )
    assert writer.stdout is not None
    acknowledged = []
    stop_after = rng.randint(5, 60)
    for line in writer.stdout:
        acknowledged.append(line.split())
        if len(acknowledged) >= stop_after:
            writer.send_signal(signal.SIGKILL)
            break
    writer.wait(timeout=30)
    writer.stdout.close()
    assert writer.returncode == -signal.SIGKILL
    batch = SQLiteLog(sqlite_path).read("t", 0, 0, 10_000_000)
    for _, number, _, first, last in acknowledged:
        assert batch.values[int(first) : int(last) + 1] == [f"w:{number}:{i}".encode() for i in range(200)]
    # Whatever else survived is whole batches only: an interrupted append leaves nothing behind.
    assert len(batch) % 200 == 0
    assert batch.offsets == list(range(len(batch)))


def test_the_log_survives_reopening(sqlite_path: Path) -> None:
    with SQLiteLog(sqlite_path) as log:
        log.create_topic("t", 2)
        log.append("t", [Message(b"x", partition=1)])
    with SQLiteLog(sqlite_path) as log:
        assert log.topic("t").partitions == 2
        assert log.read("t", 1, 0, 10).values == [b"x"]


def test_wal_mode_is_on(sqlite_path: Path) -> None:
    import sqlite3

    SQLiteLog(sqlite_path).close()
    assert sqlite3.connect(sqlite_path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_urls_choose_path_durability_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    log = open_log("sqlite:///rel.db?synchronous=full&partitions=4")
    assert isinstance(log, SQLiteLog)
    assert log.path == Path("rel.db")
    log.append("auto", [Message(b"x")])
    assert log.topic("auto").partitions == 4
    absolute = open_log(f"sqlite:///{tmp_path}/abs.db")
    assert isinstance(absolute, SQLiteLog)
    assert absolute.path == tmp_path / "abs.db"


@pytest.mark.parametrize(
    ("make_url", "message"),
    [
        (lambda p: f"sqlite:///{p}", "is a directory"),
        (lambda p: f"sqlite:///{p}/missing/dir/x.db", "does not exist"),
        (lambda p: f"sqlite:///{p}/x.db?synchronous=sometimes", "synchronous must be one of"),
        (lambda p: f"sqlite:///{p}/x.db?colour=blue", "unknown option(s) colour"),
        (lambda p: f"sqlite:///{p}/x.db?partitions=zero", "partitions must be a positive integer"),
        (lambda p: "sqlite://host/x.db", "three slashes"),
        (lambda p: "ftp://example.com/x", "unknown broker URL scheme ftp:"),
        (lambda p: "nonsense", "unknown broker URL scheme (none)"),
    ],
)
def test_bad_urls_and_paths_are_configuration_errors_naming_them(
    tmp_path: Path, make_url: object, message: str
) -> None:
    url = make_url(tmp_path)  # type: ignore[operator]
    with pytest.raises(ConfigurationError) as raised:
        open_log(url)
    assert message in str(raised.value)
    assert str(raised.value).startswith(url.split("?")[0])


def test_a_file_that_is_not_a_database_is_named(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigurationError, match=r"cannot open .*junk.db as an eventbus log: file is not a database"):
        SQLiteLog(junk)


HOLD_WRITE_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
released = time.time()
db.execute("COMMIT")
print(released, flush=True)
"""


def hold_write_lock(path: Path, seconds: float, env: dict[str, str]) -> subprocess.Popen[str]:
    """Another process holding the database's write lock for ``seconds``; returns once it holds it."""
    holder = subprocess.Popen(
        [PYTHON, "-c", HOLD_WRITE_LOCK, str(path), str(seconds)], stdout=subprocess.PIPE, env=env, text=True
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_write_waits_for_another_process_write_transaction(sqlite_path: Path, subprocess_env: dict[str, str]) -> None:
    with SQLiteLog(sqlite_path) as log:
        log.create_topic("t", 1)
        holder = hold_write_lock(sqlite_path, 0.5, subprocess_env)
        assert log.append("t", [Message(b"after the other writer")]) == [(0, 0)]
        appended = time.time()
        released = float(holder.communicate(timeout=30)[0])
        assert appended >= released, "the append went through while another process held the write lock"
        assert log.read("t", 0, 0, 10).values == [b"after the other writer"]


def test_a_write_lock_held_too_long_is_an_error_naming_the_database(
    sqlite_path: Path, subprocess_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import eventbus.backends.sqlite as sqlite_driver

    with SQLiteLog(sqlite_path) as log:
        log.create_topic("t", 1)
        monkeypatch.setattr(sqlite_driver, "_BUSY_TIMEOUT_S", 0.2)
        holder = hold_write_lock(sqlite_path, 3.0, subprocess_env)
        try:
            with pytest.raises(BackendError) as raised:
                log.append("t", [Message(b"x")])
        finally:
            holder.kill()
            holder.communicate()
        assert str(raised.value).startswith(f"sqlite:///{sqlite_path}: cannot start a write transaction")
        assert "another process has held the database's write lock for more than 0.2 s" in str(raised.value)
        assert log.append("t", [Message(b"once it is free")]) == [(0, 0)], "nothing half-written by the refused append"


OPEN_AND_APPEND = """
import sys, time
from eventbus.backends.base import Message
from eventbus.backends.sqlite import SQLiteLog
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
log = SQLiteLog(sys.argv[1])
log.append("t", [Message(sys.argv[3].encode())])
log.close()
"""


def hold_a_read_transaction(path: Path, start_at: float, hold_s: float) -> None:
    """A reader in the middle of a read transaction while the file is being set up."""
    import sqlite3

    time.sleep(max(0.0, start_at - time.time()))
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        for _ in range(200):
            try:
                db.execute("BEGIN")
                db.execute("SELECT count(*) FROM records").fetchone()
                break
            except sqlite3.OperationalError:  # no tables yet
                db.execute("ROLLBACK")
                time.sleep(0.005)
        time.sleep(hold_s)
        db.execute("COMMIT")
    finally:
        db.close()


@pytest.mark.slow
def test_processes_opening_a_new_file_at_once_all_get_in(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    # Several processes switching a new file to WAL mode at once (with a reader about) are answered busy by
    # SQLite without waiting; each must wait and try again rather than fail to open the log.
    import threading

    for attempt in range(10):
        path = tmp_path / f"new-{attempt}.db"
        start_at = time.time() + 1.0
        openers = [
            subprocess.Popen(
                [PYTHON, "-c", OPEN_AND_APPEND, str(path), str(start_at), f"p{n}"],
                stderr=subprocess.PIPE,
                env=subprocess_env,
                text=True,
            )
            for n in range(6)
        ]
        reader = threading.Thread(target=hold_a_read_transaction, args=(path, start_at + 0.02, 0.5))
        reader.start()
        failures = [stderr for stderr in (o.communicate(timeout=120)[1] for o in openers) if stderr]
        reader.join()
        assert failures == [], failures[0]
        with SQLiteLog(path) as log:
            assert sorted(log.read("t", 0, 0, 100).values) == [f"p{n}".encode() for n in range(6)]


@pytest.mark.parametrize(
    ("code", "busy"),
    [(5, True), (261, True), (517, True), (6, False), (1, False), (None, False)],
    ids=["BUSY", "BUSY_RECOVERY", "BUSY_SNAPSHOT", "LOCKED", "ERROR", "no code"],
)
def test_every_form_of_busy_is_waited_for(code: int | None, busy: bool) -> None:
    # Another connection repairing the WAL index answers BUSY_RECOVERY (261): a writer waits for it like any busy.
    import sqlite3

    from eventbus.backends.sqlite import _is_busy

    error = sqlite3.OperationalError("database is locked")
    if code is not None:
        error.sqlite_errorcode = code
    assert _is_busy(error) is busy


OTHER_NAMESPACE_MEMBER = """
import os, sys
real_readlink = os.readlink
os.readlink = lambda path, *a, **k: "pid:[1]" if path == "/proc/self/ns/pid" else real_readlink(path, *a, **k)
from eventbus.backends.sqlite import SQLiteLog
log = SQLiteLog(sys.argv[1])
member = log.consumer("g", ["t"])
member.poll(1, 0.05)
print("ready", flush=True)
sys.stdin.read()
member.close()
log.close()
"""


def test_a_member_in_another_pid_namespace_is_live_while_it_heartbeats(
    sqlite_path: Path, monkeypatch: pytest.MonkeyPatch, subprocess_env: dict[str, str]
) -> None:
    # Two containers of one pod share a hostname and the log's file, not their pids: the other's pid cannot be
    # looked up from here. Such a namespace cannot be made in a test: the child says it is in another, and the
    # lookup of its pid answers as it would from here.
    with SQLiteLog(sqlite_path) as log:
        log.create_topic("t", 1)
    other = subprocess.Popen(
        [PYTHON, "-c", OTHER_NAMESPACE_MEMBER, str(sqlite_path)],
        env=subprocess_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None
        assert other.stdout.readline() == "ready\n"
        real_kill = os.kill

        def unseen(pid: int, signum: int) -> None:
            if pid == other.pid:
                raise ProcessLookupError(pid)
            real_kill(pid, signum)

        monkeypatch.setattr(os, "kill", unseen)
        with SQLiteLog(sqlite_path) as log:
            assert len(log.group_members("g")) == 1, "live: its heartbeats say so, its pid cannot"
    finally:
        assert other.stdin is not None
        other.stdin.close()
        assert other.wait(timeout=30) == 0
        assert other.stdout is not None
        other.stdout.close()


def test_host_identity_names_the_pid_namespace_beside_the_hostname() -> None:
    assert host_identity().split()[0] == socket.gethostname()
    if os.path.exists("/proc/self/ns/pid"):
        assert host_identity().endswith(os.readlink("/proc/self/ns/pid"))
