"""``eventbus run --workers N``: the supervisor keeps N worker processes, stops workers that keep failing, and passes
a terminal's Ctrl-C on once, so that workers drain."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventbus.backends.sqlite import SQLiteLog
from tests.conftest import PYTHON

ECHO_APP = """
from eventbus import App, Event

app = App("echo")


@app.processor("in", to="out")
def echo(event: Event) -> Event:
    return Event("echoed", event.data)
"""

CRASHING_APP = """
import os

from eventbus import App, Event

app = App("crashing")


@app.processor("in")
def crash(event: Event) -> None:
    os._exit(3)  # a worker process that dies on this event, every time
"""


def publish(project: Path, env: dict[str, str], *numbers: int) -> None:
    lines = "\n".join(json.dumps({"type": "n", "subject": f"k{n}", "data": n}) for n in numbers)
    result = subprocess.run(
        [PYTHON, "-m", "eventbus", "publish", "in"],
        input=lines,
        text=True,
        capture_output=True,
        cwd=project,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def members(project: Path, group: str) -> list[int]:
    """The pids of the group's members, as the log records them."""
    db = sqlite3.connect(project / "eventbus.db")
    try:
        rows = db.execute("SELECT pid FROM group_members WHERE group_name = ?", (group,)).fetchall()
    except sqlite3.OperationalError:
        return []  # the tables do not exist yet
    finally:
        db.close()
    return sorted(pid for (pid,) in rows)


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def supervisor_of(tmp_path: Path, subprocess_env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Starts ``eventbus run ... --workers N`` in a session of its own (a terminal's process group)."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [PYTHON, "-m", "eventbus", "run", *args],
            cwd=tmp_path,
            env=subprocess_env,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        if process.stderr is not None and not process.stderr.closed:
            process.communicate()


def test_a_killed_worker_is_started_again_and_its_group_goes_on(
    tmp_path: Path, subprocess_env: dict[str, str], supervisor_of: Callable[..., subprocess.Popen[str]]
) -> None:
    (tmp_path / "echo_app.py").write_text(ECHO_APP)
    publish(tmp_path, subprocess_env, *range(10))
    supervisor = supervisor_of("echo_app", "--workers", "2")
    wait_for(lambda: len(members(tmp_path, "echo")) == 2, "two workers to join")
    before = members(tmp_path, "echo")

    os.kill(before[0], signal.SIGKILL)
    wait_for(
        lambda: len(members(tmp_path, "echo")) == 2 and members(tmp_path, "echo") != before,
        "the killed worker to be replaced",
    )
    assert before[1] in members(tmp_path, "echo"), "the other worker went on"

    publish(tmp_path, subprocess_env, *range(10, 20))
    log = SQLiteLog(tmp_path / "eventbus.db")
    try:
        ends = {p.partition: p.end_offset for p in log.watermarks("in")}
        wait_for(lambda: log.committed("echo", "in") == ends, "every event to be processed")
        outputs = {
            json.loads(v)["data"] for p in log.watermarks("out") for v in log.read("out", p.partition, 0, 100).values
        }
        assert outputs == set(range(20))
    finally:
        log.close()

    supervisor.send_signal(signal.SIGTERM)
    _, stderr = supervisor.communicate(timeout=60)
    assert supervisor.returncode == 0, stderr
    assert f"worker 0 (pid {before[0]}) was killed by signal 9; starting it again" in stderr or (
        f"worker 1 (pid {before[0]}) was killed by signal 9; starting it again" in stderr
    ), stderr


def test_workers_that_keep_failing_are_not_started_again(
    tmp_path: Path, subprocess_env: dict[str, str], supervisor_of: Callable[..., subprocess.Popen[str]]
) -> None:
    (tmp_path / "crashing_app.py").write_text(CRASHING_APP)
    publish(tmp_path, subprocess_env, 1)
    supervisor = supervisor_of("crashing_app", "--workers", "2")
    _, stderr = supervisor.communicate(timeout=120)
    assert supervisor.returncode == 1, stderr
    assert stderr.count("exited with code 3; starting it again") == 5, stderr
    assert "workers failed 6 times within 60 s, so they are not started again: stopping the others" in stderr


def test_ctrl_c_in_the_terminal_drains_every_worker(
    tmp_path: Path, subprocess_env: dict[str, str], supervisor_of: Callable[..., subprocess.Popen[str]]
) -> None:
    (tmp_path / "echo_app.py").write_text(ECHO_APP)
    publish(tmp_path, subprocess_env, *range(10))
    supervisor = supervisor_of("echo_app", "--workers", "2")
    wait_for(lambda: len(members(tmp_path, "echo")) == 2, "two workers to join")
    # Out of the terminal's group: otherwise each worker gets Ctrl-C twice (from the terminal and passed on by the
    # supervisor), and a second signal stops a worker without draining, if the two do not happen to merge.
    assert all(os.getpgid(pid) != supervisor.pid for pid in members(tmp_path, "echo"))

    os.killpg(supervisor.pid, signal.SIGINT)  # what a terminal does on Ctrl-C: the whole foreground group
    _, stderr = supervisor.communicate(timeout=60)
    assert supervisor.returncode == 0, stderr
    assert stderr.count("worker stopped:") == 2, stderr
    assert members(tmp_path, "echo") == [], "both workers left the group on the way out"


def test_workers_drain_and_stop_when_their_supervisor_is_killed(
    tmp_path: Path, subprocess_env: dict[str, str], supervisor_of: Callable[..., subprocess.Popen[str]]
) -> None:
    (tmp_path / "echo_app.py").write_text(ECHO_APP)
    publish(tmp_path, subprocess_env, *range(10))
    supervisor = supervisor_of("echo_app", "--workers", "2")
    wait_for(lambda: len(members(tmp_path, "echo")) == 2, "two workers to join")
    workers = members(tmp_path, "echo")

    supervisor.kill()
    supervisor.wait()  # not communicate: the workers hold its stderr open until they exit
    try:
        wait_for(lambda: members(tmp_path, "echo") == [], "the workers to leave their group")
        for pid in workers:
            wait_for(lambda pid=pid: not os.path.exists(f"/proc/{pid}"), f"worker {pid} to exit")
    finally:
        for pid in workers:
            if os.path.exists(f"/proc/{pid}"):
                os.kill(pid, signal.SIGKILL)


def test_a_worker_with_a_configuration_error_is_not_started_again(
    tmp_path: Path, subprocess_env: dict[str, str], supervisor_of: Callable[..., subprocess.Popen[str]]
) -> None:
    import socket

    (tmp_path / "echo_app.py").write_text(ECHO_APP)
    publish(tmp_path, subprocess_env, 1)
    with socket.socket() as taken:  # the port the first worker is to serve HTTP on, in use
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        supervisor = supervisor_of("echo_app", "--workers", "2", "--http", str(port))
        _, stderr = supervisor.communicate(timeout=120)
    assert supervisor.returncode == 2, stderr
    assert "; starting it again" not in stderr, stderr
    assert "a configuration error (above): not starting it again; stopping the others" in stderr, stderr


SLOW_APP = """
import time

from eventbus import App, Event

app = App("slow")


@app.processor("in")
def slow(event: Event) -> None:
    time.sleep(1)
"""


def test_a_second_ctrl_c_stops_every_worker_at_once_and_the_supervisor_exits_130(
    tmp_path: Path, subprocess_env: dict[str, str], supervisor_of: Callable[..., subprocess.Popen[str]]
) -> None:
    (tmp_path / "slow_app.py").write_text(SLOW_APP)
    publish(tmp_path, subprocess_env, *range(40))
    supervisor = supervisor_of("slow_app", "--workers", "2")
    wait_for(lambda: len(members(tmp_path, "slow")) == 2, "two workers to join")
    time.sleep(1.5)  # each in the middle of its slow round
    os.killpg(supervisor.pid, signal.SIGINT)
    time.sleep(0.5)
    os.killpg(supervisor.pid, signal.SIGINT)
    _, stderr = supervisor.communicate(timeout=30)
    assert supervisor.returncode == 130, stderr
    assert "while stopping" not in stderr, stderr
    assert stderr.count("stopped at once") >= 2, stderr
