"""Codecs: events to record bytes and back.

Two CloudEvents modes: *structured* (the whole event as one JSON object, what the embedded log stores) and
*binary* (attributes in ``ce_*`` headers, data as the value, what goes to Kafka). `decode_record` reads either.
"""

from __future__ import annotations

from typing import Any

from eventbus.codecs.binary import CONTENT_TYPE_HEADER, HEADER_PREFIX, Headers, decode_binary, encode_binary
from eventbus.codecs.structured import CONTENT_TYPE, decode_structured, encode_structured, partition_key

__all__ = [
    "decode_binary",
    "decode_record",
    "decode_structured",
    "encode_binary",
    "encode_structured",
    "partition_key",
]


def decode_record(value: bytes | None, headers: Headers | None) -> dict[str, Any]:
    """The CloudEvents dict of a record in either mode; raises `DecodeError`."""
    if headers:
        for name, raw in headers:
            lowered = name.lower()
            if lowered.startswith(HEADER_PREFIX):
                return decode_binary(headers, value)
            if lowered == CONTENT_TYPE_HEADER and raw.split(b";", 1)[0].strip().lower() != CONTENT_TYPE.encode():
                return decode_binary(headers, value)
    return decode_structured(value)
