"""Compatibility, table-driven: the standard schema changes under every mode, each verdict checked against fastavro
actually reading data written with one schema using the other (old data with the new schema for BACKWARD, new
data with the old schema for FORWARD). The data of each case exercises the change (the removed symbol, the
dropped union branch), so a reader that cannot cope fails."""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from eventbus.schemas import Compatibility, check, reader_problems
from tests.schemas.conftest import record


def order(*fields: dict[str, Any], name: str = "shop.Order", **properties: Any) -> dict[str, Any]:
    return record(name, {"name": "id", "type": "string"}, *fields, **properties)


def enum(*symbols: str, **properties: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "shop.Status", "symbols": list(symbols), **properties}


def address(*fields: dict[str, Any]) -> dict[str, Any]:
    return {"name": "address", "type": record("shop.Address", {"name": "street", "type": "string"}, *fields)}


@dataclass(frozen=True)
class Case:
    """``old`` is registered; ``new`` is the candidate. ``backward``: new reads old's data; ``forward``: old reads
    new's data. ``field``: the field a refusal must name (``forward_field``, if given, when old reads new's data)."""

    name: str
    old: dict[str, Any]
    new: dict[str, Any]
    old_data: list[dict[str, Any]]
    new_data: list[dict[str, Any]]
    backward: bool
    forward: bool
    field: str = ""
    forward_field: str | None = None


def promotion(writer: str, reader: str, value: Any, back_value: Any, backward: bool, forward: bool) -> Case:
    return Case(
        f"{writer} -> {reader}",
        order({"name": "n", "type": writer}),
        order({"name": "n", "type": reader}),
        [{"id": "a", "n": value}],
        [{"id": "b", "n": back_value}],
        backward,
        forward,
        "n",
    )


CASES = [
    Case(
        "add a field with a default",
        order(),
        order({"name": "note", "type": "string", "default": ""}),
        [{"id": "a"}],
        [{"id": "b", "note": "x"}],
        backward=True,
        forward=True,
    ),
    Case(
        "add a field without a default",
        order(),
        order({"name": "note", "type": "string"}),
        [{"id": "a"}],
        [{"id": "b", "note": "x"}],
        backward=False,
        forward=True,
        field="note",
    ),
    Case(
        "remove a field with a default",
        order({"name": "note", "type": "string", "default": ""}),
        order(),
        [{"id": "a", "note": "x"}],
        [{"id": "b"}],
        backward=True,
        forward=True,
    ),
    Case(
        "remove a field without a default",
        order({"name": "note", "type": "string"}),
        order(),
        [{"id": "a", "note": "x"}],
        [{"id": "b"}],
        backward=True,
        forward=False,
        field="note",
    ),
    promotion("int", "long", 7, 2**40, backward=True, forward=False),
    promotion("long", "float", 2**40, 1.5, backward=True, forward=False),
    promotion("float", "double", 1.5, 0.1, backward=True, forward=False),
    promotion("int", "double", 7, 1.5, backward=True, forward=False),
    promotion("long", "int", 2**40, 7, backward=False, forward=True),
    promotion("double", "float", 0.1, 1.5, backward=False, forward=True),
    promotion("string", "bytes", "text", b"bytes", backward=True, forward=True),
    promotion("bytes", "string", b"bytes", "text", backward=True, forward=True),
    promotion("string", "int", "text", 7, backward=False, forward=False),
    Case(
        "add an enum symbol",
        order({"name": "status", "type": enum("NEW", "PAID")}),
        order({"name": "status", "type": enum("NEW", "PAID", "SHIPPED")}),
        [{"id": "a", "status": "PAID"}],
        [{"id": "b", "status": "SHIPPED"}],
        backward=True,
        forward=False,
        field="status",
    ),
    Case(
        "remove an enum symbol",
        order({"name": "status", "type": enum("NEW", "PAID", "SHIPPED")}),
        order({"name": "status", "type": enum("NEW", "PAID")}),
        [{"id": "a", "status": "SHIPPED"}],
        [{"id": "b", "status": "PAID"}],
        backward=False,
        forward=True,
        field="status",
    ),
    Case(
        "remove an enum symbol, with an enum default",
        order({"name": "status", "type": enum("NEW", "PAID", "SHIPPED", default="NEW")}),
        order({"name": "status", "type": enum("NEW", "PAID", default="NEW")}),
        [{"id": "a", "status": "SHIPPED"}],
        [{"id": "b", "status": "PAID"}],
        backward=True,
        forward=True,
    ),
    Case(
        "add a union branch",
        order({"name": "ref", "type": ["null", "string"], "default": None}),
        order({"name": "ref", "type": ["null", "string", "long"], "default": None}),
        [{"id": "a", "ref": "r-1"}, {"id": "c", "ref": None}],
        [{"id": "b", "ref": 42}],
        backward=True,
        forward=False,
        field="ref",
    ),
    Case(
        "remove a union branch",
        order({"name": "ref", "type": ["null", "string", "long"], "default": None}),
        order({"name": "ref", "type": ["null", "string"], "default": None}),
        [{"id": "a", "ref": 42}],
        [{"id": "b", "ref": "r-1"}],
        backward=False,
        forward=True,
        field="ref",
    ),
    Case(
        "make a field optional",
        order({"name": "ref", "type": "string"}),
        order({"name": "ref", "type": ["null", "string"], "default": None}),
        [{"id": "a", "ref": "r-1"}],
        [{"id": "b", "ref": None}],
        backward=True,
        forward=False,
        field="ref",
    ),
    Case(
        "make an optional field required",
        order({"name": "ref", "type": ["null", "string"], "default": None}),
        order({"name": "ref", "type": "string"}),
        [{"id": "a", "ref": None}],
        [{"id": "b", "ref": "r-1"}],
        backward=False,
        forward=True,
        field="ref",
    ),
    Case(
        "promote inside a union",
        order({"name": "n", "type": ["null", "int"], "default": None}),
        order({"name": "n", "type": ["null", "long"], "default": None}),
        [{"id": "a", "n": 7}],
        [{"id": "b", "n": 2**40}],
        backward=True,
        forward=False,
        field="n",
    ),
    Case(
        "add a nested field with a default",
        order(address()),
        order(address({"name": "zip", "type": "string", "default": ""})),
        [{"id": "a", "address": {"street": "Main St"}}],
        [{"id": "b", "address": {"street": "Main St", "zip": "1000"}}],
        backward=True,
        forward=True,
    ),
    Case(
        "add a nested field without a default",
        order(address()),
        order(address({"name": "zip", "type": "string"})),
        [{"id": "a", "address": {"street": "Main St"}}],
        [{"id": "b", "address": {"street": "Main St", "zip": "1000"}}],
        backward=False,
        forward=True,
        field="address.zip",
    ),
    Case(
        "change a nested field's type",
        order(address({"name": "number", "type": "int"})),
        order(address({"name": "number", "type": "string"})),
        [{"id": "a", "address": {"street": "Main St", "number": 5}}],
        [{"id": "b", "address": {"street": "Main St", "number": "5a"}}],
        backward=False,
        forward=False,
        field="address.number",
    ),
    Case(
        "promote the items of an array",
        order({"name": "qty", "type": {"type": "array", "items": "int"}}),
        order({"name": "qty", "type": {"type": "array", "items": "long"}}),
        [{"id": "a", "qty": [1, 2]}],
        [{"id": "b", "qty": [2**40]}],
        backward=True,
        forward=False,
        field="qty[]",
    ),
    Case(
        "change the values of a map",
        order({"name": "tags", "type": {"type": "map", "values": "string"}}),
        order({"name": "tags", "type": {"type": "map", "values": "int"}}),
        [{"id": "a", "tags": {"k": "v"}}],
        [{"id": "b", "tags": {"k": 1}}],
        backward=False,
        forward=False,
        field="tags{}",
    ),
    Case(
        "rename a field, with an alias",
        order({"name": "customer", "type": "string"}),
        order({"name": "customer_id", "type": "string", "aliases": ["customer"]}),
        [{"id": "a", "customer": "c-1"}],
        [{"id": "b", "customer_id": "c-2"}],
        backward=True,
        forward=False,
        field="customer",
    ),
    Case(
        "rename a field, without an alias",
        order({"name": "customer", "type": "string"}),
        order({"name": "customer_id", "type": "string"}),
        [{"id": "a", "customer": "c-1"}],
        [{"id": "b", "customer_id": "c-2"}],
        backward=False,
        forward=False,
        field="customer_id",
        forward_field="customer",
    ),
    Case(
        "rename the record, with an alias",
        order(),
        order(name="shop.PlacedOrder", aliases=["shop.Order"]),
        [{"id": "a"}],
        [{"id": "b"}],
        backward=True,
        forward=False,
    ),
    Case(
        "rename the record, without an alias",
        order(),
        order(name="shop.PlacedOrder"),
        [{"id": "a"}],
        [{"id": "b"}],
        backward=False,
        forward=False,
    ),
    Case(
        "resize a fixed",
        order({"name": "hash", "type": {"type": "fixed", "name": "shop.Hash", "size": 4}}),
        order({"name": "hash", "type": {"type": "fixed", "name": "shop.Hash", "size": 8}}),
        [{"id": "a", "hash": b"1234"}],
        [{"id": "b", "hash": b"12345678"}],
        backward=False,
        forward=False,
        field="hash",
    ),
]


def fastavro_reads(writer: dict[str, Any], reader: dict[str, Any], records: list[dict[str, Any]]) -> bool:
    """Whether fastavro reads every record written with ``writer`` using ``reader``, getting a value for each."""
    written, read = parse_schema(writer), parse_schema(reader)
    for datum in records:
        buffer = io.BytesIO()
        schemaless_writer(buffer, written, datum)
        buffer.seek(0)
        try:
            schemaless_reader(buffer, written, read)
        except Exception:  # fastavro signals a resolution failure with several exception types
            return False
    return True


@functools.cache
def truth(index: int) -> tuple[bool, bool]:
    case = CASES[index]
    return fastavro_reads(case.old, case.new, case.old_data), fastavro_reads(case.new, case.old, case.new_data)


CASE_IDS = [c.name for c in CASES]


@pytest.mark.parametrize("index", range(len(CASES)), ids=CASE_IDS)
def test_the_checker_agrees_with_fastavro_reading_the_data(index: int) -> None:
    case = CASES[index]
    backward, forward = truth(index)
    assert (backward, forward) == (case.backward, case.forward), "fastavro disagrees with the table"
    assert (not reader_problems(case.new, case.old)) is backward
    assert (not reader_problems(case.old, case.new)) is forward


def expected(mode: Compatibility, backward: bool, forward: bool) -> bool:
    return (not mode.backward or backward) and (not mode.forward or forward)


@pytest.mark.parametrize("mode", list(Compatibility), ids=[m.value for m in Compatibility])
@pytest.mark.parametrize("index", range(len(CASES)), ids=CASE_IDS)
def test_each_mode_accepts_or_refuses_naming_the_field_and_the_rule(index: int, mode: Compatibility) -> None:
    case = CASES[index]
    backward, forward = truth(index)
    violations = check(mode, case.new, [(1, case.old)])
    assert (not violations) is expected(mode, backward, forward)
    for violation in violations:
        field = case.forward_field if violation.direction == "forward" and case.forward_field else case.field
        assert violation.level is mode
        assert violation.path == field
        described = violation.describe()
        assert mode.value in described
        assert "version 1" in described
        if field:
            assert f"field {field!r}" in described
        rule = "the new schema must read" if violation.direction == "backward" else "version 1 must read"
        assert rule in described


# Three versions: the candidate agrees with the latest but not with the first. Plain modes look at the latest
# only; transitive ones at every version.
V1_FIRST = order({"name": "sku", "type": "string"}, {"name": "status", "type": enum("NEW", "PAID", "LOST")})
V2_LATEST = order({"name": "status", "type": enum("NEW", "PAID")})
V3_CANDIDATE = order({"name": "status", "type": enum("NEW", "PAID")}, {"name": "qty", "type": "int", "default": 1})
V1_DATA = [{"id": "a", "sku": "KB-01", "status": "LOST"}]
V3_DATA = [{"id": "c", "status": "PAID", "qty": 2}]


@pytest.mark.parametrize("mode", list(Compatibility), ids=[m.value for m in Compatibility])
def test_transitive_modes_check_every_earlier_version(mode: Compatibility) -> None:
    # What fastavro says about the candidate and the first version: neither reads the other's data.
    assert not fastavro_reads(V1_FIRST, V3_CANDIDATE, V1_DATA)
    assert not fastavro_reads(V3_CANDIDATE, V1_FIRST, V3_DATA)
    # ...while the candidate and the latest version read each other's.
    assert fastavro_reads(V2_LATEST, V3_CANDIDATE, [{"id": "b", "status": "NEW"}])
    assert fastavro_reads(V3_CANDIDATE, V2_LATEST, V3_DATA)
    violations = check(mode, V3_CANDIDATE, [(1, V1_FIRST), (2, V2_LATEST)])
    assert bool(violations) is (mode.transitive and mode is not Compatibility.NONE)
    assert {v.version for v in violations} <= {1}
    named = {v.path for v in violations}
    if mode.backward and mode.transitive:
        assert "status" in named  # the first version may write LOST
    if mode.forward and mode.transitive:
        assert "sku" in named  # the first version needs a sku the candidate does not write


def test_recursive_types_are_checked_without_looping() -> None:
    node = record(
        "shop.Node",
        {"name": "value", "type": "int"},
        {"name": "next", "type": ["null", "shop.Node"], "default": None},
    )
    promoted = record(
        "shop.Node",
        {"name": "value", "type": "long"},
        {"name": "next", "type": ["null", "shop.Node"], "default": None},
    )
    assert reader_problems(promoted, node) == []
    assert [p.path for p in reader_problems(node, promoted)] == ["value"]
    chain = {"value": 1, "next": {"value": 2, "next": None}}
    assert fastavro_reads(node, promoted, [chain])
