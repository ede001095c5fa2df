"""A group's lag on a partition it never committed on counts the records it will read: from the first one still
held, not from offset 0 (records deleted before it are never read)."""

from __future__ import annotations

from pathlib import Path

from eventbus.backends.base import Message, TopicPartition
from eventbus.backends.sqlite import SQLiteLog


def test_lag_without_a_commit_counts_from_the_first_record_still_held(tmp_path: Path) -> None:
    log = SQLiteLog(tmp_path / "events.db")
    try:
        log.create_topic("t", 2)
        for partition in (0, 1):
            log.append("t", [Message(b"x", partition=partition) for _ in range(10)])
        log.delete_records("t", {1: 6})
        log.commit("g", {TopicPartition("t", 0): 7})

        lags = {lag.partition: (lag.committed, lag.lag) for lag in log.describe_topic("t").groups}

        assert lags == {0: (7, 3), 1: (None, 4)}
    finally:
        log.close()
