"""The Kafka driver (confluent-kafka): the log contract on Apache Kafka and brokers speaking its protocol.

Modules, one concept each: `config` (the URL), `clients` (librdkafka settings per client), `errors` (the driver
boundary), `admin` (topics, group offsets), `producer` (acknowledged batches), `transactions` (exactly-once),
`records` (messages to batches), `reader` (direct reads, partition bounds), `health` (brokers gone),
`gate` (one consumer client, two threads), `consumer` (group membership, commits) and `log` (the `Log`).

Importing this package imports nothing of confluent_kafka; opening a log does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eventbus.backends.kafka.log import KafkaLog

__all__ = ["open_kafka_log"]


def open_kafka_log(url: str) -> KafkaLog:
    """Open a ``kafka://`` URL (see `eventbus.backends.kafka.config` for its options)."""
    from eventbus.backends.kafka.log import open_kafka_log as open_log

    return open_log(url)
