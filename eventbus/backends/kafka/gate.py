"""One confluent_kafka consumer, two threads: the polling thread and the committing thread.

confluent_kafka serialises the calls on one consumer: a commit from another thread waits until a running
``consume()`` returns, and a call made while the polling thread is inside a rebalance callback waits until the
callback returns. The log contract lets the revoke listener, called from that callback, wait for the commit in
flight on the other thread; done naively, each would wait for the other forever. And a synchronous commit while
the group coordinator is unknown (every broker gone) never returns at all.

So the client is behind a gate:

- The polling thread holds the gate while it is inside the client, in short slices, and steps aside between
  slices when a call is waiting.
- The committing thread posts its call and runs it, on a helper thread, as soon as the gate is free; it waits
  no longer than its timeout (the helper keeps the gate until the client returns, so nothing else enters a
  client that is stuck).
- Inside a rebalance callback the client belongs to the polling thread: while the revoke listener waits there,
  the polling thread runs posted calls itself.

Whoever claims a posted call first runs it; it runs once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from eventbus.errors import BackendError

T = TypeVar("T")

# How often a waiting thread looks again (seconds).
_RECHECK_S = 0.001


class _Call(Generic[T]):
    __slots__ = ("_claimed", "_error", "_result", "done", "func")

    def __init__(self, func: Callable[[], T]) -> None:
        self.func = func
        self.done = threading.Event()
        self._claimed = threading.Lock()
        self._result: T | None = None
        self._error: BaseException | None = None

    def claim(self) -> bool:
        return self._claimed.acquire(blocking=False)

    def run(self) -> None:
        try:
            self._result = self.func()
        except BaseException as exc:  # handed to the thread that posted the call
            self._error = exc
        finally:
            self.done.set()

    def outcome(self) -> T:
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]  # set when no error was


class Gate:
    def __init__(self, what: str) -> None:
        self._what = what
        self._lock = threading.Lock()
        self._posted: deque[_Call[Any]] = deque()
        self._runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eventbus-kafka-call")

    @contextmanager
    def held(self, timeout_s: float) -> Iterator[None]:
        """The polling thread, around each call into the client."""
        self._step_aside()
        if not self._lock.acquire(timeout=timeout_s):
            raise BackendError(f"{self._what}: the Kafka client has not returned for {timeout_s:g} s")
        try:
            yield
        finally:
            self._lock.release()

    def _step_aside(self) -> None:
        # A lock is not fair: let a posted call take the gate before the polling thread takes it again.
        deadline = time.monotonic() + 0.05
        while self._posted and time.monotonic() < deadline:
            if self._posted[0].done.is_set():
                self._posted.popleft()
            else:
                time.sleep(_RECHECK_S)

    def call(self, func: Callable[[], T], timeout_s: float) -> T:
        """Run ``func`` with the client to itself (the committing thread); `BackendError` after ``timeout_s``."""
        posted: _Call[T] = _Call(func)
        self._posted.append(posted)
        deadline = time.monotonic() + timeout_s
        try:
            while not posted.done.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if self._lock.acquire(timeout=min(remaining, _RECHECK_S)):
                    if posted.claim():
                        self._runner.submit(self._run_then_release, posted)
                        posted.done.wait(max(0.0, deadline - time.monotonic()))
                        break
                    self._lock.release()
        finally:
            if posted in self._posted:
                self._posted.remove(posted)
        if not posted.done.is_set():
            posted.claim()  # nobody runs it any more
            raise BackendError(f"{self._what}: the Kafka client did not answer within {timeout_s:g} s")
        return posted.outcome()

    def _run_then_release(self, posted: _Call[Any]) -> None:
        try:
            posted.run()
        finally:
            self._lock.release()

    def run_posted_while(self, func: Callable[[], None]) -> None:
        """Run ``func`` (which may wait for a posted call) on a helper thread, running posted calls here until
        it returns: for the polling thread inside a rebalance callback, where the client is its alone."""
        finished = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                func()
            except BaseException as exc:  # re-raised on the polling thread
                failure.append(exc)
            finally:
                finished.set()

        helper = threading.Thread(target=run, name="eventbus-kafka-revoke", daemon=True)
        helper.start()
        while not finished.wait(_RECHECK_S):
            self._run_posted()
        self._run_posted()
        if failure:
            raise failure[0]

    def _run_posted(self) -> None:
        for posted in list(self._posted):
            if posted.claim():
                posted.run()

    def close(self) -> None:
        self._runner.shutdown(wait=False)
