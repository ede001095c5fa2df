"""The CloudEvents JSON format ("structured mode"): the whole event, attributes and data, as one JSON object.

Encoding is one ``orjson.dumps`` of the event's dict; decoding is one ``orjson.loads`` followed by a check of the
required attributes. The decoded dict is what routing matches on and what `Event` views, so an event is parsed
exactly once on its way through a worker.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from eventbus.codecs.json_values import dumps as dumps_with_avro_values
from eventbus.errors import DecodeError
from eventbus.event import SPECVERSION, InvalidEventError, check_structured

CONTENT_TYPE: Final = "application/cloudevents+json"

_loads = orjson.loads
_dumps = orjson.dumps


def encode_structured(attrs: dict[str, Any]) -> bytes:
    """The JSON bytes of a complete CloudEvents dict."""
    try:
        return _dumps(attrs)
    except TypeError:
        pass  # bytes from Avro data, say: written as base64 text by the slower path below
    try:
        return dumps_with_avro_values(attrs)
    except TypeError as exc:
        raise InvalidEventError(
            f"event {attrs.get('id')!r} of type {attrs.get('type')!r}: data is not JSON-serialisable: {exc}"
        ) from None


# What to do about records other producers wrote (neither ce_* headers nor a structured CloudEvent): the error is
# read in dead-letter records and worker logs, far from the broker URL that fixes it.
FOREIGN_RECORD_HINT = (
    "; records of producers that write no CloudEvents are read with a default type: on Kafka, add"
    " ?default_type=TYPE to the broker URL"
)


def partition_key(attrs: dict[str, Any]) -> bytes | None:
    """The record key of an event: ``partitionkey``, else ``subject``, else none."""
    key = attrs.get("partitionkey") or attrs.get("subject")
    return None if key is None else str(key).encode()


def decode_structured(value: bytes | None) -> dict[str, Any]:
    """Parse and check one record value; raises `DecodeError` naming what is wrong."""
    try:
        attrs = _loads(value)  # type: ignore[arg-type]  # None and b"" fail here and are reported below
        # The common case: a dict with its required attributes as non-empty strings. Indexing rather than
        # testing first keeps it to a few lookups; anything else falls through to the detailed check.
        if (
            attrs["specversion"] == SPECVERSION
            and attrs["id"].__class__ is str
            and attrs["source"].__class__ is str
            and attrs["type"].__class__ is str
            and attrs["id"]
            and attrs["source"]
            and attrs["type"]
        ):
            return attrs  # type: ignore[no-any-return]
    except (KeyError, TypeError, orjson.JSONDecodeError):
        pass
    return _explain(value)


def _explain(value: bytes | None) -> dict[str, Any]:
    """The slow path: accept what the fast path's strictness missed, or say exactly what is wrong."""
    if not value:
        raise DecodeError(f"record has an empty value, not a CloudEvents JSON object{FOREIGN_RECORD_HINT}")
    try:
        attrs = _loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"record value is not valid JSON ({exc}){FOREIGN_RECORD_HINT}") from None
    if type(attrs) is not dict:
        raise DecodeError(f"record value is JSON {type(attrs).__name__}, not a CloudEvents object{FOREIGN_RECORD_HINT}")
    try:
        check_structured(attrs)
    except InvalidEventError as exc:
        raise DecodeError(f"record is not a valid CloudEvent: {exc}{FOREIGN_RECORD_HINT}") from None
    return attrs
