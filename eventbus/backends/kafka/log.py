"""The log contract on Apache Kafka (and any broker speaking its protocol), with confluent-kafka.

Events are written in the CloudEvents Kafka binding, binary mode (``event_mode = "binary"``): attributes in
``ce_*`` headers, the data as the value, the partition key as the record key.

Partitions are chosen here, not by librdkafka, so a key lands on the same partition number on every log:
CRC-32 of the key modulo the partition count (`partition_for_key`); records without key or partition go
round-robin. An append is acknowledged only when every record of it is (``acks=all``). Kafka has no multi-partition
append without a transaction: if a broker fails in the middle of a batch, the records acknowledged before the
failure stay, and the batch raises.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Mapping, Sequence

from eventbus.backends.base import (
    ConsumerSettings,
    GroupLag,
    Log,
    Message,
    PartitionState,
    RecordBatch,
    TopicDescription,
    TopicInfo,
    TopicPartition,
    check_topic_name,
    partition_for_key,
)
from eventbus.backends.kafka.admin import Admin
from eventbus.backends.kafka.config import KafkaSettings, parse_kafka_url
from eventbus.backends.kafka.consumer import KafkaConsumer
from eventbus.backends.kafka.producer import LIBRDKAFKA_MAX_MESSAGE_BYTES, BatchProducer, Outgoing, record_wire_bytes
from eventbus.backends.kafka.reader import Bounds, PartitionReader
from eventbus.errors import TopicNotFoundError


def open_kafka_log(url: str) -> KafkaLog:
    """Open a ``kafka://`` URL: parse it, check librdkafka accepts its settings, wait for a broker to answer."""
    return KafkaLog(parse_kafka_url(url))


class KafkaLog(Log):
    event_mode = "binary"

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.url = settings.redacted_url
        self.default_partitions = settings.default_partitions
        self.auto_create = settings.auto_create
        self._admin = Admin(settings)
        self._admin.check_reachable()
        # Appends return each record's offset; a consumer's outputs only need to be acknowledged.
        self.producer = BatchProducer(settings, with_offsets=True)
        self.outputs_producer = BatchProducer(settings, with_offsets=False)
        self.bounds = Bounds(settings)
        self._reader = PartitionReader(settings, self.bounds)
        self._round_robin: dict[str, itertools.count[int]] = {}
        self._lock = threading.Lock()
        self.max_record_bytes = int(settings.client_settings.get("message.max.bytes", LIBRDKAFKA_MAX_MESSAGE_BYTES))

    def record_bytes(self, message: Message) -> int:
        return record_wire_bytes(message)

    def record_limit_hint(self) -> str:
        return (
            "librdkafka's message.max.bytes; raise it in the URL (?message.max.bytes=N), and the topic's "
            "max.message.bytes on the brokers with it"
        )

    # -- topics ---------------------------------------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int = 1, *, exist_ok: bool = False) -> TopicInfo:
        return self._admin.create_topic(name, partitions, exist_ok=exist_ok)

    def list_topics(self) -> list[TopicInfo]:
        return self._admin.list_topics()

    def topic(self, name: str) -> TopicInfo:
        return TopicInfo(name, self._admin.partition_count(name, fresh=True))

    def _partition_count(self, topic: str) -> int:
        try:
            return self._admin.partition_count(topic)
        except TopicNotFoundError:
            if not self.auto_create:
                raise
            check_topic_name(topic)
            return self.create_topic(topic, self.default_partitions, exist_ok=True).partitions

    # -- records --------------------------------------------------------------------------------------------------

    def outgoing(self, outputs: Mapping[str, Sequence[Message]]) -> list[Outgoing]:
        """Every message with its partition chosen; a bad one refuses them all before anything is produced."""
        records: list[Outgoing] = []
        for topic, messages in outputs.items():
            if not messages:
                continue
            count = self._partition_count(topic)
            records.extend((topic, self._choose_partition(topic, m, count), m) for m in messages)
        return records

    def _choose_partition(self, topic: str, message: Message, count: int) -> int:
        if message.partition is not None:
            if not 0 <= message.partition < count:
                raise ValueError(f"topic {topic!r} has no partition {message.partition} (it has {count})")
            return message.partition
        if message.key is not None:
            return partition_for_key(message.key, count)
        counter = self._round_robin.get(topic)
        if counter is None:
            with self._lock:
                counter = self._round_robin.setdefault(topic, itertools.count())
        return next(counter) % count

    def append(self, topic: str, messages: Sequence[Message]) -> list[tuple[int, int]]:
        records = self.outgoing({topic: messages})
        if not records:
            return []
        deliveries = self.producer.send(records, f"{self.url}: appending to {topic!r}")
        # Per partition, offsets are reported in the order the records were produced.
        offsets = {key: iter(found) for key, found in deliveries.offsets.items()}
        return [(partition, next(offsets[(topic, partition)])) for _, partition, _ in records]

    def read(self, topic: str, partition: int, offset: int, max_records: int) -> RecordBatch:
        count = self._admin.partition_count(topic)
        if not 0 <= partition < count:
            raise ValueError(f"topic {topic!r} has no partition {partition} (it has {count})")
        return self._reader.read(topic, partition, offset, max_records)

    def delete_records(self, topic: str, before: Mapping[int, int]) -> None:
        count = self._admin.partition_count(topic)
        outside = sorted(p for p in before if not 0 <= p < count)
        if outside:
            raise ValueError(f"topic {topic!r} has no partition {outside[0]} (it has {count})")
        self._admin.delete_records(topic, before)

    def watermarks(self, topic: str) -> list[PartitionState]:
        count = self._admin.partition_count(topic, fresh=True)
        bounds = self.bounds.of(dict.fromkeys(TopicPartition(topic, p) for p in range(count)))
        return [PartitionState(p, *bounds[TopicPartition(topic, p)]) for p in range(count)]

    # -- groups ---------------------------------------------------------------------------------------------------

    def committed(self, group: str, topic: str) -> dict[int, int]:
        count = self._admin.partition_count(topic)
        offsets = self.committed_offsets(group, [TopicPartition(topic, p) for p in range(count)])
        return {tp.partition: offset for tp, offset in offsets.items()}

    def committed_offsets(self, group: str, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._admin.committed(group, list(partitions))

    def commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        if offsets:
            self._admin.alter_offsets(group, offsets)

    def group_members(self, group: str) -> list[str]:
        return self._admin.group_members(group)

    def groups(self) -> list[str]:
        return [group for group in self._admin.group_names() if self._admin.committed(group)]

    def describe_topic(self, name: str) -> TopicDescription:
        states = tuple(self.watermarks(name))
        lags = []
        for group in self._admin.group_names():
            committed = {tp.partition: o for tp, o in self._admin.committed(group).items() if tp.topic == name}
            if committed:
                lags.extend(self._lag(group, committed, states))
        return TopicDescription(name, states, tuple(lags))

    @staticmethod
    def _lag(group: str, committed: dict[int, int], states: tuple[PartitionState, ...]) -> list[GroupLag]:
        return [GroupLag(group, s.partition, committed.get(s.partition), s.end_offset, s.start_offset) for s in states]

    def consumer(self, group: str, topics: Sequence[str], settings: ConsumerSettings | None = None) -> KafkaConsumer:
        return KafkaConsumer(self, group, topics, settings or ConsumerSettings())

    def close(self) -> None:
        self.producer.close()
        self.outputs_producer.close()
        self._reader.close()
        self.bounds.close()
