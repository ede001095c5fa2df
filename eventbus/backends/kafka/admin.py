"""Topic and group administration through librdkafka's admin client: metadata, topic creation, group offsets.

Topic lookups always read the metadata of the whole cluster: asking for one named topic lets a broker with
``auto.create.topics.enable`` create it, and a lookup must never create anything.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from eventbus.backends.base import TopicInfo, TopicPartition, check_topic_name
from eventbus.backends.kafka.clients import admin_config
from eventbus.backends.kafka.config import KafkaSettings, options_hint
from eventbus.backends.kafka.errors import error_name, is_unreachable, kafka_error_of, translate, translated
from eventbus.errors import BackendError, ConfigurationError, TopicNotFoundError

# Topics whose names start so are the brokers' own (__consumer_offsets, __transaction_state).
INTERNAL_PREFIX = "__"

T = TypeVar("T")

# States (ConsumerGroupState names) of a group that has no live member.
_GROUP_WITHOUT_MEMBERS = frozenset({"EMPTY", "DEAD", "UNKNOWN"})

# A request to a broker that answers takes milliseconds; this bounds one that does not.
REQUEST_TIMEOUT_S = 10.0


def build_client(kind: Any, config: Mapping[str, Any], settings: KafkaSettings) -> Any:
    """A confluent_kafka client; settings librdkafka refuses become a `ConfigurationError` naming them."""
    try:
        return kind(dict(config))
    except Exception as exc:
        kafka_error = kafka_error_of(exc)
        if kafka_error is not None or isinstance(exc, ValueError | TypeError):
            detail = (kafka_error.str() if kafka_error is not None else str(exc)).strip()
            hint = f" ({options_hint()})" if "No such configuration property" in detail else ""
            culprits = _refused_settings(kind, config, settings, detail)
            named = f"{', '.join(culprits)}: " if culprits else ""
            raise ConfigurationError(f"{settings.redacted_url}: {named}{detail}{hint}") from None
        raise


def _refused_settings(kind: Any, config: Mapping[str, Any], settings: KafkaSettings, detail: str) -> list[str]:
    """The user's settings librdkafka refuses: those its message quotes, then those it refuses on their own.

    Its message names a setting by its canonical name (queue.buffering.max.ms for linger.ms), the user wrote
    another: hence trying each alone. Some are refused only together with another (sasl.mechanism=BOGUS only
    with a SASL security.protocol, which alone may fail for a reason of its own): the message quotes the value
    that is wrong."""
    base = {k: v for k, v in config.items() if k not in settings.client_settings}
    quoted = [name for name, value in settings.client_settings.items() if _quotes(detail, name, value)]
    alone = []
    for name, value in settings.client_settings.items():
        if name in quoted:
            continue
        try:
            kind({**base, name: value})
        except Exception:  # any refusal of this one setting is what we are looking for
            alone.append(name)
    refused = []
    for name in [*quoted, *alone]:
        value = settings.client_settings[name]
        shown = "***" if any(word in name for word in ("password", "secret", "key")) else value
        variable = settings.from_environment.get(name)
        refused.append(f"{name}={shown}" + (f" (from {variable})" if variable else ""))
    return refused


def _quotes(detail: str, name: str, value: str) -> bool:
    """Whether librdkafka's message names this setting, or quotes its value (one long and odd enough not to
    appear by chance: not a number, not a flag)."""
    if re.search(rf"(?<![\w.]){re.escape(name)}(?![\w.])", detail):
        return True
    if len(value) < 3 or value.lower() in {"true", "false"} or re.fullmatch(r"[-+\d.]+", value):
        return False
    return re.search(rf"(?<![\w.]){re.escape(value)}(?![\w.])", detail) is not None


class Admin:
    """Thin wrapper over ``confluent_kafka.admin.AdminClient`` that speaks eventbus types and errors."""

    def __init__(self, settings: KafkaSettings) -> None:
        from confluent_kafka.admin import AdminClient

        self._settings = settings
        self._url = settings.redacted_url
        self._client = build_client(AdminClient, admin_config(settings), settings)
        self._partition_counts: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- connecting ---------------------------------------------------------------------------------------------

    def check_reachable(self) -> None:
        """Wait until a broker answers, up to ``connect_timeout_s``; then fail naming the URL."""
        deadline = time.monotonic() + self._settings.connect_timeout_s
        last: Exception | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                self._refresh(timeout_s=min(remaining, 1.0))
                return
            except BackendError as exc:
                last = exc
        # The last error names the URL too; once is enough in a message that starts with it.
        reason = f": {str(last).removeprefix(f'{self._url}: ')}" if last is not None else ""
        raise BackendError(
            f"{self._url}: no Kafka broker answered within {self._settings.connect_timeout_s:g} s (brokers "
            f"{self._settings.bootstrap_servers}; raise connect_timeout_s to wait longer){reason}"
        )

    def _retrying(self, request: Callable[[], T]) -> T:
        """``request()``, asked again while the brokers do not answer (a restart, a coordinator moving), for
        up to ``broker_unavailable_timeout_s``; its last error, or any other, is raised as it is."""
        deadline = time.monotonic() + self._settings.broker_unavailable_timeout_s
        while True:
            try:
                return request()
            except Exception as exc:
                if not is_unreachable(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    # -- topics -------------------------------------------------------------------------------------------------

    def _metadata(self, timeout_s: float | None = None) -> Any:
        from confluent_kafka import KafkaException

        try:
            if timeout_s is not None:
                return self._client.list_topics(timeout=timeout_s)
            return self._retrying(lambda: self._client.list_topics(timeout=REQUEST_TIMEOUT_S))
        except KafkaException as exc:
            if error_name(exc) in {"_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED", "_SSL"}:
                raise translate(exc, f"{self._url}: reading cluster metadata") from None
            raise BackendError(f"{self._url}: reading cluster metadata: {exc.args[0].str()}") from None

    def _refresh(self, timeout_s: float | None = None) -> dict[str, int]:
        metadata = self._metadata(timeout_s)
        counts = {
            name: len(topic.partitions)
            for name, topic in metadata.topics.items()
            if topic.error is None or error_name(topic.error) not in {"UNKNOWN_TOPIC_OR_PART"}
        }
        with self._lock:
            self._partition_counts = counts
        return counts

    def list_topics(self) -> list[TopicInfo]:
        counts = self._refresh()
        return [TopicInfo(name, n) for name, n in sorted(counts.items()) if not name.startswith(INTERNAL_PREFIX)]

    def partition_count(self, topic: str, *, fresh: bool = False) -> int:
        """The topic's partition count (cached; read again when unknown); `TopicNotFoundError` if missing."""
        if not fresh:
            count = self._partition_counts.get(topic)
            if count is not None:
                return count
        count = self._refresh().get(topic)
        if not count:
            raise TopicNotFoundError(topic)
        return count

    def create_topic(self, name: str, partitions: int, *, exist_ok: bool) -> TopicInfo:
        from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]  # re-exported, not in __all__

        check_topic_name(name)
        if partitions < 1:
            raise ValueError(f"topic {name!r}: partitions must be at least 1, got {partitions}")
        try:
            self._client.create_topics(
                [NewTopic(name, partitions, self._settings.replication_factor)], request_timeout=REQUEST_TIMEOUT_S
            )[name].result()
        except Exception as exc:
            if error_name(exc) == "TOPIC_ALREADY_EXISTS":
                if exist_ok:
                    return TopicInfo(name, self.partition_count(name, fresh=True))
                raise ValueError(f"topic {name!r} already exists") from None
            raise translate(exc, f"{self._url}: creating topic {name!r} with {partitions} partitions") from None
        self._wait_until_visible(name)
        with self._lock:
            self._partition_counts[name] = partitions
        return TopicInfo(name, partitions)

    def delete_records(self, topic: str, before: Mapping[int, int]) -> None:
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        if not before:
            return
        requests = [KafkaTopicPartition(topic, partition, offset) for partition, offset in before.items()]
        with translated(f"{self._url}: deleting records of {topic!r}", topic=topic):
            futures = self._client.delete_records(requests, request_timeout=REQUEST_TIMEOUT_S)
        for request, future in futures.items():
            try:
                future.result()
            except Exception as exc:
                where = (
                    f"{self._url}: deleting the records of {topic}[{request.partition}] before offset {request.offset}"
                )
                if error_name(exc) == "_TRANSPORT":
                    # Some brokers drop the connection on a request they do not implement.
                    where += " (the broker closed the connection: does it implement DeleteRecords?)"
                raise translate(exc, where, topic=topic) from None

    def _wait_until_visible(self, name: str) -> None:
        # Creation is acknowledged by the controller before every broker's metadata shows the topic; producers
        # and consumers started right after would otherwise see it missing.
        deadline = time.monotonic() + REQUEST_TIMEOUT_S
        while name not in self._refresh() and time.monotonic() < deadline:
            time.sleep(0.01)

    # -- groups -------------------------------------------------------------------------------------------------

    def committed(self, group: str, partitions: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """The group's committed offsets (only partitions that have one); all of them when none are named."""
        from confluent_kafka import ConsumerGroupTopicPartitions
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        wanted = None if partitions is None else [KafkaTopicPartition(tp.topic, tp.partition) for tp in partitions]
        request = ConsumerGroupTopicPartitions(group, wanted)

        def ask() -> Any:
            return self._client.list_consumer_group_offsets([request], request_timeout=REQUEST_TIMEOUT_S)[
                group
            ].result()

        try:
            result = self._retrying(ask)
        except Exception as exc:
            if error_name(exc) in {"GROUP_ID_NOT_FOUND", "UNKNOWN_MEMBER_ID"}:
                return {}
            raise translate(exc, f"{self._url}: reading the offsets of group {group!r}") from None
        return {
            TopicPartition(tp.topic, tp.partition): tp.offset
            for tp in result.topic_partitions or ()
            if tp.offset >= 0 and tp.error is None
        }

    def alter_offsets(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        from confluent_kafka import ConsumerGroupTopicPartitions
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        request = ConsumerGroupTopicPartitions(
            group, [KafkaTopicPartition(tp.topic, tp.partition, offset) for tp, offset in offsets.items()]
        )
        try:
            result = self._client.alter_consumer_group_offsets([request], request_timeout=REQUEST_TIMEOUT_S)[
                group
            ].result()
        except Exception as exc:
            if error_name(exc) in {"UNKNOWN_MEMBER_ID", "REBALANCE_IN_PROGRESS"}:
                raise BackendError(
                    f"{self._url}: group {group!r} has live members; stop them before setting its offsets"
                ) from None
            raise translate(exc, f"{self._url}: setting the offsets of group {group!r}") from None
        errors = [tp.error for tp in result.topic_partitions or () if tp.error]
        if any(error_name(e) in {"UNKNOWN_MEMBER_ID", "REBALANCE_IN_PROGRESS"} for e in errors):
            raise BackendError(f"{self._url}: group {group!r} has live members; stop them before setting its offsets")
        failed = [f"{tp.topic}[{tp.partition}]: {tp.error}" for tp in result.topic_partitions or () if tp.error]
        if failed:
            raise BackendError(f"{self._url}: setting the offsets of group {group!r}: {'; '.join(failed)}")

    def group_members(self, group: str) -> list[str]:
        def ask() -> Any:
            return self._client.describe_consumer_groups([group], request_timeout=REQUEST_TIMEOUT_S)[group].result()

        try:
            description = self._retrying(ask)
        except Exception as exc:
            if error_name(exc) == "GROUP_ID_NOT_FOUND":
                return []
            raise translate(exc, f"{self._url}: describing group {group!r}") from None
        members = sorted(member.member_id for member in description.members or ())
        if not members and description.state.name not in _GROUP_WITHOUT_MEMBERS:
            # Some brokers report a group as active without naming its members; it is busy all the same.
            return [f"(an unnamed member of {group!r}: the broker reports the group {description.state.name})"]
        return members

    def group_names(self) -> list[str]:
        try:
            result = self._retrying(
                lambda: self._client.list_consumer_groups(request_timeout=REQUEST_TIMEOUT_S).result()
            )
        except Exception as exc:
            raise translate(exc, f"{self._url}: listing consumer groups") from None
        return sorted(g.group_id for g in result.valid)
