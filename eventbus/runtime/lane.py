"""A lane: the events one processor has yet to finish on one partition, oldest first, and why they wait.

Events wait in a lane only when there is a reason: an open batch window, a failed event waiting for its retry,
an open circuit breaker, or events queued behind one of those (partition order). On the happy path a processor is
called straight from the polled batch and no lane exists.
"""

from __future__ import annotations

import traceback
from collections import deque
from dataclasses import dataclass
from typing import Any

from eventbus.runtime.dispatch import RoutedBatch

Item = tuple[RoutedBatch, int]

# Enough of a traceback to find the failing line; dead letters are records, not log files.
MAX_TRACEBACK_CHARS = 8192


def format_traceback(error: BaseException) -> str:
    text = "".join(traceback.format_exception(error))
    return text if len(text) <= MAX_TRACEBACK_CHARS else "...\n" + text[-MAX_TRACEBACK_CHARS:]


@dataclass(slots=True)
class Attempts:
    """The failed attempts of the event (or batch) at the head of a lane."""

    count: int
    first_failure_ms: int
    last_failure_ms: int
    error: BaseException
    traceback: str

    def failed_again(self, error: BaseException, now_ms: int) -> None:
        self.count += 1
        self.last_failure_ms = now_ms
        self.error = error
        self.traceback = format_traceback(error)

    @classmethod
    def first(cls, error: BaseException, now_ms: int) -> Attempts:
        return cls(1, now_ms, now_ms, error, format_traceback(error))


class Lane:
    __slots__ = ("attempts", "bisect_end", "event_attempts", "items", "limit", "opened_monotonic", "retry_at")

    def __init__(self, opened_monotonic: float) -> None:
        self.items: deque[Item] = deque()
        self.attempts: Attempts | None = None
        # Lanes run concurrently: each failing event's own attempts, by offset (their retries overlap, so one
        # count for the lane would charge one event with another's attempts).
        self.event_attempts: dict[int, Attempts] = {}
        # When the head may be tried again (monotonic seconds); 0 when it may be tried now.
        self.retry_at = 0.0
        # When the oldest waiting event arrived (batch windows count from it).
        self.opened_monotonic = opened_monotonic
        # While a failing batch is being bisected: the most events to pass in one call, and the offset after
        # that batch (bisection ends when the head gets there).
        self.limit: int | None = None
        self.bisect_end = 0

    def __len__(self) -> int:
        return len(self.items)

    def extend(self, batch: RoutedBatch, positions: list[int]) -> None:
        self.items.extend((batch, p) for p in positions)

    def head_offset(self) -> int:
        batch, position = self.items[0]
        return batch.offsets[position]

    def take(self, count: int) -> list[Item]:
        """The first ``count`` items (fewer if the lane is shorter), left in place."""
        items = self.items
        return [items[i] for i in range(min(count, len(items)))]

    def drop(self, count: int) -> None:
        """Forget the first ``count`` items: they are done (processed or dead-lettered)."""
        popleft = self.items.popleft
        for _ in range(count):
            popleft()
        self.attempts = None
        self.retry_at = 0.0


def event_of(item: Item) -> dict[str, Any]:
    batch, position = item
    attrs = batch.events[position]
    assert attrs is not None
    return attrs
