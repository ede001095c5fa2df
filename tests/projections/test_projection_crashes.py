"""Exactly-once projections under SIGKILL: a projection worker folding 50,000 events is killed at random moments,
restarted, and caught up; every row then equals what the log says, and no event was applied twice."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest

from eventbus import Event, Publisher
from eventbus.projections import ProjectionReader
from tests.conftest import PYTHON, REPO
from tests.postgres_server import fresh_database

pytestmark = pytest.mark.slow

EVENTS = 50_000
KEYS = 200


def start(url: str, env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            PYTHON,
            "-m",
            "eventbus",
            "--log-level",
            "WARNING",
            "run",
            "tests.projections.crash_projection",
            "--broker",
            url,
            "--max-poll-records",
            "500",
            *extra,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_sigkilled_projection_workers_fold_every_event_exactly_once(
    kind: str, seed: int, tmp_path: Path, subprocess_env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    rng = random.Random(seed)
    store_url = (
        f"sqlite:///{tmp_path}/read.db" if kind == "sqlite" else fresh_database(request.getfixturevalue("postgres_url"))
    )
    env = {**subprocess_env, "EVENTBUS_STORE": store_url}
    log_url = f"sqlite:///{tmp_path}/log.db"
    expected: dict[str, dict[str, int]] = defaultdict(lambda: {"sum": 0, "count": 0})
    events = []
    for _ in range(EVENTS):
        key = f"k{rng.randrange(KEYS)}"
        n = rng.randrange(1, 1000)
        expected[key]["sum"] += n
        expected[key]["count"] += 1
        events.append(Event("n", {"key": key, "n": n}, partitionkey=key))
    with Publisher(log_url) as publisher:
        publisher.log.create_topic("numbers", 3)
        for begin in range(0, EVENTS, 5000):
            publisher.publish_many("numbers", events[begin : begin + 5000])

    folded_at_kills = []
    for _ in range(3):
        worker = start(log_url, env)
        target = rng.randrange(EVENTS // 10, EVENTS)
        deadline = time.monotonic() + 60
        with ProjectionReader(store_url, "totals") as reader:
            while worker.poll() is None and time.monotonic() < deadline:
                try:
                    folded = sum(reader.position().values())
                except Exception:  # the store may not exist yet
                    folded = 0
                if folded >= target:
                    break
                time.sleep(0.01)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        assert worker.stderr is not None
        worker.stderr.close()
        assert worker.returncode == -signal.SIGKILL
        with ProjectionReader(store_url, "totals") as reader:
            folded_at_kills.append(sum(reader.position().values()))
    assert any(0 < folded < EVENTS for folded in folded_at_kills), f"no kill landed mid-fold: {folded_at_kills}"

    final = start(log_url, env, "--until-idle")
    _, stderr = final.communicate(timeout=300)
    assert final.returncode == 0, stderr.decode()
    with ProjectionReader(store_url, "totals") as reader:
        rows = {key: reader.get(key).value for key in expected}
        assert sum(reader.position().values()) == EVENTS
    assert rows == dict(expected), "every row equals the log; a count above it would mean a double apply"
