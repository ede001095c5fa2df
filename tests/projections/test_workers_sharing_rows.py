"""Workers folding different partitions of one projection into the same rows (a total, a per-owner row) lose none
of each other's updates: a write based on a row another worker changed since it was read is refused, and the
events behind it are folded again from the store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from eventbus import App, Event
from eventbus.backends.base import ConsumerSettings, Log, Message, TopicPartition
from eventbus.backends.sqlite import SQLiteLog
from eventbus.projections import ProjectionReader, View
from eventbus.projections.fold import Folder
from eventbus.projections.store import ProjectionStore, RowsChangedError, open_store
from eventbus.publisher import Publisher
from eventbus.runtime import AppRunner, WorkerSettings
from tests.projections.test_projection_regressions import wait_until


def totals_app(store_url: str) -> App:
    app = App("totals")
    totals = app.projection("totals", topics="ticks", store=store_url)

    @totals.on("tick")
    def tick(event: Event, view: View) -> None:
        row = view.get("all", {"n": 0})
        row["n"] += 1
        view["all"] = row

    @totals.on("reset")
    def reset(event: Event, view: View) -> None:
        view["all"] = {"n": 0}  # written without being read: depends on nothing another worker wrote

    return app


def record(type_: str, id: str, partition: int) -> Message:
    attrs = {"specversion": "1.0", "id": id, "source": "/t", "type": type_, "data": {}}
    return Message(orjson.dumps(attrs), partition=partition)


def tick_log(path: Path, per_partition: int) -> SQLiteLog:
    log = SQLiteLog(path)
    log.create_topic("ticks", 2)
    for partition in (0, 1):
        log.append("ticks", [record("tick", f"e-{partition}-{n}", partition) for n in range(per_partition)])
    return log


def folder(app: App, store: ProjectionStore, log: Log) -> Folder:
    projection = app.projections["totals"]
    return Folder(projection, store, store.current_version(projection.name), log)


def total(store: ProjectionStore) -> object:
    return (ProjectionReader(store, "totals").get("all").value or {}).get("n")


def test_a_write_over_a_row_another_worker_changed_since_it_was_read_is_refused(store_url: str, tmp_path: Path) -> None:
    log = tick_log(tmp_path / "log.db", 3)
    app = totals_app(store_url)
    store = open_store(store_url)
    try:
        first, second = folder(app, store, log), folder(app, store, log)
        asyncio.run(first.fold(log.read("ticks", 0, 0, 2)))
        first.write()  # nobody else has written yet: no row needs a look
        asyncio.run(first.fold(log.read("ticks", 0, 2, 1)))  # reads the total it left, from its cache
        asyncio.run(second.fold(log.read("ticks", 1, 0, 3)))
        second.write()
        with pytest.raises(RowsChangedError, match="'all'"):
            first.write()
        assert total(store) == 5  # first's 2, second's 3: nothing written over
        # The refused worker starts again from the store (as the runner does) and loses nothing.
        again = folder(app, store, log)
        asyncio.run(again.fold(log.read("ticks", 0, again.start(TopicPartition("ticks", 0)), 10)))
        again.write()
        assert total(store) == 6
    finally:
        store.close()
        log.close()


def test_a_row_written_without_being_read_is_not_refused(store_url: str, tmp_path: Path) -> None:
    log = tick_log(tmp_path / "log.db", 1)
    log.append("ticks", [record("reset", "r", 0)])
    app = totals_app(store_url)
    store = open_store(store_url)
    try:
        first, second = folder(app, store, log), folder(app, store, log)
        asyncio.run(first.fold(log.read("ticks", 0, 1, 1)))  # the reset alone
        asyncio.run(second.fold(log.read("ticks", 1, 0, 1)))
        second.write()
        first.write()
        assert total(store) == 0
    finally:
        store.close()
        log.close()


@pytest.mark.slow
def test_two_live_workers_of_one_projection_count_every_event_into_a_shared_row(store_url: str, tmp_path: Path) -> None:
    log = SQLiteLog(tmp_path / "log.db")
    log.create_topic("ticks", 2)
    publisher = Publisher(log, source="/t")
    settings = WorkerSettings(
        idle_poll_s=0.01,
        max_poll_records=20,
        consumer=ConsumerSettings(session_timeout_s=1.0, heartbeat_interval_s=0.05),
    )
    store = open_store(store_url)

    async def main() -> None:
        runners = [AppRunner(totals_app(store_url), log, settings) for _ in range(2)]
        tasks = [asyncio.ensure_future(runner.run()) for runner in runners]
        await asyncio.sleep(1.5)  # both members settle on a partition each
        for n in range(40):
            publisher.publish_many("ticks", [Event("tick", {}, partitionkey=f"k{n}-{i}") for i in range(25)])
            await asyncio.sleep(0.01)
        await wait_until(lambda: sum(ProjectionReader(store, "totals").position().values()) == 1000, 30.0)
        for runner in runners:
            runner.stop()
        for task in tasks:
            await task

    try:
        asyncio.run(main())
        assert total(store) == 1000
    finally:
        store.close()
        log.close()
