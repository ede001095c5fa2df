"""The worker runtime: `Worker` (processors), `AppRunner` (processors and projections together) and `run_worker`,
which runs one until it is stopped by a signal or goes idle."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

from eventbus.runtime.app_runner import AppRunner, AppStats
from eventbus.runtime.worker import Worker, WorkerSettings, WorkerStats

__all__ = ["AppRunner", "AppStats", "Worker", "WorkerSettings", "WorkerStats", "run_coroutine", "run_worker"]

T = TypeVar("T")


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop where it is installed (faster I/O and timers), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def run_worker(worker: Worker | AppRunner) -> WorkerStats | AppStats:
    """Run a worker in this thread until SIGINT/SIGTERM (then drain and commit) or, with ``until_idle``, until
    every partition it owns is caught up. A second signal stops at once without draining."""

    async def main() -> WorkerStats | AppStats:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_signal() -> None:
            if worker.stopping:
                task.cancel()
            worker.stop()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal)
        try:
            return await worker.run()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    return run_coroutine(main())
