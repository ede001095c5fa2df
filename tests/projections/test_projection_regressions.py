"""Projection paths that once went wrong: partitions moving between live workers, a rebuild while folding."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from eventbus import App, Event
from eventbus.backends.base import ConsumerSettings
from eventbus.backends.memory import MemoryLog
from eventbus.projections import ProjectionReader, View
from eventbus.projections.rebuild import rebuild
from eventbus.publisher import Publisher
from eventbus.runtime import AppRunner, WorkerSettings


def counting_app(store_url: str) -> App:
    app = App("count")
    counts = app.projection("counts", topics="clicks", store=store_url)

    @counts.on("click")
    def click(event: Event, view: View) -> None:
        row = view.get(event.data["k"], {"n": 0})
        row["n"] += 1
        view[event.data["k"]] = row

    return app


def settings() -> WorkerSettings:
    return WorkerSettings(idle_poll_s=0.01, consumer=ConsumerSettings(session_timeout_s=1.0, heartbeat_interval_s=0.05))


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def read_counts(store: str, keys: tuple[str, ...]) -> dict[str, object]:
    with ProjectionReader(store, "counts") as reader:
        return {k: (reader.get(k).value or {}).get("n") for k in keys}


def test_a_partition_moving_back_to_a_running_worker_is_not_folded_twice(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/p.db"
    log = MemoryLog(f"rebalance-{tmp_path.name}", default_partitions=2)
    log.create_topic("clicks", 2)
    publisher = Publisher(log, source="/t")

    def publish(rounds: int) -> None:
        for _ in range(rounds):
            publisher.publish_many(
                "clicks", [Event("click", {"k": "a"}, partitionkey="a"), Event("click", {"k": "d"}, partitionkey="d")]
            )

    def counts() -> dict[str, object]:
        return read_counts(store, ("a", "d"))

    async def main() -> dict[str, object]:
        first = AppRunner(counting_app(store), log, settings())
        first_task = asyncio.ensure_future(first.run())
        publish(10)
        await wait_until(lambda: counts() == {"a": 10, "d": 10})
        second = AppRunner(counting_app(store), log, settings())  # joins: one partition moves to it
        second_task = asyncio.ensure_future(second.run())
        await asyncio.sleep(1.0)
        publish(10)
        await wait_until(lambda: counts() == {"a": 20, "d": 20})
        second.stop()  # leaves: its partition moves back to the first worker, which folded it before
        await second_task
        await asyncio.sleep(1.0)
        publish(1)
        await wait_until(lambda: counts() == {"a": 21, "d": 21})
        await asyncio.sleep(0.5)
        first.stop()
        await first_task
        return counts()

    assert asyncio.run(main()) == {"a": 21, "d": 21}


def test_a_rebuild_while_a_worker_folds_leaves_it_folding_into_the_new_version(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/p.db"
    log = MemoryLog(f"rebuild-live-{tmp_path.name}")
    publisher = Publisher(log, source="/t")
    app = counting_app(store)

    async def main() -> dict[str, object]:
        live = AppRunner(app, log, settings())
        task = asyncio.ensure_future(live.run())
        publisher.publish_many("clicks", [Event("click", {"k": "a"}, partitionkey="a")] * 3)
        await wait_until(lambda: read_counts(store, ("a",)) == {"a": 3})
        await asyncio.to_thread(rebuild, app.projections["counts"], log)
        publisher.publish_many("clicks", [Event("click", {"k": "new"}, partitionkey="new")])
        await wait_until(lambda: read_counts(store, ("a", "new")) == {"a": 3, "new": 1})
        assert not task.done(), task.exception()
        live.stop()
        await task
        return read_counts(store, ("a", "new"))

    assert asyncio.run(main()) == {"a": 3, "new": 1}
