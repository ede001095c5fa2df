"""Calling processors: one event at a time or a list at a time, sync or async, with an optional time limit.

A plain loop per processor and partition: no task per event, no logging per event. These functions do not raise
what a processor raises; they report it (which event, which error), and the worker decides: retry, dead-letter or
stop. Whatever a failed invocation emitted is taken back out of the outbox.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eventbus.app.context import Context
from eventbus.app.processor import Processor
from eventbus.app.results import BatchItemFailures
from eventbus.event import Event, InvalidEventError, from_builtins
from eventbus.runtime.outbox import Outbox

ArgumentFactory = Callable[[dict[str, Any]], Any]


class ProcessorTimeoutError(TimeoutError):
    """An invocation ran past the processor's ``timeout_s``; it counts as a failed attempt."""


class ProcessorCancelledError(Exception):
    """An async processor raised `asyncio.CancelledError` of its own (it awaited something that was cancelled) while
    the worker was not stopping it; it counts as a failed attempt, as any other error does."""


class _Alarm(BaseException):
    # Raised by SIGALRM inside the processor. A BaseException, so a processor's own `except Exception` cannot
    # swallow its time limit; it becomes a ProcessorTimeoutError once it is back in our hands.
    pass


@dataclass(frozen=True, slots=True)
class Failure:
    """The first event that failed (its index among those passed) and why. For a batch item failure report,
    ``reported`` holds the indexes of every event the report named (the others succeeded)."""

    index: int
    error: BaseException
    reported: frozenset[int] | None = None


class InvocationJournal(Protocol):
    """Told of each invocation of `call_each` by its index among the positions (idempotent processors). What an
    invocation emits is in the outbox from its `begin` on."""

    def begin(self, index: int) -> None:
        """The invocation is about to start; the one before it, if any, returned (one call per event, not two)."""

    def end(self, index: int) -> None:
        """The invocation, the last, returned."""

    def abandon(self, index: int) -> None:
        """It raised (or its outputs were refused): it will be tried again."""


def argument_factory(processor: Processor) -> ArgumentFactory:
    """How to turn a decoded CloudEvents dict into what the processor's parameter asks for."""
    if processor.argument == "typed":
        cls = processor.typed_class
        assert cls is not None

        def typed(attrs: dict[str, Any]) -> Any:
            return from_builtins(attrs.get("data"), cls, what=f"event {attrs['id']!r} of type {attrs['type']!r}")

        return typed
    return Event.wrap


# -- time limits ------------------------------------------------------------------------------------------------


def _raise_alarm(signum: int, frame: object) -> None:
    raise _Alarm


def call_with_time_limit(func: Callable[..., Any], args: tuple[Any, ...], timeout_s: float) -> Any:
    """Call a sync function, interrupting it after ``timeout_s``.

    On the main thread a SIGALRM timer interrupts the call where it is. Elsewhere signals cannot reach it, so it
    runs on a helper thread that is abandoned (not killed) when the time is up.
    """
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGALRM, _raise_alarm)
        try:
            try:
                signal.setitimer(signal.ITIMER_REAL, timeout_s)
                return func(*args)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _Alarm:
            # Also when the alarm went off just as the function returned: the attempt counts as timed out.
            raise ProcessorTimeoutError(f"did not finish within timeout_s={timeout_s:g}") from None
        finally:
            signal.signal(signal.SIGALRM, previous)
    # A thread per call (not a pool): a call must start at once, or its time limit would run out in a queue.
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["result"] = func(*args)
        except BaseException as exc:  # handed back to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=call, name="eventbus-timeboxed", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise ProcessorTimeoutError(f"did not finish within timeout_s={timeout_s:g} (left running on its thread)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


async def await_with_time_limit(awaitable: Any, timeout_s: float | None) -> Any:
    try:
        if timeout_s is None:
            return await awaitable
        async with asyncio.timeout(timeout_s):
            return await awaitable
    except TimeoutError:
        if timeout_s is None:
            raise
        raise ProcessorTimeoutError(f"did not finish within timeout_s={timeout_s:g}") from None
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise  # the worker is stopping this task: let it stop
        # Not a request to stop: left to propagate, it would end the worker's task as if it had been stopped.
        raise ProcessorCancelledError(
            f"raised CancelledError without being cancelled (it awaited something that was cancelled): {exc}"
        ) from exc


# -- one event at a time -----------------------------------------------------------------------------------------


def call_each(
    processor: Processor,
    topic: str,
    partition: int,
    offsets: Sequence[int],
    events: Sequence[dict[str, Any] | None],
    positions: Sequence[int],
    outbox: Outbox,
    journal: InvocationJournal | None = None,
) -> Failure | None:
    """A sync processor over the events at ``positions``, in order, stopping at the first failure.

    ``journal`` (idempotent processors) hears of each invocation before anything of it runs, its argument built
    included (its `begin` is what says the one before returned), and of how the run ends."""
    func, to, name, timeout_s = processor.func, processor.to, processor.name, processor.timeout_s
    make = argument_factory(processor)
    add_result = outbox.add_result
    index = 0
    mark = outbox.count
    try:
        for index, position in enumerate(positions):
            attrs = events[position]
            assert attrs is not None
            mark = outbox.count
            if journal is not None:
                journal.begin(index)
            if processor.wants_context:
                args: tuple[Any, ...] = (
                    make(attrs),
                    Context(name, topic, partition, offsets[position], outbox, to, attrs),
                )
            else:
                args = (make(attrs),)
            result = func(*args) if timeout_s is None else call_with_time_limit(func, args, timeout_s)
            if result is not None:
                add_result(result, to, attrs, name)
    except Exception as exc:
        outbox.rollback(mark)
        if journal is not None:
            journal.abandon(index)
        return Failure(index, exc)
    if journal is not None and positions:
        journal.end(index)
    return None


async def call_each_async(
    processor: Processor,
    topic: str,
    partition: int,
    offsets: Sequence[int],
    events: Sequence[dict[str, Any] | None],
    positions: Sequence[int],
    outbox: Outbox,
    journal: InvocationJournal | None = None,
) -> Failure | None:
    """An async processor over the events at ``positions``, awaited one after another, stopping at a failure."""
    func, to, name, timeout_s = processor.func, processor.to, processor.name, processor.timeout_s
    make = argument_factory(processor)
    add_result = outbox.add_result
    index = 0
    mark = outbox.count
    try:
        for index, position in enumerate(positions):
            attrs = events[position]
            assert attrs is not None
            mark = outbox.count
            if journal is not None:
                journal.begin(index)
            if processor.wants_context:
                ctx = Context(name, topic, partition, offsets[position], outbox, to, attrs)
                result = await await_with_time_limit(func(make(attrs), ctx), timeout_s)
            else:
                result = await await_with_time_limit(func(make(attrs)), timeout_s)
            if result is not None:
                add_result(result, to, attrs, name)
    except Exception as exc:
        outbox.rollback(mark)
        if journal is not None:
            journal.abandon(index)
        return Failure(index, exc)
    if journal is not None and positions:
        journal.end(index)
    return None


# -- a list at a time --------------------------------------------------------------------------------------------


class MalformedReportError(TypeError):
    """A batch processor's failure report names events that were not in the batch, or has the wrong shape."""


def _failed_ids(result: object) -> list[str] | None:
    """The ids a batch processor reported as failed, or None when it returned events instead of a report."""
    if isinstance(result, BatchItemFailures):
        ids = list(result.ids)
    elif isinstance(result, dict) and "batchItemFailures" in result:
        items = result["batchItemFailures"]
        if not isinstance(items, list) or not all(isinstance(i, dict) and "itemIdentifier" in i for i in items):
            raise MalformedReportError("batchItemFailures must be a list of {'itemIdentifier': id}")
        ids = [i["itemIdentifier"] for i in items]
    else:
        return None
    if not all(isinstance(i, str) for i in ids):
        raise MalformedReportError(f"a batch item failure report holds event ids (strings), got {ids!r}")
    return ids


async def call_batch(
    processor: Processor,
    topic: str,
    partition: int,
    first_offset: int,
    batch: Sequence[dict[str, Any]],
    outbox: Outbox,
) -> Failure | None:
    """A batch processor (sync or async) with one list of events.

    Returns None when every event succeeded; else the index of the first event to try again: 0 when the call
    raised (or its report was malformed), the lowest failed index for a batch item failure report.

    Events whose data the processor's typed parameter cannot take are left out of the list it gets and reported
    as failed (never retried), as a one-at-a-time processor fails only them. Its outputs inherit what every event
    of the list shares (see `batch_parent`).
    """
    make = argument_factory(processor)
    mark = outbox.count
    try:
        arguments, taken, unreadable = _batch_arguments(make, batch)
        if not arguments:
            return Failure(0, unreadable[0][1])
        passed = batch if not unreadable else [batch[index] for index in taken]
        parent = batch_parent(passed)
        args: tuple[Any, ...] = (arguments,)
        if processor.wants_context:
            args = (arguments, Context(processor.name, topic, partition, first_offset, outbox, processor.to, parent))
        if processor.is_async:
            result = await await_with_time_limit(processor.func(*args), processor.timeout_s)
        elif processor.timeout_s is not None:
            result = call_with_time_limit(processor.func, args, processor.timeout_s)
        else:
            result = processor.func(*args)
        failed = _failed_ids(result)
        if failed is None:
            outbox.add_result(result, processor.to, parent, processor.name)
        if not failed:
            return _unreadable_failure(unreadable) if unreadable else None
        ids = {attrs["id"] for attrs in passed}
        unknown = [i for i in failed if i not in ids]
        if unknown:
            raise MalformedReportError(f"the failure report names events not in the batch: {unknown[:5]}")
        # Copies of one event (a producer's retry) share its id: a report naming it cannot say which failed, so
        # each is taken as failed rather than one of them being committed past.
        failed_ids = set(failed)
        reported = frozenset(index for index in taken if batch[index]["id"] in failed_ids)
        reported |= {index for index, _ in unreadable}
        return Failure(
            min(reported), BatchItemError(f"{len(failed)} event(s) of the batch reported as failed"), reported
        )
    except Exception as exc:
        outbox.rollback(mark)
        return Failure(0, exc)


def _batch_arguments(
    make: ArgumentFactory, batch: Sequence[dict[str, Any]]
) -> tuple[list[Any], list[int], list[tuple[int, InvalidEventError]]]:
    """The processor's arguments for the events it can take, their indexes, and the others with why."""
    try:
        return [make(attrs) for attrs in batch], list(range(len(batch))), []
    except InvalidEventError:
        pass  # the rare case: sort them out one by one
    arguments: list[Any] = []
    taken: list[int] = []
    unreadable: list[tuple[int, InvalidEventError]] = []
    for index, attrs in enumerate(batch):
        try:
            arguments.append(make(attrs))
        except InvalidEventError as exc:
            unreadable.append((index, exc))
        else:
            taken.append(index)
    return arguments, taken, unreadable


def _unreadable_failure(unreadable: list[tuple[int, InvalidEventError]]) -> Failure:
    first_index, first_error = unreadable[0]
    error = first_error
    if len(unreadable) > 1:
        error = InvalidEventError(f"{len(unreadable)} events of the batch cannot be taken; the first: {first_error}")
    return Failure(first_index, error, frozenset(index for index, _ in unreadable))


def batch_parent(batch: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """What a batch processor's outputs inherit: the one event's attributes for a batch of one, else the
    correlation id, trace context and partition key that every event of the batch shares (an output of several
    events was caused by no single one of them)."""
    if len(batch) == 1:
        return batch[0]
    first = batch[0]
    shared: dict[str, Any] = {}
    correlation = first.get("correlationid") or first["id"]
    if all((attrs.get("correlationid") or attrs["id"]) == correlation for attrs in batch):
        shared["correlationid"] = correlation
    for name in ("traceparent", "partitionkey"):
        value = first.get(name)
        if value is not None and all(attrs.get(name) == value for attrs in batch):
            shared[name] = value
    return shared or None


class BatchItemError(Exception):
    """Stands for the failure of events a batch processor reported in its `BatchItemFailures`."""
