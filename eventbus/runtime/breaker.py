"""Circuit breakers at run time: closed → open after repeated failures → half-open probe → closed or open again."""

from __future__ import annotations

import logging
from collections import deque
from typing import Literal

from eventbus.app.policies import CircuitBreaker
from eventbus.observability import metrics

logger = logging.getLogger("eventbus.breaker")

State = Literal["closed", "open", "half_open"]


class Breaker:
    """One breaker, shared by every processor that names it. Times are monotonic seconds."""

    def __init__(self, name: str, config: CircuitBreaker) -> None:
        self.name = name
        self.config = config
        self.state: State = "closed"
        self._failures: deque[float] = deque()
        self._opened_at = 0.0
        self._probing = False
        metrics.breaker_state(name, self.state)

    def allows(self, now: float) -> bool:
        """Whether a call may go ahead now. In half-open state only one call (the probe) goes ahead."""
        if self.state == "closed":
            return True
        if self.state == "open":
            if now < self._opened_at + self.config.open_s:
                return False
            self._move("half_open", f"probing after {self.config.open_s:g} s open")
        if self._probing:
            return False
        self._probing = True
        return True

    def reopens_at(self) -> float:
        """When an open breaker lets its probe through (monotonic seconds)."""
        return self._opened_at + self.config.open_s

    def succeeded(self, now: float) -> None:
        if self.state == "half_open":
            self._probing = False
            self._failures.clear()
            self._move("closed", "the probe succeeded")

    def failed(self, now: float) -> None:
        if self.state == "half_open":
            self._probing = False
            self._opened_at = now
            self._move("open", "the probe failed")
            return
        if self.state == "open":
            return
        failures = self._failures
        failures.append(now)
        while failures and failures[0] < now - self.config.window_s:
            failures.popleft()
        if len(failures) >= self.config.failure_threshold:
            self._opened_at = now
            self._move("open", f"{len(failures)} failures within {self.config.window_s:g} s")

    def _move(self, state: State, why: str) -> None:
        logger.warning("circuit breaker %r: %s -> %s (%s)", self.name, self.state, state, why)
        self.state = state
        metrics.breaker_state(self.name, state)
