"""``eventbus topics describe`` on Kafka: a topic of one partition holding one record reads as such."""

from __future__ import annotations

import subprocess

import pytest

from eventbus import Event, Publisher
from eventbus.backends.kafka.log import open_kafka_log
from tests.conftest import PYTHON, REPO
from tests.kafka.brokers import Broker
from tests.kafka.conftest import unique

pytestmark = pytest.mark.kafka


def test_describe_counts_one_partition_and_one_record_in_the_singular(
    broker: Broker, subprocess_env: dict[str, str]
) -> None:
    topic = unique("single")
    with open_kafka_log(broker.url()) as log:
        log.create_topic(topic, 1)
        with Publisher(log) as publisher:
            publisher.publish(topic, Event("one.only", {"n": 1}))
    described = subprocess.run(
        [PYTHON, "-m", "eventbus", "topics", "describe", topic, "--broker", broker.url()],
        cwd=REPO,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert described.returncode == 0, described.stderr
    assert described.stdout.splitlines()[0] == f"topic {topic}: 1 partition, 1 record"
