"""Fixtures for the schema tests: every kind of registry behind the one interface, and schema files on disk."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventbus.backends.sqlite import SQLiteLog
from eventbus.schemas.confluent import ConfluentRegistry
from eventbus.schemas.embedded import embedded_registry_for
from eventbus.schemas.registry import SchemaRegistry, open_registry
from tests.schemas.registry_server import RegistryServer, registry_server

_names = itertools.count()

REGISTRIES = ["in-log-file", "own-file", "memory", "confluent-http"]


@pytest.fixture
def http_registry() -> Iterator[RegistryServer]:
    with registry_server() as server:
        yield server


@pytest.fixture(params=REGISTRIES)
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SchemaRegistry]:
    """A registry of each kind: tables in a SQLite log's file, a SQLite file of its own, memory, and a Confluent
    registry reached over HTTP with confluent-kafka's client."""
    kind = request.param
    if kind == "in-log-file":
        log = SQLiteLog(tmp_path / "events.db")
        yield embedded_registry_for(log)
        log.close()
    elif kind == "own-file":
        with open_registry(f"sqlite:///{tmp_path}/registry.db") as opened:
            yield opened
    elif kind == "memory":
        yield open_registry(f"memory://tests-{next(_names)}")
    else:
        with registry_server() as server, ConfluentRegistry(server.url) as client:
            yield client


def record(name: str, *fields: dict[str, Any], **properties: Any) -> dict[str, Any]:
    """An Avro record schema (JSON data)."""
    return {"type": "record", "name": name, "fields": list(fields), **properties}


def write_schema(directory: Path, file_name: str, schema: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name
    path.write_text(json.dumps(schema, indent=2))
    return path
