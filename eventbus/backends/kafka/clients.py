"""librdkafka client settings: eventbus's defaults, then the user's settings from the URL, then what eventbus
must own (group, commits, transactional id). One place decides what every client gets.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

from eventbus.backends.base import ConsumerSettings
from eventbus.backends.kafka.config import KafkaSettings

# librdkafka's own log lines go through Python logging under this name.
librdkafka_logger = logging.getLogger("eventbus.kafka.librdkafka")


class _DropIgnoredSettingWarnings(logging.Filter):
    """The URL's settings go to every client; a producer saying it ignores a consumer setting is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "will be ignored by this" not in record.getMessage()


class _QuietRepeats(logging.Filter):
    """While brokers are away, librdkafka logs a failed connection per attempt, per client and per broker (a
    worker's few clients, with their metadata refreshes, make that about 20 lines a second). The first of each
    is kept; the same line again within ``window_s`` is counted instead, and the count is shown on the next one
    let through. Debug lines (asked for with ``debug=``) all pass."""

    _MAX_KEYS = 1000

    def __init__(self, window_s: float) -> None:
        super().__init__()
        self._window_s = window_s
        self._lock = threading.Lock()
        # The line (with its timing and client taken out) -> (when last let through, repeats held back since).
        self._seen: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG:
            return True
        message = record.getMessage()
        # Lines differ only by their timing ("after 0ms in state CONNECT") or by which client logs them.
        key = _TIMINGS.sub("", _CLIENT.sub("", message, count=1))
        now = time.monotonic()
        with self._lock:
            last, held_back = self._seen.get(key, (-math.inf, 0))
            if now - last < self._window_s:
                self._seen[key] = (last, held_back + 1)
                return False
            if len(self._seen) >= self._MAX_KEYS:
                self._seen.clear()
            self._seen[key] = (now, 0)
        if held_back:
            record.msg = f"{message} ({held_back} more like it in the last {now - last:.0f} s)"
            record.args = None
        return True


_CLIENT = re.compile(r"\[rdkafka#[^]]*\] ")
_TIMINGS = re.compile(r"\d+ms")

librdkafka_logger.addFilter(_DropIgnoredSettingWarnings())
librdkafka_logger.addFilter(_QuietRepeats(window_s=10.0))

# With the KIP-848 protocol the broker assigns partitions and owns the session timing.
_CLASSIC_GROUP_ONLY = ("partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms")


def _common(settings: KafkaSettings) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "logger": librdkafka_logger,
        # Never let a metadata request create a topic: topics are created on purpose, with their partitions.
        "allow.auto.create.topics": False,
    }


def admin_config(settings: KafkaSettings) -> dict[str, Any]:
    return {**_common(settings), **settings.client_settings}


def producer_config(settings: KafkaSettings, *, transactional_id: str | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        **_common(settings),
        # The idempotent producer: acks=all, no duplicates from its own retries, order kept per partition.
        "enable.idempotence": True,
        "acks": "all",
        # A record not acknowledged within this time fails its batch (and the commit after it never happens).
        "message.timeout.ms": int(settings.broker_unavailable_timeout_s * 1000),
        "linger.ms": 5,
        # Kafka Streams' choice under exactly-once: a crashed worker's open transaction blocks read_committed
        # readers of its outputs for at most this long.
        "transaction.timeout.ms": 10_000,
    }
    config.update(settings.client_settings)
    if transactional_id is not None:
        config["transactional.id"] = transactional_id
        # librdkafka: a record may not outlive the transaction it belongs to.
        if "message.timeout.ms" not in settings.client_settings:
            config["message.timeout.ms"] = min(int(config["message.timeout.ms"]), int(config["transaction.timeout.ms"]))
    config.pop("allow.auto.create.topics", None)
    return config


def consumer_config(settings: KafkaSettings, group: str, consumer: ConsumerSettings) -> dict[str, Any]:
    session_ms = int(consumer.session_timeout_s * 1000)
    config: dict[str, Any] = {
        **_common(settings),
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": session_ms,
        "heartbeat.interval.ms": max(1, int(consumer.heartbeat_interval_s * 1000)),
        # librdkafka heartbeats from its own thread; a member that stops polling for this long leaves the group.
        "max.poll.interval.ms": int(consumer.max_poll_interval_s * 1000),
        # Reads skip aborted transactions and stop at the last stable offset, whatever the guarantee.
        "isolation.level": "read_committed",
        # Where a committed offset is no longer held (retention): start at what is. A partition with no commit
        # at all starts where ConsumerSettings.reset says; the consumer resolves that itself.
        "auto.offset.reset": "earliest",
    }
    if consumer.member_name:
        config["client.id"] = consumer.member_name
    config.update(settings.client_settings)
    if str(config.get("group.protocol", "classic")).lower() == "consumer":
        for name in _CLASSIC_GROUP_ONLY:
            if name not in settings.client_settings:
                config.pop(name, None)
    instance_id = config.get("group.instance.id")
    if instance_id and consumer.worker_index is not None:
        # The processes of `eventbus run --workers N` share one URL; as Kafka Streams does for its threads, each
        # gets an id of its own, the same again when the supervisor restarts it.
        config["group.instance.id"] = f"{instance_id}-{consumer.worker_index}"
    # A user who raised the session timeout above the poll interval keeps librdkafka's rule (poll >= session).
    if int(config.get("max.poll.interval.ms", 0)) < int(config.get("session.timeout.ms", 0)):
        config["max.poll.interval.ms"] = config["session.timeout.ms"]
    config.update(
        {
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
        }
    )
    return config


def reader_config(settings: KafkaSettings, *, probe: bool) -> dict[str, Any]:
    """A consumer that is assigned partitions directly and never joins a group or commits.

    ``probe``: it only looks for where partitions end (see `reader.Bounds`).
    """
    config: dict[str, Any] = {
        **_common(settings),
        "isolation.level": "read_uncommitted" if probe else "read_committed",
        "auto.offset.reset": "error",
        "fetch.wait.max.ms": 10,
    }
    config.update(_without_group_settings(settings.client_settings))
    config.update(
        {
            # librdkafka wants a group id on every consumer; this one is never joined and never committed to.
            "group.id": "eventbus-reader",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
        }
    )
    if probe:
        # Stop after the first fetch. (Fetch sizes stay at their defaults: not every broker returns a record
        # batch larger than the size asked for, as Kafka does, so a tiny size can stall on a large batch.)
        config["queued.min.messages"] = 1
        # ...and do not wait a second (the default) before fetching again after stopping.
        config["fetch.queue.backoff.ms"] = 1
    return config


def _without_group_settings(client_settings: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in client_settings.items() if k not in {"group.protocol", "group.instance.id"}}
