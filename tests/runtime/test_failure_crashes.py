"""SIGKILL real workers while they dead-letter and while they run idempotent side effects."""

from __future__ import annotations

import os
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
from eventbus.errors import TopicNotFoundError
from eventbus.runtime.dead_letter import failure_of
from tests.conftest import PYTHON, REPO


def run_worker(url: str, app: str, env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            PYTHON,
            "-m",
            "eventbus",
            "--log-level",
            "WARNING",
            "run",
            f"tests.runtime.failure_apps:{app}",
            "--broker",
            url,
            "--max-poll-records",
            "100",
            *extra,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def kill_a_few_times(url: str, app: str, env: dict[str, str], rng: random.Random, kills: int) -> None:
    for _ in range(kills):
        worker = run_worker(url, app, env)
        time.sleep(rng.uniform(0.3, 0.9))
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        assert worker.stderr is not None
        worker.stderr.close()


def finish(url: str, app: str, env: dict[str, str]) -> None:
    worker = run_worker(url, app, env, "--until-idle")
    _, stderr = worker.communicate(timeout=180)
    assert worker.returncode == 0, stderr.decode()


pytestmark = pytest.mark.slow


@pytest.mark.parametrize("seed", range(5))
def test_sigkill_around_dead_letter_writes_leaves_each_poison_event_in_the_dlq_exactly_once(
    tmp_path: Path, subprocess_env: dict[str, str], seed: int
) -> None:
    rng = random.Random(seed)
    url = f"sqlite:///{tmp_path}/dlq.db"
    events = [Event("p.start", {"n": n, "poison": rng.random() < 0.05}, partitionkey=str(n % 13)) for n in range(3000)]
    with Publisher(url) as publisher:
        publisher.log.create_topic("p-in", 2)
        publisher.publish_many("p-in", events)
    kill_a_few_times(url, "poison", subprocess_env, rng, kills=3)
    finish(url, "poison", subprocess_env)

    log = SQLiteLog(tmp_path / "dlq.db")
    dead = Counter()
    for state in log.watermarks("p-in.dlq"):
        for record in log.read("p-in.dlq", state.partition, 0, 100_000).records():
            dead[orjson.loads(record.value or b"")["id"]] += 1
            assert failure_of(record.headers)["error.class"] == "ValueError"
    poison_ids = {e.id for e in events if e.data["poison"]}
    assert set(dead) == poison_ids
    assert set(dead.values()) == {1}, "each poison event is dead-lettered once, never zero or twice"
    outputs = Counter()
    for state in log.watermarks("p-out"):
        for value in log.read("p-out", state.partition, 0, 100_000).values:
            outputs[orjson.loads(value or b"")["data"]["n"]] += 1
    assert set(outputs) == {e.data["n"] for e in events if not e.data["poison"]}
    assert log.committed("poison", "p-in") == {s.partition: s.end_offset for s in log.watermarks("p-in")}


@pytest.mark.parametrize("seed", range(5))
def test_redelivery_after_a_crash_causes_no_second_side_effect(
    tmp_path: Path, subprocess_env: dict[str, str], seed: int
) -> None:
    rng = random.Random(100 + seed)
    url = f"sqlite:///{tmp_path}/effects.db"
    effects_file = tmp_path / "effects.txt"
    env = {**subprocess_env, "EVENTBUS_TEST_EFFECTS": str(effects_file)}
    events = [Event("charge", {"n": n}) for n in range(2500)]
    with Publisher(url) as publisher:
        publisher.log.create_topic("e-in", 2)
        publisher.publish_many("e-in", events)
    kill_a_few_times(url, "effects", env, rng, kills=3)
    finish(url, "effects", env)

    applied = Counter(effects_file.read_text().split())
    assert max(applied.values()) == 1, "no side effect happened twice"
    log = SQLiteLog(tmp_path / "effects.db")
    in_doubt = set()
    try:
        states = log.watermarks("e-in.dlq")
    except TopicNotFoundError:  # no dead letters at all is a valid outcome
        states = []
    for state in states:
        for record in log.read("e-in.dlq", state.partition, 0, 100_000).records():
            assert "side effects may or may not have happened" in failure_of(record.headers)["error.message"]
            in_doubt.add(orjson.loads(record.value or b"")["id"])
    every = {e.id for e in events}
    assert set(applied) | in_doubt == every, "every event was applied or set aside as in doubt"
    assert len(in_doubt) <= 3, "at most the one event in flight at each of the 3 kills is in doubt"
    leftover = [p for p in os.listdir(tmp_path / "effects.idempotency") if p.startswith("journal-")]
    assert leftover == [], "the journals of killed workers were folded and removed"
