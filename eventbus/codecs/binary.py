"""The CloudEvents Kafka protocol binding, binary mode: attributes in ``ce_*`` headers, the data as the value.

``content-type`` carries ``datacontenttype``. JSON data (``application/json`` or any ``+json`` type, or no content
type) is parsed, so a processor sees the same dict whichever mode the producer used; other data stays bytes.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from eventbus.errors import DecodeError
from eventbus.event import SPECVERSION, InvalidEventError, check_structured

Headers = tuple[tuple[str, bytes], ...]

HEADER_PREFIX: Final = "ce_"
CONTENT_TYPE_HEADER: Final = "content-type"


def is_json_content_type(content_type: str | None) -> bool:
    """Whether a ``datacontenttype`` declares JSON data: none (JSON is implied), ``*/json`` or ``*/*+json``,
    parameters aside (the CloudEvents JSON format, 3.1)."""
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media.endswith(("/json", "+json"))


# Header names by attribute name, made once: events carry the same few attributes over and over. The attributes
# the binding maps differently (data, data_base64, datacontenttype) are never in it.
_HEADER_NAMES: dict[str, str] = {
    name: HEADER_PREFIX + name
    for name in (
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "subject",
        "dataschema",
        "partitionkey",
        "traceparent",
        "tracestate",
        "correlationid",
        "causationid",
    )
}
_OCTET_STREAM: Final = b"application/octet-stream"
_MAX_HEADER_NAMES = 1024  # extension names are the user's: bound what they can make this keep
_SPECIAL = frozenset({"data", "data_base64", "datacontenttype"})


def encode_binary(attrs: dict[str, Any]) -> tuple[Headers, bytes | None]:
    """Headers and value for a complete CloudEvents dict."""
    names = _HEADER_NAMES
    if "datacontenttype" not in attrs and "data_base64" not in attrs:
        try:
            # The common event: every attribute a string under a known name, JSON data.
            headers = [(names[name], value.encode()) for name, value in attrs.items() if name != "data"]
        except (KeyError, AttributeError):
            pass
        else:
            headers.append((CONTENT_TYPE_HEADER, b"application/json"))
            data = attrs.get("data", _MISSING)
            if data is _MISSING:
                headers.pop()
                return tuple(headers), None
            return tuple(headers), _json_data(data)
    return _encode_binary_slowly(attrs)


def _encode_binary_slowly(attrs: dict[str, Any]) -> tuple[Headers, bytes | None]:
    names = _HEADER_NAMES
    headers: list[tuple[str, bytes]] = []
    append = headers.append
    for name, value in attrs.items():
        header = names.get(name)
        if header is not None and value.__class__ is str:
            append((header, value.encode()))
        elif name in _SPECIAL or value is None:
            # None is an unset attribute (a JSON null from a structured-mode producer): no header, not "null".
            if name == "datacontenttype" and value is not None:
                append((CONTENT_TYPE_HEADER, str(value).encode()))
        else:
            if header is None:
                header = HEADER_PREFIX + name
                if len(names) < _MAX_HEADER_NAMES:
                    names[name] = header
            text = value if isinstance(value, str) else orjson.dumps(value).decode()
            append((header, text.encode()))
    if attrs.get("data_base64") is not None:
        import base64

        if attrs.get("datacontenttype") is None:
            # Without a content type a binary-mode reader takes the value for JSON (as eventbus does): say it is bytes.
            append((CONTENT_TYPE_HEADER, _OCTET_STREAM))
        return tuple(headers), base64.b64decode(attrs["data_base64"])
    data = attrs.get("data", _MISSING)
    if data is _MISSING:
        return tuple(headers), None
    content_type = attrs.get("datacontenttype")
    if content_type is None:
        append((CONTENT_TYPE_HEADER, b"application/json"))
    elif isinstance(data, str) and not is_json_content_type(content_type):
        return tuple(headers), data.encode()
    return tuple(headers), _json_data(data)


def _json_data(data: Any) -> bytes:
    try:
        return orjson.dumps(data)
    except TypeError:
        # Bytes from Avro data, say (see json_values); anything else is refused as before.
        from eventbus.codecs.json_values import dumps

        return dumps(data)


_MISSING: Any = object()


# What each header name means to a binary-mode record, worked out once per distinct name: the attribute a ce_*
# header carries, _CONTENT_TYPE for content-type, None for a header that is none of the event's. Records carry the
# same few names over and over; this saves lowering and slicing them per record.
_CONTENT_TYPE: Final[Any] = object()  # not a str: a "ce_" header names the attribute ""
_HEADER_ROLES: dict[str, Any] = {}
# Whether a content type is JSON, per distinct content type.
_JSON_CONTENT_TYPES: dict[str, bool] = {}
_MAX_REMEMBERED = 1024  # names and content types are the producers': bound what they can make this keep


def header_role(name: str) -> Any:
    """The attribute a header carries (``ce_id`` -> ``id``), `_CONTENT_TYPE` for content-type, else None."""
    role = _HEADER_ROLES.get(name, _MISSING)
    if role is _MISSING:
        lowered = name.lower()
        if lowered.startswith(HEADER_PREFIX):
            role = lowered[len(HEADER_PREFIX) :]
        else:
            role = _CONTENT_TYPE if lowered == CONTENT_TYPE_HEADER else None
        if len(_HEADER_ROLES) < _MAX_REMEMBERED:
            _HEADER_ROLES[name] = role
    return role


def _is_json(content_type: str) -> bool:
    found = _JSON_CONTENT_TYPES.get(content_type)
    if found is None:
        found = is_json_content_type(content_type)
        if len(_JSON_CONTENT_TYPES) < _MAX_REMEMBERED:
            _JSON_CONTENT_TYPES[content_type] = found
    return found


def decode_binary(headers: Headers, value: bytes | None) -> dict[str, Any]:
    """The CloudEvents dict of a binary-mode record; `DecodeError` names what is wrong. Headers that are not the
    event's (another producer's tracing, say) are left alone, whatever their bytes."""
    attrs: dict[str, Any] = {}
    content_type: str | None = None
    roles = _HEADER_ROLES
    for name, raw in headers:
        role = roles.get(name, _MISSING)
        if role is _MISSING:
            role = header_role(name)
        if role is None:
            continue
        try:
            text = raw.decode() if raw is not None else ""
        except UnicodeDecodeError:
            raise DecodeError(f"header {name!r} is not UTF-8") from None
        if role is _CONTENT_TYPE:
            content_type = text
        else:
            attrs[role] = text
    if content_type is not None:
        attrs["datacontenttype"] = content_type
    # Every value is a str here: the required ones only need to be there, non-empty, and the version right.
    if not (attrs.get("specversion") == SPECVERSION and attrs.get("id") and attrs.get("source") and attrs.get("type")):
        try:
            check_structured(attrs)
        except InvalidEventError as exc:
            raise DecodeError(f"record is not a valid CloudEvent (binary mode): {exc}") from None
    if value is not None:
        _add_data(attrs, value, content_type)
    return attrs


def _add_data(attrs: dict[str, Any], value: bytes, content_type: str | None) -> None:
    if content_type is None or _is_json(content_type):
        try:
            attrs["data"] = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"record data is declared JSON but does not parse ({exc})") from None
    else:
        import base64

        attrs["data_base64"] = base64.b64encode(value).decode("ascii")
