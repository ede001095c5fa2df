"""Property: for random records of random schemas, encoding an event with the Avro codec and decoding the record
gives back the same event (the data, and every attribute)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from eventbus.codecs import decode_record
from eventbus.codecs.avro import AVRO_CONTENT_TYPE, AvroDecoder, AvroEncoder
from eventbus.schemas import Compatibility, Schemas, SchemaSet, open_registry
from eventbus.schemas.loader import event_schema

_registries = itertools.count()

Schema = Any
Drawn = tuple[Schema, st.SearchStrategy[Any]]

NAME = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    # Values a 32-bit float holds exactly, so they survive the trip unchanged (NaN is not equal to itself).
    "float": st.floats(width=32, allow_nan=False),
    "double": st.floats(allow_nan=False),
    "string": st.text(max_size=20),
    "bytes": st.binary(max_size=20),
}
# Union branches of different kinds, so the writer's choice of branch cannot change a value (a long written
# into a double branch would lose digits): at most one number type, no float or map, not both array and bytes.
UNION_KINDS = ["null", "boolean", "long", "double", "string", "bytes", "record", "array", "enum"]


def fresh(prefix: str, names: Callable[[], int]) -> str:
    return f"prop.{prefix}{names()}"


SYMBOL = st.from_regex(r"[A-Z][A-Z0-9_]{0,4}", fullmatch=True)


@st.composite
def schemas(draw: st.DrawFn, depth: int, names: Callable[[], int], kind: str | None = None) -> Drawn:
    """An Avro schema and a strategy for values it holds."""
    choices = ["record", "enum", "fixed", "array", "map", "union", *SCALARS] if depth > 0 else [*SCALARS, "enum"]
    kind = kind or draw(st.sampled_from(choices))
    if kind in SCALARS:
        return kind, SCALARS[kind]
    if kind in ("enum", "fixed"):
        return draw(named(kind, names))
    if kind in ("array", "map"):
        inner, values = draw(schemas(depth - 1, names))
        if kind == "array":
            return {"type": "array", "items": inner}, st.lists(values, max_size=4)
        return {"type": "map", "values": inner}, st.dictionaries(st.text(max_size=5), values, max_size=4)
    if kind == "union":
        kinds = draw(st.lists(st.sampled_from(UNION_KINDS), min_size=1, max_size=4, unique=True))
        if "long" in kinds and "double" in kinds:
            kinds.remove("double")
        if "array" in kinds and "bytes" in kinds:
            kinds.remove("bytes")  # fastavro takes bytes for a sequence: b"" fits an array branch first
        branches = [draw(schemas(max(depth - 1, 1), names, k)) for k in kinds]
        return [b[0] for b in branches], st.one_of([b[1] for b in branches])
    field_names = draw(st.lists(NAME, max_size=5, unique=True))
    fields = {name: draw(schemas(depth - 1, names)) for name in field_names}
    schema = {
        "type": "record",
        "name": fresh("R", names),
        "fields": [{"name": n, "type": f[0]} for n, f in fields.items()],
    }
    return schema, st.fixed_dictionaries({n: f[1] for n, f in fields.items()})


@st.composite
def named(draw: st.DrawFn, kind: str, names: Callable[[], int]) -> Drawn:
    """An enum or a fixed, with a strategy for its values."""
    if kind == "enum":
        symbols = draw(st.lists(SYMBOL, min_size=1, max_size=5, unique=True))
        return {"type": "enum", "name": fresh("E", names), "symbols": symbols}, st.sampled_from(symbols)
    size = draw(st.integers(0, 8))
    return {"type": "fixed", "name": fresh("F", names), "size": size}, st.binary(min_size=size, max_size=size)


@st.composite
def events(draw: st.DrawFn) -> tuple[Schema, list[Any]]:
    counter = itertools.count()
    schema, values = draw(schemas(3, lambda: next(counter), "record"))
    return schema, draw(st.lists(values, min_size=1, max_size=5))


def same(left: Any, right: Any) -> bool:
    """Equal, with -0.0 and 0.0 told apart where they came from a float (the codec keeps the sign)."""
    if isinstance(left, float) and isinstance(right, float):
        return left == right and math.copysign(1, left) == math.copysign(1, right)
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    return bool(left == right)


@settings(max_examples=150, deadline=None)
@given(events())
def test_encode_then_decode_is_the_identity(drawn: tuple[Schema, list[Any]]) -> None:
    schema, values = drawn
    registry = open_registry(f"memory://property-{next(_registries)}")
    registry.set_compatibility(Compatibility.NONE)
    loaded = event_schema({**schema, "eventbus.type": "prop.happened"})
    encoder = AvroEncoder("things", SchemaSet([loaded]), registry, Schemas())
    decoders = [AvroDecoder(registry, SchemaSet([loaded])), AvroDecoder(registry)]
    for number, value in enumerate(values):
        attrs = {
            "specversion": "1.0",
            "id": f"e-{number}",
            "source": "/property",
            "type": "prop.happened",
            "partitionkey": "k",
            "data": value,
        }
        message = encoder(dict(attrs))
        assert message.value is not None
        assert message.value[0] == 0, "the Confluent magic byte"
        for decoder in decoders:
            decoded = decode_record(message.value, message.headers, decoder)
            assert same(decoded.pop("data"), value)
            assert decoded.pop("datacontenttype") == AVRO_CONTENT_TYPE
            assert decoded.pop("dataschema").startswith(registry.url)
            assert decoded == {k: v for k, v in attrs.items() if k != "data"}
