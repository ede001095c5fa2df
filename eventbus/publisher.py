"""`Publisher`: how producers put events on topics.

An event (or an instance of a class bound with ``@event_type``) is completed — ``id``, ``time`` and ``source``
filled where missing — encoded once, and appended in batches; `publish` returns only when the log has it durably.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from eventbus.backends import open_log
from eventbus.backends.base import Log, Message, keyed_message
from eventbus.codecs.binary import encode_binary
from eventbus.codecs.structured import encode_structured, partition_key
from eventbus.event import Event, InvalidEventError, binding_of, check_source, complete

if TYPE_CHECKING:
    from eventbus.app import App


class Position(NamedTuple):
    """Where an appended event landed."""

    topic: str
    partition: int
    offset: int


def to_event(item: Event | object) -> Event:
    """An `Event` as it is, or a typed instance wrapped in one; anything else is an `InvalidEventError`."""
    if isinstance(item, Event):
        return item
    if binding_of(type(item)) is not None:
        return Event.of(item)
    raise InvalidEventError(
        f"cannot publish a {type(item).__qualname__}: publish an Event or an instance of a class bound with @event_type"
    )


def encode_event(attrs: dict[str, Any]) -> Message:
    """The record of a complete event in structured mode: the CloudEvent as JSON, keyed by its partition key."""
    return keyed_message(encode_structured(attrs), partition_key(attrs))


def encode_event_binary(attrs: dict[str, Any]) -> Message:
    """The record of a complete event in binary mode: attributes as ce_* headers, the data as the value."""
    headers, value = encode_binary(attrs)
    return keyed_message(value, partition_key(attrs), headers)


EventEncoder = Callable[[dict[str, Any]], Message]


class Encoders:
    """How events are written, per topic and per type: topics an app declares Avro have their own encoder, as do
    the types it declares Avro (on any topic); the rest use the log's default. Calling it encodes with the default.

    ``by_type`` maps a type to a factory of its encoder for a topic (Avro subjects are named after the topic), made
    the first time an event of that type goes to that topic."""

    __slots__ = ("_per_topic", "by_topic", "by_type", "default")

    def __init__(
        self,
        default: EventEncoder,
        by_topic: Mapping[str, EventEncoder],
        by_type: Mapping[str, Callable[[str], EventEncoder]] | None = None,
    ) -> None:
        self.default = default
        self.by_topic = dict(by_topic)
        self.by_type = dict(by_type or {})
        self._per_topic: dict[str, EventEncoder] = {}

    def __call__(self, attrs: dict[str, Any]) -> Message:
        return self.default(attrs)

    def for_topic(self, topic: str) -> EventEncoder:
        encode = self._per_topic.get(topic)
        if encode is None:
            encode = self._per_topic[topic] = self._make(topic)
        return encode

    def _make(self, topic: str) -> EventEncoder:
        by_topic = self.by_topic.get(topic, self.default)
        if not self.by_type:
            return by_topic
        made: dict[str, EventEncoder] = {}
        factories = self.by_type

        def encode(attrs: dict[str, Any]) -> Message:
            event_type = attrs["type"]
            factory = factories.get(event_type)
            if factory is None:
                return by_topic(attrs)
            typed = made.get(event_type)
            if typed is None:
                typed = made[event_type] = factory(topic)
            return typed(attrs)

        return encode


def encoder_for(log: Log, app: App | None = None) -> EventEncoder:
    """How events are written to ``log`` (see `Log.event_mode`): JSON, and Avro for the topics ``app`` declares
    with ``codec="avro"`` and the types it declares with `App.event_codec` (then an `Encoders`)."""
    default = encode_event_binary if log.event_mode == "binary" else encode_event
    avro_topics = [] if app is None else [t.name for t in app.topics.values() if t.codec == "avro"]
    type_codecs = {} if app is None else dict(app.event_codecs)
    if not avro_topics and not type_codecs:
        return default
    from eventbus.codecs.avro import AvroEncoder, avro_encoders, avro_registry, without_avro_attributes

    assert app is not None
    schemas = app.schema_set
    json_encode = without_avro_attributes(default)
    by_type: dict[str, Callable[[str], EventEncoder]] = {}
    if "avro" in type_codecs.values():
        registry = avro_registry(app.schema_settings, log)
        settings = app.schema_settings

        def avro_for(topic: str) -> EventEncoder:
            return AvroEncoder(topic, schemas, registry, settings)

        by_type = {t: avro_for for t, codec in type_codecs.items() if codec == "avro"}
    by_type.update({t: (lambda _topic: json_encode) for t, codec in type_codecs.items() if codec == "json"})
    by_topic = avro_encoders(avro_topics, app.schema_settings, schemas, log) if avro_topics else {}
    return Encoders(json_encode, by_topic, by_type)


class Publisher:
    """Publishes events to a log (a `Log` or a broker URL; default: ``EVENTBUS_BROKER`` or the embedded log).

    With ``app``, events go out as that app's declarations say: Avro to the topics it declares with
    ``codec="avro"`` (its source, if it has one, is the default source too).
    """

    def __init__(self, log: Log | str | None = None, *, source: str | None = None, app: App | None = None) -> None:
        self._owns_log = not isinstance(log, Log)
        self.log = log if isinstance(log, Log) else open_log(log)
        # Checked once here: the events it is filled into are not checked again.
        self.source = check_source(source or (app.source if app is not None else "/eventbus"))
        encode = encoder_for(self.log, app)
        self._encoders = encode if isinstance(encode, Encoders) else None
        self._encode = encode

    def publish(self, topic: str, event: Event | object) -> Position:
        """Append one event and return where it landed."""
        return self.publish_many(topic, (event,))[0]

    def publish_many(self, topic: str, events: Iterable[Event | object]) -> list[Position]:
        """Append events in one atomic batch, in order: an event that cannot be written refuses the batch, by its
        place in it, before any is written."""
        encode = self._encode if self._encoders is None else self._encoders.for_topic(topic)
        messages = [encode(complete(to_event(e), self.source)) for e in events]
        for index, message in enumerate(messages):
            why = self.log.oversized(message)
            if why is not None:
                where = f"event {index} of the batch" if len(messages) > 1 else "the event"
                raise RecordTooLargeError(f"{where} is {why}")
        return self.append_encoded(topic, messages)

    def encode(self, topic: str, event: Event | object) -> Message:
        """The record `publish` would write for ``event``; `RecordTooLargeError` if the log would refuse it."""
        encode = self._encode if self._encoders is None else self._encoders.for_topic(topic)
        message = encode(complete(to_event(event), self.source))
        why = self.log.oversized(message)
        if why is not None:
            raise RecordTooLargeError(f"the event is {why}")
        return message

    def append_encoded(self, topic: str, messages: Sequence[Message]) -> list[Position]:
        """Append records made by `encode`, in one atomic batch, in order."""
        if not messages:
            return []
        return [Position(topic, p, o) for p, o in self.log.append(topic, messages)]

    def close(self) -> None:
        if self._owns_log:
            self.log.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class RecordTooLargeError(InvalidEventError):
    """An event whose record is larger than the log takes (Kafka's message.max.bytes)."""


class LineReport(NamedTuple):
    published: int
    errors: list[tuple[int, str]]


_NAMED_ATTRIBUTES = (
    "id",
    "source",
    "time",
    "subject",
    "datacontenttype",
    "dataschema",
    "partitionkey",
    "traceparent",
    "correlationid",
    "causationid",
)


def event_from_json(parsed: object) -> Event:
    """An event from its CloudEvents JSON form, where ``id``, ``source`` and ``time`` may still be missing.

    An attribute that is null is unset, as the JSON format says; ``"data": null`` is data, a null payload."""
    if not isinstance(parsed, dict):
        raise InvalidEventError(f"expected a JSON object (a CloudEvent), got {type(parsed).__name__}")
    attrs = {name: value for name, value in parsed.items() if value is not None}
    specversion = attrs.pop("specversion", "1.0")
    if specversion != "1.0":
        raise InvalidEventError(f"specversion: only '1.0' is supported, got {specversion!r}")
    if "type" not in attrs:
        raise InvalidEventError("type: required attribute is missing")
    event_type = attrs.pop("type")
    if "data" in attrs and "data_base64" in attrs:
        raise InvalidEventError("data and data_base64: an event carries one or the other, not both")
    data = attrs.pop("data", None)
    data_base64 = attrs.pop("data_base64", None)
    if data_base64 is not None:
        import base64

        try:
            data = base64.b64decode(data_base64, validate=True)
        except (ValueError, TypeError):  # binascii.Error, or text beyond ASCII
            raise InvalidEventError("data_base64: not valid base64") from None
    named = {name: attrs.pop(name) for name in _NAMED_ATTRIBUTES if name in attrs}
    event = Event(event_type, data, extensions=attrs, **named)
    if data is None and data_base64 is None and "data" in parsed:
        return Event.wrap({**event.to_dict(), "data": None})
    return event


def _key_of(data: object, key_field: str | None) -> str | None:
    """The partition key of a line's data: its ``key_field``, a string or a number (an integer as its digits).

    Booleans, objects and arrays are refused rather than turned into Python's rendering of them (``True``,
    ``{'x': 1}``), which no other producer would write for the same key."""
    if key_field is None:
        return None
    if not isinstance(data, dict):
        raise InvalidEventError(
            f"expected a JSON object (the event's data, with the key field {key_field!r}), got {_json_kind(data)}"
        )
    value = data.get(key_field)
    if value is None or value == "":
        raise InvalidEventError(f"{key_field}: the key field is missing from the data")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidEventError(f"{key_field}: the key field must be a string or a number, got {_json_kind(value)}")
    return value if isinstance(value, str) else str(value)


def _json_kind(value: object) -> str:
    """What a parsed JSON value is, in JSON's words."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else type(value).__name__


def publish_lines(
    publisher: Publisher,
    topic: str,
    lines: Iterable[str | bytes],
    *,
    event_type: str | None = None,
    key_field: str | None = None,
    batch_size: int = 1000,
) -> LineReport:
    """Publish JSON events, one per line, in batches; a bad line is reported by its number and skipped, and
    every good line is still published.

    Each line is an event in CloudEvents JSON form, or, with ``event_type``, the data of an event of that type.
    ``key_field`` names a field of the data to use as the partition key. Blank lines are ignored. What makes a
    line bad is `line_parser`'s."""
    event_of = line_parser(event_type, key_field)
    errors: list[tuple[int, str]] = []
    batch: list[Message] = []
    published = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        # surrogatepass: a lone surrogate reaches the parser, which reports the line, rather than raising here.
        raw = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line
        try:
            # Encoded here, one line at a time: a line whose record the log would refuse is reported by number.
            batch.append(publisher.encode(topic, event_of(raw, may_hold_wide_integers(raw))))
        except (InvalidEventError, TypeError) as exc:
            errors.append((number, str(exc)))
            continue
        if len(batch) >= batch_size:
            published += len(publisher.append_encoded(topic, batch))
            batch = []
    if batch:
        published += len(publisher.append_encoded(topic, batch))
    return LineReport(published, errors)


# Integers JSON parsers keep exactly: orjson turns any other into a float, losing digits without a word.
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
# Digits to "0", the minus sign kept, the rest to spaces: what may be an integer out of that range (or merely a
# long run of digits in a string) is then a plain substring search, cheap enough for every byte of input.
_DIGIT_RUNS = bytes(ord("0") if ord("0") <= b <= ord("9") else b if b == ord("-") else ord(" ") for b in range(256))
_WIDE_POSITIVE = b"0" * 20
_WIDE_NEGATIVE = b"-" + b"0" * 19


def may_hold_wide_integers(text: bytes) -> bool:
    """Whether ``text`` (a line, or many) may hold an integer beyond 64 bits: False means surely not."""
    runs = text.translate(_DIGIT_RUNS)
    return _WIDE_POSITIVE in runs or _WIDE_NEGATIVE in runs


def line_parser(event_type: str | None, key_field: str | None) -> Callable[[bytes, bool], Event]:
    """``event_of(line, suspect)``: the event of one JSON line (see `publish_lines`), or an `InvalidEventError`
    saying what is wrong with it. ``suspect`` is False when `may_hold_wide_integers` cleared the line (or the
    input it came in), which spares it a second look."""
    import orjson

    def event_of(line: bytes, suspect: bool) -> Event:
        try:
            parsed = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InvalidEventError(f"not valid JSON: {exc}") from None
        if suspect and may_hold_wide_integers(line):
            refuse_wide_integers(line)
        if line.count(b"[") + line.count(b"{") >= _DEEPEST_WRITTEN - 1:  # the event may wrap the line: one more
            # orjson reads deeper than it writes: a line it parses may hold data it cannot write, which would
            # fail its whole batch when it is sent. Checked here, where the line can be named.
            try:
                orjson.dumps([parsed if event_type is not None else parsed.get("data")])
            except (orjson.JSONEncodeError, AttributeError):
                if isinstance(parsed, dict) or event_type is not None:
                    raise InvalidEventError(
                        f"nested too deeply to be written (JSON data is written to at most {_DEEPEST_WRITTEN} levels)"
                    ) from None
        if event_type is None:
            return event_from_json(parsed)
        if key_field is not None and isinstance(parsed, dict) and key_field in parsed and parsed[key_field] is None:
            raise InvalidEventError(f"{key_field}: the key field is null (a partition key is a string or a number)")
        return Event(event_type, parsed, partitionkey=_key_of(parsed, key_field))

    return event_of


# How deep orjson writes JSON (it reads to about 1,000 levels): an event's data sits one level inside it.
_DEEPEST_WRITTEN = 254


def refuse_wide_integers(line: bytes) -> None:
    """An `InvalidEventError` naming the first integer of ``line`` (already valid JSON) outside 64 bits: orjson
    reads such an integer as a float, losing digits without a word."""
    import json

    try:
        document = json.loads(line)  # the standard parser keeps every digit
    except (RecursionError, ValueError):
        # Deeper than the standard parser goes (orjson went deeper): too deep to check, so refused as well.
        raise InvalidEventError("nested too deeply to check its integers (keep JSON under 1,000 levels)") from None
    stack: list[tuple[str, object]] = [("", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(value))))
        elif type(value) is int and not _INT_MIN <= value <= _INT_MAX:
            raise InvalidEventError(
                f"{path + ': ' if path else ''}the integer {value} is out of the 64-bit range ({_INT_MIN} to"
                f" {_INT_MAX}) and would lose digits; send it as a string"
            )
