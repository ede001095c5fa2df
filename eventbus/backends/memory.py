"""The in-memory log: the executable specification of the log contract, and the backend of `eventbus.testing`.

Everything lives in Python lists guarded by one lock; ``memory://NAME`` opened twice in one process gives the same
log, so a publisher and a worker in one test see each other. Nothing survives the process.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from eventbus.backends.base import (
    Headers,
    Message,
    PartitionState,
    RecordBatch,
    TopicInfo,
    TopicPartition,
    check_position,
    check_topic_name,
    partition_for_key,
)
from eventbus.backends.group import EmbeddedLog, Member
from eventbus.errors import PartitionRevokedError, TopicNotFoundError


class _Stored(NamedTuple):
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers | None


class _Group:
    def __init__(self) -> None:
        self.offsets: dict[TopicPartition, int] = {}
        self.members: dict[str, tuple[Member, float]] = {}
        self.owners: dict[TopicPartition, str] = {}
        self.epoch = 0

    def drop_member(self, member_id: str) -> None:
        if self.members.pop(member_id, None) is not None:
            self.epoch += 1
        self.owners = {tp: m for tp, m in self.owners.items() if m != member_id}


class MemoryLog(EmbeddedLog):
    def __init__(self, name: str = "default", *, default_partitions: int = 1, auto_create: bool = True) -> None:
        self.url = f"memory://{name}"
        self.default_partitions = default_partitions
        self.auto_create = auto_create
        self._partitions: dict[str, list[list[_Stored | None]]] = {}
        self._starts: dict[tuple[str, int], int] = {}
        self._groups: dict[str, _Group] = {}
        self._round_robin: dict[str, itertools.cycle[int]] = {}
        self._lock = threading.RLock()
        self._appended = threading.Condition(self._lock)

    # -- topics -----------------------------------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int = 1, *, exist_ok: bool = False) -> TopicInfo:
        check_topic_name(name)
        if partitions < 1:
            raise ValueError(f"topic {name!r}: partitions must be at least 1, got {partitions}")
        with self._lock:
            existing = self._partitions.get(name)
            if existing is not None:
                if exist_ok:
                    return TopicInfo(name, len(existing))
                raise ValueError(f"topic {name!r} already exists")
            self._partitions[name] = [[] for _ in range(partitions)]
            return TopicInfo(name, partitions)

    def list_topics(self) -> list[TopicInfo]:
        with self._lock:
            return [TopicInfo(name, len(parts)) for name, parts in sorted(self._partitions.items())]

    def topic(self, name: str) -> TopicInfo:
        with self._lock:
            parts = self._partitions.get(name)
            if parts is None:
                raise TopicNotFoundError(name)
            return TopicInfo(name, len(parts))

    def _topic_partitions(self, name: str) -> list[list[_Stored | None]]:
        parts = self._partitions.get(name)
        if parts is None:
            if not self.auto_create:
                raise TopicNotFoundError(name)
            self.create_topic(name, self.default_partitions)
            parts = self._partitions[name]
        return parts

    # -- records ----------------------------------------------------------------------------------------------

    def append(self, topic: str, messages: Sequence[Message]) -> list[tuple[int, int]]:
        with self._lock:
            positions = self._append_locked(topic, messages)
            self._appended.notify_all()
            return positions

    def _append_locked(self, topic: str, messages: Sequence[Message]) -> list[tuple[int, int]]:
        parts = self._topic_partitions(topic)
        count = len(parts)
        # Choose every partition first: a bad message refuses the whole batch before anything is stored.
        chosen = [self._choose_partition(topic, message, count) for message in messages]
        now_ms = time.time_ns() // 1_000_000
        positions = []
        for partition, message in zip(chosen, messages, strict=True):
            log = parts[partition]
            positions.append((partition, len(log)))
            log.append(_Stored(message.timestamp_ms or now_ms, message.key, message.value, message.headers))
        return positions

    def _choose_partition(self, topic: str, message: Message, count: int) -> int:
        if message.partition is not None:
            if not 0 <= message.partition < count:
                raise ValueError(f"topic {topic!r} has no partition {message.partition} (it has {count})")
            return message.partition
        if message.key is not None:
            return partition_for_key(message.key, count)
        cycle = self._round_robin.get(topic)
        if cycle is None:
            cycle = self._round_robin[topic] = itertools.cycle(range(count))
        return next(cycle)

    def read(self, topic: str, partition: int, offset: int, max_records: int) -> RecordBatch:
        with self._lock:
            parts = self._partitions.get(topic)
            if parts is None:
                raise TopicNotFoundError(topic)
            offset = max(offset, self._starts.get((topic, partition), 0))
            rows = [r for r in parts[partition][offset : offset + max_records] if r is not None]
            end = offset + len(rows)
            return RecordBatch(
                topic,
                partition,
                list(range(offset, end)),
                [r.timestamp_ms for r in rows],
                [r.key for r in rows],
                [r.value for r in rows],
                [r.headers for r in rows],
                end,
            )

    def watermarks(self, topic: str) -> list[PartitionState]:
        with self._lock:
            parts = self._partitions.get(topic)
            if parts is None:
                raise TopicNotFoundError(topic)
            return [PartitionState(i, self._starts.get((topic, i), 0), len(p)) for i, p in enumerate(parts)]

    def offsets_for_time(self, topic: str, time_ms: int) -> dict[int, int]:
        # The first record stamped at or after time_ms, whatever was stamped before it, as Kafka answers.
        with self._lock:
            parts = self._partitions.get(topic)
            if parts is None:
                raise TopicNotFoundError(topic)
            found: dict[int, int] = {}
            for partition, log in enumerate(parts):
                found[partition] = next(
                    (o for o, r in enumerate(log) if r is not None and r.timestamp_ms >= time_ms), len(log)
                )
            return found

    def delete_records(self, topic: str, before: Mapping[int, int]) -> None:
        with self._lock:
            parts = self._partitions.get(topic)
            if parts is None:
                raise TopicNotFoundError(topic)
            for partition, offset in before.items():
                log = parts[partition]
                start = max(self._starts.get((topic, partition), 0), min(offset, len(log)))
                for i in range(start):
                    log[i] = None  # the memory goes; the offsets stay
                self._starts[(topic, partition)] = start

    # -- groups -----------------------------------------------------------------------------------------------

    def _group(self, name: str) -> _Group:
        group = self._groups.get(name)
        if group is None:
            group = self._groups[name] = _Group()
        return group

    def committed(self, group: str, topic: str) -> dict[int, int]:
        with self._lock:
            offsets = self._group(group).offsets
            return {tp.partition: offset for tp, offset in offsets.items() if tp.topic == topic}

    def commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        with self._lock:
            self._group(group).offsets.update(offsets)

    def append_and_commit(
        self,
        outputs: Mapping[str, Sequence[Message]],
        group: str,
        offsets: Mapping[TopicPartition, int],
        expected: Mapping[TopicPartition, int | None],
    ) -> None:
        with self._lock:
            check_position(group, self._committed_locked, expected)
            for topic in outputs:  # every target first: a missing one refuses the whole step
                self._topic_partitions(topic)
            for topic, messages in outputs.items():
                if messages:
                    self._append_locked(topic, messages)
            self._group(group).offsets.update(offsets)
            self._appended.notify_all()

    def _committed_locked(self, group: str, topic: str) -> dict[int, int]:
        offsets = self._group(group).offsets
        return {tp.partition: offset for tp, offset in offsets.items() if tp.topic == topic}

    def groups(self) -> list[str]:
        with self._lock:
            return sorted(name for name, g in self._groups.items() if g.offsets)

    def group_members(self, group: str) -> list[str]:
        now = time.monotonic()
        with self._lock:
            members = self._groups[group].members if group in self._groups else {}
            return sorted(m for m, (member, seen) in members.items() if now - seen <= member.session_timeout_s)

    def membership_epoch(self, group: str) -> int:
        with self._lock:
            state = self._groups.get(group)
            return 0 if state is None else state.epoch

    def heartbeat(self, group: str, member: Member) -> list[Member]:
        now = time.monotonic()
        with self._lock:
            state = self._group(group)
            epoch = state.epoch
            if member.member_id not in state.members:
                state.epoch += 1
            state.members[member.member_id] = (member, now)
            for member_id, (other, seen) in list(state.members.items()):
                if now - seen > other.session_timeout_s:
                    state.drop_member(member_id)
            if state.epoch != epoch:
                # Members idling in wait_for_append look at the new epoch now rather than at their next beat.
                self._appended.notify_all()
            return sorted((m for m, _ in state.members.values()), key=lambda m: m.member_id)

    def keep_alive(self, group: str, member_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            state = self._groups.get(group)
            entry = state.members.get(member_id) if state is not None else None
            # An expired member stays expired even before someone removes it: only a poll rejoins it.
            if state is None or entry is None or now - entry[1] > entry[0].session_timeout_s:
                return False
            state.members[member_id] = (entry[0], now)
            return True

    def claim(self, group: str, member_id: str, partitions: Sequence[TopicPartition]) -> set[TopicPartition]:
        with self._lock:
            state = self._group(group)
            claimed = set()
            for tp in partitions:
                owner = state.owners.get(tp)
                if owner is None or owner == member_id or owner not in state.members:
                    state.owners[tp] = member_id
                    claimed.add(tp)
            return claimed

    def release(self, group: str, member_id: str, partitions: Sequence[TopicPartition]) -> None:
        with self._lock:
            owners = self._group(group).owners
            for tp in partitions:
                if owners.get(tp) == member_id:
                    del owners[tp]

    def leave(self, group: str, member_id: str) -> None:
        with self._lock:
            self._group(group).drop_member(member_id)
            self._appended.notify_all()

    def commit_owned(
        self,
        group: str,
        member_id: str,
        offsets: Mapping[TopicPartition, int],
        outputs: Mapping[str, Sequence[Message]],
    ) -> None:
        with self._lock:
            state = self._group(group)
            lost = sorted(str(tp) for tp in offsets if state.owners.get(tp) != member_id)
            if lost:
                raise PartitionRevokedError(f"group {group!r}: partitions moved to another member: {lost}")
            for topic, messages in outputs.items():
                if messages:
                    self._append_locked(topic, messages)
            state.offsets.update(offsets)
            self._appended.notify_all()

    def wait_for_append(self, timeout_s: float) -> None:
        with self._appended:
            self._appended.wait(timeout_s)


_registry: dict[str, MemoryLog] = {}
_registry_lock = threading.Lock()


def open_memory_log(name: str, *, default_partitions: int = 1, auto_create: bool = True) -> MemoryLog:
    """The process-wide memory log called ``name``, created on first use."""
    with _registry_lock:
        log = _registry.get(name)
        if log is None:
            log = _registry[name] = MemoryLog(name, default_partitions=default_partitions, auto_create=auto_create)
        return log


def forget_memory_log(name: str) -> None:
    """Drop a named memory log (tests use fresh names instead where they can)."""
    with _registry_lock:
        _registry.pop(name, None)
