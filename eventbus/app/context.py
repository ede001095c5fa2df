"""`Context`: what a processor may take as its second parameter — where its input came from, and `publish`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eventbus.event import Event
    from eventbus.runtime.outbox import Outbox


class Context:
    """Where the current input came from and a way to publish extra events.

    For a batch processor ``offset`` is the offset of the first event of the batch.
    """

    __slots__ = ("_outbox", "_parent", "_to", "offset", "partition", "processor", "topic")

    def __init__(
        self,
        processor: str,
        topic: str,
        partition: int,
        offset: int,
        outbox: Outbox,
        to: str | None,
        parent: dict[str, Any] | None,
    ) -> None:
        self.processor = processor
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self._outbox = outbox
        self._to = to
        self._parent = parent

    def publish(self, event: Event | object, *, topic: str | None = None) -> None:
        """Emit an event (or a typed event instance) to ``topic``, else the processor's ``to=`` topic, else the
        topic its class is bound to. It is written, with the processor's other outputs, before the input is
        committed."""
        self._outbox.add(event, topic or self._to, self._parent, self.processor)
