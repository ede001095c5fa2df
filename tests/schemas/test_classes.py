"""Typed event classes and their schemas: checked against each other when an app is declared, and generated from
schemas by `eventbus schema codegen`."""

from __future__ import annotations

import enum
import importlib.util
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import msgspec
import pytest

from eventbus import App, Event, Publisher, event_type
from eventbus.codecs import decode_record
from eventbus.codecs.avro import AvroDecoder
from eventbus.schemas import SchemaError, SchemaMismatchError, load_schemas
from eventbus.schemas.codegen import generate_module
from eventbus.schemas.embedded import embedded_registry_for
from eventbus.testing import TestBus
from processors import shop
from tests.conftest import PYTHON, REPO
from tests.schemas.conftest import record, write_schema

LINE = record("shop.Line", {"name": "sku", "type": "string"}, {"name": "quantity", "type": "int"})
PLACED = record(
    "shop.Placed",
    {"name": "order_id", "type": "string"},
    {"name": "lines", "type": {"type": "array", "items": LINE}},
    {"name": "note", "type": ["null", "string"], "default": None},
    {"name": "status", "type": {"type": "enum", "name": "shop.Status", "symbols": ["NEW", "PAID"]}},
    {"name": "currency", "type": "string", "default": "EUR"},
    **{"eventbus.type": "shop.placed"},
)


class Status(enum.StrEnum):
    NEW = "NEW"
    PAID = "PAID"


@dataclass
class Line:
    sku: str
    quantity: int


@event_type("shop.placed")
@dataclass
class Placed:
    order_id: str
    lines: list[Line]
    status: Status
    note: str | None = None


@pytest.fixture
def schema_dir(tmp_path: Path) -> Path:
    write_schema(tmp_path / "schemas", "placed.avsc", PLACED)
    return tmp_path / "schemas"


def test_a_matching_class_passes(schema_dir: Path) -> None:
    load_schemas(schema_dir).check_class(Placed)  # currency has a default: the class may leave it out


@dataclass
class BadLine:
    sku: str
    quantity: str


@event_type("shop.placed")
@dataclass
class Drifted:
    order_id: str
    lines: list[BadLine]
    status: Literal["NEW", "PAID", "LOST"]
    note: str
    coupon: str = ""


def test_a_drifted_class_is_refused_naming_each_field(schema_dir: Path) -> None:
    with pytest.raises(SchemaMismatchError) as refused:
        load_schemas(schema_dir).check_class(Drifted)
    message = str(refused.value)
    assert f"class {__name__}.Drifted does not match schema shop.Placed ({schema_dir / 'placed.avsc'})" in message
    assert "field 'lines[].quantity': the class has str, the schema has int" in message
    assert "field 'status': the class's values ['LOST', 'NEW', 'PAID'] differ" in message
    assert "field 'note': the schema's union allows null, which the class's str cannot hold" in message
    assert "field 'coupon': the class has it, the schema shop.Placed does not" in message


@event_type("shop.placed")
class PlacedStruct(msgspec.Struct):
    order_id: str
    lines: list[Line]
    status: Status


def test_msgspec_structs_are_checked_too(schema_dir: Path) -> None:
    load_schemas(schema_dir).check_class(PlacedStruct)  # note has a default in the schema: it may be left out
    required_note = [*PLACED["fields"][:2], {"name": "note", "type": "string"}, PLACED["fields"][3]]
    write_schema(schema_dir, "placed.avsc", {**PLACED, "fields": required_note})
    with pytest.raises(SchemaMismatchError, match="field 'note': the schema requires it"):
        load_schemas(schema_dir).check_class(PlacedStruct)


def test_the_app_checks_classes_when_a_processor_is_declared(schema_dir: Path) -> None:
    app = App("checks", schemas=schema_dir)

    @app.processor("orders")
    def fine(order: Placed) -> None: ...

    with pytest.raises(SchemaMismatchError, match=r"app 'checks', processor 'drifted' .*field 'lines\[\]\.quantity'"):

        @app.processor("orders", name="drifted")
        def drifted(order: Drifted) -> None: ...

    with pytest.raises(SchemaMismatchError, match=r"processor 'emits_drifted'.*Drifted"):

        @app.processor("payments", name="emits_drifted", to="invoices")
        def emits_drifted(event: Event) -> list[Drifted] | None: ...


def test_declaring_an_avro_topic_checks_processors_declared_before(
    schema_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(schema_dir.parent)  # the default schemas/ directory
    app = App("late")

    @app.processor("orders", name="drifted")
    def drifted(order: Drifted) -> None: ...

    with pytest.raises(SchemaMismatchError, match="processor 'drifted'"):
        app.topic("orders", codec="avro")


def test_the_shop_example_classes_match_the_project_schemas() -> None:
    schemas = load_schemas(REPO / "schemas")
    classes = [getattr(shop, name) for name in dir(shop) if isinstance(getattr(shop, name), type)]
    bound = [c for c in classes if hasattr(c, "__eventbus_event__")]
    assert len(bound) == 8
    for cls in bound:
        assert schemas.for_type(cls.__eventbus_event__.type) is not None, cls
        schemas.check_class(cls)


GENERATED = [
    PLACED,
    record(
        "shop.Settled",
        {"name": "order", "type": "shop.Placed"},
        {"name": "totals", "type": {"type": "map", "values": "double"}, "default": {}},
        {"name": "first", "type": "shop.Line", "default": {"sku": "none", "quantity": 0}},
        {"name": "method", "type": ["null", "string", "long"], "default": None},
        {"name": "digest", "type": {"type": "fixed", "name": "shop.Digest", "size": 4}},
        {"name": "status", "type": "shop.Status", "default": "NEW"},
        {"name": "paid_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "next", "type": ["null", "shop.Settled"], "default": None},
        **{"eventbus.type": "shop.settled", "eventbus.topic": "settlements", "doc": "An order, settled."},
    ),
]


def test_generated_classes_match_their_schemas_and_round_trip(tmp_path: Path) -> None:
    for number, schema in enumerate(GENERATED):
        write_schema(tmp_path / "schemas", f"{number}.avsc", schema)
    schemas = load_schemas(tmp_path / "schemas")
    source = generate_module(schemas, origin="schemas/")
    module_path = tmp_path / "generated_events.py"
    module_path.write_text(source)
    linted = subprocess.run(
        [PYTHON, "-m", "ruff", "check", "--no-cache", "--select", "E,F,W,I,UP", str(module_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert linted.returncode == 0, linted.stdout
    spec = importlib.util.spec_from_file_location("generated_events", module_path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["generated_events"] = module
    try:
        spec.loader.exec_module(module)
        for cls in (module.Placed, module.Settled):
            schemas.check_class(cls)
        assert module.Settled.__eventbus_event__.topic == "settlements"
        # A field with a default comes before one without: the generated class takes keywords only.
        placed = module.Placed(order_id="o-1", lines=[module.Line("KB-01", 2)], status=module.Status.PAID)
        settled = module.Settled(order=placed, digest=b"\x00\x01\x02\x03", paid_at=1_700_000_000_000)
        assert settled.first == module.Line("none", 0)
        app = App("generated", schemas=tmp_path / "schemas")
        app.topic("settlements", codec="avro")
        bus = TestBus()
        Publisher(bus.log, app=app).publish("settlements", settled)
        record_batch = bus.log.read("settlements", 0, 0, 1)
        decoder = AvroDecoder(embedded_registry_for(bus.log), schemas)
        event = Event.wrap(decode_record(record_batch.values[0], record_batch.headers[0], decoder))
        assert event.as_type(module.Settled) == settled
    finally:
        del sys.modules["generated_events"]


def test_codegen_refuses_a_field_python_cannot_name(tmp_path: Path) -> None:
    write_schema(tmp_path, "a.avsc", record("shop.A", {"name": "from", "type": "string"}))
    with pytest.raises(SchemaError, match=r"field 'from' of shop\.A is a Python keyword"):
        generate_module(load_schemas(tmp_path), origin="x")


@event_type("shop.unschematic")
@dataclass
class Unschematic:
    anything: list[int] = field(default_factory=list)


def test_a_class_whose_type_has_no_schema_is_not_checked(schema_dir: Path) -> None:
    load_schemas(schema_dir).check_class(Unschematic)
