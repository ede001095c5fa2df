"""Codecs: events to record bytes and back.

Two CloudEvents modes: *structured* (the whole event as one JSON object, what the embedded log stores) and
*binary* (attributes in ``ce_*`` headers, data as the value, what goes to Kafka). `decode_record` reads either.
Avro data (``eventbus.codecs.avro``) travels in binary mode with ``content-type: application/avro``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from eventbus.codecs.binary import CONTENT_TYPE_HEADER, HEADER_PREFIX, Headers, decode_binary, encode_binary
from eventbus.codecs.structured import CONTENT_TYPE, decode_structured, encode_structured, partition_key

__all__ = [
    "AvroDataDecoder",
    "decode_binary",
    "decode_record",
    "decode_structured",
    "encode_binary",
    "encode_structured",
    "partition_key",
]


# Decodes the data of an Avro record: (record value, the event's attributes) -> data. See eventbus.codecs.avro.
AvroDataDecoder = Callable[[bytes, dict[str, Any]], Any]

_AVRO_MEDIA_TYPE: Final = "application/avro"


def decode_record(value: bytes | None, headers: Headers | None, avro: AvroDataDecoder | None = None) -> dict[str, Any]:
    """The CloudEvents dict of a record in either mode; raises `DecodeError`.

    With ``avro``, the data of a binary-mode record whose content type is ``application/avro`` is decoded with it;
    without, such data is kept as bytes (``data_base64``), like any data that is not JSON.
    """
    if headers:
        for name, raw in headers:
            lowered = name.lower()
            if lowered.startswith(HEADER_PREFIX) or (
                lowered == CONTENT_TYPE_HEADER and raw.split(b";", 1)[0].strip().lower() != CONTENT_TYPE.encode()
            ):
                attrs = decode_binary(headers, value)
                # JSON data was parsed into "data": only data kept as bytes can be Avro.
                if "data_base64" in attrs and avro is not None and value and _is_avro(attrs.get("datacontenttype")):
                    del attrs["data_base64"]
                    attrs["data"] = avro(value, attrs)
                return attrs
    return decode_structured(value)


def _is_avro(content_type: str | None) -> bool:
    return content_type is not None and content_type.split(";", 1)[0].strip().lower() == _AVRO_MEDIA_TYPE
