"""`eventbus schema codegen` writes a module that compiles, lints and works whatever the schema's text: docs with
quotes, backslashes and control characters; fields named like the types and helpers the module uses (``str``,
``list``, ``field``); unions msgspec cannot tell apart (two records, a string and an enum). Each generated class
matches its schema and round-trips through an Avro topic."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from eventbus import App, Event, Publisher
from eventbus.codecs import decode_record
from eventbus.codecs.avro import AvroDecoder
from eventbus.schemas import load_schemas
from eventbus.schemas.embedded import embedded_registry_for
from eventbus.testing import TestBus
from tests.conftest import PYTHON, REPO
from tests.schemas.conftest import record, write_schema

DOC = 'Says "hi",\nends a path with C:\\temp\\ and has """three quotes""", a tab\there, a NUL \x00, and a "quote"'

LINE = record("shop.Line", {"name": "sku", "type": "string"})
REFUND = record("shop.Refund", {"name": "amount", "type": "double"})
STATUS = {"type": "enum", "name": "shop.Status", "symbols": ["NEW", "PAID"]}
PLACED = record(
    "shop.Placed",
    {"name": "str", "type": "string", "default": "a str"},
    {"name": "list", "type": {"type": "array", "items": "int"}, "default": []},
    {"name": "dict", "type": {"type": "map", "values": "string"}, "default": {}},
    {"name": "field", "type": {"type": "array", "items": "string"}, "default": ["x"]},
    {"name": "bytes", "type": "bytes", "default": "\u00ff"},
    {"name": "float", "type": "double", "default": 1.5},
    {"name": "note", "type": ["null", "string"], "default": None},
    {"name": "line", "type": ["null", LINE, REFUND], "default": None},
    {"name": "state", "type": ["string", STATUS], "default": "open"},
    {"name": "lines", "type": {"type": "array", "items": ["shop.Line", "shop.Refund"]}, "default": []},
    **{"eventbus.type": "shop.placed", "eventbus.topic": "orders"},
)


@contextmanager
def generated_from(tmp_path: Path, *schemas: dict[str, Any]) -> Iterator[tuple[ModuleType, Path]]:
    directory = tmp_path / "schemas"
    for number, schema in enumerate(schemas):
        write_schema(directory, f"{number}.avsc", schema)
    module_path = tmp_path / "generated_names.py"
    made = subprocess.run(
        [PYTHON, "-m", "eventbus", "schema", "codegen", str(directory), "-o", str(module_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    linted = subprocess.run(
        [PYTHON, "-m", "ruff", "check", "--no-cache", "--select", "E,F,W,I,UP", str(module_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert linted.returncode == 0, linted.stdout
    spec = importlib.util.spec_from_file_location("generated_names", module_path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["generated_names"] = module
    try:
        spec.loader.exec_module(module)
        yield module, directory
    finally:
        del sys.modules["generated_names"]


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[tuple[ModuleType, Path]]:
    with generated_from(tmp_path, PLACED) as found:
        yield found


def test_docs_of_any_text_are_kept(tmp_path: Path) -> None:
    line = record("shop.Line", {"name": "sku", "type": "string"}, doc="ends with a backslash \\")
    with generated_from(tmp_path, {**record("shop.Noted"), "doc": DOC}, line) as (module, _):
        assert module.Noted.__doc__ == DOC.replace("\n", "\n    ")  # continuation lines indented in the class
        assert module.Line.__doc__ == "ends with a backslash \\"


def test_fields_named_like_builtins_keep_their_types(generated: tuple[ModuleType, Path]) -> None:
    module, schemas = generated
    load_schemas(schemas).check_class(module.Placed)
    placed = module.Placed()
    assert (placed.str, placed.list, placed.dict, placed.field, placed.bytes, placed.float) == (
        "a str",
        [],
        {},
        ["x"],
        b"\xff",
        1.5,
    )


def round_trip(module: ModuleType, schemas: Path, instance: Any) -> tuple[dict[str, Any], Any]:
    app = App("generated", schemas=schemas)
    app.topic("orders", codec="avro")
    bus = TestBus()
    Publisher(bus.log, app=app).publish("orders", instance)
    batch = bus.log.read("orders", 0, 0, 1)
    decoder = AvroDecoder(embedded_registry_for(bus.log), load_schemas(schemas))
    event = Event.wrap(decode_record(batch.values[0], batch.headers[0], decoder))
    return event.data, event.as_type(module.Placed)


def test_unions_msgspec_cannot_tell_apart_carry_their_data(generated: tuple[ModuleType, Path]) -> None:
    module, schemas = generated
    placed = module.Placed(
        str="s",
        list=[1, 2],
        dict={"k": "v"},
        field=["f"],
        bytes=b"\x00\x01",
        float=2.5,
        note="n",
        line={"amount": 9.5},
        state="PAID",
        lines=[{"sku": "KB"}, {"amount": 1.0}],
    )
    data, back = round_trip(module, schemas, placed)
    assert data["line"] == {"amount": 9.5}
    assert data["lines"] == [{"sku": "KB"}, {"amount": 1.0}]
    assert back == placed
