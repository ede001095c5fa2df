"""Fixtures shared by every test: logs of each driver, fresh per test, on real files where the driver has them."""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventbus.backends.base import Log
from eventbus.backends.memory import MemoryLog
from eventbus.backends.sqlite import SQLiteLog
from tests.kafka.brokers import KAFKA_DRIVERS, Broker, emptied_kafka_log, kafka_log, running, shortest_session_s

REPO = Path(__file__).resolve().parents[1]
_names = itertools.count()

EMBEDDED_DRIVERS = ["memory", "sqlite"]

# Every driver, the Kafka ones marked: for fixtures that give each test a fresh log of each (see `open_log`).
ALL_DRIVERS = [*EMBEDDED_DRIVERS, *(pytest.param(d, marks=pytest.mark.kafka) for d in KAFKA_DRIVERS)]


def make_log(driver: str, tmp_path: Path) -> Log:
    if driver == "memory":
        return MemoryLog(f"test-{os.getpid()}-{next(_names)}")
    if driver == "sqlite":
        return SQLiteLog(tmp_path / f"log-{next(_names)}.db")
    raise AssertionError(driver)


@contextlib.contextmanager
def open_log(driver: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Log]:
    """A fresh log of ``driver``. On Kafka, the tests of a module share a broker (`module_broker`), emptied of the
    topics and groups of the tests before, and the log's URL has short group timings (see `emptied_kafka_log`)."""
    if driver in KAFKA_DRIVERS:
        broker: Callable[[str], Broker] = request.getfixturevalue("module_broker")
        with emptied_kafka_log(broker(driver.removeprefix("kafka-"))) as on_kafka:
            yield on_kafka
        return
    opened = make_log(driver, tmp_path)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Broker]]:
    """The broker of a kind shared by the tests of one module, started by the first test that asks for it."""
    started: dict[str, Broker] = {}
    with contextlib.ExitStack() as stack:

        def broker(kind: str) -> Broker:
            if kind not in started:
                directory = None if kind == "external" else tmp_path_factory.mktemp(kind)
                started[kind] = stack.enter_context(running(kind, directory))
            return started[kind]

        yield broker


@pytest.fixture(params=ALL_DRIVERS)
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
