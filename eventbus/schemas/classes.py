"""Checking a typed event class (a dataclass or ``msgspec.Struct`` bound with ``@event_type``) against the schema of
its type, so a class and its schema cannot drift apart unnoticed: the check runs when the app's module is imported.

A class matches when every instance can be written with the schema and every record the schema describes can be
read into the class: the same field names (a schema field the class lacks needs a default; a class field the schema
lacks would be dropped), and field by field a Python type that holds what the Avro type holds (``int`` for
``int``/``long``, ``float`` for ``float``/``double``, ``str``, ``bytes``, ``bool``, ``list`` for arrays, ``dict[str,
...]`` for maps, a nested class for a record, an ``Enum`` or ``Literal`` of the symbols for an enum, ``X | None`` for
a union with ``null``). msgspec describes the class; this module compares.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import msgspec.inspect as mi

from eventbus.event import binding_of
from eventbus.schemas.compatibility import PRIMITIVES, named_types
from eventbus.schemas.errors import SchemaMismatchError

if TYPE_CHECKING:
    from eventbus.schemas.loader import SchemaSet

_SCALARS: dict[str, tuple[type[mi.Type], ...]] = {
    "null": (mi.NoneType,),
    "boolean": (mi.BoolType,),
    "int": (mi.IntType,),
    "long": (mi.IntType,),
    "float": (mi.FloatType,),
    "double": (mi.FloatType,),
    "string": (mi.StrType,),
    "bytes": (mi.BytesType, mi.ByteArrayType),
    "fixed": (mi.BytesType, mi.ByteArrayType),
}
_SEQUENCES = (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)
_RECORDS = (mi.DataclassType, mi.StructType)


def check_class(cls: type, schemas: SchemaSet) -> None:
    """Raise `SchemaMismatchError` naming the fields where ``cls`` and the schema of its event type disagree."""
    binding = binding_of(cls)
    if binding is None:
        raise SchemaMismatchError(f"{cls.__qualname__} is not bound to an event type (decorate it with @event_type)")
    schema = schemas.for_type(binding.type)
    if schema is None:
        return
    problems = class_problems(cls, schema.schema)
    if problems:
        raise SchemaMismatchError(
            f"class {cls.__module__}.{cls.__qualname__} does not match {schema.where}, the schema of "
            f"{binding.type!r}: " + "; ".join(problems)
        )


def class_problems(cls: type, schema: Any) -> list[str]:
    """Where ``cls`` and ``schema`` (JSON form with full names) disagree, one line per field."""
    return list(_Comparison(schema).compare(mi.type_info(cls), schema, ""))


class _Comparison:
    def __init__(self, schema: Any) -> None:
        self.names = dict(named_types(schema))
        # Pairs of class and record being compared, so recursive types end.
        self.visiting: set[tuple[type, str]] = set()

    def compare(self, info: mi.Type, schema: Any, path: str) -> Iterator[str]:
        schema = self._deref(schema)
        if isinstance(info, mi.AnyType):
            return
        if isinstance(schema, list):
            yield from self._compare_union(info, schema, path)
            return
        kind = schema["type"] if isinstance(schema, dict) else schema
        if isinstance(info, mi.UnionType) and mi.NoneType() in info.types and kind != "null":
            yield f"{_where(path)}: the class allows None, the schema's {_avro(schema)} does not"
            return
        if kind in ("record", "error"):
            yield from self._compare_record(info, schema, path)
        elif kind == "enum":
            yield from _compare_enum(info, schema, path)
        elif kind == "array" and isinstance(info, _SEQUENCES):
            yield from self.compare(info.item_type, schema["items"], f"{path}[]")
        elif kind == "map" and isinstance(info, mi.DictType) and isinstance(info.key_type, mi.StrType | mi.AnyType):
            yield from self.compare(info.value_type, schema["values"], f"{path}{{}}")
        elif kind not in _SCALARS or not isinstance(info, _SCALARS[kind]):
            yield f"{_where(path)}: the class has {_python(info)}, the schema has {_avro(schema)}"

    def _deref(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema not in PRIMITIVES:
            return self.names.get(schema, schema)
        if isinstance(schema, dict) and not isinstance(schema.get("type"), str):
            return self._deref(schema["type"])
        return schema

    def _fits(self, info: mi.Type, schema: Any, path: str) -> bool:
        # Exhausted, not any(): an abandoned comparison would leave its record pair marked as visiting.
        return not list(self.compare(info, schema, path))

    def _compare_union(self, info: mi.Type, branches: list[Any], path: str) -> Iterator[str]:
        members = info.types if isinstance(info, mi.UnionType) else (info,)
        unread = [b for b in branches if not any(self._fits(m, b, path) for m in members)]
        if unread:
            avro = ", ".join(_avro(self._deref(b)) for b in unread)
            yield f"{_where(path)}: the schema's union allows {avro}, which the class's {_python(info)} cannot hold"
        for member in members:
            if not any(self._fits(member, b, path) for b in branches):
                yield f"{_where(path)}: the class allows {_python(member)}, which the schema's union does not"

    def _compare_record(self, info: mi.Type, schema: dict[str, Any], path: str) -> Iterator[str]:
        if not isinstance(info, _RECORDS):
            yield f"{_where(path)}: the class has {_python(info)}, the schema has record {schema['name']}"
            return
        pair = (info.cls, schema["name"])
        if pair in self.visiting:
            return
        self.visiting.add(pair)
        fields = {f.encode_name: f for f in info.fields}
        for field in schema.get("fields", []):
            at = f"{path}.{field['name']}" if path else field["name"]
            found = fields.pop(field["name"], None)
            if found is not None:
                yield from self.compare(found.type, field["type"], at)
            elif "default" not in field:
                yield f"{_where(at)}: the schema requires it (no default), the class {info.cls.__qualname__} lacks it"
        for name in fields:
            at = f"{path}.{name}" if path else name
            yield f"{_where(at)}: the class has it, the schema {schema['name']} does not (it would be lost)"
        self.visiting.discard(pair)


def _compare_enum(info: mi.Type, schema: dict[str, Any], path: str) -> Iterator[str]:
    symbols = set(schema.get("symbols", ()))
    if isinstance(info, mi.EnumType):
        values = {member.value for member in info.cls}
    elif isinstance(info, mi.LiteralType):
        values = set(info.values)
    elif isinstance(info, mi.StrType):
        return
    else:
        yield f"{_where(path)}: the class has {_python(info)}, the schema has enum {schema['name']}"
        return
    if values != symbols:
        yield (
            f"{_where(path)}: the class's values {sorted(map(str, values))} differ from the symbols "
            f"{sorted(symbols)} of enum {schema['name']}"
        )


def _where(path: str) -> str:
    return f"field {path!r}" if path else "the record"


def _avro(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            return f"{kind} {schema.get('name')}"
        return str(kind)
    return str(schema)


def _python(info: mi.Type) -> str:
    if isinstance(info, mi.UnionType):
        return " | ".join(_python(t) for t in info.types)
    if isinstance(info, (*_RECORDS, mi.EnumType)):
        return info.cls.__qualname__
    if isinstance(info, _SEQUENCES):
        return f"list[{_python(info.item_type)}]"
    if isinstance(info, mi.DictType):
        return f"dict[{_python(info.key_type)}, {_python(info.value_type)}]"
    simple = {mi.NoneType: "None", mi.BoolType: "bool", mi.IntType: "int", mi.FloatType: "float", mi.StrType: "str"}
    return simple.get(type(info), type(info).__name__.removesuffix("Type").lower())
