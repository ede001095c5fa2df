"""Loading ``.avsc`` files: each top-level record of a file is the schema of one CloudEvents ``type``.

Binding: a record's ``"eventbus.type"`` property names its CloudEvents type; without one, the record's full name is
the type (``{"name": "OrderPlaced", "namespace": "shop"}`` binds ``shop.OrderPlaced``). An optional
``"eventbus.topic"`` property names the topic its events go to (used by code generation and by the topic subject
strategies of the CLI).

A schema may use a named type (record, enum, fixed) defined in any ``.avsc`` file of the same directories, at the
top level or nested, by its full name. fastavro resolves the reference and inlines the definition, so every loaded
schema is self-contained: what is registered is exactly what the codec writes with.

Files are read and parsed once, when an app first needs them (or at import, when it names its directories).
Importing this module imports fastavro: only code that uses schemas does.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
from fastavro import parse_schema
from fastavro.repository.base import AbstractSchemaRepository, SchemaRepositoryError
from fastavro.schema import UnknownType, load_schema

from eventbus.schemas.compatibility import PRIMITIVES
from eventbus.schemas.errors import SchemaError
from eventbus.schemas.settings import DEFAULT_DIRECTORY, Schemas

TYPE_PROPERTY: Final = "eventbus.type"
TOPIC_PROPERTY: Final = "eventbus.topic"
NAMED_TYPES: Final = frozenset({"record", "error", "enum", "fixed"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True, slots=True, eq=False)
class EventSchema:
    """The schema of one event type, loaded from ``path``.

    ``schema`` is the self-contained schema as JSON data (names fully qualified, referenced types inlined) and
    ``text`` its JSON text, the form that is registered. ``parsed`` is what fastavro reads and writes with.
    """

    type: str
    name: str
    path: Path
    schema: dict[str, Any]
    text: str
    topic: str | None
    parsed: Any = field(repr=False)

    @property
    def where(self) -> str:
        return f"schema {self.name} ({self.path})"


class SchemaSet:
    """The event schemas of an app, by CloudEvents type."""

    def __init__(self, schemas: Iterable[EventSchema], directories: Sequence[Path] = ()) -> None:
        self.directories = tuple(directories)
        self._by_type: dict[str, EventSchema] = {}
        for schema in schemas:
            other = self._by_type.get(schema.type)
            if other is not None:
                raise SchemaError(
                    f"{schema.path}: event type {schema.type!r} already has a schema, in {other.path}; "
                    f"give one of them another {TYPE_PROPERTY!r}"
                )
            self._by_type[schema.type] = schema

    def for_type(self, event_type: str) -> EventSchema | None:
        return self._by_type.get(event_type)

    def __iter__(self) -> Iterator[EventSchema]:
        return iter(self._by_type.values())

    def __len__(self) -> int:
        return len(self._by_type)

    def __repr__(self) -> str:
        return f"SchemaSet({sorted(self._by_type)})"

    def check_class(self, cls: type) -> None:
        """Check a class bound with ``@event_type`` against the schema of its type (if it has one)."""
        from eventbus.schemas.classes import check_class

        check_class(cls, self)


def load_schemas(source: Schemas | Sequence[str | Path] | str | Path) -> SchemaSet:
    """Load every ``.avsc`` file of the directories (recursively); errors name the file and the problem."""
    if isinstance(source, Schemas):
        directories = source.paths
    elif isinstance(source, str | Path):
        directories = (Path(source),)
    else:
        directories = tuple(Path(d) for d in source)
    documents: list[tuple[Path, Any]] = []
    for directory in directories:
        if not directory.is_dir():
            if directory == Path(DEFAULT_DIRECTORY) and not directory.exists():
                continue
            raise SchemaError(f"schema directory {directory} does not exist (or is not a directory)")
        documents.extend((path, _read_json(path)) for path in sorted(directory.rglob("*.avsc")))
    definitions = _index_definitions(documents)
    for path, document in documents:
        if not _is_record(document):
            _resolve(path, full_name(document["name"], document.get("namespace")), definitions)  # checks it
    events = (_load_event_schema(path, document, definitions) for path, document in documents if _is_record(document))
    return SchemaSet(events, directories)


def event_schema(schema: dict[str, Any], where: str = "<in code>") -> EventSchema:
    """The event schema of a record given as JSON data rather than a file (``where`` names it in messages)."""
    if not _is_record(schema):
        raise SchemaError(f"{where}: an event's schema must be a record, got {_describe(schema)}")
    path = Path(where)
    return _load_event_schema(path, schema, _index_definitions([(path, schema)]))


def _read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise SchemaError(f"{path}: not valid JSON: {exc}") from None
    except OSError as exc:
        raise SchemaError(f"{path}: cannot read it: {exc.strerror}") from None


def _is_record(document: Any) -> bool:
    return isinstance(document, dict) and document.get("type") in ("record", "error")


def full_name(name: str, namespace: str | None) -> str:
    """A named type's full name by the Avro rules: a dotted name is already full; else the namespace prefixes it."""
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _index_definitions(documents: Sequence[tuple[Path, Any]]) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Every named type defined in the files, by full name, with its name made full (so it can stand alone)."""
    found: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path, document in documents:
        if not isinstance(document, dict) or not _is_named(document.get("type")):
            raise SchemaError(
                f"{path}: the top level of a schema file must be a record (an event's schema), an enum or a fixed, "
                f"got {_describe(document)}"
            )
        for name, definition in _definitions(document, None, path):
            earlier = found.get(name)
            if earlier is not None and earlier[0] != path:
                raise SchemaError(f"{path}: type {name!r} is defined again (first in {earlier[0]})")
            found[name] = (path, definition)
    return found


def _definitions(schema: Any, namespace: str | None, path: Path, at: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """The named types ``schema`` defines, checking on the way what fastavro lets through or reports without saying
    where (``at`` names the field being walked, for messages)."""
    if isinstance(schema, list):
        yield from _union_definitions(schema, namespace, path, at)
        return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    if _is_named(kind):
        name = schema.get("name")
        if not isinstance(name, str) or not all(_NAME.match(part) for part in name.split(".")):
            raise SchemaError(f"{path}: {at}a {kind} needs a \"name\" of letters, digits and '_', got {name!r}")
        size = schema.get("size")
        if kind == "fixed" and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            # fastavro takes any size and writes nothing for it (Avro: a non-negative int of bytes).
            raise SchemaError(f'{path}: {at}fixed {name!r} needs a "size" of 0 or more bytes, got {size!r}')
        full = full_name(name, schema.get("namespace", namespace))
        standalone = {k: v for k, v in schema.items() if k != "namespace"}
        standalone["name"] = full
        yield full, standalone
        if kind in ("record", "error"):
            yield from _field_definitions(schema, full, path)
    elif kind in ("array", "map"):
        part = "items" if kind == "array" else "values"
        if part not in schema:
            # fastavro's own message is the bare key ("invalid schema: 'items'").
            article = "an" if kind == "array" else "a"
            raise SchemaError(f'{path}: {at}{article} {kind} needs "{part}" (the type of its {part})')
        yield from _definitions(schema[part], namespace, path, at)
    elif isinstance(kind, list):
        # Neither fastavro ("unhashable type: 'list'") nor Avro's Java parser takes a union there.
        raise SchemaError(f'{path}: {at}a union is written as a JSON list itself, not as the "type" of an object')
    elif isinstance(kind, dict):
        yield from _definitions(kind, namespace, path, at)


def _union_definitions(
    branches: list[Any], namespace: str | None, path: Path, at: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    # The specification's rules for unions, which fastavro does not enforce and the Confluent registry (Avro's Java
    # parser) does: a schema breaking them would load here, then be refused on registration or by other readers.
    seen: set[str] = set()
    for branch in branches:
        yield from _definitions(branch, namespace, path, at)
        key = _branch_key(branch, namespace)
        if key == "union":
            raise SchemaError(f"{path}: {at}a union may not contain another union directly (merge their branches)")
        if key in seen:
            what = f"type {key!r}" if key in _UNNAMED_KINDS else f"the named type {key!r}"
            raise SchemaError(f"{path}: {at}a union may hold {what} only once")
        seen.add(key)


_UNNAMED_KINDS: Final = frozenset({*PRIMITIVES, "array", "map"})


def _branch_key(branch: Any, namespace: str | None) -> str:
    """What tells a union's branch from the others: its type, or for a named type its full name."""
    if isinstance(branch, list):
        return "union"
    if isinstance(branch, dict):
        kind = branch.get("type")
        if _is_named(kind):
            return full_name(str(branch.get("name")), branch.get("namespace", namespace))
        return _branch_key(kind, namespace)
    if isinstance(branch, str) and branch not in _UNNAMED_KINDS:
        return full_name(branch, namespace)
    return str(branch)


def _is_named(kind: Any) -> bool:
    # A "type" may be a list or an object (unhashable): only a string names a kind.
    return isinstance(kind, str) and kind in NAMED_TYPES


def _field_definitions(record: dict[str, Any], record_name: str, path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    fields = record.get("fields")
    if not isinstance(fields, list):
        raise SchemaError(f'{path}: record {record_name!r} needs a "fields" list')
    seen: set[str] = set()
    for position, entry in enumerate(fields):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not _NAME.match(name):
            raise SchemaError(
                f"{path}: field {position} of {record_name!r} needs a \"name\" of letters, digits and '_', got {name!r}"
            )
        if name in seen:
            raise SchemaError(f"{path}: record {record_name!r} has two fields named {name!r}")
        seen.add(name)
        at = f"field {name!r} of {record_name!r}: "
        yield from _definitions(entry.get("type"), record_name.rpartition(".")[0] or None, path, at)


class _Definitions(AbstractSchemaRepository):
    """The named types of the loaded files, as a fastavro schema repository (it asks for a type by full name)."""

    def __init__(self, definitions: dict[str, tuple[Path, dict[str, Any]]]) -> None:
        self._definitions = definitions

    def load(self, name: str) -> dict[str, Any]:
        found = self._definitions.get(name)
        if found is None:
            raise SchemaRepositoryError(name)
        # fastavro inlines a definition by editing the schema it was handed: hand out a copy every time.
        return copy.deepcopy(found[1])


def _load_event_schema(
    path: Path, document: dict[str, Any], definitions: dict[str, tuple[Path, dict[str, Any]]]
) -> EventSchema:
    name = full_name(document["name"], document.get("namespace"))
    schema = _resolve(path, name, definitions)
    assert isinstance(schema, dict), "a record file loads as a record"
    event_type = schema.get(TYPE_PROPERTY, name)
    topic = schema.get(TOPIC_PROPERTY)
    for key, value in ((TYPE_PROPERTY, event_type), (TOPIC_PROPERTY, topic)):
        if value is not None and (not isinstance(value, str) or not value):
            raise SchemaError(f"{path}: {key!r} must be a non-empty string, got {value!r}")
    return EventSchema(
        type=event_type,
        name=name,
        path=path,
        schema=schema,
        text=orjson.dumps(schema).decode(),
        topic=topic,
        parsed=parse_for_codec(schema, str(path)),
    )


def _resolve(path: Path, name: str, definitions: dict[str, tuple[Path, dict[str, Any]]]) -> Any:
    """The named type ``name`` with every type it refers to inlined, checked by fastavro."""
    try:
        return load_schema(name, repo=_Definitions(definitions), _write_hint=False)
    except Exception as exc:  # fastavro reports problems with several exception types; each names the problem
        at = ""
        if isinstance(exc, UnknownType):
            # fastavro names the type but not the field that uses it, which is what the user has to edit.
            at = next(_users_of(definitions[name][1], exc.name, None), "")
        raise SchemaError(f"{path}: {at}{_fastavro_problem(exc, 'any .avsc file of the schema directories')}") from None


def _users_of(schema: Any, wanted: str, namespace: str | None, at: str = "") -> Iterator[str]:
    """``at`` for each field whose type refers to the named type ``wanted`` (a full name)."""
    if isinstance(schema, list):
        for branch in schema:
            yield from _users_of(branch, wanted, namespace, at)
    elif isinstance(schema, str):
        if schema not in PRIMITIVES and wanted in (schema, full_name(schema, namespace)):
            yield at
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error"):
            record_name = full_name(str(schema.get("name")), schema.get("namespace", namespace))
            inner = record_name.rpartition(".")[0] or None
            for entry in schema.get("fields", ()):
                if isinstance(entry, dict):
                    yield from _users_of(
                        entry.get("type"), wanted, inner, f"field {entry.get('name')!r} of {record_name!r}: "
                    )
        elif kind in ("array", "map"):
            yield from _users_of(schema.get("items" if kind == "array" else "values"), wanted, namespace, at)
        elif not _is_named(kind):
            yield from _users_of(kind, wanted, namespace, at)


def _fastavro_problem(exc: Exception, defined_in: str = "the schema") -> str:
    if isinstance(exc, UnknownType):
        return f"unknown type {exc.name!r}: not a primitive type, nor a named type defined in {defined_in}"
    return f"invalid schema: {exc}"


def _describe(document: Any) -> str:
    if isinstance(document, dict):
        return f"a {document.get('type', 'schema without a type')!r}"
    return f"a JSON {type(document).__name__}"


def parse_for_codec(schema: Any, where: str) -> Any:
    """A schema as fastavro reads and writes with it.

    Logical types are dropped first: events carry their data as plain values whatever the codec (a
    ``timestamp-millis`` is an int of milliseconds, as it would be in JSON), so a processor sees the same ``data``
    from an Avro record as from a JSON one, and can emit it to a JSON topic unchanged.
    """
    try:
        return parse_schema(without_logical_types(schema))
    except Exception as exc:  # see _fastavro_problem
        raise SchemaError(f"{where}: {_fastavro_problem(exc)}") from None


def without_logical_types(schema: Any) -> Any:
    if isinstance(schema, list):
        return [without_logical_types(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    stripped = {k: v for k, v in schema.items() if k != "logicalType"}
    kind = stripped.get("type")
    if isinstance(kind, dict | list):
        stripped["type"] = without_logical_types(kind)
    if "fields" in stripped:
        stripped["fields"] = [{**f, "type": without_logical_types(f.get("type"))} for f in stripped["fields"]]
    for key in ("items", "values"):
        if key in stripped:
            stripped[key] = without_logical_types(stripped[key])
    return stripped


def parse_registered(text: str, where: str) -> tuple[dict[str, Any] | list[Any] | str, Any]:
    """A schema as text from a registry: its JSON form with full names, and its parsed form for the codec."""
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise SchemaError(f"{where}: not valid JSON: {exc}") from None
    try:
        normal = parse_schema(document, _write_hint=False)
    except Exception as exc:  # see _fastavro_problem
        raise SchemaError(f"{where}: {_fastavro_problem(exc)}") from None
    return normal, parse_for_codec(normal, where)
