"""Two workers of one group on one SQLite file, with a processor slower than the group's session timeout: the
busy worker stays in the group (its heartbeats do not wait for its polls), so nothing moves and nothing is
processed twice."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from eventbus import App, Event
from eventbus.backends.base import ConsumerSettings, partition_for_key
from eventbus.backends.sqlite import SQLiteLog
from eventbus.publisher import Publisher
from eventbus.runtime import Worker, WorkerSettings, run_coroutine

SESSION_S = 0.6


def owners(path: Path, group: str) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT member_id, partition FROM group_owners WHERE group_name = ?", (group,)).fetchall()
    return [(member, partition) for member, partition in rows]


def wait_for(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.02)
    assert condition(), f"timed out after {timeout_s} s waiting for {what}"  # type: ignore[operator]


def test_a_processor_slower_than_the_session_timeout_is_not_redone_by_another_worker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eventbus.worker")
    path = tmp_path / "events.db"
    publisher_log = SQLiteLog(path)
    publisher_log.create_topic("in", 2)
    app = App("slow")
    processed: list[int] = []

    @app.processor("in", timeout_s=30)
    def slow_http_call(event: Event) -> None:
        time.sleep(1.5 * SESSION_S)
        processed.append(event.data["n"])

    settings = WorkerSettings(
        idle_poll_s=0.01, consumer=ConsumerSettings(session_timeout_s=SESSION_S, heartbeat_interval_s=0.1)
    )
    logs = [SQLiteLog(path), SQLiteLog(path)]
    workers = [Worker(app, log, settings) for log in logs]
    threads = [
        threading.Thread(target=run_coroutine, args=(w.run(),), name=f"worker-{i}") for i, w in enumerate(workers)
    ]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len({member for member, _ in owners(path, "slow")}) == 2, 10, "one partition per worker")
        split = sorted(owners(path, "slow"))
        # Two events on each partition: each worker is busy for three sessions' worth of time, never polling.
        keys = [f"k{i}" for i in range(100)]
        chosen = [k for k in keys if partition_for_key(k.encode(), 2) == 0][:2]
        chosen += [k for k in keys if partition_for_key(k.encode(), 2) == 1][:2]
        Publisher(publisher_log).publish_many(
            "in", [Event("n", {"n": n}, partitionkey=k) for n, k in enumerate(chosen)]
        )
        wait_for(lambda: publisher_log.committed("slow", "in") == {0: 2, 1: 2}, 20, "every event to be committed")
        held = owners(path, "slow")
    finally:
        for worker in workers:
            worker.stop()
        for thread in threads:
            thread.join(timeout=30)
        for log in logs:
            log.close()
        publisher_log.close()
    assert not any(t.is_alive() for t in threads)
    assert Counter(processed) == {0: 1, 1: 1, 2: 1, 3: 1}, "each event processed exactly once"
    assert sum(w.stats.events_in for w in workers) == 4, "no event was read twice"
    assert sorted(held) == split, "each worker kept its partition"
    assert [r.getMessage() for r in caplog.records if "commit refused" in r.getMessage()] == []
