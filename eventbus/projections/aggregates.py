"""Aggregates: state rebuilt by applying the aggregate's own events; commands decide new events.

>>> class Account(Aggregate):
...     topic = "accounts"
...     def __init__(self, id: str) -> None:
...         super().__init__(id)
...         self.balance = 0
...     def apply(self, event: Event) -> None:
...         if event.type == "bank.money.deposited":
...             self.balance += event.data["amount"]
...     def deposit(self, amount: int) -> list[Event]:
...         return [self.event("bank.money.deposited", {"amount": amount})]

A command checks the rules against the current state and returns events; `EventStore.save` appends them (if
nobody else appended to the stream meanwhile), applies them, and publishes them to ``topic``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from eventbus.errors import EventbusError
from eventbus.event import Event


class ConcurrencyError(EventbusError):
    """Someone else appended to the aggregate's stream since it was loaded: load it again and retry the command."""

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream} is at version {actual}, not {expected}: another writer saved it first; "
            "load it again and retry the command"
        )
        self.stream = stream
        self.expected = expected
        self.actual = actual


class CommandRejectedError(EventbusError):
    """A command the aggregate's rules refuse (e.g. a withdrawal that would overdraw an account)."""


class Aggregate:
    """Base class of aggregates. Subclasses set ``topic`` (where their events are published) and implement
    ``apply``; ``stream_type`` (default: the class name) names their streams; ``snapshot_every`` (events) makes the
    store keep snapshots so loading does not replay the whole stream."""

    topic: ClassVar[str]
    stream_type: ClassVar[str | None] = None
    snapshot_every: ClassVar[int | None] = None
    source: ClassVar[str | None] = None

    def __init__(self, id: str) -> None:
        self.id = id
        # The number of events applied: the stream version a save expects to extend.
        self.version = 0

    def apply(self, event: Event) -> None:
        """Change the state for one event (of this aggregate's stream). Must not fail and must not decide."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement apply(event)")

    def event(self, type_: str, data: Any = None, **attributes: Any) -> Event:
        """A new event of this aggregate: its subject and partition key are the aggregate's id, so a stream's
        events stay in order on one partition."""
        attributes.setdefault("subject", self.id)
        attributes.setdefault("partitionkey", self.id)
        if self.source is not None:
            attributes.setdefault("source", self.source)
        return Event(type_, data, **attributes)

    @classmethod
    def stream_name(cls) -> str:
        return cls.stream_type or cls.__name__

    def snapshot(self) -> dict[str, Any]:
        """The state to store in a snapshot (JSON-ready). By default every attribute but ``id`` and ``version``."""
        return {k: v for k, v in vars(self).items() if k not in ("id", "version")}

    def restore(self, state: dict[str, Any]) -> None:
        """Set the state from a snapshot."""
        vars(self).update(state)
