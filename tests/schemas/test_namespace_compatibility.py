"""Moving a named type to another namespace: compatible, as Avro's resolution rules (and so the Confluent registry)
match records, enums and fixed types by their unqualified name; data written before the move reads after it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from eventbus import App, Event, Publisher
from eventbus.codecs import decode_record
from eventbus.codecs.avro import AvroDecoder
from eventbus.schemas import Compatibility, SchemaRegistry, load_schemas
from eventbus.schemas.embedded import embedded_registry_for
from eventbus.testing import TestBus
from tests.conftest import PYTHON
from tests.schemas.conftest import record, write_schema


def placed(namespace: str) -> dict[str, Any]:
    status = {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}
    digest = {"type": "fixed", "name": "Digest", "size": 2}
    line = record("Line", {"name": "sku", "type": "string"})
    return {
        **record(
            "Placed",
            {"name": "status", "type": status},
            {"name": "digest", "type": digest},
            {"name": "lines", "type": {"type": "array", "items": line}},
            {"name": "first", "type": ["null", f"{namespace}.Line"], "default": None},
        ),
        "namespace": namespace,
        "eventbus.type": "shop.placed",
    }


def test_a_new_namespace_is_compatible_in_every_mode(registry: SchemaRegistry, tmp_path: Path) -> None:
    old, new = (load_schemas(write_schema(tmp_path / ns, "p.avsc", placed(ns)).parent) for ns in ("shop", "sales"))
    (old_schema,), (new_schema,) = list(old), list(new)
    registry.register("placed", old_schema.text)
    for mode in Compatibility:
        registry.set_compatibility(mode, "placed")
        assert registry.violations("placed", new_schema.schema) == [], mode
    registry.set_compatibility(Compatibility.FULL_TRANSITIVE, "placed")
    assert registry.register("placed", new_schema.text).version == 2


def test_check_passes_a_namespace_change_and_old_events_decode(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    schemas = tmp_path / "schemas"
    write_schema(schemas, "placed.avsc", placed("shop"))
    app = App("old", schemas=schemas)
    app.topic("orders", codec="avro")
    bus = TestBus()
    data = {"status": "PAID", "digest": b"\x00\x01", "lines": [{"sku": "KB"}], "first": {"sku": "KB"}}
    Publisher(bus.log, app=app).publish("orders", Event("shop.placed", data))

    write_schema(schemas, "placed.avsc", placed("sales"))
    moved = load_schemas(schemas)
    batch = bus.log.read("orders", 0, 0, 1)
    decoder = AvroDecoder(embedded_registry_for(bus.log), moved)
    assert decode_record(batch.values[0], batch.headers[0], decoder)["data"] == data

    def schema(*args: str) -> subprocess.CompletedProcess[str]:
        command = [PYTHON, "-m", "eventbus", "schema", *args, "--subject-strategy", "topic-name"]
        return subprocess.run(command, cwd=tmp_path, env=subprocess_env, capture_output=True, text=True, check=False)

    write_schema(schemas, "placed.avsc", {**placed("shop"), "eventbus.topic": "orders"})
    assert schema("register").returncode == 0
    write_schema(schemas, "placed.avsc", {**placed("sales"), "eventbus.topic": "orders"})
    checked = schema("check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "compatible orders-value (schemas/placed.avsc): BACKWARD with version 1" in checked.stdout
