"""Deleting old records (retention) on every driver: the start offset moves, later offsets stay."""

from __future__ import annotations

import pytest

from eventbus.backends.base import Log, Message
from tests.kafka.brokers import limitation


def skip_without_delete_records(log: Log) -> None:
    why = limitation(log, "delete_records")
    if why:
        pytest.skip(why)


def test_delete_records_moves_the_start_offset_and_keeps_later_offsets(log: Log) -> None:
    skip_without_delete_records(log)
    log.create_topic("t", 2)
    log.append("t", [Message(str(i).encode(), partition=0) for i in range(10)])
    log.append("t", [Message(b"x", partition=1)])
    log.delete_records("t", {0: 4})
    states = {s.partition: (s.start_offset, s.end_offset) for s in log.watermarks("t")}
    assert states == {0: (4, 10), 1: (0, 1)}
    batch = log.read("t", 0, 0, 100)
    assert batch.offsets == list(range(4, 10))
    assert batch.values[0] == b"4"
    log.append("t", [Message(b"10", partition=0)])
    assert log.read("t", 0, 10, 1).values == [b"10"]


def test_a_group_below_the_start_offset_resumes_at_the_start(log: Log) -> None:
    skip_without_delete_records(log)
    log.create_topic("t", 1)
    log.append("t", [Message(str(i).encode()) for i in range(6)])
    log.delete_records("t", {0: 3})
    consumer = log.consumer("g", ["t"])
    seen: list[bytes | None] = []
    for _ in range(200):
        for batch in consumer.poll(100, 0.05):
            seen.extend(batch.values)
        if len(seen) >= 3:
            break
    consumer.close()
    assert seen == [b"3", b"4", b"5"]
