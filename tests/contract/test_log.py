"""The log contract (eventbus/backends/base.py), run unchanged over every driver."""

from __future__ import annotations

import time

import pytest

from eventbus.backends.base import (
    ConsumerSettings,
    Log,
    Message,
    RecordBatch,
    TopicPartition,
    partition_for_key,
)
from eventbus.errors import PartitionRevokedError, TopicNotFoundError
from tests.conftest import group_session_s


def fast_group(log: Log) -> ConsumerSettings:
    """Short group timings: 2 s sessions, or the shortest the log's group coordinator accepts."""
    return ConsumerSettings(session_timeout_s=group_session_s(log, 2.0), heartbeat_interval_s=0.05)


def poll_all(consumer, expected: int, timeout_s: float = 10.0) -> list[RecordBatch]:
    batches: list[RecordBatch] = []
    deadline = time.monotonic() + timeout_s
    while sum(len(b) for b in batches) < expected and time.monotonic() < deadline:
        batches.extend(consumer.poll(1000, 0.05))
    return batches


def values(batches: list[RecordBatch]) -> list[bytes | None]:
    return [v for b in batches for v in b.values]


# -- topics -------------------------------------------------------------------------------------------------------


def test_create_list_and_describe_topics(log: Log) -> None:
    log.create_topic("orders", 3)
    log.create_topic("payments")
    assert [(t.name, t.partitions) for t in log.list_topics()] == [("orders", 3), ("payments", 1)]
    assert log.topic("orders").partitions == 3
    description = log.describe_topic("orders")
    assert [(p.partition, p.start_offset, p.end_offset) for p in description.partitions] == [
        (0, 0, 0),
        (1, 0, 0),
        (2, 0, 0),
    ]


def test_creating_an_existing_topic_is_refused_unless_exist_ok(log: Log) -> None:
    log.create_topic("orders", 2)
    with pytest.raises(ValueError, match="already exists"):
        log.create_topic("orders", 2)
    assert log.create_topic("orders", 5, exist_ok=True).partitions == 2


@pytest.mark.parametrize("name", ["", "has space", "a/b", ".", "..", "x" * 250, "ünïcode"])
def test_invalid_topic_names_are_refused_with_the_name(log: Log, name: str) -> None:
    with pytest.raises(ValueError, match="topic name"):
        log.create_topic(name)


def test_partitions_must_be_positive(log: Log) -> None:
    with pytest.raises(ValueError, match="partitions must be at least 1"):
        log.create_topic("orders", 0)


def test_unknown_topic_raises_topic_not_found(log: Log) -> None:
    with pytest.raises(TopicNotFoundError, match="'ghost'"):
        log.topic("ghost")
    with pytest.raises(TopicNotFoundError):
        log.read("ghost", 0, 0, 10)
    with pytest.raises(TopicNotFoundError):
        log.watermarks("ghost")


def test_append_creates_a_missing_topic_with_the_default_partitions(log: Log) -> None:
    log.append("fresh", [Message(b"1")])
    assert log.topic("fresh").partitions == log.default_partitions


# -- appending and reading ----------------------------------------------------------------------------------------


def test_append_assigns_consecutive_offsets_per_partition(log: Log) -> None:
    log.create_topic("orders", 2)
    first = log.append("orders", [Message(b"a", partition=0), Message(b"b", partition=1), Message(b"c", partition=0)])
    assert first == [(0, 0), (1, 0), (0, 1)]
    second = log.append("orders", [Message(b"d", partition=0)])
    assert second == [(0, 2)]
    assert [s.end_offset for s in log.watermarks("orders")] == [3, 1]


def test_read_returns_records_from_an_offset_in_order(log: Log) -> None:
    log.create_topic("orders", 1)
    # Recent timestamps: a broker may drop records older than its retention (Kafka's is 7 days) at any time.
    base_ms = time.time_ns() // 1_000_000 - 60_000
    log.append("orders", [Message(str(i).encode(), key=b"k", timestamp_ms=base_ms + i) for i in range(10)])
    batch = log.read("orders", 0, 3, 4)
    assert batch.offsets == [3, 4, 5, 6]
    assert batch.values == [b"3", b"4", b"5", b"6"]
    assert batch.keys == [b"k"] * 4
    assert batch.timestamps_ms == [base_ms + 3, base_ms + 4, base_ms + 5, base_ms + 6]
    assert batch.next_offset == 7
    tail = log.read("orders", 0, 10, 100)
    assert len(tail) == 0
    assert tail.next_offset == 10


def test_headers_keys_and_empty_values_round_trip(log: Log) -> None:
    headers = (("ce_type", b"order.placed"), ("bin", bytes(range(256))), ("empty", b""))
    log.append("t", [Message(None, key=None, headers=headers), Message(b"", key=b"\x00\xff")])
    (record_a, record_b) = log.read("t", 0, 0, 10).records()
    assert record_a.value is None
    assert record_a.key is None
    assert record_a.headers == headers
    assert record_b.value == b""
    assert record_b.key == b"\x00\xff"
    assert record_b.headers is None


def test_keyed_records_land_on_the_partition_of_their_key_hash(log: Log) -> None:
    log.create_topic("orders", 6)
    keys = [f"customer-{i}".encode() for i in range(50)]
    positions = log.append("orders", [Message(b"x", key=k) for k in keys])
    assert [p for p, _ in positions] == [partition_for_key(k, 6) for k in keys]


def test_partition_hash_is_crc32_so_it_is_stable_across_processes() -> None:
    # Fixed values: a change here would move every key of every existing log to another partition.
    assert partition_for_key(b"customer-1", 3) == 0
    assert partition_for_key(b"customer-1", 7) == 3
    assert partition_for_key(b"order-42", 12) == 10


def test_unkeyed_records_spread_over_partitions(log: Log) -> None:
    log.create_topic("orders", 3)
    positions = log.append("orders", [Message(b"x") for _ in range(30)])
    assert {p for p, _ in positions} == {0, 1, 2}


def test_explicit_partition_out_of_range_is_refused_and_nothing_is_appended(log: Log) -> None:
    log.create_topic("orders", 2)
    with pytest.raises(ValueError, match="no partition 5"):
        log.append("orders", [Message(b"ok", partition=0), Message(b"bad", partition=5)])
    assert [s.end_offset for s in log.watermarks("orders")] == [0, 0]


# -- group offsets ------------------------------------------------------------------------------------------------


def test_commit_and_read_back_group_offsets(log: Log) -> None:
    log.create_topic("orders", 2)
    assert log.committed("g", "orders") == {}
    log.commit("g", {TopicPartition("orders", 0): 5, TopicPartition("orders", 1): 7})
    log.commit("g", {TopicPartition("orders", 1): 9})
    assert log.committed("g", "orders") == {0: 5, 1: 9}
    assert log.groups() == ["g"]


def test_describe_reports_each_groups_lag(log: Log) -> None:
    log.create_topic("orders", 2)
    log.append("orders", [Message(b"x", partition=p) for p in (0, 0, 0, 1)])
    log.commit("billing", {TopicPartition("orders", 0): 1})
    lags = {(g.group, g.partition): g.lag for g in log.describe_topic("orders").groups}
    assert lags == {("billing", 0): 2, ("billing", 1): 1}


# -- consumers ----------------------------------------------------------------------------------------------------


def test_a_lone_member_reads_every_partition_and_resumes_from_its_commit(log: Log) -> None:
    log.create_topic("orders", 3)
    log.append("orders", [Message(str(i).encode()) for i in range(30)])
    consumer = log.consumer("g", ["orders"], fast_group(log))
    batches = poll_all(consumer, 30)
    assert sorted(values(batches), key=int) == [str(i).encode() for i in range(30)]
    assert consumer.assignment() == {TopicPartition("orders", p) for p in range(3)}
    consumer.commit({TopicPartition(b.topic, b.partition): b.next_offset for b in batches})
    assert consumer.caught_up()
    consumer.close()

    log.append("orders", [Message(b"late", partition=1)])
    again = log.consumer("g", ["orders"], fast_group(log))
    assert values(poll_all(again, 1)) == [b"late"]
    again.close()


def test_poll_waits_for_records_appended_later(log: Log) -> None:
    import threading

    log.create_topic("orders", 1)
    consumer = log.consumer("g", ["orders"], fast_group(log))
    assert consumer.poll(10, 0.2) == []
    timer = threading.Timer(0.2, lambda: log.append("orders", [Message(b"hello")]))
    timer.start()
    got = poll_all(consumer, 1, timeout_s=5)
    timer.join()
    assert values(got) == [b"hello"]
    consumer.close()


def test_reset_latest_skips_what_was_there_before_joining(log: Log) -> None:
    log.create_topic("orders", 1)
    log.append("orders", [Message(b"old")])
    consumer = log.consumer(
        "g",
        ["orders"],
        ConsumerSettings(reset="latest", heartbeat_interval_s=0.05, session_timeout_s=group_session_s(log, 2)),
    )
    assert consumer.poll(10, 0.2) == []
    log.append("orders", [Message(b"new")])
    assert values(poll_all(consumer, 1)) == [b"new"]
    consumer.close()


def test_seek_redelivers_from_an_offset(log: Log) -> None:
    log.create_topic("orders", 1)
    log.append("orders", [Message(str(i).encode()) for i in range(5)])
    consumer = log.consumer("g", ["orders"], fast_group(log))
    assert len(values(poll_all(consumer, 5))) == 5
    consumer.seek(TopicPartition("orders", 0), 3)
    assert values(poll_all(consumer, 2)) == [b"3", b"4"]
    consumer.close()


def test_two_members_split_partitions_and_the_survivor_takes_over(log: Log) -> None:
    log.create_topic("orders", 6)
    a = log.consumer("g", ["orders"], fast_group(log))
    b = log.consumer("g", ["orders"], fast_group(log))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        a.poll(100, 0.02)
        b.poll(100, 0.02)
        if len(a.assignment()) == 3 and len(b.assignment()) == 3:
            break
    assert len(a.assignment()) == 3
    assert len(b.assignment()) == 3
    assert not a.assignment() & b.assignment()
    b.close()
    deadline = time.monotonic() + 10
    while len(a.assignment()) < 6 and time.monotonic() < deadline:
        a.poll(100, 0.02)
    assert len(a.assignment()) == 6
    a.close()


def test_revoke_listener_runs_before_a_partition_moves(log: Log) -> None:
    log.create_topic("orders", 2)
    a = log.consumer("g", ["orders"], fast_group(log))
    revoked: list[frozenset[TopicPartition]] = []
    a.set_revoke_listener(revoked.append)
    a.poll(10, 0.1)
    assert len(a.assignment()) == 2
    b = log.consumer("g", ["orders"], fast_group(log))
    deadline = time.monotonic() + 10
    while not (a.assignment() and b.assignment()) and time.monotonic() < deadline:
        a.poll(10, 0.02)
        b.poll(10, 0.02)
    assert len(revoked) == 1
    assert revoked[0] == b.assignment()
    a.close()
    b.close()


def test_a_member_cannot_commit_a_partition_it_lost(log: Log) -> None:
    log.create_topic("orders", 1)
    log.append("orders", [Message(b"x")])
    session_s = group_session_s(log, 0.3)
    slow = log.consumer(
        "g",
        ["orders"],
        ConsumerSettings(session_timeout_s=session_s, heartbeat_interval_s=0.1, max_poll_interval_s=session_s),
    )
    assert values(poll_all(slow, 1)) == [b"x"]
    # No poll for max_poll_interval_s: taken to be stuck, it leaves or stops heartbeating (then it is forgotten
    # within a session, while the new member below waits for the partition).
    time.sleep(session_s + 0.2)
    fast = log.consumer("g", ["orders"], fast_group(log))
    deadline = time.monotonic() + 10
    while not fast.assignment() and time.monotonic() < deadline:
        fast.poll(10, 0.02)
    assert fast.assignment() == {TopicPartition("orders", 0)}
    with pytest.raises(PartitionRevokedError):
        slow.publish_and_commit({"out": [Message(b"stale output")]}, {TopicPartition("orders", 0): 1})
    assert log.committed("g", "orders") == {}
    fast.close()
    slow.close()


def test_publish_and_commit_writes_outputs_and_offsets(log: Log) -> None:
    log.create_topic("orders", 1)
    log.append("orders", [Message(b"x")])
    consumer = log.consumer("g", ["orders"], fast_group(log))
    poll_all(consumer, 1)
    consumer.publish_and_commit({"out": [Message(b"y", key=b"k")]}, {TopicPartition("orders", 0): 1})
    assert log.committed("g", "orders") == {0: 1}
    assert log.read("out", 0, 0, 10).values == [b"y"]
    consumer.close()


def test_caught_up_is_false_while_records_are_unread(log: Log) -> None:
    log.create_topic("orders", 2)
    log.append("orders", [Message(b"x", partition=1)])
    consumer = log.consumer("g", ["orders"], fast_group(log))
    assert not consumer.caught_up()
    read = []
    deadline = time.monotonic() + 10
    while not consumer.caught_up() and time.monotonic() < deadline:
        read.extend(values(consumer.poll(10, 0.02)))
    assert read == [b"x"]
    log.append("orders", [Message(b"y", partition=0)])
    assert not consumer.caught_up()
    consumer.close()
