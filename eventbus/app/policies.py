"""What a processor does when it fails: retries, circuit breakers and idempotency, as small frozen settings.

>>> @app.processor("payments", retry=Retry(max_attempts=5, retry_on=(TimeoutError,)), timeout_s=2.0,
...                breaker=CircuitBreaker("payment-gateway", failure_threshold=5), idempotency=Idempotency())

Each setting checks itself when it is built, so a bad value is reported where it is written.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from eventbus.errors import ConfigurationError

if TYPE_CHECKING:
    from eventbus.event import Event

Jitter = Literal["full", "equal", "none"]


def _positive(owner: str, name: str, value: float, *, allow_zero: bool = False) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)  # nan passes every comparison below; inf makes a wait or a window endless
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{owner}: {name} must be a finite number {bound}, got {value!r}")


def _exception_classes(owner: str, name: str, value: tuple[type[BaseException], ...]) -> None:
    if not isinstance(value, tuple) or not all(isinstance(c, type) and issubclass(c, BaseException) for c in value):
        raise ConfigurationError(f"{owner}: {name} must be a tuple of exception classes, got {value!r}")


@dataclass(frozen=True, slots=True)
class Retry:
    """How often and how patiently a failed event is tried again before it is dead-lettered.

    The n-th retry waits ``min(max_delay_ms, initial_delay_ms * multiplier ** (n - 1))`` milliseconds, jittered:
    ``full`` draws uniformly from [0, that] (spreads retries of many workers apart), ``equal`` from [half, that],
    ``none`` waits exactly that. An exception is retried when it is an instance of ``retry_on`` and not of
    ``no_retry_on``; otherwise the event is dead-lettered at once. ``max_event_age_s`` stops retrying an event
    that old (measured from when it was appended to the log).
    """

    max_attempts: int = 3
    initial_delay_ms: float = 100.0
    max_delay_ms: float = 30_000.0
    multiplier: float = 2.0
    jitter: Jitter = "full"
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    no_retry_on: tuple[type[BaseException], ...] = ()
    max_event_age_s: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ConfigurationError(f"Retry: max_attempts must be an integer >= 1, got {self.max_attempts!r}")
        _positive("Retry", "initial_delay_ms", self.initial_delay_ms, allow_zero=True)
        _positive("Retry", "max_delay_ms", self.max_delay_ms, allow_zero=True)
        if self.max_delay_ms < self.initial_delay_ms:
            raise ConfigurationError("Retry: max_delay_ms must be >= initial_delay_ms")
        _positive("Retry", "multiplier", self.multiplier)
        if self.multiplier < 1:
            raise ConfigurationError(f"Retry: multiplier must be >= 1, got {self.multiplier!r}")
        if self.jitter not in ("full", "equal", "none"):
            raise ConfigurationError(f"Retry: jitter must be 'full', 'equal' or 'none', got {self.jitter!r}")
        _exception_classes("Retry", "retry_on", self.retry_on)
        _exception_classes("Retry", "no_retry_on", self.no_retry_on)
        if self.max_event_age_s is not None:
            _positive("Retry", "max_event_age_s", self.max_event_age_s)

    def ceiling_s(self, retry: int) -> float:
        """The un-jittered wait before retry number ``retry`` (1 for the first retry)."""
        return min(self.max_delay_ms, self.initial_delay_ms * self.multiplier ** (retry - 1)) / 1000

    def delay_s(self, retry: int, rng: random.Random) -> float:
        """The wait before retry number ``retry``, jittered."""
        ceiling = self.ceiling_s(retry)
        if self.jitter == "full":
            return rng.uniform(0, ceiling)
        if self.jitter == "equal":
            return rng.uniform(ceiling / 2, ceiling)
        return ceiling

    def retries(self, error: BaseException) -> bool:
        """Whether ``error`` is worth another attempt."""
        return isinstance(error, self.retry_on) and not isinstance(error, self.no_retry_on)


NO_RETRY = Retry(max_attempts=1)


@dataclass(frozen=True, slots=True)
class CircuitBreaker:
    """Stop calling a failing dependency for a while instead of burning every event's attempts on it.

    After ``failure_threshold`` failures within ``window_s`` the breaker *opens*: the processors sharing it are not
    invoked and their partitions pause. After ``open_s`` it lets one *probe* invocation through (half-open); success
    closes it, failure opens it again. Processors that name the same breaker share it.
    """

    name: str | None = None
    failure_threshold: int = 5
    window_s: float = 60.0
    open_s: float = 30.0

    def __post_init__(self) -> None:
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise ConfigurationError(f"CircuitBreaker: name must be a non-empty string, got {self.name!r}")
        threshold = self.failure_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ConfigurationError(f"CircuitBreaker: failure_threshold must be an integer >= 1, got {threshold!r}")
        _positive("CircuitBreaker", "window_s", self.window_s)
        _positive("CircuitBreaker", "open_s", self.open_s)


def event_id(event: Event) -> str:
    """The default idempotency key: the event's source and id (unique together, by CloudEvents rules)."""
    return f"{event.source}\x1f{event.id}"


@dataclass(frozen=True, slots=True)
class Idempotency:
    """Process each event once even when it is delivered twice.

    A key (by default the event's source and id; ``key`` derives another from the event) is recorded durably as
    soon as an invocation succeeds. An event whose key was seen within ``ttl_s`` is not processed again. After a
    crash, an event whose processing finished but was not committed is not run again and what it emitted is
    emitted again; one whose worker died in the middle of it is dead-lettered as in doubt. So a redelivery
    neither repeats a side effect nor loses an output. The same holds for a round whose commit a rebalance
    refused, when its events are read again by the same worker, or by another worker of its host; a member on
    another host runs them again (keys are kept per host).
    """

    key: Callable[[Event], str] = field(default=event_id)
    ttl_s: float = 3600.0

    def __post_init__(self) -> None:
        if not callable(self.key):
            raise ConfigurationError(f"Idempotency: key must be a function of the event, got {self.key!r}")
        _positive("Idempotency", "ttl_s", self.ttl_s)
