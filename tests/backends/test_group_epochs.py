"""Membership epochs on the embedded logs: a join or a leave moves the group's epoch, and members rebalance at
their next poll when it moves rather than at their next heartbeat."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventbus.backends.base import ConsumerSettings, Message, TopicPartition
from eventbus.backends.group import EmbeddedLog, Member
from eventbus.backends.memory import MemoryLog
from eventbus.backends.sqlite import SQLiteLog
from tests.conftest import EMBEDDED_DRIVERS, make_log

PARTITIONS = [TopicPartition("orders", p) for p in range(4)]
# Heartbeats far apart: within a test, only the membership epoch can make a member rebalance.
SLOW_HEARTBEATS = ConsumerSettings(session_timeout_s=120.0, heartbeat_interval_s=60.0)


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


def member(name: str, topics: tuple[str, ...] = ("orders",)) -> Member:
    return Member(name, "elsewhere", 1, topics, 30.0)


def test_the_epoch_moves_on_joins_and_leaves_only(two_logs: tuple[EmbeddedLog, EmbeddedLog]) -> None:
    log, other = two_logs
    assert log.membership_epoch("g") == 0
    log.heartbeat("g", member("a"))
    joined = other.membership_epoch("g")
    assert joined > 0

    log.heartbeat("g", member("a"))
    log.keep_alive("g", "a")
    assert other.membership_epoch("g") == joined, "a heartbeat of a known member is not a change"

    log.heartbeat("g", member("b"))
    second_join = other.membership_epoch("g")
    assert second_join > joined

    # Two consumers sharing a member name with different topics would otherwise rebalance at every poll.
    log.heartbeat("g", member("b", ("orders", "payments")))
    log.heartbeat("g", member("b"))
    assert other.membership_epoch("g") == second_join, "a known member's subscription is not a membership change"

    log.leave("g", "a")
    left = other.membership_epoch("g")
    assert left > second_join
    log.leave("g", "a")
    assert other.membership_epoch("g") == left, "leaving twice changes nothing the second time"
    assert other.membership_epoch("another-group") == 0


def test_an_expired_member_moves_the_epoch(two_logs: tuple[EmbeddedLog, EmbeddedLog]) -> None:
    log, other = two_logs
    log.heartbeat("g", Member("short-lived", "elsewhere", 1, ("orders",), 0.05))
    before = other.membership_epoch("g")
    time.sleep(0.1)
    live = log.heartbeat("g", member("a"))
    assert [m.member_id for m in live] == ["a"]
    assert other.membership_epoch("g") > before


def test_a_member_gives_up_partitions_at_its_next_poll_when_another_joins(
    two_logs: tuple[EmbeddedLog, EmbeddedLog],
) -> None:
    log_a, log_b = two_logs
    first = log_a.consumer("g", ["orders"], SLOW_HEARTBEATS)
    revoked: list[frozenset[TopicPartition]] = []
    first.set_revoke_listener(revoked.append)
    assert sum(len(b) for b in first.poll(100, 0.5)) == 8
    assert first.assignment() == frozenset(PARTITIONS)

    second = log_b.consumer("g", ["orders"], SLOW_HEARTBEATS)
    assert second.poll(100, 0.0) == []  # joins; its partitions are still owned by the first member
    first.poll(100, 0.0)
    assert len(revoked) == 1, "the first member did not rebalance at the poll after the join"
    assert revoked[0] | first.assignment() == frozenset(PARTITIONS)
    assert len(first.assignment()) == 2

    deadline = time.monotonic() + 5
    while second.assignment() != revoked[0] and time.monotonic() < deadline:
        second.poll(100, 0.05)
    assert second.assignment() == revoked[0]

    # The first member leaves: the second takes everything at its next polls, long before any heartbeat is due.
    first.close()
    deadline = time.monotonic() + 5
    while second.assignment() != frozenset(PARTITIONS) and time.monotonic() < deadline:
        second.poll(100, 0.05)
    assert second.assignment() == frozenset(PARTITIONS)
    second.close()


def test_an_idle_member_takes_over_at_once_when_another_heartbeat_expires_a_member(
    two_logs: tuple[EmbeddedLog, EmbeddedLog],
) -> None:
    log_a, log_b = two_logs
    # "b" shares the topic and stops beating; "c" subscribes elsewhere and beats on.
    log_b.heartbeat("g", Member("b", "elsewhere", 1, ("orders",), 0.3))
    log_b.heartbeat("g", Member("c", "elsewhere", 1, ("other",), 30.0))
    idle = log_a.consumer("g", ["orders"], SLOW_HEARTBEATS)
    assert sum(len(b) for b in idle.poll(100, 0.5)) == 4, "half the partitions, half the records"

    waited: list[int] = []
    poller = threading.Thread(target=lambda: waited.append(sum(len(b) for b in idle.poll(100, 60.0))))
    poller.start()
    time.sleep(0.5)  # "b" has expired by now, but nobody has noticed
    expired_at = time.monotonic()
    log_b.heartbeat("g", Member("c", "elsewhere", 1, ("other",), 30.0))  # c's beat removes b
    poller.join()
    # Woken by the expiry: a member that slept through it would return only at the end of its 60 s wait.
    assert time.monotonic() - expired_at < 30.0
    assert waited == [4], "the idle member took b's partitions"
    assert idle.assignment() == frozenset(PARTITIONS)
    idle.close()
