"""The registry contract, run against every registry: embedded (in the log's file, in a file of its own, in memory)
and a Confluent registry over HTTP through confluent-kafka's client."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from eventbus.backends.base import Message
from eventbus.backends.sqlite import SQLiteLog
from eventbus.schemas import (
    Compatibility,
    ConfluentRegistry,
    IncompatibleSchemaError,
    RegistryError,
    SchemaError,
    SchemaNotFoundError,
    SchemaRegistry,
)
from eventbus.schemas.embedded import embedded_registry_for
from tests.schemas.conftest import record

V1 = record("shop.Order", {"name": "id", "type": "string"})
V2 = record("shop.Order", {"name": "id", "type": "string"}, {"name": "note", "type": "string", "default": ""})
V3_BREAKS = record("shop.Order", {"name": "id", "type": "string"}, {"name": "coupon", "type": "string"})


def text(schema: object, **dumps: object) -> str:
    return json.dumps(schema, **dumps)  # type: ignore[arg-type]


def test_versions_count_from_one_and_a_schema_registered_again_is_the_same_version(registry: SchemaRegistry) -> None:
    first = registry.register("orders-value", text(V1))
    again = registry.register("orders-value", text(V1, indent=4))  # formatting does not make a new schema
    second = registry.register("orders-value", text(V2))
    assert (first.version, again.version, second.version) == (1, 1, 2)
    assert first.schema_id == again.schema_id != second.schema_id
    assert [v.version for v in registry.versions("orders-value")] == [1, 2]
    assert [v.schema_id for v in registry.versions("orders-value")] == [first.schema_id, second.schema_id]


def test_a_schema_has_one_id_whatever_subjects_hold_it(registry: SchemaRegistry) -> None:
    in_topic = registry.register("orders-value", text(V1))
    by_record = registry.register("shop.Order", text(V1))
    assert in_topic.schema_id == by_record.schema_id
    assert by_record.version == 1
    assert registry.subjects() == ["orders-value", "shop.Order"]
    assert json.loads(registry.schema_by_id(in_topic.schema_id))["fields"] == V1["fields"]


def test_lookup_finds_the_version_holding_a_schema(registry: SchemaRegistry) -> None:
    assert registry.lookup("orders-value", text(V1)) is None
    registry.register("orders-value", text(V1))
    registry.register("orders-value", text(V2))
    found = registry.lookup("orders-value", text(V1))
    assert found is not None
    assert found.version == 1
    assert registry.lookup("orders-value", text(V3_BREAKS)) is None


def test_unknown_ids_and_subjects(registry: SchemaRegistry) -> None:
    with pytest.raises(SchemaNotFoundError, match="4242"):
        registry.schema_by_id(4242)
    assert registry.versions("nobody") == []
    assert registry.subjects() == []


def test_the_default_mode_is_backward_and_a_break_is_refused_naming_field_and_rule(registry: SchemaRegistry) -> None:
    registry.register("orders-value", text(V1))
    assert registry.compatibility("orders-value") is Compatibility.BACKWARD
    with pytest.raises(IncompatibleSchemaError) as refused:
        registry.register("orders-value", text(V3_BREAKS))
    message = str(refused.value)
    assert "'orders-value'" in message
    assert "field 'coupon'" in message
    assert "without a default" in message
    assert "BACKWARD" in message
    assert refused.value.violations[0].path == "coupon"
    assert [v.version for v in registry.versions("orders-value")] == [1], "nothing was registered"


def test_modes_are_set_per_subject(registry: SchemaRegistry) -> None:
    registry.register("orders-value", text(V1))
    registry.register("payments-value", text(V1))
    registry.set_compatibility(Compatibility.NONE, "orders-value")
    assert registry.register("orders-value", text(V3_BREAKS)).version == 2
    assert registry.compatibility("payments-value") is Compatibility.BACKWARD
    with pytest.raises(IncompatibleSchemaError):
        registry.register("payments-value", text(V3_BREAKS))
    registry.set_compatibility(Compatibility.FULL)  # the registry's default, for subjects without their own
    assert registry.compatibility("payments-value") is Compatibility.FULL
    assert registry.compatibility("orders-value") is Compatibility.NONE


def test_transitive_modes_check_every_version_and_plain_ones_only_the_latest(registry: SchemaRegistry) -> None:
    # v1 has a required field; v2 drops it (backward: fine); v3 reads only what v2 wrote, not what v1 needs.
    v1 = record("shop.Order", {"name": "id", "type": "string"}, {"name": "sku", "type": "string"})
    v2 = record("shop.Order", {"name": "id", "type": "string"})
    v3 = record("shop.Order", {"name": "id", "type": "string"}, {"name": "qty", "type": "int", "default": 1})
    for subject, mode in (("plain", Compatibility.FORWARD), ("transitive", Compatibility.FORWARD_TRANSITIVE)):
        registry.set_compatibility(Compatibility.NONE, subject)
        registry.register(subject, text(v1))
        registry.register(subject, text(v2))
        registry.set_compatibility(mode, subject)
    assert registry.register("plain", text(v3)).version == 3
    with pytest.raises(IncompatibleSchemaError) as refused:
        registry.register("transitive", text(v3))
    assert "field 'sku'" in str(refused.value)
    assert "version 1 must read data written with the new schema" in str(refused.value)


def test_an_invalid_schema_is_refused_as_such(registry: SchemaRegistry) -> None:
    with pytest.raises(SchemaError, match="Nope"):
        registry.register("orders-value", text(record("shop.Order", {"name": "id", "type": "Nope"})))


def test_the_embedded_registry_keeps_its_tables_in_the_log_file(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    log = SQLiteLog(path)
    registered = embedded_registry_for(log).register("orders-value", text(V1))
    log.append("orders", [Message(b'{"x": 1}')])
    log.close()
    reopened = SQLiteLog(path)
    registry = embedded_registry_for(reopened)
    assert registry.versions("orders-value")[0].schema_id == registered.schema_id
    assert registry.url == f"sqlite:///{path}"
    assert registry.schema_uri(registered.schema_id) == f"sqlite:///{path}#/schemas/ids/{registered.schema_id}"
    assert sum(s.end_offset for s in reopened.watermarks("orders")) == 1
    reopened.close()


def test_an_unreachable_confluent_registry_is_named_without_its_credentials() -> None:
    unreachable = ConfluentRegistry("http://user:secret@127.0.0.1:9", {"max.retries": 0})
    with pytest.raises(RegistryError) as failed:
        unreachable.subjects()
    unreachable.close()
    assert str(failed.value).startswith("schema registry http://127.0.0.1:9 failed (listing subjects): ")
    assert "secret" not in str(failed.value)


def test_a_registry_that_accepts_and_never_answers_is_an_error_not_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    from eventbus.schemas import confluent

    monkeypatch.setattr(confluent, "REQUEST_TIMEOUT_S", 0.3)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepts connections (the kernel does), answers nothing
        registry = ConfluentRegistry(f"http://127.0.0.1:{silent.getsockname()[1]}", {"max.retries": 0})
        outcome: list[BaseException | None] = []

        def ask() -> None:
            try:
                registry.subjects()
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        asking = threading.Thread(target=ask, daemon=True)
        asking.start()
        asking.join(60)  # a bound for a hang, not a speed: the request's own timeout is 0.3 s
        registry.close()
    assert outcome, "still waiting for an answer"
    assert isinstance(outcome[0], RegistryError)
    assert "listing subjects" in str(outcome[0])
