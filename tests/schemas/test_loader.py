"""Loading .avsc files: how schemas bind to event types, references across files, and bad files named with their
problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eventbus.schemas import SchemaError, Schemas, load_schemas
from tests.schemas.conftest import record, write_schema

LINE_ITEM = record("shop.LineItem", {"name": "sku", "type": "string"}, {"name": "quantity", "type": "int"})


def test_a_record_binds_its_eventbus_type_else_its_full_name(tmp_path: Path) -> None:
    write_schema(tmp_path, "a.avsc", record("Placed", {"name": "id", "type": "string"}, namespace="shop"))
    write_schema(
        tmp_path,
        "b.avsc",
        record("shop.Paid", {"name": "id", "type": "string"}, **{"eventbus.type": "shop.paid", "eventbus.topic": "t"}),
    )
    loaded = load_schemas(tmp_path)
    placed, paid = loaded.for_type("shop.Placed"), loaded.for_type("shop.paid")
    assert placed is not None
    assert paid is not None
    assert (placed.name, placed.topic, placed.path.name) == ("shop.Placed", None, "a.avsc")
    assert (paid.name, paid.topic) == ("shop.Paid", "t")
    assert loaded.for_type("shop.Paid") is None
    assert len(loaded) == 2


def test_a_type_defined_in_another_file_is_inlined_so_each_schema_stands_alone(tmp_path: Path) -> None:
    items = {"type": "array", "items": LINE_ITEM}
    write_schema(tmp_path / "orders", "placed.avsc", record("shop.Placed", {"name": "items", "type": items}))
    write_schema(
        tmp_path,
        "paid.avsc",
        record("shop.Paid", {"name": "items", "type": {"type": "array", "items": "shop.LineItem"}}),
    )
    loaded = load_schemas(tmp_path)
    paid = loaded.for_type("shop.Paid")
    assert paid is not None
    assert json.loads(paid.text)["fields"][0]["type"]["items"]["fields"] == LINE_ITEM["fields"]
    assert loaded.for_type("shop.LineItem") is None, "a nested record is not an event of its own"


def test_the_default_directory_may_be_missing_but_a_named_one_may_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert len(load_schemas(Schemas())) == 0
    with pytest.raises(SchemaError, match="elsewhere does not exist"):
        load_schemas(Schemas(directories=("elsewhere",)))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"type": "record", "name": "R", "fields": [', "not valid JSON"),
        (record("R", {"name": "a", "type": "shop.Missing"}), "unknown type 'shop.Missing'"),
        (record("R", {"name": "a"}), "missing 'type'"),
        (record("R", {"type": "int"}), "field 0 of 'R' needs a \"name\""),
        (record("R", {"name": "a", "type": "int"}, {"name": "a", "type": "long"}), "two fields named 'a'"),
        (record("1R"), 'needs a "name" of letters'),
        (record("R", {"name": "a", "type": "int", "default": "x"}), "Default value <x> must match schema type"),
        (["null", "string"], "must be a record"),
        (record("R", **{"eventbus.type": ""}), "'eventbus.type' must be a non-empty string"),
        ({"type": "record", "name": "R", "fields": {}}, 'needs a "fields" list'),
        ({"type": "enum", "name": "E", "symbols": ["a-b"]}, "symbol must match"),
        (record("R", {"name": "a", "type": {"type": "fixed", "name": "F", "size": -1}}), "fixed 'F' needs a \"size\""),
        (record("R", {"name": "a", "type": {"type": "fixed", "name": "F", "size": "x"}}), "got 'x'"),
        ({"type": "fixed", "name": "F"}, 'needs a "size" of 0 or more bytes, got None'),
    ],
)
def test_a_bad_file_is_named_with_its_problem(tmp_path: Path, content: object, problem: str) -> None:
    path = tmp_path / "bad.avsc"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(SchemaError) as refused:
        load_schemas(tmp_path)
    assert str(refused.value).startswith(f"{path}: ")
    assert problem in str(refused.value)


def test_two_schemas_for_one_type_or_one_name_are_refused(tmp_path: Path) -> None:
    write_schema(tmp_path / "one", "a.avsc", record("shop.A", **{"eventbus.type": "shop.thing"}))
    write_schema(tmp_path / "one", "b.avsc", record("shop.B", **{"eventbus.type": "shop.thing"}))
    with pytest.raises(SchemaError, match=r"b\.avsc: event type 'shop.thing' already has a schema, in .*a\.avsc"):
        load_schemas(tmp_path / "one")
    write_schema(tmp_path / "two", "a.avsc", record("shop.A"))
    write_schema(tmp_path / "two", "again.avsc", record("A", namespace="shop"))
    with pytest.raises(SchemaError, match=r"type 'shop.A' is defined again \(first in .*a\.avsc\)"):
        load_schemas(tmp_path / "two")


def test_logical_types_are_carried_as_their_underlying_values(tmp_path: Path) -> None:
    millis = {"type": "long", "logicalType": "timestamp-millis"}
    write_schema(tmp_path, "a.avsc", record("shop.Placed", {"name": "at", "type": millis}))
    loaded = load_schemas(tmp_path).for_type("shop.Placed")
    assert loaded is not None
    assert json.loads(loaded.text)["fields"][0]["type"] == millis, "registered as written"
    assert loaded.parsed["fields"][0]["type"] == {"type": "long"}, "read and written as a plain long"
