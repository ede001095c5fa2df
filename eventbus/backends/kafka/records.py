"""From librdkafka messages to `RecordBatch` columns, and what else a consume returns (end-of-partition events,
errors).

Records of other producers that carry no CloudEvent (no ``ce_*`` headers, no structured CloudEvent as the value)
get, when the log has a ``default_type``, the headers of a binary-mode CloudEvent: that type, an id made of the
record's coordinates, a source naming the topic, and the record key (when it is text) as ``partitionkey``, so a
keyed stream keeps its keys: outputs inherit them, and ``ordering="key"`` orders by them. Without a default type
they pass unchanged, and the worker's decoder reports them as undecodable (dead-lettered, never a crash).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from eventbus.backends.base import Headers, RecordBatch

_PARTITION_EOF: Final = -191  # confluent_kafka.KafkaError._PARTITION_EOF, without importing it here
_JSON_START: Final = frozenset(b'{["-0123456789tfn')
_STRUCTURED_CONTENT_TYPE: Final = b"application/cloudevents+json"


@dataclass(slots=True)
class Consumed:
    """What one consume returned, sorted out."""

    batches: list[RecordBatch] = field(default_factory=list)
    # (topic, partition) -> the offset where the partition ends, for partitions that reached their end.
    ends: dict[tuple[str, int], int] = field(default_factory=dict)
    errors: list[Any] = field(default_factory=list)


def sort_out(messages: Sequence[Any], default_type: str | None = None) -> Consumed:
    """Batches per partition, in offset order, plus end-of-partition events and errors.

    librdkafka hands out messages in runs of one partition; each run's columns are built with ``map`` over the
    message accessors, which costs a fraction of calling them one message at a time.
    """
    from confluent_kafka import Message

    result = Consumed()
    if not messages:
        return result
    # Typed loosely: confluent_kafka declares every accessor Optional, though records always have them.
    errors: list[Any] = list(map(Message.error, messages))
    topics: list[Any] = list(map(Message.topic, messages))
    partitions: list[Any] = list(map(Message.partition, messages))
    by_partition: dict[tuple[str, int], RecordBatch] = {}
    count = len(messages)
    start = 0
    while start < count:
        topic, partition, error = topics[start], partitions[start], errors[start]
        end = start + 1
        if error is None:
            while end < count and errors[end] is None and partitions[end] == partition and topics[end] == topic:
                end += 1
            _add_run(result, by_partition, (topic, partition), messages[start:end])
        elif error.code() == _PARTITION_EOF:
            offset = messages[start].offset()
            result.ends[(topic, partition)] = offset
            found = by_partition.get((topic, partition))
            if found is not None:
                # Past the last record, possibly past transaction markers too: where reading goes on.
                found.next_offset = max(found.next_offset, offset)
        else:
            result.errors.append(error)
        start = end
    if default_type is not None:
        for found in result.batches:
            add_cloudevent_headers(found, default_type)
    return result


def _add_run(
    result: Consumed, by_partition: dict[tuple[str, int], RecordBatch], key: tuple[str, int], run: Sequence[Any]
) -> None:
    from confluent_kafka import Message

    batch = by_partition.get(key)
    if batch is None:
        batch = by_partition[key] = RecordBatch(key[0], key[1], [], [], [], [], [], 0)
        result.batches.append(batch)
    # A record after an end event: the partition has grown since.
    result.ends.pop(key, None)
    offsets: list[Any] = list(map(Message.offset, run))
    headers: list[Any] = list(map(Message.headers, run))
    if any(headers):
        headers = [None if h is None else _headers(h) for h in headers]
    batch.offsets += offsets
    timestamps: list[Any] = [ts for _, ts in map(Message.timestamp, run)]
    batch.timestamps_ms += timestamps
    batch.keys += map(Message.key, run)
    batch.values += map(Message.value, run)
    batch.headers += headers
    batch.next_offset = offsets[-1] + 1


def _headers(raw: list[tuple[str, bytes | None]]) -> Headers:
    # Kafka allows a null header value; the contract's headers are bytes.
    return tuple((name, b"" if value is None else value) for name, value in raw)


def add_cloudevent_headers(batch: RecordBatch, default_type: str) -> None:
    """Give records that carry no CloudEvent the headers of a binary-mode one of ``default_type``."""
    for position, value in enumerate(batch.values):
        headers = batch.headers[position]
        if _carries_cloudevent(value, headers):
            continue
        stripped = (value or b"").lstrip()
        content_type = b"application/json" if stripped and stripped[0] in _JSON_START else b"application/octet-stream"
        offset = batch.offsets[position]
        added: Headers = (
            ("ce_specversion", b"1.0"),
            ("ce_id", f"{batch.topic}-{batch.partition}-{offset}".encode()),
            ("ce_source", f"/kafka/{batch.topic}".encode()),
            ("ce_type", default_type.encode()),
            ("content-type", content_type),
        )
        key = batch.keys[position]
        if key and _is_text(key):
            # The CloudEvents Kafka binding's key mapping, read backwards: the key is the partition key. (A key
            # that is not UTF-8 text, a serialised number say, has no string form that writes back the same key.)
            added += (("ce_partitionkey", key),)
        kept = tuple(h for h in headers or () if h[0].lower() != "content-type")
        batch.headers[position] = kept + added


def _is_text(key: bytes) -> bool:
    try:
        key.decode()
    except UnicodeDecodeError:
        return False
    return True


def _carries_cloudevent(value: bytes | None, headers: Headers | None) -> bool:
    for name, raw in headers or ():
        lowered = name.lower()
        if lowered.startswith("ce_"):
            return True
        if lowered == "content-type" and raw.split(b";", 1)[0].strip().lower() == _STRUCTURED_CONTENT_TYPE:
            return True
    return value is not None and value.lstrip()[:1] == b"{" and b'"specversion"' in value
