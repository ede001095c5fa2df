"""Calling processors: one event at a time, or a list at a time, sync or async, in offset order.

A plain loop per processor and partition: no task per event, no logging per event. A failure is raised as a
`ProcessorError` carrying the processor and the coordinates of the event (or first event of the batch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from eventbus.app.context import Context
from eventbus.app.processor import Processor
from eventbus.errors import ProcessorError
from eventbus.event import Event, from_builtins
from eventbus.runtime.outbox import Outbox

ArgumentFactory = Callable[[dict[str, Any]], Any]


def argument_factory(processor: Processor) -> ArgumentFactory:
    """How to turn a decoded CloudEvents dict into what the processor's parameter asks for."""
    if processor.argument == "typed":
        cls = processor.typed_class
        assert cls is not None

        def typed(attrs: dict[str, Any]) -> Any:
            return from_builtins(attrs.get("data"), cls, what=f"event {attrs['id']!r} of type {attrs['type']!r}")

        return typed
    return Event.wrap


def call_each(
    processor: Processor,
    topic: str,
    partition: int,
    offsets: Sequence[int],
    events: Sequence[dict[str, Any]],
    positions: Sequence[int],
    outbox: Outbox,
) -> None:
    """A sync processor over the events at ``positions``."""
    func, to, name = processor.func, processor.to, processor.name
    make = argument_factory(processor)
    add_result = outbox.add_result
    position = positions[0] if positions else 0
    try:
        if processor.wants_context:
            for position in positions:
                attrs = events[position]
                ctx = Context(name, topic, partition, offsets[position], outbox, to, attrs)
                result = func(make(attrs), ctx)
                if result is not None:
                    add_result(result, to, attrs, name)
        else:
            for position in positions:
                attrs = events[position]
                result = func(make(attrs))
                if result is not None:
                    add_result(result, to, attrs, name)
    except Exception as exc:
        raise ProcessorError(name, topic, partition, offsets[position], exc) from exc


async def call_each_async(
    processor: Processor,
    topic: str,
    partition: int,
    offsets: Sequence[int],
    events: Sequence[dict[str, Any]],
    positions: Sequence[int],
    outbox: Outbox,
) -> None:
    """An async processor over the events at ``positions``, awaited one after another (partition order)."""
    func, to, name = processor.func, processor.to, processor.name
    make = argument_factory(processor)
    add_result = outbox.add_result
    position = positions[0] if positions else 0
    try:
        for position in positions:
            attrs = events[position]
            if processor.wants_context:
                ctx = Context(name, topic, partition, offsets[position], outbox, to, attrs)
                result = await func(make(attrs), ctx)
            else:
                result = await func(make(attrs))
            if result is not None:
                add_result(result, to, attrs, name)
    except Exception as exc:
        raise ProcessorError(name, topic, partition, offsets[position], exc) from exc


async def call_batch(
    processor: Processor,
    topic: str,
    partition: int,
    first_offset: int,
    batch: Sequence[dict[str, Any]],
    outbox: Outbox,
) -> None:
    """A batch processor (sync or async) with one list of events."""
    make = argument_factory(processor)
    try:
        arguments = [make(attrs) for attrs in batch]
        if processor.wants_context:
            ctx = Context(processor.name, topic, partition, first_offset, outbox, processor.to, None)
            result = processor.func(arguments, ctx)
        else:
            result = processor.func(arguments)
        if processor.is_async:
            result = await result
        outbox.add_result(result, processor.to, None, processor.name)
    except Exception as exc:
        raise ProcessorError(processor.name, topic, partition, first_offset, exc) from exc
