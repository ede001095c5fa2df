"""Fixtures for projections: a projection store of each kind (SQLite file, real PostgreSQL server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from eventbus.projections.store import ProjectionStore, open_store
from tests.postgres_server import fresh_database, postgres_server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/projections.db"
    return fresh_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[ProjectionStore]:
    opened = open_store(store_url)
    yield opened
    opened.close()
