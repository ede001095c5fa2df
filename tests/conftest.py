"""Fixtures shared by every test: logs of each driver, fresh per test, on real files where the driver has them."""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventbus.backends.base import Log
from eventbus.backends.memory import MemoryLog
from eventbus.backends.sqlite import SQLiteLog
from tests.kafka.brokers import KAFKA_DRIVERS, kafka_log, shortest_session_s

REPO = Path(__file__).resolve().parents[1]
_names = itertools.count()

EMBEDDED_DRIVERS = ["memory", "sqlite"]


def make_log(driver: str, tmp_path: Path) -> Log:
    if driver == "memory":
        return MemoryLog(f"test-{os.getpid()}-{next(_names)}")
    if driver == "sqlite":
        return SQLiteLog(tmp_path / f"log-{next(_names)}.db")
    raise AssertionError(driver)


@pytest.fixture(params=[*EMBEDDED_DRIVERS, *(pytest.param(d, marks=pytest.mark.kafka) for d in KAFKA_DRIVERS)])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Log]:
    if request.param in KAFKA_DRIVERS:
        with kafka_log(request.param, tmp_path) as on_kafka:
            yield on_kafka
        return
    opened = make_log(request.param, tmp_path)
    yield opened
    opened.close()


def group_session_s(log: Log, wanted_s: float) -> float:
    """``wanted_s``, raised to the shortest session timeout the log's group coordinator accepts (Kafka brokers
    refuse sessions under their group.min.session.timeout.ms, 6 s by default)."""
    return max(wanted_s, shortest_session_s(log))


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "events.db"


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for subprocesses: this interpreter's packages, the repo on the path, no stray broker."""
    env = os.environ.copy()
    env.pop("EVENTBUS_BROKER", None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    return env


PYTHON = sys.executable
