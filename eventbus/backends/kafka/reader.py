"""Direct reads, outside any group: `Log.read`, and finding where partitions start and end.

Where a partition starts and ends is learnt by fetching, not by asking for offsets (ListOffsets, whose answers
differ between brokers): a fetch response carries the partition's high watermark, a fetch at the end of a
partition yields an end-of-partition event, and the first record a fetch from offset 0 meets is the first one
still held. It costs one fetch per partition (stopped after its first response).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any, Final

from eventbus.backends.base import RecordBatch, TopicPartition
from eventbus.backends.kafka.admin import build_client
from eventbus.backends.kafka.clients import reader_config
from eventbus.backends.kafka.config import KafkaSettings
from eventbus.backends.kafka.errors import error_name, translate, translated
from eventbus.backends.kafka.records import sort_out
from eventbus.errors import BackendError

# librdkafka's logical offsets and the error of a fetch outside the partition's range (with reset=error).
OFFSET_BEGINNING: Final = -2
_OUT_OF_RANGE: Final = frozenset({"_AUTO_OFFSET_RESET", "OFFSET_OUT_OF_RANGE"})

# How long one read or probe may wait for the brokers before it is an error.
READ_TIMEOUT_S: Final = 15.0


class _Assigned:
    """One lazily created consumer that is assigned partitions directly; used by one thread at a time."""

    def __init__(self, settings: KafkaSettings, *, probe: bool) -> None:
        self._settings = settings
        self._probe = probe
        self._consumer: Any = None
        self._known_topics: set[str] = set()
        self.lock = threading.Lock()

    @property
    def client(self) -> Any:
        if self._consumer is None:
            from confluent_kafka import Consumer

            self._consumer = build_client(Consumer, reader_config(self._settings, probe=self._probe), self._settings)
            self._known_topics.clear()
        return self._consumer

    def assign(self, partitions: list[Any]) -> Any:
        """The client, assigned ``partitions`` (confluent_kafka TopicPartitions with offsets)."""
        client = self.client
        for topic in {p.topic for p in partitions} - self._known_topics:
            # A topic new to the client waits for librdkafka's once-a-second topic scan before it is fetched;
            # asking for its metadata first makes it known at once. (The topics exist: callers checked.)
            client.list_topics(topic, timeout=READ_TIMEOUT_S)
            self._known_topics.add(topic)
        client.assign(partitions)
        return client

    def close(self) -> None:
        with self.lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


class Bounds:
    """Finds the start and end offsets of partitions by fetching (see the module docstring)."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._assigned = _Assigned(settings, probe=True)

    def of(
        self, starts: Mapping[TopicPartition, int | None], timeout_s: float = READ_TIMEOUT_S
    ) -> dict[TopicPartition, tuple[int, int]]:
        """``(first, end)`` of each partition, fetching from ``starts[tp]`` (None: its beginning): ``first`` is the
        offset of the first record read from there (``end`` if none), so from the beginning it is where the
        partition starts. A fetch answers at once where records remain, so callers pass where they expect the
        end to be."""
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        if not starts:
            return {}
        found: dict[TopicPartition, tuple[int, int]] = {}
        where = ", ".join(sorted({tp.topic for tp in starts}))
        with self._assigned.lock, translated(f"{self._settings.redacted_url}: looking for the ends of {where}"):
            # From offset 0 rather than the logical beginning, which costs a ListOffsets round trip (and half a
            # second in librdkafka); a partition that no longer starts at 0 reports "out of range" instead.
            client = self._assigned.assign(
                [KafkaTopicPartition(tp.topic, tp.partition, start or 0) for tp, start in starts.items()]
            )
            deadline = time.monotonic() + timeout_s
            try:
                while len(found) < len(starts):
                    if time.monotonic() > deadline:
                        missing = sorted(str(tp) for tp in starts if tp not in found)
                        raise BackendError(
                            f"{self._settings.redacted_url}: no answer within {timeout_s:g} s while looking for "
                            f"the end of {', '.join(missing)}"
                        )
                    for message in _next(client):
                        tp = TopicPartition(message.topic(), message.partition())
                        if tp in found or tp not in starts:
                            continue
                        error = message.error()
                        name = "" if error is None else error_name(error)
                        if name in _OUT_OF_RANGE:
                            # Asked beyond either end: look again from the beginning.
                            restart = [KafkaTopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING)]
                            client.incremental_unassign(restart)
                            client.incremental_assign(restart)
                            continue
                        if error is not None and name != "_PARTITION_EOF":
                            raise translate(error, f"{self._settings.redacted_url}: reading {tp}", topic=tp.topic)
                        if error is not None:
                            # At the end: the event's offset is the end (and, from the beginning, the start).
                            found[tp] = (message.offset(), message.offset())
                            continue
                        # A record: the fetch that brought it also brought the high watermark. (The log start
                        # offset in fetch responses is not trusted: not every broker fills it in.)
                        _, high = client.get_watermark_offsets(KafkaTopicPartition(tp.topic, tp.partition), cached=True)
                        found[tp] = (message.offset(), max(high, message.offset() + 1))
            finally:
                client.unassign()
        return found

    def close(self) -> None:
        self._assigned.close()


class PartitionReader:
    """`Log.read`: records of one partition from an offset, through a consumer assigned to it directly."""

    def __init__(self, settings: KafkaSettings, bounds: Bounds) -> None:
        self._settings = settings
        self._bounds = bounds
        self._assigned = _Assigned(settings, probe=False)

    def read(self, topic: str, partition: int, offset: int, max_records: int) -> RecordBatch:
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        tp = TopicPartition(topic, partition)
        batch = RecordBatch.empty(topic, partition, offset)
        if max_records <= 0:
            return batch
        with self._assigned.lock, translated(f"{self._settings.redacted_url}: reading {tp}", topic=topic):
            client = self._assigned.assign([KafkaTopicPartition(topic, partition, offset)])
            # Reads are what `eventbus consume` follows a topic with: they ride out a broker restart as a worker
            # does, for broker_unavailable_timeout_s (librdkafka reconnects meanwhile), never less than 15 s.
            timeout_s = max(READ_TIMEOUT_S, self._settings.broker_unavailable_timeout_s)
            deadline = time.monotonic() + timeout_s
            try:
                while len(batch) < max_records:
                    if time.monotonic() > deadline:
                        raise BackendError(
                            f"{self._settings.redacted_url}: reading {tp} from offset {offset}: no answer within "
                            f"{timeout_s:g} s (broker_unavailable_timeout_s="
                            f"{self._settings.broker_unavailable_timeout_s:g}); is the broker running?"
                        )
                    consumed = sort_out(
                        _next(client, min(max_records - len(batch), 10_000)), self._settings.default_type
                    )
                    for part in consumed.batches:
                        _extend(batch, part)
                    for error in consumed.errors:
                        if error_name(error) not in _OUT_OF_RANGE:
                            raise translate(error, f"{self._settings.redacted_url}: reading {tp}", topic=topic)
                        if batch.offsets:
                            return batch
                        # Outside the partition: past its end reads nothing; before its start reads from it.
                        start, end = self._bounds.of({tp: None})[tp]
                        if offset >= end:
                            return batch
                        client.assign([KafkaTopicPartition(topic, partition, start)])
                    reached = consumed.ends.get((topic, partition))
                    if reached is not None:
                        batch.next_offset = max(batch.next_offset, reached)
                        return batch
                    if not consumed.batches and not batch.offsets and _past_the_end(client, tp, offset):
                        # Some brokers answer a fetch beyond the end with nothing rather than "out of range".
                        return batch
            finally:
                client.unassign()
        return batch

    def close(self) -> None:
        self._assigned.close()


def _past_the_end(client: Any, tp: TopicPartition, offset: int) -> bool:
    from confluent_kafka import TopicPartition as KafkaTopicPartition

    _, high = client.get_watermark_offsets(KafkaTopicPartition(tp.topic, tp.partition), cached=True)
    return bool(0 <= high < offset)


def _next(client: Any, max_messages: int = 500) -> list[Any]:
    """What librdkafka has now, else the first message or event within a short wait (consume() would wait its
    whole timeout for a full batch)."""
    messages: list[Any] = client.consume(max_messages, 0)
    if messages:
        return messages
    first = client.poll(0.05)
    return [] if first is None else [first]


def _extend(batch: RecordBatch, part: RecordBatch) -> None:
    batch.offsets.extend(part.offsets)
    batch.timestamps_ms.extend(part.timestamps_ms)
    batch.keys.extend(part.keys)
    batch.values.extend(part.values)
    batch.headers.extend(part.headers)
    batch.next_offset = part.next_offset
