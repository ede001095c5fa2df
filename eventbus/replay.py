"""Looking into dead-letter topics, sending their events back, and moving a group's position.

Replaying a dead-letter topic re-publishes each record exactly as it was first published (same key, value and
event id), without the failure headers, to the topic it came from (or another). A replay remembers how far it got
in a consumer group of its own (``<dead-letter topic>.replay``), so running it again sends only what was
dead-lettered since; ``from_beginning`` sends everything again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eventbus.backends.base import Log, Message, TopicPartition
from eventbus.codecs import decode_record
from eventbus.errors import ConfigurationError, DecodeError, EventbusError
from eventbus.runtime.dead_letter import REPLAYED, failure_of, strip_failure_headers

REPLAY_BATCH = 500


class GroupBusyError(EventbusError):
    """A consumer group's position cannot be moved while members of it are running."""


@dataclass
class DeadLetterGroup:
    """Dead letters that failed the same way."""

    error_class: str
    message: str
    processor: str
    count: int = 0
    origin_topics: set[str] = field(default_factory=set)
    first_failure: str = ""
    last_failure: str = ""


def summarize_dead_letters(log: Log, topic: str) -> list[DeadLetterGroup]:
    """The dead letters of ``topic`` grouped by error class, message and processor, most frequent first."""
    groups: dict[tuple[str, str, str], DeadLetterGroup] = {}
    for state in log.watermarks(topic):
        position = state.start_offset
        while position < state.end_offset:
            batch = log.read(topic, state.partition, position, REPLAY_BATCH)
            if not batch.offsets:
                break
            position = batch.next_offset
            for headers in batch.headers:
                failure = failure_of(headers)
                key = (failure.get("error.class", "?"), failure.get("error.message", ""), failure.get("processor", "?"))
                group = groups.get(key)
                if group is None:
                    group = groups[key] = DeadLetterGroup(*key)
                group.count += 1
                group.origin_topics.add(failure.get("origin.topic", "?"))
                first, last = failure.get("failure.first", ""), failure.get("failure.last", "")
                group.first_failure = min(group.first_failure or first, first)
                group.last_failure = max(group.last_failure, last)
    return sorted(groups.values(), key=lambda g: (-g.count, g.error_class, g.message))


@dataclass
class ReplayReport:
    replayed: int = 0
    filtered_out: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False


Progress = Callable[[int, int], None]


def replay_dead_letters(
    log: Log,
    topic: str,
    *,
    to: str | None = None,
    pattern: dict[str, Any] | str | None = None,
    dry_run: bool = False,
    from_beginning: bool = False,
    progress: Progress | None = None,
) -> ReplayReport:
    """Re-publish the dead letters of ``topic`` (those matching ``pattern``, if given) to where they came from,
    or to ``to``. ``progress(done, total)`` is called after each batch."""
    matcher = None
    if pattern is not None:
        from eventbus.routing import InvalidPatternError, compile_pattern

        try:
            matcher = compile_pattern(pattern)
        except InvalidPatternError as exc:
            raise ConfigurationError(f"--filter: invalid pattern: {exc}") from None
    group = f"{topic}.replay"
    committed = {} if from_beginning else log.committed(group, topic)
    states = log.watermarks(topic)
    starts = {s.partition: max(s.start_offset, committed.get(s.partition, 0)) for s in states}
    total = sum(s.end_offset - starts[s.partition] for s in states)
    report = ReplayReport(dry_run=dry_run)
    done = 0
    for state in states:
        position = starts[state.partition]
        while position < state.end_offset:
            batch = log.read(topic, state.partition, position, REPLAY_BATCH)
            if not batch.offsets:
                break
            outgoing: dict[str, list[Message]] = {}
            for record in batch.records():
                target = to or failure_of(record.headers).get("origin.topic")
                if not target:
                    raise ConfigurationError(
                        f"{topic}[{record.partition}]@{record.offset} has no eventbus.origin.topic header; "
                        "say where to send it with --to"
                    )
                if matcher is not None and not _matches(matcher, record.value, record.headers):
                    report.filtered_out += 1
                    continue
                replayed = (REPLAYED, f"{topic}/{record.partition}/{record.offset}".encode())
                outgoing.setdefault(target, []).append(
                    Message(record.value, record.key, (*(strip_failure_headers(record.headers) or ()), replayed))
                )
            if not dry_run:
                for target, messages in outgoing.items():
                    log.append(target, messages)
                log.commit(group, {TopicPartition(topic, state.partition): batch.next_offset})
            for target, messages in outgoing.items():
                report.by_topic[target] = report.by_topic.get(target, 0) + len(messages)
                report.replayed += len(messages)
            done += len(batch.offsets)
            position = batch.next_offset
            if progress is not None:
                progress(done, total)
    return report


def _matches(matcher: Any, value: bytes | None, headers: Any) -> bool:
    try:
        attrs = decode_record(value, strip_failure_headers(headers))
    except DecodeError:
        return False
    return bool(matcher.matches(attrs))


def reset_group(
    log: Log, group: str, topic: str, *, offset: int | None = None, time_ms: int | None = None
) -> dict[int, int]:
    """Move ``group``'s position on every partition of ``topic`` to ``offset`` (clamped to what each partition
    holds) or to the first record appended at or after ``time_ms``. Refused while the group has live members."""
    if (offset is None) == (time_ms is None):
        raise ConfigurationError("give either an offset or a time to move the group to")
    members = log.group_members(group)
    if members:
        raise GroupBusyError(
            f"group {group!r} has {len(members)} live worker(s) ({', '.join(members[:3])}); stop them first"
        )
    states = log.watermarks(topic)
    if offset is not None:
        positions = {s.partition: min(max(offset, s.start_offset), s.end_offset) for s in states}
    else:
        assert time_ms is not None
        positions = log.offsets_for_time(topic, time_ms)
    log.commit(group, {TopicPartition(topic, p): o for p, o in positions.items()})
    return positions
