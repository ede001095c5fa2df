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

REPO = Path(__file__).resolve().parents[1]
_names = itertools.count()

EMBEDDED_DRIVERS = ["memory", "sqlite"]


def make_log(driver: str, tmp_path: Path) -> Log:
    if driver == "memory":
        return MemoryLog(f"test-{os.getpid()}-{next(_names)}")
    if driver == "sqlite":
        return SQLiteLog(tmp_path / f"log-{next(_names)}.db")
    raise AssertionError(driver)


@pytest.fixture(params=EMBEDDED_DRIVERS)
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Log]:
    opened = make_log(request.param, tmp_path)
    yield opened
    opened.close()


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
