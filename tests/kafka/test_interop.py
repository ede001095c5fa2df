"""CloudEvents interoperability over Kafka: what eventbus writes, the official SDK's Kafka binding reads, and what
the SDK writes (binary or structured mode), an eventbus worker processes.

Records cross the broker through plain confluent_kafka clients on the SDK's side, so nothing of eventbus is on
the path between the SDK and the broker.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from eventbus import App, Event, Publisher
from eventbus.backends.base import ConsumerSettings
from eventbus.backends.kafka.log import KafkaLog
from eventbus.runtime import Worker, WorkerSettings, run_coroutine
from tests.kafka.brokers import Broker
from tests.kafka.conftest import unique

pytestmark = pytest.mark.kafka


def raw_records(broker: Broker, topic: str, count: int) -> list[Any]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("sdk"), "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    found: list[Any] = []
    deadline = time.monotonic() + 15
    while len(found) < count and time.monotonic() < deadline:
        found.extend(m for m in consumer.consume(count, 0.1) if m.error() is None)
    consumer.close()
    return found


def produce_raw(broker: Broker, topic: str, key: bytes | str | None, headers: dict[str, bytes], value: Any) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce(topic, value, key, headers=list(headers.items()))
    assert producer.flush(10) == 0


def run_collecting(kafka: KafkaLog, broker: Broker, topic: str) -> list[Event]:
    app = App(unique("interop"))
    seen: list[Event] = []

    @app.processor(topic)
    def collect(event: Event) -> None:
        seen.append(event)

    consumer = ConsumerSettings(session_timeout_s=broker.session_s, heartbeat_interval_s=0.2)
    run_coroutine(Worker(app, kafka, WorkerSettings(until_idle=True, idle_poll_s=0.01, consumer=consumer)).run())
    return seen


def test_the_sdk_reads_what_eventbus_writes(kafka: KafkaLog, broker: Broker) -> None:
    from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.v1.kafka import KafkaMessage as V1KafkaMessage
    from cloudevents.v1.kafka import from_binary as v1_from_binary

    topic = unique("to-sdk")
    kafka.create_topic(topic, 1)
    sent = Event(
        "order.paid",
        {"order": "o-1", "amount": 12.5, "lines": [1, 2]},
        source="/shop/checkout",
        subject="o-1",
        partitionkey="customer-7",
        time="2026-11-23T10:15:30.123Z",
        extensions={"tenant": "acme"},
    )
    with Publisher(kafka) as publisher:
        publisher.publish(topic, sent)
    (record,) = raw_records(broker, topic, 1)
    headers = dict(record.headers())

    event = from_binary(KafkaMessage(headers=headers, key=record.key(), value=record.value()), JSONFormat())
    assert event.get_type() == "order.paid"
    assert event.get_source() == "/shop/checkout"
    assert event.get_id() == sent.id
    assert event.get_subject() == "o-1"
    assert event.get_time() == datetime(2026, 11, 23, 10, 15, 30, 123000, tzinfo=UTC)
    assert event.get_extension("tenant") == "acme"
    assert event.get_extension("partitionkey") == "customer-7"
    assert event.get_data() == {"order": "o-1", "amount": 12.5, "lines": [1, 2]}

    legacy = v1_from_binary(V1KafkaMessage(headers, record.key(), record.value()))
    # The older binding hands the record key over as it is, bytes.
    assert (legacy["type"], legacy["id"], legacy["partitionkey"]) == ("order.paid", sent.id, b"customer-7")
    assert legacy.get_data() == {"order": "o-1", "amount": 12.5, "lines": [1, 2]}


def test_an_eventbus_worker_processes_what_the_sdk_writes(kafka: KafkaLog, broker: Broker) -> None:
    from cloudevents.core.bindings.kafka import to_binary, to_structured
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    topic = unique("from-sdk")
    kafka.create_topic(topic, 1)
    binary = CloudEvent(
        {"type": "invoice.sent", "source": "/billing", "id": "sdk-1", "partitionkey": "c-9", "tenant": "acme"},
        {"invoice": 42},
    )
    structured = CloudEvent(
        {"type": "invoice.paid", "source": "/billing", "id": "sdk-2", "datacontenttype": "application/json"},
        {"invoice": 42, "paid": True},
    )
    for message in (to_binary(binary, JSONFormat()), to_structured(structured, JSONFormat())):
        produce_raw(broker, topic, message.key, message.headers, message.value)

    first, second = run_collecting(kafka, broker, topic)
    assert (first.type, first.source, first.id, first.data) == ("invoice.sent", "/billing", "sdk-1", {"invoice": 42})
    assert first.partitionkey == "c-9"
    assert first.extensions["tenant"] == "acme"
    assert (second.type, second.id, second.data) == ("invoice.paid", "sdk-2", {"invoice": 42, "paid": True})
