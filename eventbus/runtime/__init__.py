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
# Stops at once whenever it comes, as celery's cold shutdown: what a supervisor passes on for a second stop.
# Windows has no SIGQUIT (nor supervisors): there a second SIGINT or SIGTERM is the only way.
STOP_AT_ONCE_SIGNAL: signal.Signals | None = getattr(signal, "SIGQUIT", None)


def _stop_at_once(signum: int, _frame: object) -> None:
    raise StoppedAtOnce(signal.Signals(signum).name)


def run_worker(worker: Worker | AppRunner, *, repeat_stops_at_once: bool = True) -> WorkerStats | AppStats:
    """Run a worker in this thread until SIGINT/SIGTERM (then drain and commit) or, with ``until_idle``, until
    every partition it owns is caught up. A second signal stops at once without draining (`StoppedAtOnce`), and so
    does `STOP_AT_ONCE_SIGNAL` at any time.

    ``repeat_stops_at_once=False`` is for a worker under a supervisor: a service manager that stops the whole
    process tree (systemd's default) sends SIGTERM to the worker and to its supervisor, which passes it on, so the
    worker receives one stop twice; a second stop then comes from the supervisor as `STOP_AT_ONCE_SIGNAL`."""
    at_once = () if STOP_AT_ONCE_SIGNAL is None else (STOP_AT_ONCE_SIGNAL,)
    previous = {signum: signal.getsignal(signum) for signum in (*_STOP_SIGNALS, *at_once)}

    async def main() -> WorkerStats | AppStats:
        loop = asyncio.get_running_loop()
        signalled = False

        def on_signal(signum: int, _frame: object) -> None:
            # Python's own handling, not the loop's: the loop runs its handlers only between rounds, and a round
            # of slow synchronous processors can take minutes. This one runs at once, wherever the worker is.
            nonlocal signalled
            if signalled:
                return  # the same stop again (see repeat_stops_at_once): it is under way
            signalled = True
            worker.stop()
            if repeat_stops_at_once:
                for each in _STOP_SIGNALS:
                    signal.signal(each, _stop_at_once)
            logger.warning("stopping after the events already read; a second signal stops at once")
            with contextlib.suppress(RuntimeError):  # the loop closed just now: there is nothing left to wake
                loop.call_soon_threadsafe(_nothing)  # wake the loop if it is waiting, so that it sees the stop

        for signum in _STOP_SIGNALS:
            signal.signal(signum, on_signal)
        for signum in at_once:
            signal.signal(signum, _stop_at_once)
        return await worker.run()

    try:
        return run_coroutine(main())
    finally:
        for signum, handler in previous.items():
            if handler is not None:
                signal.signal(signum, handler)


def _nothing() -> None:
    pass
