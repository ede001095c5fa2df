"""Generating typed event classes from schemas (``eventbus schema codegen``), so nobody writes both.

Each event schema becomes a dataclass bound with ``@event_type`` to its CloudEvents type (and to its
``"eventbus.topic"``, if it names one); named types it uses become plain dataclasses and ``StrEnum``s, defined
before their first use. Fields keep the schema's order; when a field with a default comes before one without, the
class takes keyword arguments only. The classes pass `eventbus.schemas.classes.check_class` by construction.
"""

from __future__ import annotations

import json
import keyword
from collections.abc import Iterable
from typing import Any, Final

from eventbus.schemas.compatibility import PRIMITIVES, named_types
from eventbus.schemas.errors import SchemaError
from eventbus.schemas.loader import EventSchema

_PYTHON_TYPES: Final = {
    "null": "None",
    "boolean": "bool",
    "int": "int",
    "long": "int",
    "float": "float",
    "double": "float",
    "bytes": "bytes",
    "string": "str",
}


def generate_module(schemas: Iterable[EventSchema], *, origin: str) -> str:
    """The source of a module defining a class for every event schema (and the named types they use)."""
    events = sorted(schemas, key=lambda s: s.name)
    writer = _Writer({s.name: s for s in events})
    for schema in events:
        writer.define(schema.schema, schema.path.name)
    imports = ["from dataclasses import dataclass" + (", field" if writer.uses_field else "")]
    if writer.uses_enum:
        imports.append("from enum import StrEnum")
    if writer.uses_msgspec:
        imports += ["", "import msgspec"]
    header = [
        f'"""Event classes generated from the Avro schemas in {origin} by `eventbus schema codegen`.',
        "",
        "Generated code: change the schemas and generate it again rather than editing it.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        *imports,
        "",
        "from eventbus import event_type",
    ]
    return "\n\n\n".join(["\n".join(header), *writer.blocks]) + "\n"


class _Writer:
    def __init__(self, events: dict[str, EventSchema]) -> None:
        self.events = events
        self.blocks: list[str] = []
        self.class_names: dict[str, str] = {}
        self.uses_field = self.uses_enum = self.uses_msgspec = False
        self.names: dict[str, dict[str, Any]] = {}
        self.defined: set[str] = set()

    def define(self, schema: dict[str, Any], file_name: str) -> None:
        self.names.update(named_types(schema))
        self._name_classes()
        self._define(schema, file_name)

    def _name_classes(self) -> None:
        simple: dict[str, list[str]] = {}
        for full in self.names:
            simple.setdefault(full.rpartition(".")[2], []).append(full)
        for short, fulls in simple.items():
            for full in fulls:
                if full not in self.class_names:
                    # Two types with one simple name (in different namespaces) are told apart by their namespace.
                    self.class_names[full] = short if len(fulls) == 1 else _camel(full)

    def _define(self, schema: Any, file_name: str) -> None:
        schema = self._deref(schema)
        if isinstance(schema, list):
            for branch in schema:
                self._define(branch, file_name)
            return
        if not isinstance(schema, dict):
            return
        kind = schema.get("type")
        if kind in ("array", "map"):
            self._define(schema["items" if kind == "array" else "values"], file_name)
        elif kind in ("record", "error", "enum") and schema["name"] not in self.defined:
            # Claimed before its fields are visited: a recursive type refers to itself. The block is added after the
            # blocks of the types its fields use, so each class comes after what it uses.
            self.defined.add(schema["name"])
            if kind == "enum":
                self.blocks.append(self._enum(schema))
                return
            for entry in schema.get("fields", []):
                self._define(entry["type"], file_name)
            self.blocks.append(self._record(schema, file_name))
        elif isinstance(kind, dict | list):
            self._define(kind, file_name)

    def _deref(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema not in PRIMITIVES:
            return self.names.get(schema, schema)
        return schema

    def _enum(self, schema: dict[str, Any]) -> str:
        self.uses_enum = True
        lines = [f"class {self.class_names[schema['name']]}(StrEnum):"]
        lines += _doc(schema)
        lines += [f"    {_identifier(s, schema['name'])} = {_literal(s)}" for s in schema.get("symbols", [])]
        return "\n".join(lines)

    def _record(self, schema: dict[str, Any], file_name: str) -> str:
        name = schema["name"]
        fields = schema.get("fields", [])
        defaulted = ["default" in f for f in fields]
        keyword_only = any(d and not later for i, d in enumerate(defaulted) for later in defaulted[i + 1 :])
        lines = []
        event = self.events.get(name)
        if event is not None:
            topic = f", topic={_literal(event.topic)}" if event.topic else ""
            lines.append(f"@event_type({_literal(event.type)}{topic})")
        lines.append("@dataclass(kw_only=True)" if keyword_only else "@dataclass")
        lines.append(f"class {self.class_names[name]}:")
        lines += _doc(schema, f"Schema {name}" + (f" ({file_name})." if event is not None else "."))
        for entry in fields:
            field_name = entry["name"]
            if keyword.iskeyword(field_name) or keyword.issoftkeyword(field_name):
                raise SchemaError(f"{file_name}: field {field_name!r} of {name} is a Python keyword; rename it")
            annotation = self._annotation(entry["type"])
            default = "" if "default" not in entry else f" = {self._default(entry['default'], entry['type'])}"
            lines.append(f"    {field_name}: {annotation}{default}")
        if not fields:
            lines.append("    pass")
        return "\n".join(lines)

    def _annotation(self, schema: Any) -> str:
        schema = self._deref(schema)
        if isinstance(schema, list):
            parts = [self._annotation(b) for b in schema]
            return " | ".join([p for p in parts if p != "None"] + [p for p in parts if p == "None"])
        kind = schema.get("type") if isinstance(schema, dict) else schema
        if isinstance(kind, dict | list):
            return self._annotation(kind)
        if kind in ("array", "map"):
            inner = self._annotation(schema["items" if kind == "array" else "values"])
            return f"list[{inner}]" if kind == "array" else f"dict[str, {inner}]"
        if kind in ("record", "error", "enum"):
            return self.class_names[schema["name"]]
        return "bytes" if kind == "fixed" else _PYTHON_TYPES.get(str(kind), "object")

    def _default(self, value: Any, schema: Any) -> str:
        schema = self._deref(schema)
        if isinstance(schema, list):
            schema = self._deref(schema[0])  # Avro: a union's default belongs to its first branch
        kind = schema.get("type") if isinstance(schema, dict) else schema
        if kind == "enum":
            return f"{self.class_names[schema['name']]}.{_identifier(value, schema['name'])}"
        if kind in ("record", "error"):
            self.uses_field = self.uses_msgspec = True
            convert = f"msgspec.convert({_literal(value)}, {self.class_names[schema['name']]})"
            return f"field(default_factory=lambda: {convert})"
        if isinstance(value, list | dict):
            self.uses_field = True
            return f"field(default_factory=lambda: {_literal(value)})"
        if kind in ("bytes", "fixed") and isinstance(value, str):
            return repr(value.encode("latin-1"))  # Avro writes bytes defaults as text, one code point per byte
        return _literal(value)


def _literal(value: Any) -> str:
    """Python source for a JSON value, quoted as the formatter quotes it."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _doc(schema: dict[str, Any], fallback: str | None = None) -> list[str]:
    text = schema.get("doc") or fallback
    if not text:
        return []
    return [f'    """{str(text).strip()}"""', ""]


def _identifier(symbol: str, enum_name: str) -> str:
    if keyword.iskeyword(symbol):
        return f"{symbol}_"
    if not symbol.isidentifier():
        raise SchemaError(f"enum {enum_name}: symbol {symbol!r} is not a valid name")
    return symbol


def _camel(full_name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in full_name.split("."))
