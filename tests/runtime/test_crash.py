"""SIGKILL a real worker process mid-stream, restart it, and check nothing was lost (at-least-once) — and, since
the SQLite driver writes outputs and offsets in one transaction, that nothing was duplicated either."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from eventbus import Event, Publisher
from eventbus.backends.sqlite import SQLiteLog
from tests.conftest import PYTHON, REPO

EVENTS = 20_000


def publish_inputs(url: str) -> list[str]:
    with Publisher(url) as publisher:
        publisher.log.create_topic("crash-in", 3)
        publisher.log.create_topic("crash-out", 3)
        events = [Event("crash.start", {"seq": i}, partitionkey=f"k{i % 101}") for i in range(EVENTS)]
        for start in range(0, EVENTS, 1000):
            publisher.publish_many("crash-in", events[start : start + 1000])
    return [e.id for e in events]


def start_worker(url: str, env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            PYTHON,
            "-m",
            "eventbus",
            "--log-level",
            "WARNING",
            "run",
            "tests.runtime.crash_app",
            "--broker",
            url,
            "--max-poll-records",
            "200",
            *extra,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def committed_total(log: SQLiteLog) -> int:
    return sum(log.committed("crash", "crash-in").values())


@pytest.mark.parametrize("seed", range(5))
def test_sigkill_mid_stream_then_restart_loses_nothing(
    tmp_path: Path, subprocess_env: dict[str, str], seed: int
) -> None:
    rng = random.Random(seed)
    url = f"sqlite:///{tmp_path}/crash.db"
    input_ids = publish_inputs(url)
    log = SQLiteLog(tmp_path / "crash.db")

    worker = start_worker(url, subprocess_env)
    kill_at = int(EVENTS * rng.uniform(0.05, 0.9))
    deadline = time.monotonic() + 60
    while committed_total(log) < kill_at and time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.002)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    assert worker.stderr is not None
    worker.stderr.close()
    assert worker.returncode == -signal.SIGKILL
    at_kill = committed_total(log)
    assert 0 < at_kill < EVENTS, f"the kill should land mid-stream (committed {at_kill})"

    restarted = start_worker(url, subprocess_env, "--until-idle")
    _, stderr = restarted.communicate(timeout=120)
    assert restarted.returncode == 0, stderr.decode()

    ends = {s.partition: s.end_offset for s in log.watermarks("crash-in")}
    assert log.committed("crash", "crash-in") == ends
    causes: Counter[str] = Counter()
    for state in log.watermarks("crash-out"):
        for value in log.read("crash-out", state.partition, 0, EVENTS * 2).values:
            assert value is not None
            causes[orjson.loads(value)["causationid"]] += 1
    assert set(causes) == set(input_ids), "every input produced its output"
    assert max(causes.values()) == 1, "outputs and offsets commit together on SQLite: no duplicates"
