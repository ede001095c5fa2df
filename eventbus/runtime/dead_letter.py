"""Dead letters: a record a processor gave up on, written unchanged to a dead-letter topic with why, in headers.

Headers (all text): ``eventbus.error.class``, ``eventbus.error.message``, ``eventbus.error.traceback``,
``eventbus.processor``, ``eventbus.attempts``, ``eventbus.failure.first`` and ``eventbus.failure.last`` (RFC 3339),
``eventbus.origin.topic``, ``eventbus.origin.partition``, ``eventbus.origin.offset``. The record's own key, value
and headers are kept as they were, so a replay re-publishes exactly the original event (same id), marked with one
header, ``eventbus.replayed`` (``<dead-letter topic>/<partition>/<offset>``): a person decided to run it again,
which is what an idempotent processor needs to run an event it holds in doubt.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from eventbus.backends.base import Headers, Log, Message, RecordBatch
from eventbus.errors import TopicNotFoundError

PREFIX = "eventbus."
ERROR_CLASS = "eventbus.error.class"
ERROR_MESSAGE = "eventbus.error.message"
ERROR_TRACEBACK = "eventbus.error.traceback"
PROCESSOR = "eventbus.processor"
ATTEMPTS = "eventbus.attempts"
FIRST_FAILURE = "eventbus.failure.first"
LAST_FAILURE = "eventbus.failure.last"
ORIGIN_TOPIC = "eventbus.origin.topic"
ORIGIN_PARTITION = "eventbus.origin.partition"
ORIGIN_OFFSET = "eventbus.origin.offset"
REPLAYED = "eventbus.replayed"
# On a dead letter whose record was too large for the dead-letter topic: the record's size, and that its value was
# left out. A replay reads the value from the origin record, as long as the origin topic still holds it.
VALUE_OMITTED = "eventbus.value.omitted"
# On a replayed record, the one processor (or "projection:<name>") it is for: the others of its topic handled the
# original already. The replay puts it first among the headers, so readers look at one header, not all of them.
REPLAY_TARGET = "eventbus.replay.target"

MAX_MESSAGE_CHARS = 2000
DECODER = "(decoder)"


def _rfc3339_ms(epoch_ms: int) -> str:
    seconds, millis = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def error_class_name(error: BaseException) -> str:
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Why and after what a record is dead-lettered."""

    processor: str
    error: BaseException
    traceback: str
    attempts: int
    first_failure_ms: int
    last_failure_ms: int


def strip_failure_headers(headers: Headers | None) -> Headers | None:
    """The record's headers without eventbus's failure headers (None when nothing is left)."""
    if not headers:
        return None
    kept = tuple((k, v) for k, v in headers if not k.startswith(PREFIX))
    return kept or None


def replay_target(headers: Headers | None) -> str | None:
    """The processor or projection a replayed record is for (see `REPLAY_TARGET`); None: for every one."""
    if headers and headers[0][0] == REPLAY_TARGET:
        return headers[0][1].decode("utf-8", "replace")
    return None


def replayed_from(headers: Headers | None) -> str | None:
    """Where a record was replayed from (``<dead-letter topic>/<partition>/<offset>``), if it was."""
    for name, value in headers or ():
        if name == REPLAYED:
            return value.decode("utf-8", "replace")
    return None


def dead_letter(
    records: RecordBatch, position: int, why: GiveUp, oversized: Callable[[Message], str | None] | None = None
) -> Message:
    """The dead-letter record for the record at ``position`` of ``records``.

    ``oversized`` says why the dead-letter topic's log would refuse a record for its size (`Log.oversized`). A
    dead letter it would refuse (the record was near the limit, or over it, as an output passed on unchanged is)
    goes without its value, and then without the record's own headers, rather than failing the write of every
    dead letter and output with it: that would stop the worker at this record on every restart."""
    message = str(why.error)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "..."
    failure: Headers = (
        (ERROR_CLASS, error_class_name(why.error).encode()),
        (ERROR_MESSAGE, message.encode("utf-8", "replace")),
        (ERROR_TRACEBACK, why.traceback.encode("utf-8", "replace")),
        (PROCESSOR, why.processor.encode()),
        (ATTEMPTS, str(why.attempts).encode()),
        (FIRST_FAILURE, _rfc3339_ms(why.first_failure_ms).encode()),
        (LAST_FAILURE, _rfc3339_ms(why.last_failure_ms).encode()),
        (ORIGIN_TOPIC, records.topic.encode()),
        (ORIGIN_PARTITION, str(records.partition).encode()),
        (ORIGIN_OFFSET, str(records.offsets[position]).encode()),
    )
    original = strip_failure_headers(records.headers[position]) or ()
    value, key = records.values[position], records.keys[position]
    letter = Message(value, key, original + failure)
    if oversized is None or oversized(letter) is None:
        return letter
    omitted: Headers = ((VALUE_OMITTED, f"{len(value or b''):,} bytes".encode()),)
    letter = Message(None, key, original + failure + omitted)
    if oversized(letter) is None:
        return letter
    return Message(None, key, failure + omitted)


def failure_of(headers: Headers | None) -> dict[str, str]:
    """The failure headers of a dead letter, by name without the prefix (``error.class``, ``attempts``, ...)."""
    found: dict[str, str] = {}
    for name, value in headers or ():
        if name.startswith(PREFIX):
            found[name[len(PREFIX) :]] = value.decode("utf-8", "replace")
    return found


def dead_lettered(log: Log, topic: str, processors: Collection[str]) -> set[tuple[int, int]]:
    """The (partition, offset) of each record of ``topic`` that ``processors`` dead-lettered to ``<topic>.dlq``
    (read whole: for a rebuild, which folds the topic again and must not dead-letter its records twice)."""
    found: set[tuple[int, int]] = set()
    dlq = f"{topic}.dlq"
    try:
        states = log.watermarks(dlq)
    except TopicNotFoundError:
        return found
    for state in states:
        position = state.start_offset
        while position < state.end_offset:
            batch = log.read(dlq, state.partition, position, 1000)
            if not batch.offsets:
                break
            position = batch.next_offset
            for headers in batch.headers:
                failure = failure_of(headers)
                if failure.get("processor") in processors and failure.get("origin.topic") == topic:
                    try:
                        found.add((int(failure["origin.partition"]), int(failure["origin.offset"])))
                    except (KeyError, ValueError):
                        continue  # not a dead letter of ours
    return found
