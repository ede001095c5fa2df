"""Avro data in the Confluent wire format, carried in CloudEvents binary mode.

A record's value is the magic byte 0, the schema's id in the registry (4 bytes, big-endian) and the Avro binary
encoding of the event's ``data`` with that schema (fastavro's schemaless encoding); the event's attributes travel
as ``ce_*`` headers, with ``content-type: application/avro`` and ``ce_dataschema`` naming the schema in the
registry. So a Confluent ``AvroDeserializer`` reads the value of what eventbus writes, and eventbus reads what a
Confluent ``AvroSerializer`` writes (given the ``ce_*`` headers).

Encoding (`AvroEncoder`, one per Avro topic): the event's ``type`` picks its schema (see `eventbus.schemas.loader`);
the schema is registered, or looked up, once per type; data that does not fit is refused with the path of the
field. Decoding (`AvroDecoder`): the writer's schema is fetched by id once per id; when the app has a schema for
the event's type, the data is resolved from the writer's schema to it (Avro schema resolution), so code reads old
events with its current schema. fastavro is imported when the first Avro encoder or decoder is built, not before.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING, Any, Final

import orjson

from eventbus.backends.base import Message
from eventbus.codecs.binary import CONTENT_TYPE_HEADER, HEADER_PREFIX
from eventbus.codecs.structured import partition_key
from eventbus.errors import ConfigurationError, DecodeError
from eventbus.event import InvalidEventError

if TYPE_CHECKING:
    from eventbus.backends.base import Log
    from eventbus.schemas.loader import EventSchema, SchemaSet
    from eventbus.schemas.registry import SchemaRegistry
    from eventbus.schemas.settings import Schemas

AVRO_CONTENT_TYPE: Final = "application/avro"
MAGIC_BYTE: Final = 0
HEADER_SIZE: Final = 5
_NOT_HEADERS: Final = frozenset({"data", "data_base64", "datacontenttype", "dataschema"})


def frame(schema_id: int, body: bytes) -> bytes:
    """The Confluent wire format: magic byte, schema id, Avro body."""
    return bytes((MAGIC_BYTE,)) + schema_id.to_bytes(4, "big") + body


def schema_id_of(value: bytes | None) -> int:
    """The schema id of a value in the Confluent wire format; `DecodeError` if it is not in that format."""
    if value is None or len(value) < HEADER_SIZE:
        raise DecodeError(
            f"Avro record value has {0 if value is None else len(value)} bytes: too short for the Confluent wire "
            "format (magic byte, 4-byte schema id, body)"
        )
    if value[0] != MAGIC_BYTE:
        raise DecodeError(f"Avro record value starts with byte {value[0]}, not the Confluent magic byte 0")
    return int.from_bytes(value[1:HEADER_SIZE], "big")


@dataclass(frozen=True, slots=True)
class _Writer:
    schema: EventSchema
    prefix: bytes
    headers: tuple[tuple[str, bytes], ...]  # content-type and ce_dataschema
    # Typed events carry bytes as base64 text (msgspec's builtins, as in JSON): turned back into bytes to write.
    base64_bytes: _Base64Bytes | None


class AvroEncoder:
    """Encodes the events of one topic as Avro records (an `EventEncoder`)."""

    def __init__(self, topic: str, schemas: SchemaSet, registry: SchemaRegistry, settings: Schemas) -> None:
        from fastavro import schemaless_writer
        from fastavro.validation import validate

        self.topic = topic
        self._schemas = schemas
        self._registry = registry
        self._settings = settings
        self._write = schemaless_writer
        self._fits = validate
        self._writers: dict[str, _Writer] = {}

    def __call__(self, attrs: dict[str, Any]) -> Message:
        writer = self._writers.get(attrs["type"]) or self._writer_for(attrs["type"])
        data = attrs.get("data")
        if writer.base64_bytes is not None:
            data = writer.base64_bytes.decode(data)
        # Checked first: fastavro's writer takes 1.7 for an int (writing 1), True for an int, "2.0" for a double
        # and an int past 32 bits for an int, without a word. Data that does not fit is refused, naming the field.
        if not self._fits(data, writer.schema.parsed, raise_errors=False):
            raise InvalidEventError(self._misfit(attrs, writer.schema, None))
        buffer = BytesIO()
        buffer.write(writer.prefix)
        try:
            # strict_allow_default: a field the schema does not have is refused, not silently dropped.
            self._write(buffer, writer.schema.parsed, data, strict_allow_default=True)
        except Exception as exc:  # fastavro raises TypeError, ValueError, AttributeError, ... for data that misfits
            raise InvalidEventError(self._misfit(attrs, writer.schema, exc)) from None
        # The CloudEvents binary-mode headers (as encode_binary writes them), built in one pass: per event, this
        # costs as much as the Avro encoding itself.
        headers = [
            (HEADER_PREFIX + name, value.encode() if value.__class__ is str else orjson.dumps(value))
            for name, value in attrs.items()
            if name not in _NOT_HEADERS
        ]
        headers += writer.headers
        return Message(buffer.getvalue(), partition_key(attrs), tuple(headers))

    def _writer_for(self, event_type: str) -> _Writer:
        from eventbus.schemas.settings import subject_name

        schema = self._schemas.for_type(event_type)
        if schema is None:
            directories = ", ".join(map(str, self._schemas.directories)) or "(none)"
            raise InvalidEventError(
                f"event type {event_type!r} has no Avro schema, and topic {self.topic!r} is Avro: add a .avsc "
                f'binding it ("eventbus.type": {event_type!r}) to the schema directories ({directories})'
            )
        subject = subject_name(self._settings.subject_strategy, self.topic, schema.name)
        if self._settings.auto_register:
            registered = self._registry.register(subject, schema.text)
        else:
            found = self._registry.lookup(subject, schema.text)
            if found is None:
                raise ConfigurationError(
                    f"{schema.where} is not registered under subject {subject!r} in {self._registry.url} (and "
                    "auto_register is off): run `eventbus schema register`"
                )
            registered = found
        dataschema = self._registry.schema_uri(registered.schema_id)
        writer = _Writer(
            schema,
            frame(registered.schema_id, b""),
            ((CONTENT_TYPE_HEADER, AVRO_CONTENT_TYPE.encode()), (HEADER_PREFIX + "dataschema", dataschema.encode())),
            _Base64Bytes(schema.schema) if _has_bytes(schema.schema) else None,
        )
        self._writers[event_type] = writer
        return writer

    def _misfit(self, attrs: dict[str, Any], schema: EventSchema, exc: Exception | None) -> str:
        from eventbus.schemas.validation import misfit

        where = misfit(attrs.get("data"), schema.schema)
        if where is None:
            where = (
                "data: a value of a type or range the schema does not allow"
                if exc is None
                else (f"data: {type(exc).__name__}: {exc}")
            )
        return f"event {attrs.get('id')!r} of type {attrs['type']!r} does not fit {schema.where}: {where}"


def _has_bytes(schema: Any) -> bool:
    text = orjson.dumps(schema)
    return b'"bytes"' in text or b'"fixed"' in text  # a field named "bytes" costs a needless walk, nothing more


class _Base64Bytes:
    """Turns base64 text back into bytes where a schema has ``bytes`` or ``fixed``: `Event.of` gives a typed
    event's bytes as base64 text (the JSON convention), and Avro writes bytes."""

    def __init__(self, schema: Any) -> None:
        from eventbus.schemas.compatibility import named_types

        self._names = dict(named_types(schema))
        self._schema = schema

    def decode(self, data: Any) -> Any:
        return self._walk(data, self._schema)

    def _walk(self, value: Any, schema: Any) -> Any:
        if isinstance(schema, str):
            schema = self._names.get(schema, schema)
        if isinstance(schema, list):
            return self._walk(value, self._branch(value, schema))
        kind = schema.get("type") if isinstance(schema, dict) else schema
        if isinstance(kind, dict | list):
            return self._walk(value, kind)
        if kind in ("bytes", "fixed") and isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except binascii.Error:
                return value  # not base64: the encoder reports the field as it is
        if isinstance(value, dict | list):
            return self._walk_container(value, str(kind), schema)
        return value

    def _walk_container(self, value: dict[str, Any] | list[Any], kind: str, schema: Any) -> Any:
        if kind == "record" and isinstance(value, dict):
            types = {f["name"]: f["type"] for f in schema.get("fields", ())}
            return {k: self._walk(v, types[k]) if k in types else v for k, v in value.items()}
        if kind == "array" and isinstance(value, list):
            return [self._walk(v, schema["items"]) for v in value]
        if kind == "map" and isinstance(value, dict):
            return {k: self._walk(v, schema["values"]) for k, v in value.items()}
        return value

    def _branch(self, value: Any, branches: list[Any]) -> Any:
        kinds = [self._kind(b) for b in branches]
        wanted: tuple[str, ...] = ()
        if isinstance(value, dict):
            wanted = ("record", "map")
        elif isinstance(value, list):
            wanted = ("array",)
        elif isinstance(value, str):
            wanted = ("bytes", "fixed")
        if isinstance(value, str) and ("string" in kinds or "enum" in kinds):
            return "string"
        if isinstance(value, dict) and kinds.count("record") > 1:
            # Several records: the one whose fields the value fills (as fastavro picks the branch to write).
            for branch, kind in zip(branches, kinds, strict=True):
                if kind == "record" and self._fills(value, branch):
                    return branch
        return next((b for b, k in zip(branches, kinds, strict=True) if k in wanted), "null")

    def _fills(self, value: dict[str, Any], branch: Any) -> bool:
        record = self._names.get(branch, branch) if isinstance(branch, str) else branch
        fields = record.get("fields", ()) if isinstance(record, dict) else ()
        names = {f["name"] for f in fields}
        required = {f["name"] for f in fields if "default" not in f}
        return value.keys() <= names and required <= value.keys()

    def _kind(self, schema: Any) -> str:
        schema = self._names.get(schema, schema) if isinstance(schema, str) else schema
        return str(schema.get("type")) if isinstance(schema, dict) else str(schema)


@dataclass(frozen=True, slots=True)
class _Reading:
    writer: Any
    reader: Any
    writer_schema: Any
    reader_schema: EventSchema | None


class AvroDecoder:
    """Decodes the data of Avro records (an `AvroDataDecoder`): writer schema by id, resolved to the app's."""

    def __init__(self, registry: SchemaRegistry, schemas: SchemaSet | None = None) -> None:
        from fastavro import schemaless_reader

        self._registry = registry
        self._schemas = schemas
        self._read = schemaless_reader
        self._readings: dict[tuple[int, str], _Reading] = {}

    def __call__(self, value: bytes, attrs: dict[str, Any]) -> Any:
        schema_id = schema_id_of(value)
        key = (schema_id, attrs["type"])
        reading = self._readings.get(key) or self._reading_for(key)
        buffer = BytesIO(value)
        buffer.seek(HEADER_SIZE)
        try:
            data = self._read(buffer, reading.writer, reading.reader)
        except Exception as exc:  # truncated or corrupt bodies, and resolution failures, raise many types
            raise DecodeError(self._undecodable(schema_id, attrs["type"], reading, exc)) from None
        left = len(value) - buffer.tell()
        if left:
            raise DecodeError(
                f"Avro data of type {attrs['type']!r} has {left} byte(s) left after a record of schema id "
                f"{schema_id}: it was not written with that schema"
            )
        return data

    def _reading_for(self, key: tuple[int, str]) -> _Reading:
        from eventbus.schemas.errors import SchemaError, SchemaNotFoundError
        from eventbus.schemas.loader import parse_registered

        schema_id, event_type = key
        try:
            text = self._registry.schema_by_id(schema_id)
            writer_schema, writer = parse_registered(text, f"schema id {schema_id} in {self._registry.url}")
        except (SchemaNotFoundError, SchemaError) as exc:
            raise DecodeError(f"Avro record of type {event_type!r}: {exc}") from None
        mine = self._schemas.for_type(event_type) if self._schemas is not None else None
        same = mine is None or _same(mine.schema, writer_schema)
        reading = _Reading(writer, None if same or mine is None else mine.parsed, writer_schema, mine)
        self._readings[key] = reading
        return reading

    def _undecodable(self, schema_id: int, event_type: str, reading: _Reading, exc: Exception) -> str:
        message = f"Avro data of type {event_type!r} (schema id {schema_id}) does not decode"
        if reading.reader_schema is not None:
            from eventbus.schemas.compatibility import reader_problems

            problems = reader_problems(reading.reader_schema.schema, reading.writer_schema)
            if problems:
                reasons = "; ".join(p.describe(f"schema id {schema_id}", "the app's schema") for p in problems)
                return f"{message} with {reading.reader_schema.where}: {reasons}"
        return f"{message}: {type(exc).__name__}: {exc}"


def _same(left: Any, right: Any) -> bool:
    return bool(orjson.dumps(left, option=orjson.OPT_SORT_KEYS) == orjson.dumps(right, option=orjson.OPT_SORT_KEYS))


class LazyAvroDecoder:
    """A worker's Avro decoder, built when the first Avro record arrives: an app on JSON never imports fastavro.

    ``schemas`` is called then, for the app's schemas (the reader side)."""

    def __init__(self, settings: Schemas, log: Log, schemas: Callable[[], SchemaSet | None]) -> None:
        self._settings = settings
        self._log = log
        self._schemas = schemas
        self._decoder: AvroDecoder | None = None

    def __call__(self, value: bytes, attrs: dict[str, Any]) -> Any:
        decoder = self._decoder
        if decoder is None:
            from eventbus.schemas.registry import open_registry
            from eventbus.schemas.settings import registry_url

            registry = open_registry(registry_url(self._settings), self._log)
            decoder = self._decoder = AvroDecoder(registry, self._schemas())
        return decoder(value, attrs)


def reading_decoder(log: Log, settings: Schemas | None = None) -> LazyAvroDecoder:
    """A decoder for looking at records (``eventbus consume``, tests): Avro data decoded with the schema it was
    written with, found in the log's registry (or ``EVENTBUS_SCHEMA_REGISTRY``)."""
    from eventbus.schemas.settings import Schemas

    return LazyAvroDecoder(settings or Schemas(), log, lambda: None)


def avro_encoders(
    topics: Iterable[str], settings: Schemas, schemas: SchemaSet, log: Log
) -> dict[str, Callable[[dict[str, Any]], Message]]:
    """An `AvroEncoder` for each of ``topics``, sharing one registry (opened now, so a missing one is reported
    before the first event)."""
    registry = avro_registry(settings, log)
    return {topic: AvroEncoder(topic, schemas, registry, settings) for topic in topics}


def avro_registry(settings: Schemas, log: Log) -> SchemaRegistry:
    """The registry Avro encoders of an app write to (opened now, so a missing one is reported at once)."""
    from eventbus.schemas.registry import open_registry
    from eventbus.schemas.settings import registry_url

    return open_registry(registry_url(settings), log)


def without_avro_attributes(encode: Callable[[dict[str, Any]], Message]) -> Callable[[dict[str, Any]], Message]:
    """``encode`` for a JSON topic of an app that also has Avro topics: an Avro event passed on to it unchanged
    loses its Avro ``datacontenttype`` and ``dataschema``, which no longer describe its data."""

    def encode_json(attrs: dict[str, Any]) -> Message:
        if attrs.get("datacontenttype") == AVRO_CONTENT_TYPE:
            attrs = {k: v for k, v in attrs.items() if k not in ("datacontenttype", "dataschema")}
        return encode(attrs)

    return encode_json
