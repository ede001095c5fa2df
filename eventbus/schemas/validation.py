"""Finding where an event's data does not fit its schema, to say so by path (``data.items[2].quantity``).

fastavro decides whether data can be written; when it refuses, its message names a field but not where the field
is (which item of which list). This walk runs only then, so the common case pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from eventbus.schemas.compatibility import PRIMITIVES, named_types


def misfit(data: Any, schema: Any, root: str = "data") -> str | None:
    """Where and why ``data`` does not fit ``schema`` (JSON form with full names), or None if it fits."""
    return _Walk(schema).locate(data, schema, root)


class _Walk:
    def __init__(self, schema: Any) -> None:
        self.names = dict(named_types(schema))

    def deref(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema not in PRIMITIVES:
            return self.names.get(schema, schema)
        if isinstance(schema, dict) and not isinstance(schema.get("type"), str):
            return self.deref(schema["type"])
        return schema

    def fits(self, value: Any, schema: Any) -> bool:
        return self.locate(value, schema, "") is None

    def locate(self, value: Any, schema: Any, path: str) -> str | None:
        schema = self.deref(schema)
        if isinstance(schema, list):
            return self._locate_in_union(value, schema, path)
        kind = schema["type"] if isinstance(schema, dict) else schema
        if kind in ("record", "error"):
            return self._locate_in_record(value, schema, path)
        if kind == "array":
            return self._locate_in_array(value, schema, path)
        if kind == "map":
            return self._locate_in_map(value, schema, path)
        return None if _scalar_fits(value, kind, schema) else _expected(path, _name(schema), value)

    def _locate_in_array(self, value: Any, schema: dict[str, Any], path: str) -> str | None:
        if not isinstance(value, list | tuple):
            return _expected(path, "an array", value)
        for index, item in enumerate(value):
            found = self.locate(item, schema["items"], f"{path}[{index}]")
            if found:
                return found
        return None

    def _locate_in_map(self, value: Any, schema: dict[str, Any], path: str) -> str | None:
        if not isinstance(value, Mapping):
            return _expected(path, "a map", value)
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}: map keys must be strings, got {key!r}"
            found = self.locate(item, schema["values"], f"{path}[{key!r}]")
            if found:
                return found
        return None

    def _locate_in_union(self, value: Any, branches: list[Any], path: str) -> str | None:
        if any(self.fits(value, branch) for branch in branches):
            return None
        records = [b for b in map(self.deref, branches) if isinstance(b, dict) and b.get("type") == "record"]
        if isinstance(value, Mapping) and len(records) == 1:
            return self.locate(value, records[0], path)  # the record branch it was meant for: say what is wrong in it
        return _expected(path, "one of " + ", ".join(_name(self.deref(b)) for b in branches), value)

    def _locate_in_record(self, value: Any, schema: dict[str, Any], path: str) -> str | None:
        if not isinstance(value, Mapping):
            return _expected(path, f"a record {schema['name']}", value)
        fields = schema.get("fields", [])
        known = {f["name"] for f in fields}
        for key in value:
            if key not in known:
                return f"{path}.{key}: not a field of record {schema['name']}"
        for field in fields:
            name = field["name"]
            if name not in value:
                if "default" not in field:
                    return f"{path}.{name}: missing (record {schema['name']} requires it and has no default)"
                continue
            found = self.locate(value[name], field["type"], f"{path}.{name}")
            if found:
                return found
        return None


def _is_int(value: Any, bits: int) -> bool:
    limit = 1 << (bits - 1)
    return isinstance(value, int) and not isinstance(value, bool) and -limit <= value < limit


_SCALARS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "null": lambda value, _: value is None,
    "boolean": lambda value, _: isinstance(value, bool),
    "int": lambda value, _: _is_int(value, 32),
    "long": lambda value, _: _is_int(value, 64),
    "float": lambda value, _: isinstance(value, int | float) and not isinstance(value, bool),
    "double": lambda value, _: isinstance(value, int | float) and not isinstance(value, bool),
    "string": lambda value, _: isinstance(value, str),
    "bytes": lambda value, _: isinstance(value, bytes | bytearray | memoryview),
    "fixed": lambda value, schema: isinstance(value, bytes | bytearray) and len(value) == schema.get("size"),
    "enum": lambda value, schema: isinstance(value, str) and value in schema.get("symbols", ()),
}


def _scalar_fits(value: Any, kind: str, schema: Any) -> bool:
    check = _SCALARS.get(kind)
    return check is not None and check(value, schema)


def _name(schema: Any) -> str:
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            extra = f" of {', '.join(schema.get('symbols', ()))}" if kind == "enum" else ""
            return f"{kind} {schema.get('name')}{extra}"
        return str(kind)
    return str(schema)


def _expected(path: str, expected: str, value: Any) -> str:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{path}: expected {expected}, got {type(value).__name__} {shown}"
