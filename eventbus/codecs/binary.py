"""The CloudEvents Kafka protocol binding, binary mode: attributes in ``ce_*`` headers, the data as the value.

``content-type`` carries ``datacontenttype``. JSON data (``application/json`` or any ``+json`` type, or no content
type) is parsed, so a processor sees the same dict whichever mode the producer used; other data stays bytes.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from eventbus.errors import DecodeError
from eventbus.event import InvalidEventError, check_structured

Headers = tuple[tuple[str, bytes], ...]

HEADER_PREFIX: Final = "ce_"
CONTENT_TYPE_HEADER: Final = "content-type"


def is_json_content_type(content_type: str | None) -> bool:
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json") or media == "text/json"


def encode_binary(attrs: dict[str, Any]) -> tuple[Headers, bytes | None]:
    """Headers and value for a complete CloudEvents dict."""
    headers: list[tuple[str, bytes]] = []
    for name, value in attrs.items():
        if name in ("data", "data_base64"):
            continue
        if name == "datacontenttype":
            headers.append((CONTENT_TYPE_HEADER, str(value).encode()))
        else:
            text = value if isinstance(value, str) else orjson.dumps(value).decode()
            headers.append((HEADER_PREFIX + name, text.encode()))
    if "data_base64" in attrs:
        import base64

        return tuple(headers), base64.b64decode(attrs["data_base64"])
    if "data" not in attrs:
        return tuple(headers), None
    if "datacontenttype" not in attrs:
        headers.append((CONTENT_TYPE_HEADER, b"application/json"))
    data = attrs["data"]
    if isinstance(data, str) and not is_json_content_type(attrs.get("datacontenttype")):
        return tuple(headers), data.encode()
    return tuple(headers), orjson.dumps(data)


def decode_binary(headers: Headers, value: bytes | None) -> dict[str, Any]:
    """The CloudEvents dict of a binary-mode record; `DecodeError` names what is wrong."""
    attrs: dict[str, Any] = {}
    content_type: str | None = None
    for name, raw in headers:
        lowered = name.lower()
        try:
            text = raw.decode() if raw is not None else ""
        except UnicodeDecodeError:
            raise DecodeError(f"header {name!r} is not UTF-8") from None
        if lowered.startswith(HEADER_PREFIX):
            attrs[lowered[len(HEADER_PREFIX) :]] = text
        elif lowered == CONTENT_TYPE_HEADER:
            content_type = text
    if content_type is not None:
        attrs["datacontenttype"] = content_type
    try:
        check_structured(attrs)
    except InvalidEventError as exc:
        raise DecodeError(f"record is not a valid CloudEvent (binary mode): {exc}") from None
    if value is not None:
        if is_json_content_type(content_type):
            try:
                attrs["data"] = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                raise DecodeError(f"record data is declared JSON but does not parse ({exc})") from None
        else:
            import base64

            attrs["data_base64"] = base64.b64encode(value).decode("ascii")
    return attrs
