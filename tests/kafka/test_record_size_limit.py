"""Records larger than Kafka takes (librdkafka's message.max.bytes): refused with the event that made them.

Written, such a record fails its whole write: a worker's round (the worker exits, and on restart meets the same
event again, for ever) or a publish batch (the lines after it lost). Each is refused before it is written instead:
a processor's output dead-letters the event that emitted it, a publish line is reported by its number, an HTTP
event by its place in the batch. The tests set a small message.max.bytes (librdkafka's minimum is 1,000) so that
their records stay small.
"""

from __future__ import annotations

import json
import random
import subprocess

import pytest

from eventbus import App, Event
from eventbus.backends.base import ConsumerSettings, Message
from eventbus.backends.kafka.log import open_kafka_log
from eventbus.backends.kafka.producer import record_wire_bytes
from eventbus.codecs import decode_record
from eventbus.errors import ConfigurationError
from eventbus.publisher import Publisher, RecordTooLargeError
from eventbus.reader import read_topic
from eventbus.replay import replay_dead_letters
from eventbus.runtime import Worker, WorkerSettings, run_coroutine
from eventbus.runtime.dead_letter import failure_of, replayed_from
from tests.conftest import PYTHON, REPO
from tests.kafka.brokers import Broker
from tests.kafka.conftest import unique

pytestmark = pytest.mark.kafka

LIMIT_BYTES = 20_000


def test_the_size_counted_is_the_one_librdkafka_refuses_records_by() -> None:
    from confluent_kafka import KafkaException, Producer

    # Never connects: produce() checks the size itself, before queueing.
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", "message.max.bytes": 5000, "log_level": 0})
    rng = random.Random(7)
    try:
        for _ in range(2000):
            value = b"v" * rng.randrange(0, 5100)
            key = b"k" * rng.randrange(0, 300) if rng.random() < 0.7 else None
            headers = tuple(
                ("ce_" + "n" * rng.randrange(0, 150), b"h" * rng.choice([0, 1, 63, 64, 65, 200, 8191, 8192]))
                for _ in range(rng.randrange(0, 5))
            )
            try:
                producer.produce("t", value, key, headers=list(headers))
                accepted = True
            except KafkaException:
                accepted = False
            assert (record_wire_bytes(Message(value, key, headers)) <= 5000) == accepted, (len(value), headers)
    finally:
        producer.purge()


def test_an_output_too_large_dead_letters_its_event_and_the_others_go_out(broker: Broker) -> None:
    source, sink = unique("size-in"), unique("size-out")
    with open_kafka_log(broker.url(**{"message.max.bytes": LIMIT_BYTES})) as log:
        log.create_topic(source, 1)
        log.create_topic(sink, 1)
        with Publisher(log) as publisher:
            publisher.publish_many(source, [Event("blob.wanted", {"n": n}) for n in range(5)])
        app = App(unique("size-app"))

        @app.processor(source, to=sink)
        def inflate(event: Event) -> Event:
            n = event.data["n"]
            return Event("blob.made", {"n": n, "blob": "x" * (2 * LIMIT_BYTES if n == 2 else 10)})

        consumer = ConsumerSettings(session_timeout_s=broker.session_s, heartbeat_interval_s=0.2)
        stats = run_coroutine(
            Worker(app, log, WorkerSettings(until_idle=True, idle_poll_s=0.01, consumer=consumer)).run()
        )
        assert stats.events_in == 5
        assert sorted(decode_record(r.value, r.headers)["data"]["n"] for r in read_topic(log, sink)) == [0, 1, 3, 4]
        (letter,) = read_topic(log, f"{source}.dlq")
        assert decode_record(letter.value, letter.headers)["data"] == {"n": 2}
        reason = " ".join(value.decode() for _, value in letter.headers or ())
        assert "inflate' emitted an event of type 'blob.made'" in reason
        assert f"the log takes records of at most {LIMIT_BYTES:,} bytes" in reason
        assert "message.max.bytes" in reason
        assert dict(log.committed(app.name, source)) == {0: 5}


def test_a_batch_holding_an_event_too_large_is_refused_whole_naming_it(kafka_small: tuple[Broker, str]) -> None:
    _, url = kafka_small
    topic = unique("size-batch")
    with open_kafka_log(url) as log, Publisher(log) as publisher:
        log.create_topic(topic, 1)
        events = [Event("t", {"blob": "x" * (2 * LIMIT_BYTES if n == 1 else 10)}) for n in range(3)]
        with pytest.raises(RecordTooLargeError, match=r"event 1 of the batch is [\d,]+ bytes encoded"):
            publisher.publish_many(topic, events)
        assert list(read_topic(log, topic)) == [], "nothing of the batch written"


def test_publish_reports_a_line_too_large_by_number_and_publishes_the_others(
    kafka_small: tuple[Broker, str], subprocess_env: dict[str, str]
) -> None:
    _, url = kafka_small
    topic = unique("size-lines")
    lines = "".join(json.dumps({"n": n, "blob": "x" * (2 * LIMIT_BYTES if n == 2 else 10)}) + "\n" for n in range(5))
    result = subprocess.run(
        [PYTHON, "-m", "eventbus", "publish", "--broker", url, topic, "--type", "blob.posted"],
        cwd=REPO,
        env=subprocess_env,
        input=lines.encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert "eventbus: line 3: the event is" in stderr
    assert f"at most {LIMIT_BYTES:,} bytes" in stderr
    assert "Traceback" not in stderr
    with open_kafka_log(url) as log:
        published = sorted(decode_record(r.value, r.headers)["data"]["n"] for r in read_topic(log, topic))
    assert published == [0, 1, 3, 4]


@pytest.fixture
def kafka_small(broker: Broker) -> tuple[Broker, str]:
    return broker, broker.url(**{"message.max.bytes": LIMIT_BYTES})


def test_a_dead_letter_too_large_for_its_topic_keeps_its_place_and_replays_from_the_origin(broker: Broker) -> None:
    source, sink = unique("big-in"), unique("big-out")
    blob = "x" * (LIMIT_BYTES + 5_000)
    # Written with librdkafka's default limit: the record is larger than the worker's own limit lets it write.
    with open_kafka_log(broker.url()) as roomy, Publisher(roomy) as publisher:
        roomy.create_topic(source, 1)
        roomy.create_topic(sink, 1)
        publisher.publish_many(source, [Event("blob.sent", {"n": n, "blob": blob if n == 1 else ""}) for n in range(3)])
    app = App(unique("big-app"))

    @app.processor(source, to=sink)
    def forward(event: Event) -> Event:
        return event  # passed on unchanged: as large as the input

    with open_kafka_log(broker.url(**{"message.max.bytes": LIMIT_BYTES})) as log:
        consumer = ConsumerSettings(session_timeout_s=broker.session_s, heartbeat_interval_s=0.2)
        run_coroutine(Worker(app, log, WorkerSettings(until_idle=True, idle_poll_s=0.01, consumer=consumer)).run())
        assert dict(log.committed(app.name, source)) == {0: 3}, "the worker went past the event, and on"
        assert sorted(decode_record(r.value, r.headers)["data"]["n"] for r in read_topic(log, sink)) == [0, 2]
        (letter,) = read_topic(log, f"{source}.dlq")
        assert letter.value is None
        failure = failure_of(letter.headers)
        assert failure["value.omitted"].endswith(" bytes")
        assert (failure["origin.topic"], failure["origin.offset"]) == (source, "1")
        # Sent back within this limit it would fail the replay's write: refused, naming the dead letter.
        with pytest.raises(ConfigurationError, match=rf"{source}.dlq\[0\]@0: the event to replay is [\d,]+ bytes"):
            replay_dead_letters(log, f"{source}.dlq")
    with open_kafka_log(broker.url()) as roomy:
        report = replay_dead_letters(roomy, f"{source}.dlq")
        assert report.replayed == 1
        replayed = list(read_topic(roomy, source))[-1]
        assert decode_record(replayed.value, replayed.headers)["data"] == {"n": 1, "blob": blob}
        assert replayed_from(replayed.headers) == f"{source}.dlq/0/0"
