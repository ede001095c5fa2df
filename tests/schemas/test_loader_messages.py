"""Schema files Avro refuses (unions breaking the specification's rules, an array or map without its item type) are
refused when loaded, and every refusal names the file and the field to edit; `eventbus schema check` exits 2."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from eventbus.schemas import SchemaError, load_schemas
from tests.conftest import PYTHON
from tests.schemas.conftest import record, write_schema

LINE = {"type": "record", "name": "Line", "fields": [{"name": "sku", "type": "string"}]}


def placed(field_type: Any) -> dict[str, Any]:
    return {
        **record("Placed", {"name": "id", "type": "string"}, {"name": "x", "type": field_type}),
        "namespace": "shop",
    }


@pytest.mark.parametrize(
    ("field_type", "problem"),
    [
        (["null", "string", "null"], "field 'x' of 'shop.Placed': a union may hold type 'null' only once"),
        (["string", {"type": "string", "logicalType": "uuid"}], "a union may hold type 'string' only once"),
        ([{"type": "array", "items": "int"}, {"type": "array", "items": "long"}], "may hold type 'array' only once"),
        (
            ["null", LINE, "shop.Line"],
            "field 'x' of 'shop.Placed': a union may hold the named type 'shop.Line' only once",
        ),
        (["int", ["null", "string"]], "field 'x' of 'shop.Placed': a union may not contain another union directly"),
        (["int", {"type": ["null", "string"]}], "field 'x' of 'shop.Placed': a union is written as a JSON list"),
        ({"type": ["null", "string"]}, "field 'x' of 'shop.Placed': a union is written as a JSON list itself"),
        ({"type": "array"}, "field 'x' of 'shop.Placed': an array needs \"items\""),
        ({"type": "map", "values": {"type": "map"}}, "field 'x' of 'shop.Placed': a map needs \"values\""),
        ("Lien", "field 'x' of 'shop.Placed': unknown type 'shop.Lien'"),
        (
            {"type": "array", "items": {**LINE, "fields": [{"name": "n", "type": ["null", "Missing"]}]}},
            "field 'n' of 'shop.Line': unknown type 'shop.Missing'",
        ),
    ],
)
def test_a_bad_field_is_refused_naming_the_file_and_the_field(tmp_path: Path, field_type: Any, problem: str) -> None:
    path = write_schema(tmp_path, "placed.avsc", placed(field_type))
    with pytest.raises(SchemaError) as refused:
        load_schemas(tmp_path)
    assert str(refused.value).startswith(f"{path}: ")
    assert problem in str(refused.value)


def test_unions_of_distinct_types_still_load(tmp_path: Path) -> None:
    other = {**LINE, "name": "Line", "namespace": "other"}
    union = ["null", "string", "long", LINE, other, {"type": "array", "items": "int"}, {"type": "map", "values": "int"}]
    write_schema(tmp_path, "placed.avsc", placed(union))
    (schema,) = list(load_schemas(tmp_path))
    assert [b if isinstance(b, str) else b["type"] for b in schema.schema["fields"][1]["type"]][:3] == [
        "null",
        "string",
        "long",
    ]


def test_check_exits_2_naming_the_file_and_the_field(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    write_schema(tmp_path / "schemas", "placed.avsc", placed(["null", "null"]))
    checked = subprocess.run(
        [PYTHON, "-m", "eventbus", "schema", "check"],
        cwd=tmp_path,
        env=subprocess_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 2, checked.stderr
    assert "schemas/placed.avsc: field 'x' of 'shop.Placed': a union may hold type 'null' only once" in checked.stderr
    assert "Traceback" not in checked.stderr
