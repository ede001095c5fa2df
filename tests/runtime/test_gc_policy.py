"""The garbage collector while workers and projections run: tuned for the run, as it was before once the last
one stops."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from eventbus import App, Event
from eventbus.backends.memory import MemoryLog
from eventbus.projections import View
from eventbus.publisher import Publisher
from eventbus.runtime import AppRunner, WorkerSettings
from eventbus.runtime.gc_policy import collector_for_rounds
from eventbus.testing import TestBus


def observing_app(seen: list[tuple[int, int]]) -> App:
    app = App("gc")

    @app.processor("in")
    def observe(event: Event) -> None:
        seen.append((gc.get_threshold()[0], gc.get_freeze_count()))

    return app


def test_a_running_worker_raises_the_young_threshold_and_freezes_the_heap_built_before_it() -> None:
    before = gc.get_threshold()
    seen: list[tuple[int, int]] = []
    bus = TestBus()
    bus.publish_data("in", "x", [{}])
    bus.run(observing_app(seen))
    [(young, frozen)] = seen
    assert young == max(50_000, before[0])
    assert frozen > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_worker_told_to_leave_the_collector_alone_does() -> None:
    before = gc.get_threshold()
    seen: list[tuple[int, int]] = []
    bus = TestBus()
    bus.publish_data("in", "x", [{}])
    bus.run(observing_app(seen), gc_young_threshold=None)
    assert seen == [(before[0], 0)]


def test_workers_that_overlap_restore_the_collector_only_when_the_last_one_stops() -> None:
    before = gc.get_threshold()
    first = collector_for_rounds(20_000)
    second = collector_for_rounds(60_000)
    first.__enter__()
    second.__enter__()
    assert gc.get_threshold()[0] == max(60_000, before[0])
    first.__exit__(None, None, None)  # the first to start stops first: the second still runs
    assert gc.get_threshold()[0] == max(60_000, before[0])
    assert gc.get_freeze_count() > 0
    second.__exit__(None, None, None)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_two_workers_in_one_event_loop_leave_the_collector_as_they_found_it() -> None:
    before = gc.get_threshold()
    seen: list[tuple[int, int]] = []
    one, two = TestBus(), TestBus()
    one.publish_data("in", "x", [{} for _ in range(3)])
    two.publish_data("in", "x", [{} for _ in range(3)])

    async def both() -> None:
        await asyncio.gather(one.run_async(observing_app(seen)), two.run_async(observing_app(seen)))

    asyncio.run(both())
    assert len(seen) == 6
    assert all(young >= 50_000 and frozen > 0 for young, frozen in seen)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_projection_folds_with_the_collector_tuned_too(tmp_path: Path) -> None:
    before = gc.get_threshold()
    seen: list[tuple[int, int]] = []
    app = App("gc")
    counts = app.projection("counts", topics="in", store=f"sqlite:///{tmp_path}/store.db")

    @counts.on("x")
    def count(event: Event, view: View) -> None:
        seen.append((gc.get_threshold()[0], gc.get_freeze_count()))

    log = MemoryLog()
    Publisher(log).publish("in", Event("x", {}))
    asyncio.run(AppRunner(app, log, WorkerSettings(until_idle=True, idle_poll_s=0.0)).run())
    [(young, frozen)] = seen
    assert young == max(50_000, before[0])
    assert frozen > 0
    assert gc.get_threshold() == before
