"""Schema compatibility, with the Confluent Schema Registry's modes and the Avro schema-resolution rules.

The core question is *can a reader with schema R read data written with schema W?* (`reader_problems`), answered by
the resolution rules of the Avro specification: a field the reader has and the writer lacks needs a default;
fields the writer has and the reader lacks are skipped; ``int`` promotes to ``long``, ``float`` and ``double``,
``long`` to ``float`` and ``double``, ``float`` to ``double``, and ``string`` and ``bytes`` to each other; an enum
reader needs every symbol the writer may write, unless it has a default symbol; named types match by unqualified
name (a change of namespace alone is compatible, as the specification and Avro's Java ``SchemaCompatibility``, which
the Confluent registry runs, have it) or by one of the reader's aliases (fields too); every branch of a writer's
union must be readable, and a reader's union reads a value when one of its branches can.

The modes (`Compatibility`) say which pairs must pass when a new schema is registered under a subject:

- BACKWARD: the new schema reads data written with the latest version (consumers upgrade first);
- FORWARD: the latest version reads data written with the new schema (producers upgrade first);
- FULL: both; the ``_TRANSITIVE`` variants check every earlier version instead of the latest; NONE checks nothing.

fastavro does the resolution when it reads, but only finds a problem when a record happens to exercise it; this
module finds them from the schemas alone, before anything is written, and names the field and the rule.
Schemas are the JSON form with full names (as `eventbus.schemas.loader` produces and fastavro normalises).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal

from eventbus.errors import ConfigurationError

PRIMITIVES: Final = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
# (writer type, reader type) pairs the reader can promote.
PROMOTIONS: Final = frozenset(
    {
        ("int", "long"),
        ("int", "float"),
        ("int", "double"),
        ("long", "float"),
        ("long", "double"),
        ("float", "double"),
        ("string", "bytes"),
        ("bytes", "string"),
    }
)


class Compatibility(StrEnum):
    NONE = "NONE"
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"

    @classmethod
    def parse(cls, value: str) -> Compatibility:
        try:
            return cls(value.upper())
        except ValueError:
            raise ConfigurationError(f"compatibility {value!r}: use one of {', '.join(c.value for c in cls)}") from None

    @property
    def backward(self) -> bool:
        return self in (Compatibility.BACKWARD, Compatibility.BACKWARD_TRANSITIVE, *_FULL)

    @property
    def forward(self) -> bool:
        return self in (Compatibility.FORWARD, Compatibility.FORWARD_TRANSITIVE, *_FULL)

    @property
    def transitive(self) -> bool:
        return self.value.endswith("_TRANSITIVE")


_FULL: Final = (Compatibility.FULL, Compatibility.FULL_TRANSITIVE)
DEFAULT_COMPATIBILITY: Final = Compatibility.BACKWARD

ProblemKind = Literal["missing_field", "type", "enum_symbols", "union_branch", "name", "fixed_size"]


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a reader cannot read a writer's data, at ``path`` (``items[].sku``; empty for the schema itself).

    ``writes`` and ``reads`` describe the writer's and the reader's side at that place; ``detail`` adds what the
    kind needs (the missing symbols, the reader's union).
    """

    kind: ProblemKind
    path: str
    writes: str
    reads: str
    detail: str = ""

    def describe(self, writer: str, reader: str) -> str:
        """The problem in words, with the two schemas named as the caller knows them (``version 3``, ...)."""
        where = f"field {self.path!r}" if self.path else "the schema"
        if self.kind == "missing_field":
            return f"{where}: {reader} has it without a default, and {writer} does not write it"
        if self.kind == "enum_symbols":
            return (
                f"{where}: {writer} may write symbols {self.detail} of {self.writes}, which {reader} lacks "
                "(and it has no default symbol)"
            )
        if self.kind == "union_branch":
            return f"{where}: {writer} writes {self.writes}, for which {reader}'s union {self.reads} has no branch"
        if self.kind == "name":
            return f"{where}: {writer} writes {self.writes}, {reader} expects {self.reads} (and no alias matches it)"
        if self.kind == "fixed_size":
            return f"{where}: {writer} writes {self.writes}, {reader} expects {self.reads}"
        return f"{where}: {writer} writes {self.writes}, which {reader} cannot read as {self.reads}"


@dataclass(frozen=True, slots=True)
class Violation:
    """A problem found while checking a new schema against registered ``version`` under ``level``.

    ``direction``: ``backward`` when the new schema is the reader of that version's data, ``forward`` when that
    version is the reader of the new schema's data.
    """

    level: Compatibility
    version: int
    direction: Literal["backward", "forward"]
    problem: Problem

    @property
    def path(self) -> str:
        return self.problem.path

    def describe(self) -> str:
        registered = f"version {self.version}"
        if self.direction == "backward":
            text = self.problem.describe(writer=registered, reader="the new schema")
            rule = f"the new schema must read data written with {registered}"
        else:
            text = self.problem.describe(writer="the new schema", reader=registered)
            rule = f"{registered} must read data written with the new schema"
        return f"{text} ({self.level.value}: {rule})"


def check(level: Compatibility, new: Any, registered: Sequence[tuple[int, Any]]) -> list[Violation]:
    """Every violation of ``level`` by ``new`` against the ``(version, schema)`` pairs registered, oldest first."""
    if level is Compatibility.NONE or not registered:
        return []
    against = registered if level.transitive else registered[-1:]
    violations: list[Violation] = []
    for version, old in reversed(against):
        if level.backward:
            violations.extend(Violation(level, version, "backward", p) for p in reader_problems(new, old))
        if level.forward:
            violations.extend(Violation(level, version, "forward", p) for p in reader_problems(old, new))
    return violations


def reader_problems(reader: Any, writer: Any) -> list[Problem]:
    """Why a reader with schema ``reader`` cannot read data written with ``writer`` (empty: it can)."""
    return list(_Resolver(reader, writer).problems())


class _Resolver:
    def __init__(self, reader: Any, writer: Any) -> None:
        self.reader, self.writer = reader, writer
        self.reader_names = dict(named_types(reader))
        self.writer_names = dict(named_types(writer))
        # Pairs of named types being compared, so recursive types end.
        self.visiting: set[tuple[str, str]] = set()

    def problems(self) -> Iterator[Problem]:
        return self.resolve(self.reader, self.writer, ())

    def resolve(self, reader: Any, writer: Any, path: tuple[str, ...]) -> Iterator[Problem]:
        reader, writer = _deref(reader, self.reader_names), _deref(writer, self.writer_names)
        reader_kind, writer_kind = _kind(reader), _kind(writer)
        if writer_kind == "union":
            for branch in writer:
                yield from self.resolve(reader, branch, path)
            return
        if reader_kind == "union":
            yield from self._resolve_into_union(reader, writer, path)
            return
        if reader_kind != writer_kind:
            if (writer_kind, reader_kind) not in PROMOTIONS:
                yield Problem("type", _format(path), _describe(writer), _describe(reader))
            return
        if reader_kind in ("record", "error"):
            yield from self._resolve_records(reader, writer, path)
        elif reader_kind == "enum":
            yield from self._resolve_enums(reader, writer, path)
        elif reader_kind == "fixed":
            yield from _names_match(reader, writer, path)
            if reader.get("size") != writer.get("size"):
                writes, reads = f"{writer.get('size')} bytes", f"{reader.get('size')} bytes"
                yield Problem("fixed_size", _format(path), writes, reads)
        elif reader_kind == "array":
            yield from self.resolve(reader["items"], writer["items"], (*path, "[]"))
        elif reader_kind == "map":
            yield from self.resolve(reader["values"], writer["values"], (*path, "{}"))

    def _resolve_into_union(self, reader: list[Any], writer: Any, path: tuple[str, ...]) -> Iterator[Problem]:
        # Compatible when some branch can read the writer's value (the registry's rule; fastavro takes the first
        # branch whose type matches, which agrees for every union Avro allows).
        for branch in reader:
            # Exhaust each trial (no any()): an abandoned generator would leave its record pair marked as visiting.
            if not list(self.resolve(branch, writer, path)):
                return
        branches = "[" + ", ".join(_describe(_deref(b, self.reader_names)) for b in reader) + "]"
        yield Problem("union_branch", _format(path), _describe(writer), branches)

    def _resolve_records(
        self, reader: dict[str, Any], writer: dict[str, Any], path: tuple[str, ...]
    ) -> Iterator[Problem]:
        mismatch = list(_names_match(reader, writer, path))
        if mismatch:
            yield from mismatch
            return
        pair = (reader["name"], writer["name"])
        if pair in self.visiting:
            return
        self.visiting.add(pair)
        written = {f["name"]: f for f in writer.get("fields", [])}
        for field in reader.get("fields", []):
            source = written.get(field["name"])
            for alias in field.get("aliases", ()) if source is None else ():
                source = source or written.get(alias)
            if source is not None:
                yield from self.resolve(field["type"], source["type"], (*path, field["name"]))
            elif "default" not in field:
                yield Problem("missing_field", _format((*path, field["name"])), "nothing", _describe(field["type"]))
        self.visiting.discard(pair)

    def _resolve_enums(
        self, reader: dict[str, Any], writer: dict[str, Any], path: tuple[str, ...]
    ) -> Iterator[Problem]:
        yield from _names_match(reader, writer, path)
        missing = [s for s in writer.get("symbols", []) if s not in reader.get("symbols", [])]
        if missing and "default" not in reader:
            yield Problem("enum_symbols", _format(path), _describe(writer), _describe(reader), ", ".join(missing))


def _names_match(reader: dict[str, Any], writer: dict[str, Any], path: tuple[str, ...]) -> Iterator[Problem]:
    reader_name, writer_name = reader["name"], writer["name"]
    namespace, _, simple = reader_name.rpartition(".")
    if simple == writer_name.rpartition(".")[2]:
        # Unqualified names: moving a type to another namespace keeps its data readable (fastavro reads it too).
        return
    aliases = {a if "." in a or not namespace else f"{namespace}.{a}" for a in reader.get("aliases", ())}
    if writer_name not in aliases:
        yield Problem("name", _format(path), _describe(writer), _describe(reader))


def named_types(schema: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every named type defined in a schema, by full name."""
    if isinstance(schema, list):
        for branch in schema:
            yield from named_types(branch)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            yield schema["name"], schema
            for field in schema.get("fields", ()):
                yield from named_types(field.get("type"))
        elif kind == "array":
            yield from named_types(schema.get("items"))
        elif kind == "map":
            yield from named_types(schema.get("values"))
        elif isinstance(kind, dict | list):
            yield from named_types(kind)


def _deref(schema: Any, names: dict[str, dict[str, Any]]) -> Any:
    if isinstance(schema, str) and schema not in PRIMITIVES:
        return names.get(schema, schema)
    if isinstance(schema, dict) and isinstance(schema.get("type"), dict | list | str) and len(schema) == 1:
        # {"type": "string"} and {"type": {...}} say the same as their type.
        return _deref(schema["type"], names)
    return schema


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        kind = schema.get("type")
        return kind if isinstance(kind, str) else _kind(kind)
    return str(schema)


def _describe(schema: Any) -> str:
    kind = _kind(schema)
    if isinstance(schema, dict) and kind in ("record", "error", "enum", "fixed"):
        return f"{kind} {schema.get('name')}"
    if kind == "union":
        return "a union"
    return kind


def _format(path: tuple[str, ...]) -> str:
    text = ""
    for part in path:
        text += part if part in ("[]", "{}") or not text else f".{part}"
    return text
