"""The worker runtime: `Worker` (processors), `AppRunner` (processors and projections together) and `run_worker`,
which runs one until it is stopped by a signal or goes idle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

from eventbus.runtime.app_runner import AppRunner, AppStats
from eventbus.runtime.worker import Worker, WorkerSettings, WorkerStats

__all__ = [
    "AppRunner",
    "AppStats",
    "StoppedAtOnce",
    "Worker",
    "WorkerSettings",
    "WorkerStats",
    "run_coroutine",
    "run_worker",
]

logger = logging.getLogger("eventbus.worker")

T = TypeVar("T")


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop where it is installed (faster I/O and timers), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


class StoppedAtOnce(KeyboardInterrupt):
    """A second stop signal: the worker stopped where it was, without draining; what it had not committed is
    delivered again (at-least-once)."""


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _stop_at_once(signum: int, _frame: object) -> None:
    raise StoppedAtOnce(signal.Signals(signum).name)


def run_worker(worker: Worker | AppRunner) -> WorkerStats | AppStats:
    """Run a worker in this thread until SIGINT/SIGTERM (then drain and commit) or, with ``until_idle``, until
    every partition it owns is caught up. A second signal stops at once without draining (`StoppedAtOnce`)."""
    previous = {signum: signal.getsignal(signum) for signum in _STOP_SIGNALS}

    async def main() -> WorkerStats | AppStats:
        loop = asyncio.get_running_loop()

        def on_signal(signum: int, _frame: object) -> None:
            # Python's own handling, not the loop's: the loop runs its handlers only between rounds, and a round
            # of slow synchronous processors can take minutes. This one runs at once, wherever the worker is.
            worker.stop()
            for each in _STOP_SIGNALS:
                signal.signal(each, _stop_at_once)
            logger.warning("stopping after the events already read; a second signal stops at once")
            with contextlib.suppress(RuntimeError):  # the loop closed just now: there is nothing left to wake
                loop.call_soon_threadsafe(_nothing)  # wake the loop if it is waiting, so that it sees the stop

        for signum in _STOP_SIGNALS:
            signal.signal(signum, on_signal)
        return await worker.run()

    try:
        return run_coroutine(main())
    finally:
        for signum, handler in previous.items():
            if handler is not None:
                signal.signal(signum, handler)


def _nothing() -> None:
    pass
