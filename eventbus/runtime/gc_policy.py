"""The garbage collector while workers (and projection runners) run.

A worker's round decodes thousands of events and builds their outputs; those containers live until the round is
written, then die together by reference counting. CPython's cyclic collector, by default, runs a young
collection every 700 net allocations: during a round it finds no garbage, and it promotes the round's objects to
older generations, whose collections then walk them again along with everything the process built at start-up
(modules, the app, the router's tables). Measured on W1 (200,000 events through the embedded log), that was 5 to
8% of the worker's time.

While at least one worker or projection runner runs, the process's start-up heap is frozen (`gc.freeze`: never
walked again) and the young generation's threshold is raised above what a round keeps alive. Cycles are still
collected, only less often. The previous settings come back when the last one stops.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_running = 0
_previous_thresholds: tuple[int, int, int] | None = None


@contextmanager
def collector_for_rounds(young_threshold: int | None) -> Iterator[None]:
    """Tune the collector while the block runs (``young_threshold`` allocations between young collections;
    ``None`` leaves it as it is). Nested and concurrent uses share one tuning, undone when the last one ends."""
    if young_threshold is None:
        yield
        return
    _enter(young_threshold)
    try:
        yield
    finally:
        _leave()


def _enter(young_threshold: int) -> None:
    global _running, _previous_thresholds
    with _lock:
        if _running == 0:
            _previous_thresholds = gc.get_threshold()
            gc.freeze()
        _running += 1
        young, middle, old = gc.get_threshold()
        gc.set_threshold(max(young, young_threshold), middle, old)


def _leave() -> None:
    global _running, _previous_thresholds
    with _lock:
        _running -= 1
        if _running == 0 and _previous_thresholds is not None:
            gc.set_threshold(*_previous_thresholds)
            _previous_thresholds = None
            gc.unfreeze()
