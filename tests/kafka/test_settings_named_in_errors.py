"""Settings refused by eventbus or librdkafka, from the URL or from ``EVENTBUS_KAFKA_*`` variables: the message
names the setting that is wrong and, for one from the environment, the variable that set it."""

from __future__ import annotations

import socket
import subprocess

import pytest

from tests.conftest import PYTHON, REPO
from tests.kafka.brokers import Broker

pytestmark = pytest.mark.kafka


def topics_list(env: dict[str, str], url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "eventbus", "topics", "list", "--broker", url],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "EVENTBUS_KAFKA_BOOTSTRAP_SERVERS",
            "elsewhere:9092",
            "bootstrap.servers (from EVENTBUS_KAFKA_BOOTSTRAP_SERVERS)",
        ),
        ("EVENTBUS_KAFKA_GROUP_ID", "mine", "group.id (from EVENTBUS_KAFKA_GROUP_ID) cannot be set"),
        ("EVENTBUS_KAFKA_PARTITIONS", "0", "partitions (from EVENTBUS_KAFKA_PARTITIONS) must be a positive integer"),
        ("EVENTBUS_KAFKA_PARTITIONS", "99999999", "partitions (from EVENTBUS_KAFKA_PARTITIONS) must be at most"),
        ("EVENTBUS_KAFKA_AUTO_CREATE", "maybe", "auto_create (from EVENTBUS_KAFKA_AUTO_CREATE) must be true or false"),
        ("EVENTBUS_KAFKA_CONNECT_TIMEOUT_S", "soon", "connect_timeout_s (from EVENTBUS_KAFKA_CONNECT_TIMEOUT_S) must"),
        ("EVENTBUS_KAFKA_REPLICATION_FACTOR", "0", "replication_factor (from EVENTBUS_KAFKA_REPLICATION_FACTOR) must"),
    ],
)
def test_a_setting_refused_by_eventbus_names_the_variable_it_came_from(
    broker: Broker, subprocess_env: dict[str, str], variable: str, value: str, expected: str
) -> None:
    result = topics_list({**subprocess_env, variable: value}, f"kafka://{broker.bootstrap}")
    assert result.returncode == 2, result.stderr
    assert f"eventbus: error: kafka://{broker.bootstrap}: {expected}" in result.stderr


def test_a_value_refused_only_with_another_setting_is_named(broker: Broker, subprocess_env: dict[str, str]) -> None:
    url = f"kafka://{broker.bootstrap}?security.protocol=SASL_PLAINTEXT&sasl.mechanism=BOGUS&sasl.password=hunter2"
    result = topics_list(subprocess_env, url)
    assert result.returncode == 2, result.stderr
    # librdkafka checks the mechanism only under a SASL protocol: alone, sasl.mechanism=BOGUS is accepted.
    refused = result.stderr.partition("sasl.password=***: ")[2]
    assert refused.startswith("sasl.mechanism=BOGUS"), result.stderr
    assert "Unsupported SASL mechanism: BOGUS" in refused
    assert "hunter2" not in result.stderr


def test_an_unreachable_broker_is_named_once(subprocess_env: dict[str, str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"kafka://127.0.0.1:{port}?connect_timeout_s=1&security.protocol=PLAINTEXT"
    result = topics_list(subprocess_env, url)
    assert result.returncode == 1, result.stderr
    (message,) = [line for line in result.stderr.splitlines() if line.startswith("eventbus: failed:")]
    assert message.startswith(f"eventbus: failed: {url}: no Kafka broker answered within 1 s"), message
    assert message.count(url) == 1, message
    assert "reading cluster metadata" in message
