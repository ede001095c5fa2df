"""Consumer groups on the embedded logs (memory and sqlite): membership, partition ownership and fenced commits.

Kafka runs a group coordinator on the broker; the embedded logs have no broker, so members coordinate through the
log's own storage:

1. Every member *heartbeats*: it writes its liveness (host, pid, time) and reads the list of live members. A member
   whose heartbeat is older than the session timeout, or whose process is gone from this host, is removed and its
   partitions become free. Liveness is kept apart from progress, as Kafka does: a background thread refreshes the
   member's heartbeat every heartbeat interval while the consumer is open, so a member busy with a long round
   (not polling) keeps its partitions. That thread only writes liveness; reading the member list and acting on it
   (steps 2 and 3) happen inside ``poll``, on the polling thread. A member that has not polled for
   ``max_poll_interval_s`` is taken to be stuck: its background heartbeats stop, so its session times out and its
   partitions move; when it polls again it rejoins, and first gives up (through the revoke listener) the partitions
   another member took meanwhile.
   Every change of the member set (a join, a leave, an expiry) moves the group's *membership
   epoch*, which members read at each poll: a moved epoch starts steps 2 and 3 at that poll, as a Kafka
   coordinator answers a heartbeat with "rebalance in progress", rather than at the next heartbeat. Workers
   started together, or one leaving, then settle their partitions within a round instead of a heartbeat interval.
2. Each member computes the same assignment from the same member list: partition ``p`` of topic ``t`` goes to the
   subscribed member at index ``(p + crc32(t)) % count`` of the sorted member ids.
3. A member *claims* a partition before reading it; the claim succeeds only when no live member owns it. A member
   that loses a partition in the assignment first calls the revoke listener (so the worker can commit what it has
   finished), then *releases* it, and only then can the new owner claim it.
4. Commits are *fenced*: a commit for a partition the member no longer owns is refused in the same transaction, so
   a stalled member that woke up late cannot move a group's offset backwards or forwards.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
import zlib
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from eventbus.backends.base import (
    Consumer,
    ConsumerSettings,
    Log,
    Message,
    RecordBatch,
    RevokeListener,
    TopicPartition,
)
from eventbus.errors import PartitionRevokedError, TopicNotFoundError

logger = logging.getLogger("eventbus.group")


@dataclass(frozen=True, slots=True)
class Member:
    member_id: str
    host: str
    pid: int
    topics: tuple[str, ...]
    session_timeout_s: float


def host_identity() -> str:
    """This host as `process_is_gone` needs it: the hostname and the PID namespace. A pid can only be looked up in
    its own namespace, and containers that share a hostname (those of one pod) each have their own."""
    name = socket.gethostname()
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # e.g. "pid:[4026531836]"
    except OSError:
        return name
    return f"{name} {namespace}"


def process_is_gone(member: Member, this_host: str) -> bool:
    """True when the member ran on this host (and PID namespace, see `host_identity`) and its process no longer
    exists (it crashed or was killed)."""
    if member.host != this_host or member.pid == os.getpid():
        return False
    try:
        os.kill(member.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def assign(members: Sequence[Member], partition_counts: Mapping[str, int]) -> dict[str, set[TopicPartition]]:
    """The partitions each member should own: the same answer in every member for the same inputs."""
    owners: dict[str, set[TopicPartition]] = {m.member_id: set() for m in members}
    for topic, count in partition_counts.items():
        subscribed = sorted(m.member_id for m in members if topic in m.topics)
        if not subscribed:
            continue
        # Offsetting by the topic's hash spreads the first partitions of many topics over different members.
        shift = zlib.crc32(topic.encode())
        for partition in range(count):
            owners[subscribed[(partition + shift) % len(subscribed)]].add(TopicPartition(topic, partition))
    return owners


class EmbeddedLog(Log):
    """A log whose consumer groups are coordinated through its own storage (see the module docstring)."""

    local_calls = True

    @abstractmethod
    def heartbeat(self, group: str, member: Member) -> list[Member]:
        """Refresh ``member``; remove members silent for longer than their own session timeout, or whose
        process is gone, freeing their partitions; return the live ones."""

    @abstractmethod
    def membership_epoch(self, group: str) -> int:
        """A number that changes whenever a member joins or leaves ``group`` (an expiry included); cheap enough
        to read at every poll. A member's new subscription is not a change here: members pick it up at their
        next heartbeat (a member changes its subscription only by restarting, with a new member id, unless two
        consumers share a member name, and those must not rebalance at every poll)."""

    @abstractmethod
    def keep_alive(self, group: str, member_id: str) -> bool:
        """Refresh the heartbeat of ``member_id`` if it is still a live member, and nothing else (no expiry of
        others, no assignment); False when it is not, and must rejoin through `heartbeat`. Safe to call from a
        thread other than the one polling."""

    @abstractmethod
    def claim(self, group: str, member_id: str, partitions: Sequence[TopicPartition]) -> set[TopicPartition]:
        """Take ownership of each partition no live member owns; returns those ``member_id`` now owns."""

    @abstractmethod
    def release(self, group: str, member_id: str, partitions: Sequence[TopicPartition]) -> None: ...

    @abstractmethod
    def leave(self, group: str, member_id: str) -> None:
        """Remove the member and free its partitions at once."""

    @abstractmethod
    def commit_owned(
        self,
        group: str,
        member_id: str,
        offsets: Mapping[TopicPartition, int],
        outputs: Mapping[str, Sequence[Message]],
    ) -> None:
        """Append ``outputs`` and commit ``offsets`` in one transaction, only if ``member_id`` owns every
        partition in ``offsets``; otherwise nothing is written and `PartitionRevokedError` is raised."""

    @abstractmethod
    def wait_for_append(self, timeout_s: float) -> None:
        """Block until another writer may have appended, or ``timeout_s`` passes."""

    def consumer(self, group: str, topics: Sequence[str], settings: ConsumerSettings | None = None) -> EmbeddedConsumer:
        return EmbeddedConsumer(self, group, topics, settings or ConsumerSettings())


# How often a member that is still waiting for a partition to be released asks again.
_CLAIM_RETRY_S = 0.05
# How long close waits for the heartbeat thread to finish a beat under way.
_HEARTBEAT_JOIN_TIMEOUT_S = 5.0


class EmbeddedConsumer(Consumer):
    """A group member on an `EmbeddedLog`."""

    def __init__(self, log: EmbeddedLog, group: str, topics: Sequence[str], settings: ConsumerSettings) -> None:
        if not group:
            raise ValueError("a consumer group needs a non-empty name")
        self._log = log
        self._group = group
        self._topics = tuple(dict.fromkeys(topics))
        self._settings = settings
        self._host = host_identity()
        suffix = settings.member_name or uuid.uuid4().hex[:12]
        self._member = Member(
            f"{socket.gethostname()}-{os.getpid()}-{suffix}",
            self._host,
            os.getpid(),
            self._topics,
            settings.session_timeout_s,
        )
        self._positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._desired: set[TopicPartition] = set()
        self._revoke_listener: RevokeListener | None = None
        self._next_heartbeat = 0.0
        self._next_claim = 0.0
        # The membership epoch the current assignment was computed at (None before joining).
        self._epoch: int | None = None
        self._rotation = 0
        self._closed = False
        # Monotonic times, written by the polling thread (both) and the heartbeat thread (the first) and read by
        # the other: a float assignment is atomic, and a stale read only delays a beat or a check by one round.
        self._last_beat_s = 0.0
        self._last_poll_s = time.monotonic()
        self._heartbeats: threading.Thread | None = None
        self._stop_heartbeats = threading.Event()
        # Partitions a refused commit showed to be lost. Commits may run on another thread than polls, so they
        # only note the loss here; the polling thread forgets the partitions at its next step.
        self._lost_on_commit: set[TopicPartition] = set()
        self._lost_lock = threading.Lock()

    @property
    def log(self) -> EmbeddedLog:
        return self._log

    @property
    def member_id(self) -> str:
        return self._member.member_id

    def set_revoke_listener(self, listener: RevokeListener) -> None:
        self._revoke_listener = listener

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._positions)

    # -- membership -------------------------------------------------------------------------------------------

    def _maintain(self) -> None:
        self._last_poll_s = time.monotonic()
        if self._lost_on_commit:
            with self._lost_lock:
                lost, self._lost_on_commit = self._lost_on_commit, set()
            held = frozenset(lost.intersection(self._positions))
            if held and self._revoke_listener is not None:
                # Told as a revocation is: what the member kept about them (where they started) is stale now.
                self._revoke_listener(held)
            for tp in lost:
                self._positions.pop(tp, None)
                self._paused.discard(tp)
            self._next_heartbeat = 0.0
        now = time.monotonic()
        if now >= self._next_heartbeat or self._log.membership_epoch(self._group) != self._epoch:
            self._rebalance()
            self._next_heartbeat = now + self._settings.heartbeat_interval_s
            self._next_claim = 0.0
            if self._heartbeats is None:
                # Started once the member has joined (the thread only refreshes an existing membership).
                self._heartbeats = threading.Thread(
                    target=self._beat_in_background, name=f"eventbus-heartbeat-{self._group}", daemon=True
                )
                self._heartbeats.start()
        pending = self._desired.difference(self._positions)
        if pending and now >= self._next_claim:
            self._claim(pending)
            self._next_claim = now + _CLAIM_RETRY_S

    def _rebalance(self) -> None:
        started = time.monotonic()
        # Silent for about a session (stalled past max_poll_interval_s, or heartbeats that could not get through):
        # others may have removed this member and taken its partitions. Which ones is checked below.
        may_have_lapsed = bool(self._positions) and (
            started - self._last_beat_s > self._settings.session_timeout_s - self._settings.heartbeat_interval_s
        )
        # Read before the heartbeat: a change made after this read (this member's own join included) shows as a
        # new epoch at the next poll, which rebalances again rather than missing it.
        self._epoch = self._log.membership_epoch(self._group)
        members = self._log.heartbeat(self._group, self._member)
        self._last_beat_s = started
        counts = {}
        for topic in {t for m in members for t in m.topics}:
            try:
                counts[topic] = self._log.topic(topic).partitions
            except TopicNotFoundError:
                continue
        self._desired = assign(members, counts).get(self._member.member_id, set())
        lost = frozenset(tp for tp in self._positions if tp not in self._desired)
        if may_have_lapsed:
            # Re-claiming is a no-op for partitions still ours, and fails for those another member took: without
            # it this member would go on reading them beside their new owner until a commit is refused.
            kept = [tp for tp in self._positions if tp in self._desired]
            if kept:
                lost |= set(kept).difference(self._log.claim(self._group, self._member.member_id, sorted(kept)))
        if lost:
            if self._revoke_listener is not None:
                self._revoke_listener(lost)
            for tp in lost:
                del self._positions[tp]
                self._paused.discard(tp)
            self._log.release(self._group, self._member.member_id, sorted(lost))

    def _claim(self, wanted: set[TopicPartition]) -> None:
        got = self._log.claim(self._group, self._member.member_id, sorted(wanted))
        if not got:
            return
        by_topic: dict[str, list[TopicPartition]] = {}
        for tp in got:
            by_topic.setdefault(tp.topic, []).append(tp)
        for topic, tps in by_topic.items():
            committed = self._log.committed(self._group, topic)
            states = {s.partition: s for s in self._log.watermarks(topic)}
            for tp in tps:
                state = states[tp.partition]
                start = committed.get(tp.partition)
                if start is None:
                    start = state.start_offset if self._settings.reset == "earliest" else state.end_offset
                # A committed offset below the retained range would silently skip records; start at what is held.
                self._positions[tp] = max(start, state.start_offset)

    def _beat_in_background(self) -> None:
        """Keep the membership alive while the polling thread is busy, until `close` or a stall."""
        interval_s = self._settings.heartbeat_interval_s
        max_poll_interval_s = self._settings.max_poll_interval_s
        stalled = False
        failing = False
        while True:
            # Polls heartbeat too: beat only when the last one, from either thread, is an interval old.
            due_s = self._last_beat_s + interval_s
            if self._stop_heartbeats.wait(max(0.0, due_s - time.monotonic())):
                return
            now = time.monotonic()
            if now < self._last_beat_s + interval_s:
                continue
            if now - self._last_poll_s > max_poll_interval_s:
                if not stalled:
                    stalled = True
                    logger.warning(
                        "group %r member %s has not polled for more than max_poll_interval_s=%s s: it stops "
                        "heartbeating, so its partitions go to other members; it rejoins at its next poll",
                        self._group,
                        self._member.member_id,
                        max_poll_interval_s,
                    )
                if self._stop_heartbeats.wait(interval_s):
                    return
                continue
            stalled = False
            try:
                alive = self._log.keep_alive(self._group, self._member.member_id)
            except Exception:
                # A busy or briefly unavailable log: try again next interval; say so once per run of failures.
                if not failing:
                    logger.warning(
                        "group %r member %s: heartbeat failed", self._group, self._member.member_id, exc_info=True
                    )
                failing = True
                if self._stop_heartbeats.wait(interval_s):
                    return
                continue
            failing = False
            if alive:
                self._last_beat_s = now
            elif self._stop_heartbeats.wait(interval_s):
                # No longer a member: only a poll can rejoin, so wait for it rather than retry at once.
                return

    # -- reading ----------------------------------------------------------------------------------------------

    def poll(self, max_records: int, timeout_s: float) -> list[RecordBatch]:
        deadline = time.monotonic() + timeout_s
        while not self._closed:
            self._maintain()
            batches = self._read(max_records)
            if batches:
                return batches
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            until_maintenance = max(0.001, self._next_heartbeat - time.monotonic())
            if self._desired.difference(self._positions):
                until_maintenance = min(until_maintenance, _CLAIM_RETRY_S)
            self._log.wait_for_append(min(remaining, until_maintenance))
        return []

    def _read(self, max_records: int) -> list[RecordBatch]:
        owned = [tp for tp in self._positions if tp not in self._paused]
        if not owned:
            return []
        # Start from a different partition each poll so one busy partition cannot starve the others.
        self._rotation = (self._rotation + 1) % len(owned)
        batches: list[RecordBatch] = []
        budget = max_records
        for tp in owned[self._rotation :] + owned[: self._rotation]:
            batch = self._log.read(tp.topic, tp.partition, self._positions[tp], budget)
            if batch.offsets:
                self._positions[tp] = batch.next_offset
                batches.append(batch)
                budget -= len(batch.offsets)
                if budget <= 0:
                    break
        return batches

    def pause(self, partitions: Sequence[TopicPartition]) -> None:
        self._paused.update(partitions)

    def resume(self, partitions: Sequence[TopicPartition]) -> None:
        self._paused.difference_update(partitions)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp in self._positions:
            self._positions[tp] = offset

    def caught_up(self) -> bool:
        self._maintain()
        if self._desired.difference(self._positions):
            return False
        by_topic: dict[str, list[TopicPartition]] = {}
        for tp in self._positions:
            by_topic.setdefault(tp.topic, []).append(tp)
        for topic, tps in by_topic.items():
            ends = {s.partition: s.end_offset for s in self._log.watermarks(topic)}
            if any(self._positions[tp] < ends[tp.partition] for tp in tps):
                return False
        return True

    # -- committing -------------------------------------------------------------------------------------------

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self.publish_and_commit({}, offsets)

    def publish_and_commit(
        self, outputs: Mapping[str, Sequence[Message]], offsets: Mapping[TopicPartition, int]
    ) -> None:
        try:
            self._log.commit_owned(self._group, self._member.member_id, offsets, outputs)
        except PartitionRevokedError:
            # Another member owns some of these now: forget them; the next heartbeat recomputes the rest.
            with self._lost_lock:
                self._lost_on_commit.update(offsets)
            raise

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._stop_heartbeats.set()
            if self._heartbeats is not None:
                # Bounded: a beat stuck behind a busy log (or a lock this thread holds) must not hang close. One
                # that lands after `leave` is harmless, since keep_alive refreshes only a current member.
                self._heartbeats.join(_HEARTBEAT_JOIN_TIMEOUT_S)
            self._positions.clear()
            self._log.leave(self._group, self._member.member_id)
