"""Kafka URLs and settings: what is accepted, what is refused and how the refusal names the culprit."""

from __future__ import annotations

import socket
import time

import pytest

from eventbus.backends import open_log
from eventbus.backends.base import ConsumerSettings
from eventbus.backends.kafka.clients import consumer_config, producer_config
from eventbus.backends.kafka.config import parse_kafka_url, redact
from eventbus.errors import BackendError, ConfigurationError


def test_hosts_ports_and_options() -> None:
    settings = parse_kafka_url(
        "kafka://b1:9093,b2,[::1]:9094?partitions=6&auto_create=false&replication_factor=3"
        "&connect_timeout_s=2.5&broker_unavailable_timeout_s=30&default_type=legacy.record"
        "&security.protocol=SASL_SSL&compression.type=zstd",
        environ={},
    )
    assert settings.bootstrap_servers == "b1:9093,b2:9092,[::1]:9094"
    assert settings.default_partitions == 6
    assert settings.auto_create is False
    assert settings.replication_factor == 3
    assert settings.connect_timeout_s == 2.5
    assert settings.broker_unavailable_timeout_s == 30
    assert settings.default_type == "legacy.record"
    assert settings.client_settings == {"security.protocol": "SASL_SSL", "compression.type": "zstd"}


def test_environment_adds_librdkafka_settings_and_options_and_the_url_wins() -> None:
    settings = parse_kafka_url(
        "kafka://b1?sasl.mechanism=SCRAM-SHA-512",
        environ={
            "EVENTBUS_KAFKA_SASL_USERNAME": "alice",
            "EVENTBUS_KAFKA_SASL_MECHANISM": "PLAIN",
            "EVENTBUS_KAFKA_BROKER_UNAVAILABLE_TIMEOUT_S": "5",
            "EVENTBUS_BROKER": "kafka://elsewhere",
        },
    )
    assert settings.client_settings == {"sasl.username": "alice", "sasl.mechanism": "SCRAM-SHA-512"}
    assert settings.broker_unavailable_timeout_s == 5


@pytest.mark.parametrize(
    ("url", "culprit"),
    [
        ("kafka://", "no broker address"),
        ("kafka://host:99999", "port 99999"),
        ("kafka://bad host", "'bad host'"),
        ("kafka://user:secret@host", "sasl.username"),
        ("kafka://host/path", "no path"),
        ("kafka://host?partitions=0", "partitions"),
        ("kafka://host?auto_create=maybe", "auto_create"),
        ("kafka://host?replication_factor=-3", "replication_factor"),
        ("kafka://host?connect_timeout_s=soon", "connect_timeout_s"),
        ("kafka://host?broker_unavailable_timeout_s=-1", "broker_unavailable_timeout_s"),
        ("kafka://host?group.id=mine", "group.id cannot be set"),
        ("kafka://host?enable.auto.commit=true", "enable.auto.commit cannot be set"),
        ("kafka://host?bootstrap.servers=other:9092", "host list"),
    ],
)
def test_malformed_urls_are_refused_naming_the_culprit(url: str, culprit: str) -> None:
    with pytest.raises(ConfigurationError, match=culprit):
        parse_kafka_url(url, environ={})


@pytest.mark.parametrize(
    ("query", "culprit"),
    [
        ("no.such.setting=1", 'No such configuration property: "no.such.setting"'),
        ("partitionz=3", "partitionz.*eventbus's own options are"),
        ("acks=banana", 'Invalid value for configuration property "request.required.acks"'),
        ("session.timeout.ms=soon", '"session.timeout.ms"'),
    ],
)
def test_settings_librdkafka_refuses_are_a_configuration_error_naming_them(query: str, culprit: str) -> None:
    started = time.monotonic()
    with pytest.raises(ConfigurationError, match=culprit):
        open_log(f"kafka://127.0.0.1:1?{query}")
    assert time.monotonic() - started < 2, "refused before trying to connect"


def test_a_refused_setting_from_the_environment_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTBUS_KAFKA_BOGUS_THING", "1")
    with pytest.raises(ConfigurationError, match=r"bogus\.thing=1 \(from EVENTBUS_KAFKA_BOGUS_THING\)"):
        open_log("kafka://127.0.0.1:1")
    with pytest.raises(ConfigurationError) as refused:  # the URL set it: the variable is not the culprit
        open_log("kafka://127.0.0.1:1?bogus.thing=2")
    assert "EVENTBUS_KAFKA_BOGUS_THING" not in str(refused.value)


def test_secrets_are_kept_out_of_messages() -> None:
    url = "kafka://h?sasl.password=hunter2&ssl.key.password=x&sasl.username=bob"
    assert redact(url) == "kafka://h?sasl.password=***&ssl.key.password=***&sasl.username=bob"
    with pytest.raises(ConfigurationError) as refused:
        open_log(url + "&no.such.setting=1")
    assert "hunter2" not in str(refused.value)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_an_unreachable_broker_is_an_error_naming_the_url_within_the_connect_timeout() -> None:
    url = f"kafka://127.0.0.1:{closed_port()}?connect_timeout_s=1.5"
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"kafka://127\.0\.0\.1:\d+\?connect_timeout_s=1\.5: no Kafka broker"):
        open_log(url)
    assert 1.4 < time.monotonic() - started < 5


def test_consumer_settings_map_to_group_timings_and_the_url_overrides_them() -> None:
    settings = parse_kafka_url("kafka://h?heartbeat.interval.ms=700", environ={})
    config = consumer_config(settings, "g", ConsumerSettings(session_timeout_s=8, heartbeat_interval_s=1))
    assert config["session.timeout.ms"] == 8000
    assert config["max.poll.interval.ms"] == 300_000, "a member may process for minutes between polls"
    assert config["heartbeat.interval.ms"] == "700"
    assert config["partition.assignment.strategy"] == "cooperative-sticky"
    assert config["isolation.level"] == "read_committed"
    assert (config["group.id"], config["enable.auto.commit"], config["enable.partition.eof"]) == ("g", False, True)


def test_max_poll_interval_maps_to_librdkafka_unless_the_url_sets_it() -> None:
    consumer = ConsumerSettings(session_timeout_s=8, heartbeat_interval_s=1, max_poll_interval_s=45)
    config = consumer_config(parse_kafka_url("kafka://h", environ={}), "g", consumer)
    assert config["max.poll.interval.ms"] == 45_000
    config = consumer_config(parse_kafka_url("kafka://h?max.poll.interval.ms=20000", environ={}), "g", consumer)
    assert config["max.poll.interval.ms"] == "20000"


def test_the_consumer_group_protocol_leaves_assignment_and_timing_to_the_broker() -> None:
    settings = parse_kafka_url("kafka://h?group.protocol=consumer", environ={})
    config = consumer_config(settings, "g", ConsumerSettings())
    assert config["group.protocol"] == "consumer"
    assert not {"partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms"} & set(config)


def test_producers_are_idempotent_and_wait_for_every_replica() -> None:
    config = producer_config(parse_kafka_url("kafka://h?broker_unavailable_timeout_s=12", environ={}))
    assert (config["enable.idempotence"], config["acks"], config["message.timeout.ms"]) == (True, "all", 12_000)
    assert "transactional.id" not in config
