"""What the Kafka driver does beyond the shared contract: the record layout of events, records of other
producers, pausing, group members, refused commits, transactions and broker restarts."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import pytest

from eventbus import Event, Publisher
from eventbus.backends.base import Consumer, ConsumerSettings, Message, RecordBatch, TopicPartition
from eventbus.backends.kafka.log import KafkaLog, open_kafka_log
from eventbus.codecs import decode_record
from eventbus.errors import DecodeError, PartitionRevokedError
from tests.kafka.brokers import Broker
from tests.kafka.conftest import unique

pytestmark = pytest.mark.kafka


def settings_for(broker: Broker, **options: object) -> ConsumerSettings:
    return ConsumerSettings(session_timeout_s=broker.session_s, heartbeat_interval_s=0.1, **options)  # type: ignore[arg-type]


def read_until(
    consumer: Consumer, done: Callable[[list[RecordBatch]], bool], timeout_s: float = 15
) -> list[RecordBatch]:
    batches: list[RecordBatch] = []
    deadline = time.monotonic() + timeout_s
    while not done(batches) and time.monotonic() < deadline:
        batches.extend(consumer.poll(500, 0.05))
    return batches


def count(batches: list[RecordBatch]) -> int:
    return sum(len(b) for b in batches)


def test_events_are_written_in_the_cloudevents_binary_mode(kafka: KafkaLog) -> None:
    topic = unique("binary")
    kafka.create_topic(topic, 3)
    event = Event("order.paid", {"amount": 12.5}, source="/shop", partitionkey="customer-7", subject="o-1")
    with Publisher(kafka) as publisher:
        partition, offset = publisher.publish(topic, event)[1:]
    (record,) = kafka.read(topic, partition, offset, 1).records()
    headers = dict(record.headers or ())
    assert record.key == b"customer-7"
    assert orjson.loads(record.value or b"") == {"amount": 12.5}
    assert headers["ce_type"] == b"order.paid"
    assert headers["ce_source"] == b"/shop"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == event.id.encode()
    assert headers["ce_subject"] == b"o-1"
    assert headers["content-type"] == b"application/json"
    assert decode_record(record.value, record.headers)["data"] == {"amount": 12.5}


def test_records_of_other_producers_get_the_default_type(broker: Broker) -> None:
    topic = unique("foreign")
    with open_kafka_log(broker.url(default_type="legacy.order")) as log:
        log.create_topic(topic, 1)
        structured = orjson.dumps({"specversion": "1.0", "id": "e1", "source": "/s", "type": "t.x", "data": 1})
        log.append(
            topic,
            [
                Message(b'{"order": 1}'),
                Message(b"plain text", headers=(("trace", b"abc"),)),
                Message(structured),
                Message(b"[1, 2]", key=b"k"),
            ],
        )
        events = [decode_record(r.value, r.headers) for r in log.read(topic, 0, 0, 10).records()]
    assert [e["type"] for e in events] == ["legacy.order", "legacy.order", "t.x", "legacy.order"]
    assert events[0]["data"] == {"order": 1}
    assert events[0]["id"] == f"{topic}-0-0"
    assert events[0]["source"] == f"/kafka/{topic}"
    assert events[1]["data_base64"] == "cGxhaW4gdGV4dA=="
    assert events[2]["id"] == "e1", "a structured CloudEvent keeps its own attributes"
    assert events[3]["data"] == [1, 2]


def test_without_a_default_type_foreign_records_are_undecodable_not_fatal(kafka: KafkaLog) -> None:
    topic = unique("foreign")
    kafka.append(topic, [Message(b'{"order": 1}')])
    (record,) = kafka.read(topic, 0, 0, 10).records()
    with pytest.raises(DecodeError):
        decode_record(record.value, record.headers)


def test_a_paused_partition_yields_nothing_until_resumed_then_everything_once(kafka: KafkaLog, broker: Broker) -> None:
    topic = unique("pause")
    kafka.create_topic(topic, 2)
    kafka.append(topic, [Message(f"{p}-{i}".encode(), partition=p) for i in range(50) for p in (0, 1)])
    consumer = kafka.consumer(unique("g"), [topic], settings_for(broker))
    paused = TopicPartition(topic, 1)
    first = consumer.poll(10, 5.0)
    consumer.pause([paused])
    seen = [v for b in first for v in b.values]
    batches = read_until(consumer, lambda bs: count(bs) + len(seen) >= 50 + len([v for v in seen if v[:1] == b"1"]))
    assert all(b.partition == 0 for b in batches), "nothing of the paused partition"
    seen += [v for b in batches for v in b.values]
    consumer.resume([paused])
    seen += [v for b in read_until(consumer, lambda bs: len(seen) + count(bs) >= 100) for v in b.values]
    assert sorted(seen) == sorted(f"{p}-{i}".encode() for i in range(50) for p in (0, 1))
    consumer.close()


def test_group_members_are_listed_while_they_run(kafka: KafkaLog, broker: Broker) -> None:
    topic, group = unique("members"), unique("g")
    kafka.create_topic(topic, 1)
    consumer = kafka.consumer(group, [topic], settings_for(broker))
    assert len(kafka.group_members(group)) == 1
    consumer.close()
    deadline = time.monotonic() + 10
    while kafka.group_members(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert kafka.group_members(group) == []


def test_a_refused_commit_reads_the_partitions_still_owned_again(kafka: KafkaLog, broker: Broker) -> None:
    topic, group = unique("refused"), unique("g")
    kafka.create_topic(topic, 1)
    kafka.append(topic, [Message(str(i).encode()) for i in range(5)])
    consumer = kafka.consumer(group, [topic], settings_for(broker))
    owned = TopicPartition(topic, 0)
    assert count(read_until(consumer, lambda bs: count(bs) >= 5)) == 5
    consumer.commit({owned: 2})
    with pytest.raises(PartitionRevokedError, match="moved to another member"):
        consumer.publish_and_commit({}, {owned: 5, TopicPartition(unique("never-owned"), 0): 1})
    assert kafka.committed(group, topic) == {0: 2}
    again = read_until(consumer, lambda bs: count(bs) >= 3)
    assert [v for b in again for v in b.values] == [b"2", b"3", b"4"], "from the committed offset, once"
    consumer.close()


def test_an_append_after_a_broker_restart_replaces_the_failed_producer() -> None:
    from tests.kafka.brokers import running

    with running("noida") as broker:
        log = open_kafka_log(broker.url(broker_unavailable_timeout_s=20))
        topic = unique("restart")
        log.create_topic(topic, 1)
        for n in range(3):
            log.append(topic, [Message(b"before %d" % n)])
        # noida-db persists with a lag: restarted at once, it has lost what it acknowledged, and the idempotent
        # producer's sequence numbers no longer match the broker's, a fatal producer error.
        broker.restart()
        partition, offset = log.append(topic, [Message(b"after")])[0]
        assert log.read(topic, partition, offset, 10).values == [b"after"]
        log.close()


def test_a_fenced_transactional_producer_is_a_refused_commit_not_a_failure(kafka: KafkaLog, broker: Broker) -> None:
    from confluent_kafka import Producer

    from eventbus.backends.kafka.transactions import TransactionalProducer

    topic = unique("fenced")
    kafka.create_topic(topic, 1)
    ours = TransactionalProducer(kafka.settings, unique("group"))
    ours.commit([(topic, 0, Message(b"1"))], {}, None)  # under its id, registered with the coordinator
    newer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": ours.transactional_id})
    newer.init_transactions(30)  # the id's next owner: the older producer is fenced
    with pytest.raises(PartitionRevokedError, match="fenced by a newer producer"):
        ours.commit([(topic, 0, Message(b"2"))], {}, None)
    ours.commit([(topic, 0, Message(b"3"))], {}, None)  # on a new producer, which fences the other
    ours.close()
