"""Errors callers of eventbus see.

Driver-specific exceptions (``sqlite3.OperationalError``, ``confluent_kafka.KafkaException``) are translated at
the driver boundary into these, each naming what went wrong and, where it helps, what to do about it.
"""

from __future__ import annotations

from eventbus.event import InvalidEventError

__all__ = [
    "BackendError",
    "ConfigurationError",
    "DecodeError",
    "EventbusError",
    "InvalidEventError",
    "PartitionRevokedError",
    "PositionMovedError",
    "ProcessorError",
    "TopicNotFoundError",
]


class EventbusError(Exception):
    """Base of every error eventbus raises on purpose."""


class ConfigurationError(EventbusError, ValueError):
    """A user mistake in configuration: a bad URL, option, module or declaration. The CLI exits with 2."""


class DecodeError(EventbusError, ValueError):
    """A record's bytes cannot be turned into an event (bad JSON, bad UTF-8, missing attributes, ...)."""


class BackendError(EventbusError):
    """The log or a store failed in a way the caller cannot fix by changing its input."""


class TopicNotFoundError(BackendError, KeyError):
    """A topic that was asked for does not exist."""

    def __init__(self, topic: str) -> None:
        super().__init__(topic)
        self.topic = topic

    def __str__(self) -> str:
        import shlex

        from eventbus.backends.base import check_topic_name  # here: eventbus.backends imports this module

        try:
            check_topic_name(self.topic)
        except ValueError as exc:  # no topic can have that name: creating it is no way out
            return f"topic {self.topic!r} does not exist: {exc}"
        name = shlex.quote(self.topic)
        if name.startswith("-"):  # else read as an option
            name = f"-- {name}"
        return f"topic {self.topic!r} does not exist (create it with `eventbus topics create {name}`)"


class PartitionRevokedError(BackendError):
    """A commit was refused because this worker no longer owns the partition (another member took it over)."""


class PositionMovedError(BackendError):
    """A group's committed position was not where a tool expected it: something else moved it meanwhile (another
    replay of the same dead-letter topic, a reset). Nothing of the refused step was done."""


class ProcessorError(EventbusError):
    """A processor raised while handling an event; carries where it happened."""

    def __init__(self, processor: str, topic: str, partition: int, offset: int, cause: BaseException) -> None:
        super().__init__(
            f"processor {processor!r} failed on {topic}[{partition}]@{offset}: {type(cause).__name__}: {cause}"
        )
        self.processor = processor
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.cause = cause
