"""Fixtures of the Kafka tests: brokers shared by a test session, brokers of a test's own, and subprocess workers.

Tests on a shared broker use names of their own (`unique`), so they never see each other's topics or groups.
Tests that stop, kill or restart a broker get one to themselves.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventbus.backends.kafka.log import KafkaLog, open_kafka_log
from tests.conftest import PYTHON, REPO
from tests.kafka.brokers import EXTERNAL_ENV, Broker, running

# Every broker the Kafka tests run against; an external one replaces neither of the local ones.
BROKER_KINDS = ["tansu", "noida", *(["external"] if os.environ.get(EXTERNAL_ENV) else [])]

_names = itertools.count()


def unique(prefix: str) -> str:
    """A topic or group name no other test of this session uses."""
    return f"{prefix}-{os.getpid()}-{next(_names)}"


@pytest.fixture(scope="session", params=BROKER_KINDS)
def broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A broker shared by every test of the session that asks for this kind."""
    kind = request.param
    with running(kind, None if kind == "external" else tmp_path_factory.mktemp(kind)) as started:
        yield started


@pytest.fixture(params=[k for k in BROKER_KINDS if k != "external"])
def own_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    """A broker for this test alone (it may be killed or restarted)."""
    with running(request.param, tmp_path / request.param) as started:
        yield started


@pytest.fixture
def kafka(broker: Broker) -> Iterator[KafkaLog]:
    log = open_kafka_log(broker.url())
    yield log
    log.close()


_started: list[subprocess.Popen[bytes]] = []


def eventbus_process(env: dict[str, str], *args: str, stderr: int | None = subprocess.PIPE) -> subprocess.Popen[bytes]:
    """``python -m eventbus ARGS`` from the repository, as users run it (killed after the test if still running)."""
    process = subprocess.Popen(
        [PYTHON, "-m", "eventbus", "--log-level", "INFO", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    _started.append(process)
    return process


@pytest.fixture(autouse=True)
def _no_stray_workers() -> Iterator[None]:
    """A test that fails half-way leaves no worker process behind."""
    yield
    while _started:
        process = _started.pop()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        if process.stderr is not None:
            process.stderr.close()
