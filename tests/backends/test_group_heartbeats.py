"""Group liveness on the embedded logs: heartbeats from a background thread keep a member that is busy (not
polling) in its group, and ``max_poll_interval_s`` still lets the group take the partitions of a stuck one."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventbus.backends.base import ConsumerSettings, Message, TopicPartition
from eventbus.backends.group import EmbeddedConsumer, EmbeddedLog
from eventbus.backends.memory import MemoryLog
from eventbus.backends.sqlite import SQLiteLog
from eventbus.errors import PartitionRevokedError
from tests.conftest import EMBEDDED_DRIVERS, make_log

SESSION_S = 0.6
HEARTBEAT_S = 0.1
SETTINGS = ConsumerSettings(session_timeout_s=SESSION_S, heartbeat_interval_s=HEARTBEAT_S)
PARTITIONS = [TopicPartition("orders", p) for p in range(4)]


@pytest.fixture(params=EMBEDDED_DRIVERS)
def two_logs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[EmbeddedLog, EmbeddedLog]]:
    """Two handles on one log: for SQLite, two connections to one file, as two processes would have."""
    first = make_log(request.param, tmp_path)
    assert isinstance(first, MemoryLog | SQLiteLog)
    second = first if isinstance(first, MemoryLog) else SQLiteLog(first.path)
    first.create_topic("orders", len(PARTITIONS))
    first.append("orders", [Message(str(i).encode(), partition=i % len(PARTITIONS)) for i in range(8)])
    yield first, second
    first.close()
    if second is not first:
        second.close()


def heartbeat_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("eventbus-heartbeat-")]


def records_read(consumer: EmbeddedConsumer, expected: int) -> int:
    read = 0
    deadline = time.monotonic() + 5
    while read < expected and time.monotonic() < deadline:
        read += sum(len(b) for b in consumer.poll(100, 0.05))
    return read


def poll_until(condition: object, *consumers: EmbeddedConsumer, timeout_s: float = 5.0) -> int:
    """Poll ``consumers`` until ``condition()`` holds; the number of records they read meanwhile."""
    read = 0
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        for consumer in consumers:
            read += sum(len(b) for b in consumer.poll(100, 0.02))
    assert condition()  # type: ignore[operator]
    return read


def test_a_member_that_does_not_poll_for_three_sessions_keeps_its_partitions(
    two_logs: tuple[EmbeddedLog, EmbeddedLog],
) -> None:
    log_a, log_b = two_logs
    busy = log_a.consumer("g", ["orders"], SETTINGS)
    revoked: list[frozenset[TopicPartition]] = []
    busy.set_revoke_listener(revoked.append)
    assert records_read(busy, 8) == 8
    assert busy.assignment() == frozenset(PARTITIONS)

    # `busy` processes for three sessions without polling; a new member joins meanwhile and keeps asking.
    newcomer = log_b.consumer("g", ["orders"], SETTINGS)
    until = time.monotonic() + 3 * SESSION_S
    while time.monotonic() < until:
        assert newcomer.poll(100, 0.05) == [], "the newcomer read partitions of a member that is only busy"
    assert newcomer.assignment() == frozenset()
    assert log_b.group_members("g") == sorted([busy.member_id, newcomer.member_id])

    busy.publish_and_commit({"out": [Message(b"done")]}, dict.fromkeys(PARTITIONS, 2))
    assert log_b.committed("g", "orders") == dict.fromkeys(range(len(PARTITIONS)), 2)
    assert revoked == []

    # Polling again, it hands half of its partitions to the newcomer the usual way: revoke, then release.
    poll_until(lambda: len(busy.assignment()) == 2 and len(newcomer.assignment()) == 2, busy, newcomer)
    assert len(revoked) == 1
    assert revoked[0] == newcomer.assignment()
    newcomer.close()
    busy.close()


def test_a_member_that_does_not_poll_for_max_poll_interval_loses_its_partitions_and_its_commit(
    two_logs: tuple[EmbeddedLog, EmbeddedLog], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eventbus.group")
    log_a, log_b = two_logs
    stuck = log_a.consumer(
        "g",
        ["orders"],
        ConsumerSettings(session_timeout_s=SESSION_S, heartbeat_interval_s=HEARTBEAT_S, max_poll_interval_s=SESSION_S),
    )
    revoked: list[frozenset[TopicPartition]] = []
    stuck.set_revoke_listener(revoked.append)
    assert records_read(stuck, 8) == 8
    assert stuck.assignment() == frozenset(PARTITIONS)

    survivor = log_b.consumer("g", ["orders"], SETTINGS)
    read = poll_until(lambda: survivor.assignment() == frozenset(PARTITIONS), survivor)
    read += records_read(survivor, 8 - read)
    assert read == 8, "the survivor starts over from the group's committed offsets"
    warnings = [r.getMessage() for r in caplog.records if stuck.member_id in r.getMessage()]
    assert len(warnings) == 1, "said once, though it stayed stuck for several heartbeat intervals"
    assert "group 'g'" in warnings[0]
    assert "max_poll_interval_s=0.6 s" in warnings[0]

    # Its next poll rejoins: first it gives up everything the survivor took, before reading any of it.
    assert stuck.poll(100, 0.0) == []
    assert revoked == [frozenset(PARTITIONS)]
    assert stuck.assignment() == frozenset()
    with pytest.raises(PartitionRevokedError):
        stuck.publish_and_commit({"out": [Message(b"stale")]}, dict.fromkeys(PARTITIONS, 2))
    assert log_b.committed("g", "orders") == {}

    poll_until(lambda: len(stuck.assignment()) == 2 and len(survivor.assignment()) == 2, stuck, survivor)
    survivor.close()
    stuck.close()


def test_the_heartbeat_thread_starts_at_the_first_poll_and_is_joined_by_close(
    two_logs: tuple[EmbeddedLog, EmbeddedLog],
) -> None:
    log, _ = two_logs
    before = heartbeat_threads()
    consumer = log.consumer("g", ["orders"], SETTINGS)
    assert heartbeat_threads() == before, "no thread for a consumer that never polled"
    consumer.poll(10, 0.0)
    started = [t for t in heartbeat_threads() if t not in before]
    assert len(started) == 1
    assert started[0].daemon
    consumer.close()
    assert not started[0].is_alive()
    assert log.group_members("g") == []


@pytest.mark.parametrize(
    ("session_s", "max_poll_s"),
    [(10.0, 5.0), (10.0, 0.0), (10.0, -1.0), (10.0, math.nan)],
)
def test_max_poll_interval_must_be_at_least_the_session_timeout(session_s: float, max_poll_s: float) -> None:
    with pytest.raises(ValueError, match="max_poll_interval_s must be at least session_timeout_s"):
        ConsumerSettings(session_timeout_s=session_s, max_poll_interval_s=max_poll_s)
    assert ConsumerSettings().max_poll_interval_s == 300.0
    assert ConsumerSettings(session_timeout_s=10.0, max_poll_interval_s=10.0).max_poll_interval_s == 10.0


def test_partitions_a_refused_commit_took_away_are_told_to_the_revoke_listener(
    two_logs: tuple[EmbeddedLog, EmbeddedLog],
) -> None:
    # The member finds out at its commit, not at a poll: its next poll drops them, and says so as a revocation
    # does, so that the worker forgets what it kept about them (where it started reading each, say).
    log_a, log_b = two_logs
    stuck = log_a.consumer(
        "g",
        ["orders"],
        ConsumerSettings(session_timeout_s=SESSION_S, heartbeat_interval_s=HEARTBEAT_S, max_poll_interval_s=SESSION_S),
    )
    revoked: list[frozenset[TopicPartition]] = []
    stuck.set_revoke_listener(revoked.append)
    assert records_read(stuck, 8) == 8
    survivor = log_b.consumer("g", ["orders"], SETTINGS)
    poll_until(lambda: survivor.assignment() == frozenset(PARTITIONS), survivor)

    with pytest.raises(PartitionRevokedError):
        stuck.publish_and_commit({}, dict.fromkeys(PARTITIONS, 2))
    assert stuck.poll(100, 0.0) == []
    assert revoked == [frozenset(PARTITIONS)]
    assert stuck.assignment() == frozenset()
    survivor.close()
    stuck.close()
