"""Keyed records of a plain Kafka producer (no CloudEvent in them), read with a ``default_type``: their keys are
their partition keys, so a worker's outputs stay keyed as the inputs were, as a Kafka Streams app's would."""

from __future__ import annotations

import pytest

from eventbus import App, Event
from eventbus.backends.base import ConsumerSettings
from eventbus.backends.kafka.log import open_kafka_log
from eventbus.codecs import decode_record
from eventbus.runtime import Worker, WorkerSettings, run_coroutine
from tests.kafka.brokers import Broker
from tests.kafka.conftest import unique

pytestmark = pytest.mark.kafka


def produce_plain(broker: Broker, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for key, value in records:
        producer.produce(topic, value, key, partition=0)
    assert producer.flush(10) == 0


def test_the_key_of_a_plain_record_is_its_partition_key(broker: Broker) -> None:
    topic = unique("plain-keys")
    with open_kafka_log(broker.url(default_type="legacy.order")) as log:
        log.create_topic(topic, 1)
        produce_plain(broker, topic, [(b"customer-7", b'{"n": 1}'), (None, b'{"n": 2}'), (b"\xff\x00\x01", b"{}")])
        events = [decode_record(r.value, r.headers) for r in log.read(topic, 0, 0, 10).records()]
    assert [e.get("partitionkey") for e in events] == ["customer-7", None, None]
    assert [e["type"] for e in events] == ["legacy.order"] * 3, "a key that is not text leaves the record readable"


def test_a_worker_keeps_the_keys_of_plain_records_on_its_outputs(broker: Broker) -> None:
    source, sink = unique("plain-in"), unique("plain-out")
    keys = [f"customer-{i}".encode() for i in range(12)]
    with open_kafka_log(broker.url(default_type="legacy.order")) as log:
        log.create_topic(source, 1)
        log.create_topic(sink, 4)
        produce_plain(broker, source, [(key, b'{"n": 1}') for key in keys])
        app = App(unique("plain-app"))

        @app.processor(source, to=sink)
        def forward(event: Event) -> Event:
            return Event("legacy.forwarded", event.data)

        consumer = ConsumerSettings(session_timeout_s=broker.session_s, heartbeat_interval_s=0.2)
        run_coroutine(Worker(app, log, WorkerSettings(until_idle=True, idle_poll_s=0.01, consumer=consumer)).run())
        written = sorted(
            r.key or b"" for s in log.watermarks(sink) for r in log.read(sink, s.partition, 0, 100).records()
        )
    assert written == sorted(keys)
