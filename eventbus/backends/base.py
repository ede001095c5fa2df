"""The log contract: what every backend driver (memory, sqlite, kafka) provides, and the records that cross it.

A *log* holds topics; a topic has a fixed number of partitions; a partition is an append-only sequence of records
numbered by offset from 0. Consumer groups remember, per partition, the offset of the next record to process
(the Kafka meaning of a committed offset). A *consumer* is one member of a group: it is assigned some of the
partitions of the topics it subscribes to, polls batches from them, and commits.

Records cross the contract in batches, as columns (`RecordBatch`), so that a driver creates no object per
record on the way in and the worker decodes each value exactly once.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from eventbus.errors import PositionMovedError, TopicNotFoundError

Headers = tuple[tuple[str, bytes], ...]

MAX_TOPIC_NAME_LENGTH = 249
# The most partitions a topic is given (`topics create`, a log URL's ?partitions=). Kafka advises some thousands
# of partitions per broker in all, and on the embedded logs each partition is rows and offsets to track for every
# group: a count past this is a typo, not a plan, and would take minutes and much of the disk to create.
MAX_PARTITIONS = 10_000
_TOPIC_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class TopicPartition(NamedTuple):
    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]"


class Message(NamedTuple):
    """A record to append. ``partition=None`` lets the driver choose: by key hash, else round-robin."""

    value: bytes | None
    key: bytes | None = None
    headers: Headers | None = None
    partition: int | None = None
    timestamp_ms: int | None = None


_new_tuple = tuple.__new__


def keyed_message(value: bytes | None, key: bytes | None, headers: Headers | None = None) -> Message:
    """``Message(value, key, headers)``, built the fast way: NamedTuple construction goes through Python code."""
    return _new_tuple(Message, (value, key, headers, None, None))


class Record(NamedTuple):
    """One record read from the log (see `RecordBatch.records` for the rare code that wants rows)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers | None


@dataclass(slots=True)
class RecordBatch:
    """Consecutive records of one partition, as columns.

    ``next_offset`` is the position after the batch; on Kafka it can be past ``offsets[-1] + 1`` (transaction
    markers occupy offsets too).
    """

    topic: str
    partition: int
    offsets: list[int]
    timestamps_ms: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    headers: list[Headers | None]
    next_offset: int

    def __len__(self) -> int:
        return len(self.offsets)

    def records(self) -> Iterator[Record]:
        topic, partition = self.topic, self.partition
        for offset, ts, key, value, headers in zip(
            self.offsets, self.timestamps_ms, self.keys, self.values, self.headers, strict=True
        ):
            yield Record(topic, partition, offset, ts, key, value, headers)

    @classmethod
    def empty(cls, topic: str, partition: int, next_offset: int) -> RecordBatch:
        return cls(topic, partition, [], [], [], [], [], next_offset)


@dataclass(frozen=True, slots=True)
class TopicInfo:
    name: str
    partitions: int


@dataclass(frozen=True, slots=True)
class PartitionState:
    """Watermarks of one partition: the first offset still held and the offset the next append gets."""

    partition: int
    start_offset: int
    end_offset: int


@dataclass(frozen=True, slots=True)
class GroupLag:
    """How far one consumer group is behind on one partition."""

    group: str
    partition: int
    committed: int | None
    end_offset: int
    # Where a group with no commit starts (the first record still held), so its lag counts what it will read.
    start_offset: int = 0

    @property
    def lag(self) -> int:
        return self.end_offset - (self.start_offset if self.committed is None else self.committed)


@dataclass(frozen=True, slots=True)
class TopicDescription:
    name: str
    partitions: tuple[PartitionState, ...]
    groups: tuple[GroupLag, ...] = field(default=())


def check_topic_name(name: str) -> str:
    """Kafka's topic-name rules, applied on every backend so an app moves between them unchanged."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"topic name must be a non-empty string, got {name!r}")
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise ValueError(f"topic name {name[:40]!r}... is longer than {MAX_TOPIC_NAME_LENGTH} characters")
    if name in {".", ".."}:
        raise ValueError(f"topic name {name!r} is reserved (Kafka refuses '.' and '..')")
    if not _TOPIC_NAME_CHARACTERS.issuperset(name):
        raise ValueError(f"topic name {name!r}: use only ASCII letters, digits, '.', '_' and '-'")
    return name


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition of a keyed record: CRC-32 of the key modulo the partition count.

    Stable across processes and Python versions, and the same choice as librdkafka's ``consistent``
    partitioners, so a key lands on the same partition number on the embedded log and on Kafka.
    """
    return zlib.crc32(key) % partitions


RevokeListener = Callable[[frozenset[TopicPartition]], None]


class Consumer(ABC):
    """One member of a consumer group, reading the partitions assigned to it.

    Threads: `poll`, `caught_up`, `seek`, `assignment` and `close` are called from one thread; `commit` and
    `publish_and_commit` may be called from another, concurrently with a poll. The revoke listener is called from
    inside `poll` and may block until a commit running on the other thread has finished.
    """

    @abstractmethod
    def poll(self, max_records: int, timeout_s: float) -> list[RecordBatch]:
        """Up to about ``max_records`` records from assigned partitions, waiting up to ``timeout_s`` for some."""

    @abstractmethod
    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Record that every record before each offset is processed. Raises `PartitionRevokedError` when a
        partition has moved to another member (the caller drops its state for it)."""

    def publish_and_commit(
        self, outputs: Mapping[str, Sequence[Message]], offsets: Mapping[TopicPartition, int]
    ) -> None:
        """Append outputs, wait until they are durable, then commit offsets (the at-least-once order).

        Drivers that can do both in one transaction override this so a crash leaves neither or both.
        """
        log = self.log
        for topic, messages in outputs.items():
            if messages:
                log.append(topic, messages)
        if offsets:
            self.commit(offsets)

    @property
    @abstractmethod
    def log(self) -> Log:
        """The log this consumer reads (and its outputs go to)."""

    @abstractmethod
    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this member currently owns."""

    @abstractmethod
    def caught_up(self) -> bool:
        """True when the group's partitions are all owned by live members and this member has read to the end
        of each of its own."""

    @abstractmethod
    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` from ``offset`` on the next poll (after a failure, to redeliver)."""

    def pause(self, partitions: Sequence[TopicPartition]) -> None:
        """Stop fetching these partitions (they stay assigned) until `resume`."""
        raise NotImplementedError(f"{type(self).__name__} cannot pause partitions")

    def resume(self, partitions: Sequence[TopicPartition]) -> None:
        """Fetch these partitions again, from where fetching stopped."""
        raise NotImplementedError(f"{type(self).__name__} cannot resume partitions")

    @abstractmethod
    def set_revoke_listener(self, listener: RevokeListener) -> None:
        """Called from inside `poll` with partitions this member is about to lose, before they are released.
        Offsets for them can still be committed from the listener."""

    @abstractmethod
    def close(self) -> None:
        """Leave the group, releasing partitions at once so other members take over without waiting."""


# Keys and headers are rarely this large: a value shorter than a log's record limit minus this fits whatever they
# hold, so only longer ones need their exact size counted (a walk over the headers).
RECORD_HEADROOM_BYTES = 64 * 1024


class Log(ABC):
    """A partitioned, append-only log with consumer groups."""

    url: str
    default_partitions: int = 1
    auto_create: bool = True
    # How events are laid out in this log's records: "structured" (the whole CloudEvent as the JSON value) or
    # "binary" (attributes in ce_* headers, the data as the value: the CloudEvents Kafka binding).
    event_mode: Literal["structured", "binary"] = "structured"
    # Whether calls that do not wait for new records are local and short (about a millisecond, no network): a
    # worker then makes them itself instead of handing them to I/O threads, which under the GIL cost more than
    # the work they overlap.
    local_calls: bool = False
    # The largest record a write takes, as `record_bytes` counts it (None: no limit). A record over it fails the
    # whole write, so the runtime refuses such an output with the event that emitted it (see runtime.outbox).
    max_record_bytes: int | None = None

    def record_bytes(self, message: Message) -> int:
        """The size of ``message`` as this log counts it against `max_record_bytes`."""
        return len(message.value or b"") + len(message.key or b"")

    def record_limit_hint(self) -> str:
        """Where `max_record_bytes` comes from and how to raise it, for the error refusing a record over it."""
        return ""

    def oversized(self, message: Message) -> str | None:
        """Why this log would refuse ``message`` for its size (naming both sizes and the setting), else None."""
        limit = self.max_record_bytes
        if limit is None or len(message.value or b"") <= limit - RECORD_HEADROOM_BYTES:
            return None
        size = self.record_bytes(message)
        if size <= limit:
            return None
        hint = self.record_limit_hint()
        return f"{size:,} bytes encoded; the log takes records of at most {limit:,} bytes" + (
            f" ({hint})" if hint else ""
        )

    def ensure_topic(self, name: str, partitions: int | None = None) -> TopicInfo:
        """The topic, created if missing (with ``partitions``, else the log's default when it auto-creates)."""
        try:
            return self.topic(name)
        except TopicNotFoundError:
            if partitions is None and not self.auto_create:
                raise
            return self.create_topic(name, partitions or self.default_partitions, exist_ok=True)

    @abstractmethod
    def create_topic(self, name: str, partitions: int = 1, *, exist_ok: bool = False) -> TopicInfo:
        """Create a topic; with ``exist_ok`` an existing topic is returned as it is."""

    @abstractmethod
    def list_topics(self) -> list[TopicInfo]: ...

    @abstractmethod
    def topic(self, name: str) -> TopicInfo:
        """The topic named; raises `TopicNotFoundError`."""

    @abstractmethod
    def append(self, topic: str, messages: Sequence[Message]) -> list[tuple[int, int]]:
        """Append a batch atomically and durably; returns ``(partition, offset)`` of each message, in order."""

    @abstractmethod
    def read(self, topic: str, partition: int, offset: int, max_records: int) -> RecordBatch:
        """Records of one partition from ``offset`` on (fewer than asked, or none, at the end)."""

    @abstractmethod
    def watermarks(self, topic: str) -> list[PartitionState]:
        """Start and end offsets of every partition of a topic."""

    @abstractmethod
    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed offset per partition (partitions never committed are absent)."""

    @abstractmethod
    def commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        """Set a group's offsets unconditionally (administrative resets; members use `Consumer.commit`)."""

    def append_and_commit(
        self,
        outputs: Mapping[str, Sequence[Message]],
        group: str,
        offsets: Mapping[TopicPartition, int],
        expected: Mapping[TopicPartition, int | None],
    ) -> None:
        """Append ``outputs`` and set ``group``'s offsets, as a tool that is not a member of the group does (a
        dead-letter replay), provided the group's committed offsets are still ``expected`` (None: never
        committed); else `PositionMovedError`, before anything is appended.

        The embedded logs do it all in one transaction. Here (Kafka) the check, the appends and the commit are
        separate steps: a crash between the appends and the commit leaves the outputs without the commit (they
        are sent again by the next attempt, as a worker's are), and two tools racing within one step can both
        pass the check."""
        check_position(group, self.committed, expected)
        for topic, messages in outputs.items():
            if messages:
                self.append(topic, messages)
        if offsets:
            self.commit(group, offsets)

    @abstractmethod
    def groups(self) -> list[str]:
        """Every group with committed offsets."""

    @abstractmethod
    def consumer(self, group: str, topics: Sequence[str], settings: ConsumerSettings | None = None) -> Consumer:
        """Join ``group`` as a new member subscribed to ``topics``."""

    def delete_records(self, topic: str, before: Mapping[int, int]) -> None:
        """Drop the records of each partition below the given offset (retention; Kafka's DeleteRecords). The
        partition's start offset moves there; offsets of the records kept do not change."""
        raise NotImplementedError(f"{type(self).__name__} cannot delete records")

    def group_members(self, group: str) -> list[str]:
        """The ids of the group's live members (workers running now)."""
        raise NotImplementedError(f"{type(self).__name__} cannot list group members")

    def offsets_for_time(self, topic: str, time_ms: int) -> dict[int, int]:
        """Per partition, the offset of the first record appended at or after ``time_ms`` (the end offset if
        none was). A binary search over `read`; drivers with an index of their own override it."""
        found: dict[int, int] = {}
        for state in self.watermarks(topic):
            low, high = state.start_offset, state.end_offset
            while low < high:
                middle = (low + high) // 2
                batch = self.read(topic, state.partition, middle, 1)
                if not batch.offsets:
                    high = middle
                elif batch.timestamps_ms[0] < time_ms:
                    low = batch.offsets[0] + 1
                else:
                    high = middle
            found[state.partition] = low
        return found

    def describe_topic(self, name: str) -> TopicDescription:
        """Watermarks of every partition and, for each group that committed on the topic, its lag."""
        info = self.topic(name)
        states = tuple(self.watermarks(info.name))
        lags: list[GroupLag] = []
        for group in self.groups():
            committed = self.committed(group, name)
            if committed:
                lags.extend(
                    GroupLag(
                        group, state.partition, committed.get(state.partition), state.end_offset, state.start_offset
                    )
                    for state in states
                )
        return TopicDescription(name, states, tuple(lags))

    def close(self) -> None:  # noqa: B027 - drivers without resources need not override it
        """Release connections and files."""

    def __enter__(self) -> Log:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """How a member joins its group.

    ``reset`` says where a partition without a committed offset starts: ``earliest`` or ``latest``.

    Liveness and progress are separate, as in Kafka. A member heartbeats every ``heartbeat_interval_s`` from a
    background thread, so it keeps its partitions while it processes a long round without polling;
    ``session_timeout_s`` is how long a member whose heartbeats stopped (its process died or hangs) keeps its
    partitions before others may take them. ``max_poll_interval_s`` bounds the time between two polls: a member
    that has not polled for that long is taken to be stuck, its heartbeats stop, and its partitions move once its
    session times out. It must be at least ``session_timeout_s``; on Kafka it is ``max.poll.interval.ms``.
    """

    reset: str = "earliest"
    session_timeout_s: float = 10.0
    heartbeat_interval_s: float = 1.0
    max_poll_interval_s: float = 300.0
    member_name: str | None = None
    # This process's place among the N that `eventbus run --workers N` starts (0 to N-1), None otherwise. A static
    # member id (Kafka's group.instance.id) gets it as a suffix: N processes under one id would fence each other.
    worker_index: int | None = None
    # "exactly_once": outputs and offsets commit atomically. The embedded logs always do; Kafka uses transactions.
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"

    def __post_init__(self) -> None:
        if self.reset not in {"earliest", "latest"}:
            raise ValueError(f"reset must be 'earliest' or 'latest', got {self.reset!r}")
        if self.processing_guarantee not in {"at_least_once", "exactly_once"}:
            raise ValueError(
                f"processing_guarantee must be 'at_least_once' or 'exactly_once', got {self.processing_guarantee!r}"
            )
        if self.heartbeat_interval_s <= 0 or self.session_timeout_s <= self.heartbeat_interval_s:
            raise ValueError("session_timeout_s must be greater than heartbeat_interval_s, both positive")
        # Not below the session timeout: a member would be declared stuck before it could even be declared dead,
        # and librdkafka refuses max.poll.interval.ms < session.timeout.ms.
        if not self.max_poll_interval_s >= self.session_timeout_s:
            raise ValueError(
                f"max_poll_interval_s must be at least session_timeout_s ({self.session_timeout_s} s), "
                f"got {self.max_poll_interval_s}"
            )


def check_position(
    group: str, committed: Callable[[str, str], Mapping[int, int]], expected: Mapping[TopicPartition, int | None]
) -> None:
    """`PositionMovedError` unless ``group``'s committed offsets (``committed(group, topic)``) are ``expected``."""
    by_topic: dict[str, Mapping[int, int]] = {}
    for tp, offset in expected.items():
        offsets = by_topic.get(tp.topic)
        if offsets is None:
            offsets = by_topic[tp.topic] = committed(group, tp.topic)
        now = offsets.get(tp.partition)
        if now != offset:
            raise PositionMovedError(
                f"group {group!r} moved on {tp}: from {_position_text(offset)} to {_position_text(now)}"
            )


def _position_text(offset: int | None) -> str:
    return "no committed offset" if offset is None else f"offset {offset}"
