"""The outbox: events processors emit during one round, encoded and grouped by topic until they are written.

Events created by a processor while handling an input inherit its lineage: ``causationid`` is the input's id,
``correlationid`` the input's correlation id (or its id), and ``traceparent`` and ``partitionkey`` carry over unless
the new event sets its own. An event passed through unchanged (same id) keeps its attributes as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from eventbus.backends.base import RECORD_HEADROOM_BYTES, Log, Message, check_topic_name
from eventbus.event import Event, binding_of, new_event_id, now_rfc3339
from eventbus.publisher import Encoders, EventEncoder


class OutputError(TypeError):
    """A processor returned something that is not an event, or an event with nowhere to go."""


# Topic names already checked, shared by every outbox: processors emit to the same few topics over and over.
# Bounded, since names can come from user code (ctx.publish).
_CHECKED_TOPICS: set[str] = set()
_MAX_CHECKED_TOPICS = 4096


def _inherit(attrs: dict[str, Any], parent: dict[str, Any]) -> None:
    """Give a new event what it inherits from the event that caused it (or from what a batch's events share,
    which names no single event as the cause: see invoke.batch_parent)."""
    cause = parent.get("id")
    if cause is not None:
        attrs.setdefault("causationid", cause)
    correlation = parent.get("correlationid") or cause
    if correlation is not None:
        attrs.setdefault("correlationid", correlation)
    for inherited in ("traceparent", "partitionkey"):
        if inherited in parent:
            attrs.setdefault(inherited, parent[inherited])


class Outbox:
    __slots__ = ("_encode", "_encoders", "_log", "_source", "_values_fit_below", "count", "messages", "trail")

    def __init__(self, default_source: str, encode: EventEncoder, log: Log | None = None) -> None:
        self._source = default_source
        self._encode = encode
        # The log the outputs go to, when it limits the size of a record (Kafka's message.max.bytes): a value
        # shorter than the limit minus the headroom fits, and only a longer one is measured (see `_check_size`).
        limit = log.max_record_bytes if log is not None else None
        self._log = log if limit is not None else None
        self._values_fit_below = None if limit is None else max(0, limit - RECORD_HEADROOM_BYTES)
        # Per-topic encoders when some topics are Avro; None (one encoder for every topic) otherwise.
        self._encoders = encode if isinstance(encode, Encoders) else None
        self.messages: dict[str, list[Message]] = {}
        # The topic of every message, in the order added: what `rollback` and `since` walk back through (and the
        # idempotency journal, for the one output most invocations emit).
        self.trail: list[str] = []
        self.count = 0

    def add(self, event: Event | object, topic: str | None, parent: dict[str, Any] | None, processor: str) -> None:
        if not isinstance(event, Event):
            binding = binding_of(type(event))
            if binding is None:
                raise OutputError(
                    f"processor {processor!r} emitted a {type(event).__qualname__}; emit an Event, an instance of a "
                    "class bound with @event_type, or a list of them"
                )
            topic = topic or binding.topic
            event = Event.of(event)
        if topic is not None and (topic.__class__ is not str or topic not in _CHECKED_TOPICS):
            try:
                check_topic_name(topic)
            except ValueError as exc:
                raise OutputError(f"processor {processor!r} emitted to a bad topic: {exc}") from None
            if len(_CHECKED_TOPICS) < _MAX_CHECKED_TOPICS:
                _CHECKED_TOPICS.add(topic)
        if topic is None:
            raise OutputError(
                f"processor {processor!r} emitted an event of type {event.type!r} but names no topic for it: "
                "pass to= to @app.processor, topic= to ctx.publish, or bind the class with @event_type(..., topic=)"
            )
        # Copy: the same Event object may be returned many times, and each emission needs its own id and time.
        attrs = dict(event._attrs)
        if "id" not in attrs:
            attrs["id"] = new_event_id()
            if parent is not None:
                _inherit(attrs, parent)
        if "time" not in attrs:
            attrs["time"] = now_rfc3339()
        if "source" not in attrs:
            attrs["source"] = self._source
        encoders = self._encoders
        message = self._encode(attrs) if encoders is None else encoders.for_topic(topic)(attrs)
        fit_below = self._values_fit_below
        if fit_below is not None and message[0] is not None and len(message[0]) > fit_below:
            self._check_size(message, topic, attrs, processor)
        self.add_message(topic, message)

    def _check_size(self, message: Message, topic: str, attrs: dict[str, Any], processor: str) -> None:
        """Refuse a record the log would refuse: written, it would fail the whole write, and the round with it,
        every time the event came again. Refused here, it fails only the event that emitted it."""
        assert self._log is not None
        why = self._log.oversized(message)
        if why is not None:
            raise OutputError(
                f"processor {processor!r} emitted an event of type {attrs.get('type')!r} to {topic!r} that is {why}"
            )

    def oversized(self, message: Message) -> str | None:
        """Why the log would refuse ``message`` for its size; None when it takes it (see `Log.oversized`)."""
        return self._log.oversized(message) if self._log is not None else None

    def sibling(self) -> Outbox:
        """An empty outbox that encodes and checks as this one does (for work done apart, then merged)."""
        return Outbox(self._source, self._encode, self._log)

    def add_message(self, topic: str, message: Message) -> None:
        """Emit an already-encoded record (dead letters, outputs remembered for an idempotent replay)."""
        bucket = self.messages.get(topic)
        if bucket is None:
            self.messages[topic] = [message]
        else:
            bucket.append(message)
        self.trail.append(topic)
        self.count += 1

    def add_result(self, result: object, topic: str | None, parent: dict[str, Any] | None, processor: str) -> None:
        """Emit what a processor returned: None, an event, a typed instance, or an iterable of those."""
        if result is None:
            return
        if isinstance(result, Event) or binding_of(type(result)) is not None:
            self.add(result, topic, parent, processor)
        elif isinstance(result, Iterable) and not isinstance(result, str | bytes | dict):
            for item in result:
                self.add(item, topic, parent, processor)
        else:
            raise OutputError(
                f"processor {processor!r} returned a {type(result).__qualname__}; return None, an Event, an "
                "instance of a class bound with @event_type, or a list of them"
            )

    def rollback(self, mark: int) -> None:
        """Forget everything added since ``count`` was ``mark`` (the outputs of an invocation that failed)."""
        while self.count > mark:
            self.messages[self.trail.pop()].pop()
            self.count -= 1

    def since(self, mark: int) -> list[tuple[str, Message]]:
        """What was added since ``count`` was ``mark``, in order."""
        if self.count - mark == 1:  # the common case: one event out per event in
            topic = self.trail[-1]
            return [(topic, self.messages[topic][-1])]
        added = self.trail[mark:]
        seen: dict[str, int] = {}
        result = []
        for topic in reversed(added):
            seen[topic] = seen.get(topic, 0) + 1
            result.append((topic, self.messages[topic][-seen[topic]]))
        result.reverse()
        return result

    def take(self) -> dict[str, list[Message]]:
        messages, self.messages, self.count = self.messages, {}, 0
        self.trail = []
        return messages
