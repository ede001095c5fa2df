"""While every broker is away, a worker says so once and then waits quietly: librdkafka's line per failed
connection attempt is logged once, not many times a second, until the worker gives up naming the URL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from eventbus.backends.kafka.log import open_kafka_log
from tests.kafka.brokers import running
from tests.kafka.conftest import eventbus_process

pytestmark = pytest.mark.kafka

APP = "tests.kafka.apps:pipeline"


def test_a_broker_outage_does_not_flood_the_log(subprocess_env: dict[str, str], tmp_path: Path) -> None:
    worker_log = tmp_path / "worker.log"
    with running("tansu", tmp_path / "tansu") as broker, worker_log.open("wb") as stderr:
        url = broker.url(broker_unavailable_timeout_s=6)
        with open_kafka_log(url) as log:
            log.create_topic("kafka-in", 6)
        worker = eventbus_process(subprocess_env, "run", APP, "--broker", url, stderr=stderr.fileno())
        deadline = time.monotonic() + 60
        while b"worker started" not in worker_log.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)
        broker.kill()
        worker.wait(timeout=60)
    text = worker_log.read_text(errors="replace")
    assert worker.returncode == 1, text
    assert "no Kafka broker answered for" in text
    failed_connects = [line for line in text.splitlines() if "Connect to" in line and "failed" in line]
    assert failed_connects, "the first failed connection is still reported"
    # Before, a worker's clients logged about 20 of these a second for as long as the brokers were away.
    assert len(failed_connects) <= 8, "\n".join(failed_connects)
