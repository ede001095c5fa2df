"""`Event`: a CloudEvents 1.0 event, and typed event classes bound to an event ``type``.

An `Event` is a thin, read-only view over the CloudEvents JSON form (the "structured" dict:
``{"specversion", "id", "source", "type", "time", "subject", "data", ...extensions}``). Decoding a record yields
that dict once; routing matches on it and processors read it through this view, so nothing is copied or
re-parsed on the way.

Typed events: a dataclass (or ``msgspec.Struct``) decorated with :func:`event_type` is bound to a CloudEvents
``type``. A processor whose parameter is annotated with such a class receives an instance built from the event's
``data``; returning or publishing an instance wraps it in an `Event` of the bound type.

This module imports nothing else of eventbus: everything builds on it.
"""

from __future__ import annotations

import base64
import builtins
import dataclasses
import os
import re
import time as _time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

SPECVERSION: Final = "1.0"

# Attributes with a meaning of their own in the CloudEvents JSON form; everything else is an extension.
CONTEXT_ATTRIBUTES: Final = frozenset(
    {"specversion", "id", "source", "type", "time", "subject", "datacontenttype", "dataschema"}
)
DATA_MEMBERS: Final = frozenset({"data", "data_base64"})
REQUIRED_ATTRIBUTES: Final = ("id", "source", "type", "specversion")

_BINARY_TYPES: Final = (bytes, bytearray, memoryview)
_EXTENSION_NAME = re.compile(r"[a-z0-9]+\Z")
# CloudEvents strings exclude the C0 and C1 control characters (a newline cannot go in an HTTP header) and lone
# surrogates (which UTF-8 cannot carry). `str.isprintable` rules them out in C first; this says which it was.
_DISALLOWED_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# RFC 3986: a URI-reference is a URI or a relative reference, whose first segment cannot hold a ":" (it would read
# as a scheme); only these characters, and "%" with two hex digits, one "#" at most. Characters beyond ASCII are
# let through as RFC 3987 (IRI) has them: each maps to its percent-encoded UTF-8, so no reader is misled.
# Runs of plain characters are taken whole and never given back (++, *+): one step per run, not per character.
_URI_CHARACTERS = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?\[\]\u00a0-\ud7ff\ue000-\U0010ffff]++|%[0-9A-Fa-f]{2})*+"
_SCHEME = r"[A-Za-z][A-Za-z0-9+.\-]*:"
_URI_REFERENCE = re.compile(rf"(?:{_SCHEME}|(?![^/?#]*:)){_URI_CHARACTERS}(?:#{_URI_CHARACTERS})?\Z")
# An absolute URI has a scheme. A fragment is let through: JSON Schema's "uri" (which CloudEvents' own schema uses
# for dataschema) allows one, and schema URIs often point into a document.
_URI = re.compile(rf"{_SCHEME}{_URI_CHARACTERS}(?:#{_URI_CHARACTERS})?\Z")
# RFC 2045/2046: type "/" subtype, then "; attribute=value" parameters (a value a token or a quoted string).
_MEDIA_NAME = r"[!#$%&'*+\-.^_`{|}~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\\r\n]|\\.)*"'
# An empty parameter ("text/plain;") is let through, as RFC 9110 has it.
_MEDIA_TYPE = re.compile(
    rf"{_MEDIA_NAME}/{_MEDIA_NAME}(?:[ \t]*;[ \t]*(?:{_MEDIA_NAME}=(?:{_MEDIA_NAME}|{_QUOTED}))?)*[ \t]*\Z"
)

T = TypeVar("T")


class InvalidEventError(ValueError):
    """An event is missing a required attribute or has one of the wrong type; the message names it."""


# Random bits are read from the OS in blocks, as hex: one getrandom() and one conversion per id would cost more
# than everything else about the id. The time part changes once per millisecond and is formatted once per change.
_RANDOM_HEX_BLOCK = 8192
_random_hex = ""
_random_position = 0
_id_ms = -1
_id_prefix = ""
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def _forget_random_block() -> None:
    # A forked child must not hand out the ids its parent will also hand out.
    global _random_hex, _random_position
    _random_hex, _random_position = "", 0


os.register_at_fork(after_in_child=_forget_random_block)


def new_event_id() -> str:
    """A new UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits, so ids sort by creation time."""
    global _random_hex, _random_position, _id_ms, _id_prefix
    now_ms = _time.time_ns() // 1_000_000
    if now_ms != _id_ms:
        stamp = f"{now_ms:012x}"
        _id_ms, _id_prefix = now_ms, f"{stamp[:8]}-{stamp[8:]}-7"
    position = _random_position
    if position + 19 > len(_random_hex):
        _random_hex, position = os.urandom(_RANDOM_HEX_BLOCK // 2).hex(), 0
    _random_position = position + 19
    r = _random_hex[position : position + 19]
    return f"{_id_prefix}{r[:3]}-{_VARIANT[r[3]]}{r[4:7]}-{r[7:]}"


_last_time_ms = -1
_last_time_text = ""


def now_rfc3339() -> str:
    """The current UTC time as RFC 3339 text with milliseconds, e.g. ``2026-11-23T22:02:03.123Z``."""
    global _last_time_ms, _last_time_text
    now_ms = _time.time_ns() // 1_000_000
    if now_ms != _last_time_ms:
        # Formatting costs more than the rest of filling an event; many events share a millisecond.
        seconds, millis = divmod(now_ms, 1000)
        _last_time_text = _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(seconds)) + f".{millis:03d}Z"
        _last_time_ms = now_ms
    return _last_time_text


def _format_time(value: str | datetime) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidEventError("time: a datetime must be timezone-aware (use datetime.now(UTC))")
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if not isinstance(value, str) or not value:
        raise InvalidEventError(f"time: expected RFC 3339 text or a datetime, got {value!r}")
    if value != _last_checked_time[0]:
        if _RFC3339.fullmatch(value) is None:
            raise InvalidEventError(f"time: expected RFC 3339 text (e.g. 2026-11-23T10:00:00Z), got {value!r}")
        text = value.upper().replace("Z", "+00:00")
        if text[17:19] == "60":
            text = f"{text[:17]}59{text[19:]}"  # a leap second: RFC 3339 allows it, datetime does not
        try:
            datetime.fromisoformat(text)
        except ValueError as exc:
            raise InvalidEventError(f"time: {value!r} is not a valid RFC 3339 time ({exc})") from None
        _last_checked_time[0] = value  # events built in a loop often share their time
    return value


# datetime checks the date and the time of day; the offset it would take past 23:59 (+05:60 reads as +06:00).
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)")
_last_checked_time = [""]


def _check_text(name: str, value: object) -> str:
    if value.__class__ is not str or not value:
        raise InvalidEventError(f"{name}: expected a non-empty string, got {value!r}")
    if not value.isprintable():
        _check_characters(name, value)
    return value


def _check_characters(name: str, value: str) -> None:
    # isprintable() also says no to characters CloudEvents allows (U+00A0, U+200B, ...): only these are refused.
    found = _DISALLOWED_CHARACTER.search(value)
    if found is not None:
        raise InvalidEventError(
            f"{name}: {found.group()!r} at position {found.start()} is not allowed in a CloudEvents string"
            " (no control characters or lone surrogates)"
        )


def check_source(value: object) -> str:
    """``value`` if it is a valid ``source``: a non-empty URI-reference; else an `InvalidEventError` naming it."""
    text = _check_text("source", value)
    if text != _last_checked[0]:  # events built in a loop share their source: it is checked once
        if _URI_REFERENCE.match(text) is None:
            raise InvalidEventError(
                f"source: {text!r} is not a URI-reference (RFC 3986), e.g. /shop/orders or https://example.com/shop;"
                " percent-encode spaces and other characters a URI cannot hold"
            )
        _last_checked[0] = text
    return text


def _check_dataschema(value: object) -> str:
    text = _check_text("dataschema", value)
    if text != _last_checked[2]:
        if _URI.match(text) is None:
            raise InvalidEventError(
                f"dataschema: {text!r} is not an absolute URI (RFC 3986, with a scheme), e.g. https://example.com/schema"
            )
        _last_checked[2] = text
    return text


def _check_datacontenttype(value: object) -> str:
    text = _check_text("datacontenttype", value)
    if text != _last_checked[1]:
        if _MEDIA_TYPE.match(text) is None:
            raise InvalidEventError(
                f"datacontenttype: {text!r} is not a media type (RFC 2046), e.g. application/json or text/plain"
            )
        _last_checked[1] = text
    return text


# The last source, datacontenttype and dataschema found valid, and the last datacontenttype found to be JSON.
_last_checked = ["", "", "", ""]


class Event:
    """A CloudEvents 1.0 event.

    ``type`` is required; ``id``, ``source`` and ``time`` are filled when the event is published if they are
    missing. ``partitionkey``, ``traceparent``, ``correlationid`` and ``causationid`` are the extensions eventbus
    uses itself; any other lowercase alphanumeric extension can be passed in ``extensions`` (``None`` leaves one
    unset). Attributes are checked as CloudEvents types them: ``source`` a URI-reference, ``dataschema`` an
    absolute URI, ``datacontenttype`` a media type, ``time`` RFC 3339, strings without control characters.
    """

    __slots__ = ("_attrs",)

    _attrs: dict[str, Any]

    def __init__(  # noqa: PLR0912 - one branch per optional attribute, unrolled for speed
        self,
        type: str,
        data: Any = None,
        *,
        source: str | None = None,
        id: str | None = None,
        time: str | datetime | None = None,
        subject: str | None = None,
        datacontenttype: str | None = None,
        dataschema: str | None = None,
        partitionkey: str | None = None,
        traceparent: str | None = None,
        correlationid: str | None = None,
        causationid: str | None = None,
        extensions: Mapping[str, str | int | bool | None] | None = None,
    ) -> None:
        # Each check is inlined for the common case (a valid str, or the value the last event had) and calls out only
        # for the rest: outputs are built once per event on the hot path. Unrolled rather than looped, likewise.
        if type.__class__ is not str or not type or not type.isprintable():
            _check_text("type", type)
        attrs: dict[str, Any] = {"specversion": SPECVERSION, "type": type}
        if id is not None:
            attrs["id"] = id if id.__class__ is str and id and id.isprintable() else _check_text("id", id)
        if source is not None:
            attrs["source"] = source if source.__class__ is str and source == _last_checked[0] else check_source(source)
        if time is not None:
            attrs["time"] = _format_time(time)
        if subject is not None:
            attrs["subject"] = (
                subject
                if subject.__class__ is str and subject and subject.isprintable()
                else _check_text("subject", subject)
            )
        if datacontenttype is not None:
            attrs["datacontenttype"] = (
                datacontenttype
                if datacontenttype.__class__ is str and datacontenttype == _last_checked[1]
                else _check_datacontenttype(datacontenttype)
            )
        if dataschema is not None:
            attrs["dataschema"] = (
                dataschema
                if dataschema.__class__ is str and dataschema == _last_checked[2]
                else _check_dataschema(dataschema)
            )
        if partitionkey is not None:
            attrs["partitionkey"] = (
                partitionkey
                if partitionkey.__class__ is str and partitionkey and partitionkey.isprintable()
                else _check_text("partitionkey", partitionkey)
            )
        if traceparent is not None:
            attrs["traceparent"] = _check_text("traceparent", traceparent)
        if correlationid is not None:
            attrs["correlationid"] = _check_text("correlationid", correlationid)
        if causationid is not None:
            attrs["causationid"] = _check_text("causationid", causationid)
        if extensions:
            for extension, extension_value in extensions.items():
                # None is an unset extension, as null is in the JSON format: nothing to keep.
                if extension_value is not None:
                    attrs[_check_extension(extension, extension_value)] = extension_value
        if data is not None:
            if data.__class__ in _BINARY_TYPES:
                attrs["data_base64"] = base64.b64encode(bytes(data)).decode("ascii")
            else:
                if datacontenttype is not None and datacontenttype != _last_checked[3] and not isinstance(data, str):
                    _check_data_fits(datacontenttype, data)
                attrs["data"] = data
        self._attrs = attrs

    # -- construction from other forms ------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, attrs: Mapping[str, Any]) -> Event:
        """Build an event from its CloudEvents JSON form, checking the required attributes."""
        copied = dict(attrs)
        check_structured(copied)
        return cls.wrap(copied)

    @classmethod
    def wrap(cls, attrs: dict[str, Any]) -> Event:
        """View an already-checked CloudEvents dict as an event, without copying it."""
        event = cls.__new__(cls)
        event._attrs = attrs
        return event

    @classmethod
    def of(cls, instance: object, **attributes: Any) -> Event:
        """Wrap an instance of a typed event class (see :func:`event_type`) in an event of its bound type."""
        binding = binding_of(type(instance))
        if binding is None:
            raise InvalidEventError(
                f"{type(instance).__qualname__} is not bound to an event type; decorate it with @event_type(...)"
            )
        if binding.source is not None:
            attributes.setdefault("source", binding.source)
        return cls(binding.type, to_builtins(instance), **attributes)

    # -- attributes -------------------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        value: str = self._attrs.get("id", "")
        return value

    @property
    def source(self) -> str:
        value: str = self._attrs.get("source", "")
        return value

    @property
    def type(self) -> str:
        value: str = self._attrs["type"]
        return value

    @property
    def specversion(self) -> str:
        value: str = self._attrs["specversion"]
        return value

    @property
    def time(self) -> str | None:
        return self._attrs.get("time")

    @property
    def subject(self) -> str | None:
        return self._attrs.get("subject")

    @property
    def datacontenttype(self) -> str | None:
        return self._attrs.get("datacontenttype")

    @property
    def dataschema(self) -> str | None:
        return self._attrs.get("dataschema")

    @property
    def partitionkey(self) -> str | None:
        return self._attrs.get("partitionkey")

    @property
    def traceparent(self) -> str | None:
        return self._attrs.get("traceparent")

    @property
    def correlationid(self) -> str | None:
        return self._attrs.get("correlationid")

    @property
    def causationid(self) -> str | None:
        return self._attrs.get("causationid")

    @property
    def data(self) -> Any:
        attrs = self._attrs
        if "data" in attrs:
            return attrs["data"]
        encoded = attrs.get("data_base64")
        return None if encoded is None else base64.b64decode(encoded)

    @property
    def key(self) -> str | None:
        """The partition key: ``partitionkey`` if set, else ``subject``."""
        attrs = self._attrs
        return attrs.get("partitionkey") or attrs.get("subject")

    @property
    def extensions(self) -> dict[str, Any]:
        """Every attribute that is not a CloudEvents context attribute or the data (and is set: a JSON null is an
        unset attribute)."""
        return {
            k: v
            for k, v in self._attrs.items()
            if k not in CONTEXT_ATTRIBUTES and k not in DATA_MEMBERS and v is not None
        }

    def get(self, name: str, default: Any = None) -> Any:
        """Any attribute or extension by its CloudEvents name."""
        return self._attrs.get(name, default)

    def to_dict(self) -> dict[str, Any]:
        """The CloudEvents JSON form (a copy)."""
        return dict(self._attrs)

    def as_type(self, cls: builtins.type[T]) -> T:
        """The event's data as an instance of a typed event class (validated; unknown fields are ignored)."""
        return from_builtins(self.data, cls, what=f"event {self.id or '(no id)'} of type {self.type!r}")

    def replace(self, **attributes: Any) -> Event:
        """A copy with some attributes changed (``None`` removes an optional one)."""
        attrs = dict(self._attrs)
        for name, value in attributes.items():
            if value is None:
                if name in REQUIRED_ATTRIBUTES:
                    raise InvalidEventError(f"{name}: a required attribute cannot be removed")
                attrs.pop(name, None)
                if name == "data":
                    attrs.pop("data_base64", None)
            elif name == "data":
                attrs.pop("data_base64", None)
                attrs.pop("data", None)
                if value.__class__ in _BINARY_TYPES:
                    attrs["data_base64"] = base64.b64encode(bytes(value)).decode("ascii")
                else:
                    attrs["data"] = value
            elif name in CONTEXT_ATTRIBUTES:
                attrs[name] = _check_context_attribute(name, value)
            else:
                attrs[_check_extension(name, value)] = value
        if "data" in attributes or "datacontenttype" in attributes:
            data, content_type = attrs.get("data"), attrs.get("datacontenttype")
            if content_type is not None and data is not None and not isinstance(data, str):
                _check_data_fits(content_type, data)
        return Event.wrap(attrs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and self._attrs == other._attrs

    def __hash__(self) -> int:
        return hash((self._attrs.get("source"), self._attrs.get("id")))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self._attrs.items() if k != "specversion")
        return f"Event({shown})"


_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


# Data of this type is eventbus's own: Avro data, decoded (see eventbus.codecs.avro).
_AVRO_MEDIA_TYPE: Final = "application/avro"


def _check_data_fits(content_type: str, data: object) -> None:
    """Refuse data other than text or bytes under a content type that is not JSON: the JSON format holds such data
    as a string encoded as the content type says, which a dict or a number is not."""
    if content_type == _last_checked[3]:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media.endswith(("/json", "+json")) or media == _AVRO_MEDIA_TYPE:
        _last_checked[3] = content_type
        return
    raise InvalidEventError(
        f"data: datacontenttype {content_type!r} is not JSON, so the data must be text (a str) or bytes,"
        f" got {builtins.type(data).__name__}; use a JSON content type (application/json) for structured data"
    )


def _check_context_attribute(name: str, value: object) -> Any:
    """A context attribute's value, checked as the spec types it (``name`` is one of `CONTEXT_ATTRIBUTES`)."""
    if name == "specversion":
        if value != SPECVERSION:
            raise InvalidEventError(f"specversion: only {SPECVERSION!r} is supported, got {value!r}")
        return SPECVERSION
    if name == "time":
        return _format_time(value)  # type: ignore[arg-type]  # anything else is refused, naming it
    if name == "source":
        return check_source(value)
    if name == "dataschema":
        return _check_dataschema(value)
    if name == "datacontenttype":
        return _check_datacontenttype(value)
    return _check_text(name, value)


_NOT_EXTENSIONS: Final = CONTEXT_ATTRIBUTES | DATA_MEMBERS


def _refuse_extension_name(name: object) -> None:
    if name == "data":
        raise InvalidEventError("extension 'data': the name is reserved for the event's data (CloudEvents 1.0)")
    if name in CONTEXT_ATTRIBUTES:
        # Passed as an extension, it would skip the checks its own parameter makes (or override the specversion).
        raise InvalidEventError(
            f"extension {name!r}: {name} is a CloudEvents context attribute; pass it as {name}=..., not in extensions"
        )
    raise InvalidEventError(f"extension {name!r}: names must be lowercase letters and digits (CloudEvents 1.0)")


def _check_extension(name: str, value: object) -> str:
    if name not in _EXTENSION_NAMES:
        if name in _NOT_EXTENSIONS or name.__class__ is not str or not _EXTENSION_NAME.match(name):
            _refuse_extension_name(name)
        if len(_EXTENSION_NAMES) < _MAX_EXTENSION_NAMES:
            _EXTENSION_NAMES.add(name)
    kind = value.__class__
    if kind is str:
        if not value.isprintable():  # type: ignore[attr-defined]  # a str, as its class says
            _check_characters(f"extension {name!r}", value)  # type: ignore[arg-type]
        return name
    if kind is bool:
        return name
    if not isinstance(value, str | int):
        raise InvalidEventError(f"extension {name!r}: expected a string, integer or boolean, got {value!r}")
    if isinstance(value, str):
        if not value.isprintable():
            _check_characters(f"extension {name!r}", value)
    elif not isinstance(value, bool) and not _INT32_MIN <= value <= _INT32_MAX:
        # CloudEvents integers are 32-bit: other SDKs reading the event would refuse it or wrap it round.
        raise InvalidEventError(
            f"extension {name!r}: the integer {value} is outside the 32-bit range CloudEvents allows"
            f" ({_INT32_MIN} to {_INT32_MAX}); send it as a string"
        )
    return name


# Extension names found valid: events carry the same few over and over. They are the user's: bounded.
_EXTENSION_NAMES: set[str] = set()
_MAX_EXTENSION_NAMES = 1024


def check_structured(attrs: Mapping[str, Any]) -> None:
    """Check a CloudEvents JSON form has its required attributes; the error names the first one missing."""
    for name in REQUIRED_ATTRIBUTES:
        value = attrs.get(name)
        if not isinstance(value, str) or not value:
            if value is None:
                raise InvalidEventError(f"{name}: required attribute is missing")
            raise InvalidEventError(f"{name}: expected a non-empty string, got {value!r}")
    if attrs["specversion"] != SPECVERSION:
        raise InvalidEventError(f"specversion: only {SPECVERSION!r} is supported, got {attrs['specversion']!r}")


def complete(event: Event, default_source: str) -> dict[str, Any]:
    """Fill what publishing needs (id, time, source) in place and return the CloudEvents JSON form."""
    attrs = event._attrs
    if "id" not in attrs:
        attrs["id"] = new_event_id()
    if "time" not in attrs:
        attrs["time"] = now_rfc3339()
    if "source" not in attrs:
        attrs["source"] = default_source
    return attrs


# -- typed events ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class EventBinding:
    """What :func:`event_type` attaches to a class: its CloudEvents type, and optional default topic and source."""

    type: str
    topic: str | None = None
    source: str | None = None


_BINDING_ATTRIBUTE: Final = "__eventbus_event__"


def event_type(type_name: str, *, topic: str | None = None, source: str | None = None) -> Callable[[type[T]], type[T]]:
    """Bind a dataclass (or ``msgspec.Struct``) to a CloudEvents ``type``.

    ``topic`` is where instances go when a processor returns one without naming a topic.
    """
    _check_text("type", type_name)

    def bind(cls: type[T]) -> type[T]:
        if not isinstance(cls, type):
            raise TypeError(f"@event_type({type_name!r}) decorates a class, got {cls!r}")
        if not _is_convertible_class(cls):
            raise TypeError(
                f"@event_type({type_name!r}): {cls.__qualname__} must be a dataclass or a msgspec.Struct "
                "(put @event_type above @dataclass)"
            )
        setattr(cls, _BINDING_ATTRIBUTE, EventBinding(type_name, topic, source))
        return cls

    return bind


def binding_of(cls: object) -> EventBinding | None:
    """The binding :func:`event_type` gave a class, or None."""
    if not isinstance(cls, type):
        return None
    binding = cls.__dict__.get(_BINDING_ATTRIBUTE)
    return binding if isinstance(binding, EventBinding) else None


def _is_convertible_class(cls: type) -> bool:
    if dataclasses.is_dataclass(cls):
        return True
    return any(base.__module__ == "msgspec" and base.__name__ == "Struct" for base in cls.__mro__)


def to_builtins(instance: object) -> Any:
    """A typed event instance as JSON-ready builtins (dicts, lists, strings, numbers)."""
    import msgspec

    return msgspec.to_builtins(instance)


def from_builtins(data: Any, cls: type[T], *, what: str) -> T:
    """Build a typed event instance from JSON data; a mismatch names the field (``$.amount``) and the class."""
    import msgspec

    try:
        return msgspec.convert(data, cls)
    except msgspec.ValidationError as exc:
        raise InvalidEventError(f"{what}: data does not fit {cls.__qualname__}: {exc}") from None
