"""The driver boundary: every confluent_kafka error becomes an `eventbus.errors` exception naming what failed.

Callers see `TopicNotFoundError`, `PartitionRevokedError`, `ConfigurationError` (credentials, settings, bad topic
parameters) or `BackendError` (the brokers did not do what was asked), never `KafkaException` or `KafkaError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from eventbus.errors import (
    BackendError,
    ConfigurationError,
    EventbusError,
    PartitionRevokedError,
    TopicNotFoundError,
)

# Names (KafkaError.name()) rather than numeric codes, so this table reads without confluent_kafka imported.
_TOPIC_MISSING: Final = frozenset({"UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC", "UNKNOWN_TOPIC_ID"})

# The group moved on without this member: its commit cannot count, its partitions belong to someone else.
GROUP_MOVED_ON: Final = frozenset(
    {
        "ILLEGAL_GENERATION",
        "UNKNOWN_MEMBER_ID",
        "REBALANCE_IN_PROGRESS",
        "FENCED_INSTANCE_ID",
        "_ASSIGNMENT_LOST",
        "STALE_MEMBER_EPOCH",
        "FENCED_MEMBER_EPOCH",
        "UNKNOWN_SUBSCRIPTION_ID",
    }
)

_MISCONFIGURED: Final = frozenset(
    {
        "_AUTHENTICATION",
        "SASL_AUTHENTICATION_FAILED",
        "_SSL",
        "TOPIC_AUTHORIZATION_FAILED",
        "GROUP_AUTHORIZATION_FAILED",
        "CLUSTER_AUTHORIZATION_FAILED",
        "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
        "INVALID_PARTITIONS",
        "INVALID_REPLICATION_FACTOR",
        "INVALID_REPLICA_ASSIGNMENT",
        "INVALID_CONFIG",
        "INVALID_TOPIC_EXCEPTION",
        "POLICY_VIOLATION",
        "INVALID_SESSION_TIMEOUT",
        "INCONSISTENT_GROUP_PROTOCOL",
        "UNSUPPORTED_ASSIGNOR",
        "GROUP_MAX_SIZE_REACHED",
        "UNSUPPORTED_VERSION",
        "UNSUPPORTED_FOR_MESSAGE_FORMAT",
        "_UNSUPPORTED_FEATURE",
        "_INVALID_ARG",
    }
)

# The group coordinator refuses to let this member join: asking again gets the same answer, so a member that
# only logged it would wait for its partitions forever (Kafka's Java consumer raises these from poll too).
JOIN_REFUSED: Final = frozenset(
    {
        "INVALID_SESSION_TIMEOUT",
        "INCONSISTENT_GROUP_PROTOCOL",
        "UNSUPPORTED_ASSIGNOR",
        "GROUP_MAX_SIZE_REACHED",
        "GROUP_AUTHORIZATION_FAILED",
        "TOPIC_AUTHORIZATION_FAILED",
    }
)

# The broker is gone or slow: worth waiting for, up to broker_unavailable_timeout_s.
UNREACHABLE: Final = frozenset(
    {
        "_TRANSPORT",
        "_ALL_BROKERS_DOWN",
        "_TIMED_OUT",
        "_MSG_TIMED_OUT",
        "_TIMED_OUT_QUEUE",
        "_WAIT_COORD",
        "_RESOLVE",
        "REQUEST_TIMED_OUT",
        "COORDINATOR_NOT_AVAILABLE",
        "COORDINATOR_LOAD_IN_PROGRESS",
        "NOT_COORDINATOR",
        "LEADER_NOT_AVAILABLE",
        "NOT_LEADER_FOR_PARTITION",
        "NOT_ENOUGH_REPLICAS",
        "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        "NETWORK_EXCEPTION",
        "BROKER_NOT_AVAILABLE",
    }
)

_HINTS: Final = {
    "_AUTHENTICATION": "check security.protocol, sasl.* and ssl.* settings",
    "SASL_AUTHENTICATION_FAILED": "check sasl.username and sasl.password",
    "_SSL": "check the ssl.* settings and the broker certificate",
    "TOPIC_AUTHORIZATION_FAILED": "the principal lacks an ACL on the topic",
    "GROUP_AUTHORIZATION_FAILED": "the principal lacks an ACL on the consumer group",
    "INVALID_SESSION_TIMEOUT": "the broker refuses this session timeout (group.min/max.session.timeout.ms)",
    "INCONSISTENT_GROUP_PROTOCOL": (
        "another application's members use this group with another assignment strategy; give eventbus a group "
        "of its own (eventbus run --group) or the same partition.assignment.strategy"
    ),
    "UNSUPPORTED_ASSIGNOR": "the broker does not support this partition.assignment.strategy",
    "GROUP_MAX_SIZE_REACHED": "the group has as many members as the broker allows (group.max.size)",
    "MSG_SIZE_TOO_LARGE": (
        "a record is larger than the brokers take (the topic's max.message.bytes, the brokers' message.max.bytes); "
        "eventbus refuses records over its own message.max.bytes before writing, so keep that no higher"
    ),
    "_ALL_BROKERS_DOWN": "is the broker running and reachable at that address?",
    "_TRANSPORT": "is the broker running and reachable at that address?",
}


def error_name(error: Any) -> str:
    """The KafkaError name of a KafkaError, a KafkaException or anything carrying one; else ''."""
    kafka_error = kafka_error_of(error)
    return kafka_error.name() if kafka_error is not None else ""


def kafka_error_of(error: Any) -> Any | None:
    """The KafkaError inside ``error`` (which may be one), or None."""
    if hasattr(error, "code") and hasattr(error, "name") and hasattr(error, "str"):
        return error
    args = getattr(error, "args", ())
    if args and hasattr(args[0], "code") and hasattr(args[0], "name"):
        return args[0]
    return None


def describe(error: Any) -> str:
    kafka_error = kafka_error_of(error)
    if kafka_error is None:
        return str(error)
    name = kafka_error.name()
    text = f"{kafka_error.str()} ({name})"
    hint = _HINTS.get(name)
    return f"{text}; {hint}" if hint else text


def translate(error: Any, what: str, *, topic: str | None = None) -> EventbusError:
    """The eventbus exception for a confluent_kafka error met while doing ``what`` (which names the URL, the
    topic or the group concerned)."""
    name = error_name(error)
    if name in _TOPIC_MISSING and topic is not None:
        return TopicNotFoundError(topic)
    message = f"{what}: {describe(error)}"
    if name in GROUP_MOVED_ON:
        return PartitionRevokedError(message)
    if name in _MISCONFIGURED:
        return ConfigurationError(message)
    return BackendError(message)


def is_unreachable(error: Any) -> bool:
    return error_name(error) in UNREACHABLE


@contextmanager
def translated(what: str, *, topic: str | None = None) -> Iterator[None]:
    """Inside: any confluent_kafka error leaves as the eventbus exception for it (see `translate`)."""
    from confluent_kafka import KafkaException

    try:
        yield
    except KafkaException as exc:
        raise translate(exc, what, topic=topic) from None
