"""A group coordinator that refuses a member for good: the member fails naming what was refused, at once,
rather than asking again forever (a worker waiting for partitions that never come)."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterator

import pytest

from eventbus.backends.base import ConsumerSettings
from eventbus.backends.kafka.log import open_kafka_log
from eventbus.errors import ConfigurationError
from tests.conftest import PYTHON, REPO
from tests.kafka.brokers import KAFKA_MIN_SESSION_S, Broker, running

pytestmark = pytest.mark.kafka

APP = "tests.kafka.apps:pipeline"


@pytest.fixture(scope="module")
def strict_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """noida-db refuses session timeouts under 6 s, as Apache Kafka does by default."""
    with running("noida", tmp_path_factory.mktemp("noida")) as started:
        yield started


def test_a_refused_session_timeout_fails_the_consumer_naming_it(strict_broker: Broker) -> None:
    with open_kafka_log(f"kafka://{strict_broker.bootstrap}") as log:
        log.create_topic("refused-session", 1, exist_ok=True)
        short = ConsumerSettings(session_timeout_s=KAFKA_MIN_SESSION_S / 2, heartbeat_interval_s=0.5)
        started = time.monotonic()
        with pytest.raises(ConfigurationError) as refused:
            log.consumer("refused-session-group", ["refused-session"], short)
    assert time.monotonic() - started < 2 * short.session_timeout_s + 5
    assert "session.timeout.ms=3000" in str(refused.value)
    assert "INVALID_SESSION_TIMEOUT" in str(refused.value)


def test_a_worker_whose_session_timeout_the_broker_refuses_exits_with_a_usage_error(
    strict_broker: Broker, subprocess_env: dict[str, str]
) -> None:
    url = f"kafka://{strict_broker.bootstrap}?session.timeout.ms=3000"
    started = time.monotonic()
    result = subprocess.run(
        [PYTHON, "-m", "eventbus", "run", APP, "--broker", url, "--until-idle"],
        cwd=REPO,
        env=subprocess_env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert f"eventbus: error: {url}: group 'kafka-pipeline': joining the group with session.timeout.ms=3000" in stderr
    assert "Traceback" not in stderr
    assert time.monotonic() - started < 30


@pytest.mark.slow
def test_a_member_asking_for_kip848_of_a_broker_without_it_is_told_why_it_never_joins(
    caplog: pytest.LogCaptureFixture, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Tansu has no ConsumerGroupHeartbeat: librdkafka says so only in its debug log, and the member never joins.
    with (
        running("tansu", tmp_path_factory.mktemp("tansu")) as broker,
        open_kafka_log(f"kafka://{broker.bootstrap}?group.protocol=consumer") as log,
    ):
        log.create_topic("kip848", 1, exist_ok=True)
        with caplog.at_level(logging.WARNING, logger="eventbus.kafka"):
            consumer = log.consumer("kip848-group", ["kip848"], ConsumerSettings())
            consumer.close()
    (warning,) = [r.getMessage() for r in caplog.records if "no partitions assigned" in r.getMessage()]
    assert "group.protocol=consumer needs a broker with KIP-848, Apache Kafka 4.0 or later" in warning
