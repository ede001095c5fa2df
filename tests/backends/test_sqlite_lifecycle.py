"""The embedded SQLite log and the worker lifecycle as a user meets them: real files in a temporary directory, real
``eventbus`` processes, stopped with real signals (SIGKILL for crashes)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import PYTHON

APPS = "tests.backends.lifecycle_apps"


def eventbus(*args: str, cwd: Path, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "eventbus", *args], input=stdin, capture_output=True, text=True, cwd=cwd, env=env, check=False
    )


def publish(cwd: Path, env: dict[str, str], topic: str, numbers: range) -> None:
    lines = "\n".join(json.dumps({"type": "n", "subject": f"k{n}", "data": n}) for n in numbers)
    result = eventbus("publish", topic, cwd=cwd, env=env, stdin=lines)
    assert result.returncode == 0, result.stderr


def query(path: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    """Rows of ``sql`` on the log, read with SQLite alone; none while the log's tables do not exist yet."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(sql, params).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def members(path: Path, group: str) -> list[int]:
    return sorted(int(str(pid)) for (pid,) in query(path, "SELECT pid FROM group_members WHERE group_name = ?", group))


def outputs(path: Path, topic: str) -> list[object]:
    rows = query(
        path,
        "SELECT value FROM records JOIN topics ON topics.id = records.topic_id WHERE topics.name = ?"
        " ORDER BY partition, offset",
        topic,
    )
    return [json.loads(str(value, "utf-8") if isinstance(value, bytes) else str(value))["data"] for (value,) in rows]


def committed(path: Path, group: str, topic: str) -> dict[int, int]:
    rows = query(
        path,
        "SELECT partition, next_offset FROM group_offsets JOIN topics ON topics.id = group_offsets.topic_id"
        " WHERE group_name = ? AND topics.name = ?",
        group,
        topic,
    )
    return {int(str(p)): int(str(o)) for p, o in rows}


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def started(tmp_path: Path, subprocess_env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Starts ``eventbus ARGS`` in ``tmp_path``, in a session of its own, standard error to ``stderr-N.txt``
    (read while it runs); whatever is left running at the end is killed with its process group."""
    processes: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        with (tmp_path / f"stderr-{len(processes)}.txt").open("w") as stderr:
            process = subprocess.Popen(
                [PYTHON, "-m", "eventbus", *args],
                cwd=tmp_path,
                env=subprocess_env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                text=True,
                start_new_session=True,
            )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    for pid in members(tmp_path / "eventbus.db", "gated"):
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGKILL)


def stderr_of(tmp_path: Path, index: int) -> str:
    return (tmp_path / f"stderr-{index}.txt").read_text()


# 1. Stopping.


def test_a_stop_sent_to_every_process_of_the_service_drains_the_workers(
    tmp_path: Path, subprocess_env: dict[str, str], started: Callable[..., subprocess.Popen[str]]
) -> None:
    """systemd stops a service by sending SIGTERM to each of its processes: a worker gets the stop from the service
    manager and again from its supervisor, which passes it on. That is one stop, drained, not two."""
    log = tmp_path / "eventbus.db"
    assert eventbus("topics", "create", "in", "--partitions", "2", cwd=tmp_path, env=subprocess_env).returncode == 0
    publish(tmp_path, subprocess_env, "in", range(20))
    supervisor = started("run", f"{APPS}.gated", "--workers", "2", "--max-poll-records", "1")
    wait_for(lambda: len(members(log, "gated")) == 2, "both workers to join")  # so both are past starting
    wait_for(lambda: any(tmp_path.glob("holding-*")), "a worker to hold an event")
    holding = [int(p.name.removeprefix("holding-")) for p in tmp_path.glob("holding-*")]

    for pid in holding:
        os.kill(pid, signal.SIGTERM)  # the service manager's, first
    wait_for(
        lambda: stderr_of(tmp_path, 0).count("stopping after the events already read") >= len(holding),
        "the workers to take the stop",
    )
    supervisor.send_signal(signal.SIGTERM)  # ...and the supervisor's, passed on
    time.sleep(1)  # for it to reach the workers, still holding their events
    (tmp_path / "release").touch()
    supervisor.wait(timeout=60)

    stderr = stderr_of(tmp_path, 0)
    assert supervisor.returncode == 0, stderr
    assert "stopped at once" not in stderr, stderr
    assert stderr.count("worker stopped:") == 2, stderr
    done = outputs(log, "out")
    assert sorted(map(int, done)) == sorted(set(map(int, done))), "no event processed twice"
    assert sum(committed(log, "gated", "in").values()) == len(done) >= len(holding), "what was processed is committed"
    assert members(log, "gated") == []


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_while_the_workers_are_starting_stops_them_quietly(
    stop: signal.Signals,
    tmp_path: Path,
    subprocess_env: dict[str, str],
    started: Callable[..., subprocess.Popen[str]],
) -> None:
    """Ctrl-C (or SIGTERM) just after ``eventbus run --workers 2``: the workers, still importing the app, have
    nothing to drain and stop quietly, not with a KeyboardInterrupt traceback and a supervisor that failed."""
    publish(tmp_path, subprocess_env, "in", range(5))
    supervisor = started("run", f"{APPS}.slow_start", "--workers", "2")
    wait_for(lambda: len(list(tmp_path.glob("importing-*"))) == 2, "both workers to be importing the app")

    os.killpg(supervisor.pid, stop)  # a terminal's Ctrl-C reaches the whole foreground group
    time.sleep(0.5)  # for the supervisor to pass it on while the workers are still importing
    (tmp_path / "release").touch()
    supervisor.wait(timeout=60)

    stderr = stderr_of(tmp_path, 0)
    assert supervisor.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert "while stopping" not in stderr, stderr
    assert "eventbus: " not in stderr, stderr  # no error nor failure line
    assert members(tmp_path / "eventbus.db", "slow_start") == []
    assert outputs(tmp_path / "eventbus.db", "out") == []


# 2. Log paths SQLite cannot open: one line saying what is wrong, not SQLite's "unable to open database file".

NOBODY = 65534


def as_unprivileged(env: dict[str, str]) -> list[str]:
    """The prefix that runs a command as a user file permissions apply to (root passes every check)."""
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    try:
        probe = subprocess.run([*prefix, PYTHON, "-c", "import eventbus"], capture_output=True, env=env, check=False)
    except FileNotFoundError:
        pytest.skip("running as root, where file permissions do not apply, and setpriv is not there to drop them")
    if probe.returncode != 0:
        pytest.skip(f"running as root, and user {NOBODY} cannot run this interpreter: {probe.stderr!r}")
    return prefix


def _unreadable(d: Path) -> str:
    (d / "mine.db").write_bytes(b"")
    (d / "mine.db").chmod(0o600)
    return "mine.db"


def _unsearchable_directory(d: Path) -> str:
    (d / "private").mkdir(mode=0o700)
    return "private/events.db"


def _read_only_directory(d: Path) -> str:
    (d / "shared").mkdir(mode=0o555)
    return "shared/events.db"


def _through_a_file(d: Path) -> str:
    (d / "events.db").write_bytes(b"")
    return "events.db/more.db"


def _pipe(d: Path) -> str:
    os.mkfifo(d / "pipe.db")
    return "pipe.db"


def _dangling_link(d: Path) -> str:
    (d / "link.db").symlink_to(d / "gone" / "events.db")
    return "link.db"


@pytest.mark.parametrize(
    ("make", "unprivileged", "words"),
    [
        (_unreadable, True, ["cannot read mine.db", "not readable for this user", "permissions"]),
        (_unsearchable_directory, True, ["private/events.db", "not searchable", "permissions"]),
        (_read_only_directory, True, ["cannot create shared/events.db", "shared is read-only", "permissions"]),
        (_through_a_file, False, ["events.db is a file, not a directory"]),
        (_pipe, False, ["pipe.db is not a regular file"]),
        (_dangling_link, False, ["gone (where the link link.db points) does not exist"]),
    ],
)
def test_a_log_path_sqlite_cannot_open_is_one_line_saying_why(
    make: Callable[[Path], str], unprivileged: bool, words: list[str], subprocess_env: dict[str, str]
) -> None:
    # Not tmp_path: pytest makes its directories for their owner alone, where nobody could not even look.
    directory = Path(tempfile.mkdtemp(prefix="eventbus-paths-"))
    try:
        directory.chmod(0o777)
        path = make(directory)
        user = as_unprivileged(subprocess_env) if unprivileged else []
        for args in (("topics", "list"), ("publish", "orders"), ("run", f"{APPS}.gated", "--until-idle")):
            result = subprocess.run(
                [*user, PYTHON, "-m", "eventbus", *args, "--broker", f"sqlite:///{path}"],
                input='{"type": "a"}\n',
                capture_output=True,
                text=True,
                cwd=directory,
                env=subprocess_env,
                check=False,
            )
            assert "Traceback" not in result.stderr, result.stderr
            assert result.returncode == 2, (args, result.stderr)
            errors = [line for line in result.stderr.splitlines() if line.startswith("eventbus: error: ")]
            assert len(errors) == 1, result.stderr
            assert errors[0].startswith(f"eventbus: error: sqlite:///{path}: "), errors[0]
            for word in words:
                assert word in errors[0], (word, errors[0])
    finally:
        for each in directory.rglob("*"):
            if each.is_dir() and not each.is_symlink():
                each.chmod(0o700)
        shutil.rmtree(directory)


# 3. A full disk (a file size limit here): the write that did not fit is refused as a whole, in one line; what
# was written before is kept.


def with_file_size_limit(limit_bytes: int) -> Callable[[], None]:
    """For ``preexec_fn``: no file may grow past ``limit_bytes`` (a full disk, as SQLite sees it: Python ignores
    SIGXFSZ, so the write fails with EFBIG, which SQLite reports as SQLITE_FULL)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return limit


def limited(
    *args: str, cwd: Path, env: dict[str, str], limit_bytes: int, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "eventbus", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        preexec_fn=with_file_size_limit(limit_bytes),
        check=False,
    )


def failed_for_a_full_disk(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, (result.returncode, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("eventbus: failed: ")]
    assert len(errors) == 1, result.stderr
    # A file over RLIMIT_FSIZE is an I/O error to SQLite; a disk out of space (ENOSPC) says "the disk is full".
    assert "sqlite:///eventbus.db: cannot write eventbus.db: disk I/O error" in errors[0], errors[0]
    assert "nothing of this write was kept" in errors[0], errors[0]


def test_publishing_to_a_full_disk_fails_in_one_line_and_keeps_what_was_written(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    lines = "\n".join(json.dumps({"type": "n", "data": {"n": n, "pad": "x" * 100}}) for n in range(20_000))
    result = limited("publish", "in", cwd=tmp_path, env=subprocess_env, limit_bytes=500_000, stdin=lines)
    failed_for_a_full_disk(result)

    kept = outputs(tmp_path / "eventbus.db", "in")
    assert [event["n"] for event in kept] == list(range(len(kept)))  # type: ignore[index]
    publish(tmp_path, subprocess_env, "in", range(1))  # the log is whole, and takes writes again


def test_a_worker_whose_commit_does_not_fit_on_the_disk_fails_in_one_line_and_commits_nothing(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    publish(tmp_path, subprocess_env, "in", range(5000))
    result = limited("run", f"{APPS}.echo", "--until-idle", cwd=tmp_path, env=subprocess_env, limit_bytes=200_000)
    failed_for_a_full_disk(result)
    log = tmp_path / "eventbus.db"
    assert committed(log, "echo", "in") == {}
    assert outputs(log, "out") == []

    again = eventbus("run", f"{APPS}.echo", "--until-idle", cwd=tmp_path, env=subprocess_env)
    assert again.returncode == 0, again.stderr
    assert sorted(map(int, outputs(log, "out"))) == list(range(5000))  # type: ignore[arg-type]
