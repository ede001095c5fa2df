"""Looking into dead-letter topics, sending their events back, and moving a group's position.

Replaying a dead-letter topic re-publishes each record exactly as it was first published (same key, value and
event id), without the failure headers, to the topic it came from (or another). A replay remembers how far it got
in a consumer group of its own (``<dead-letter topic>.replay``), so running it again sends only what was
dead-lettered since; ``from_beginning`` sends everything again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from eventbus.backends.base import Log, Message, Record, RecordBatch, TopicPartition
from eventbus.codecs import decode_record
from eventbus.errors import ConfigurationError, DecodeError, EventbusError, PositionMovedError, TopicNotFoundError
from eventbus.runtime.dead_letter import (
    DECODER,
    PREFIX,
    REPLAY_TARGET,
    REPLAYED,
    failure_of,
    strip_failure_headers,
)

REPLAY_BATCH = 500


class GroupBusyError(EventbusError):
    """A consumer group's position cannot be moved while members of it are running."""


@dataclass
class DeadLetterGroup:
    """Dead letters that failed the same way: one error class, in one processor, with one message once the
    values that vary from event to event (numbers, ids) are left out of it."""

    error_class: str
    message: str  # the message with its varying parts as <n>, <id>, <hex>
    processor: str
    count: int = 0
    examples: list[str] = field(default_factory=list)  # a few of the messages as they were
    origin_topics: set[str] = field(default_factory=set)
    first_failure: str = ""
    last_failure: str = ""
    # Those no replay has sent back yet (a replay without --from-beginning sends these): an SQS user's "in the
    # DLQ", as opposed to every dead letter the topic ever took.
    waiting: int = 0


_EXAMPLES = 3
# What varies between messages of one failure, most specific first: UUIDs, long hex strings, numbers.
_VARYING = (
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<id>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*[0-9])[0-9a-fA-F]{12,}\b"), "<hex>"),
    (re.compile(r"-?\d+(?:\.\d+)?"), "<n>"),
)


def message_template(message: str) -> str:
    """``message`` with the parts that differ from event to event replaced, so that its failures group."""
    for pattern, placeholder in _VARYING:
        message = pattern.sub(placeholder, message)
    return message


def summarize_dead_letters(log: Log, topic: str) -> list[DeadLetterGroup]:
    """The dead letters of ``topic`` grouped by error class, processor and message template, most frequent
    first. Records without eventbus's failure headers (not dead letters) are left out; `count_dead_letters`
    says how many there were."""
    return count_dead_letters(log, topic)[0]


def count_dead_letters(log: Log, topic: str) -> tuple[list[DeadLetterGroup], int]:
    """`summarize_dead_letters`, and the number of records of ``topic`` that are not dead letters (no failure
    headers: ``topic`` is then most likely not a dead-letter topic at all)."""
    groups: dict[tuple[str, str, str], DeadLetterGroup] = {}
    others = 0
    states = log.watermarks(topic)
    replayed_up_to = log.committed(f"{topic}.replay", topic)
    starts = {s.partition: max(s.start_offset, replayed_up_to.get(s.partition, 0)) for s in states}
    sent_past_it = _noted(log, ledger_topic(topic), starts)
    for state in states:
        position = state.start_offset
        start, noted = starts[state.partition], sent_past_it.get(state.partition, set())
        while position < state.end_offset:
            batch = log.read(topic, state.partition, position, REPLAY_BATCH)
            if not batch.offsets:
                break
            position = batch.next_offset
            for offset, headers in zip(batch.offsets, batch.headers, strict=True):
                failure = failure_of(headers)
                if "error.class" not in failure:  # every dead letter has one; a replayed record has others
                    others += 1
                    continue
                message = failure.get("error.message", "")
                key = (failure.get("error.class", "?"), message_template(message), failure.get("processor", "?"))
                group = groups.get(key)
                if group is None:
                    group = groups[key] = DeadLetterGroup(*key)
                group.count += 1
                if offset >= start and offset not in noted:
                    group.waiting += 1
                if len(group.examples) < _EXAMPLES and message not in group.examples:
                    group.examples.append(message)
                group.origin_topics.add(failure.get("origin.topic", "?"))
                first, last = failure.get("failure.first", ""), failure.get("failure.last", "")
                group.first_failure = min(group.first_failure or first, first)
                group.last_failure = max(group.last_failure, last)
    return sorted(groups.values(), key=lambda g: (-g.count, g.error_class, g.message)), others


@dataclass
class ReplayReport:
    replayed: int = 0
    filtered_out: int = 0
    # Dead letters an earlier filtered replay had already sent, not sent again.
    already_replayed: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False


Progress = Callable[[int, int], None]


def ledger_topic(topic: str) -> str:
    """Where replays of the dead-letter topic ``topic`` note the dead letters they sent past one they left out."""
    return f"{topic}.replayed"


def replay_dead_letters(
    log: Log,
    topic: str,
    *,
    to: str | None = None,
    pattern: dict[str, Any] | str | None = None,
    dry_run: bool = False,
    from_beginning: bool = False,
    all_processors: bool = False,
    progress: Progress | None = None,
) -> ReplayReport:
    """Re-publish the dead letters of ``topic`` (those matching ``pattern``, if given) to where they came from,
    or to ``to``. ``progress(done, total)`` is called after each batch.

    Sent back to where it came from, a dead letter is for the processor (or projection) that gave up on it alone
    (its first header, `REPLAY_TARGET`, names it): the others of its topic handled the original. With
    ``all_processors``, or sent elsewhere with ``to``, it is for every processor and projection that reads it.

    The replay position (group ``<topic>.replay``) only moves over dead letters that were sent: one that a filter
    leaves out stays to be replayed later, and what is sent past it is noted in ``<topic>.replayed`` so that a
    later replay does not send it again. Each batch's sends, notes and position go in one step that is refused
    (`PositionMovedError`, nothing of it sent) if the position moved since the replay read it: two replays of one
    topic at once cannot both send the same dead letters. On the embedded logs that step is one transaction, so a
    replay killed at any point sends nothing twice."""
    if to is not None:
        from eventbus.backends.base import check_topic_name

        try:
            check_topic_name(to)
        except ValueError as exc:
            raise ConfigurationError(f"--to: {exc}") from None
        if to in (topic, ledger_topic(topic)):
            # Copies without failure headers would pile up among the dead letters (or the replay's notes),
            # and each later replay would send them on again.
            raise ConfigurationError(f"--to {to}: that is the dead-letter topic being replayed (or its notes)")
    matcher = None
    if pattern is not None:
        from eventbus.routing import InvalidPatternError, compile_pattern

        try:
            matcher = compile_pattern(pattern)
        except InvalidPatternError as exc:
            raise ConfigurationError(f"--filter: invalid pattern: {exc}") from None
    if to is not None and not log.auto_create:
        log.topic(to)
    replay = _Replay(log, topic, to, matcher, dry_run, targeted=to is None and not all_processors)
    committed = log.committed(replay.group, topic)
    states = log.watermarks(topic)
    starts = {
        s.partition: s.start_offset if from_beginning else max(s.start_offset, committed.get(s.partition, 0))
        for s in states
    }
    sent_before = {} if from_beginning else _noted(log, replay.ledger, starts)
    total = sum(s.end_offset - starts[s.partition] for s in states)
    done = 0
    for state in states:
        tp = TopicPartition(topic, state.partition)
        held = committed.get(state.partition)
        noted = sent_before.get(state.partition, set())
        position = starts[state.partition]
        # Where the replay position can move: past every dead letter up to the first one this run leaves out.
        frontier: int | None = None
        while position < state.end_offset:
            batch = log.read(topic, state.partition, position, REPLAY_BATCH)
            if not batch.offsets:
                break
            outgoing, frontier = replay.sort_out(batch, noted, frontier)
            # Never backwards: a replay from the beginning leaves a position that is further on where it was.
            reached = batch.next_offset if frontier is None else frontier
            if held is not None and reached <= held:
                replay.send(outgoing, {}, {tp: held})
            else:
                replay.send(outgoing, {tp: reached}, {tp: held})
                held = reached
            done += len(batch.offsets)
            position = batch.next_offset
            if progress is not None:
                progress(done, total)
    return replay.report


class _Replay:
    """One replay of a dead-letter topic: what it sends where, and what it has sent."""

    def __init__(self, log: Log, topic: str, to: str | None, matcher: Any, dry_run: bool, targeted: bool) -> None:
        self.log, self.topic, self.to, self.matcher = log, topic, to, matcher
        self.targeted = targeted
        self.group = f"{topic}.replay"
        self.ledger = ledger_topic(topic)
        self.report = ReplayReport(dry_run=dry_run)
        self._known_targets: set[str] = set() if to is None else {to}
        self._avro: Any = None
        if matcher is not None:
            from eventbus.codecs.avro import reading_decoder

            self._avro = reading_decoder(log)

    def sort_out(
        self, batch: RecordBatch, noted: set[int], frontier: int | None
    ) -> tuple[dict[str, list[Message]], int | None]:
        """The messages to send for ``batch``, by target (the ledger's note included), and the offset of the
        first dead letter this replay has left out so far (None: none yet)."""
        outgoing: dict[str, list[Message]] = {}
        sent_past_frontier: list[int] = []
        report = self.report
        for letter in batch.records():
            if letter.offset in noted:
                report.already_replayed += 1
                continue
            # A dead letter whose value was too large to keep stands for its origin record: replay that one.
            omitted = letter.value is None and "value.omitted" in failure_of(letter.headers)
            record = self._origin_of(letter) if omitted else letter
            target = self.to or failure_of(record.headers).get("origin.topic")
            if not target:
                raise ConfigurationError(
                    f"{self.topic}[{record.partition}]@{record.offset} has no eventbus.origin.topic header; "
                    "say where to send it with --to"
                )
            if self.matcher is not None and not _matches(self.matcher, record.value, record.headers, self._avro):
                report.filtered_out += 1
                if frontier is None:
                    frontier = record.offset
                continue
            if target not in self._known_targets and not self.log.auto_create:
                _check_target(self.log, target, self.topic, record.partition, record.offset)
                self._known_targets.add(target)
            if frontier is not None:
                sent_past_frontier.append(record.offset)
            replayed = (REPLAYED, f"{self.topic}/{record.partition}/{record.offset}".encode())
            headers = (*(strip_failure_headers(record.headers) or ()), replayed)
            if self.targeted:
                processor = failure_of(record.headers).get("processor")
                if processor and processor != DECODER:
                    headers = ((REPLAY_TARGET, processor.encode()), *headers)
            message = Message(record.value, record.key, headers)
            too_large = self.log.oversized(message)
            if too_large is not None:
                raise ConfigurationError(
                    f"{self.topic}[{record.partition}]@{record.offset}: the event to replay is {too_large}; "
                    "nothing of this batch was sent"
                )
            outgoing.setdefault(target, []).append(message)
        for target, messages in outgoing.items():
            report.by_topic[target] = report.by_topic.get(target, 0) + len(messages)
            report.replayed += len(messages)
        if sent_past_frontier:
            note = orjson.dumps({"partition": batch.partition, "offsets": sent_past_frontier})
            outgoing[self.ledger] = [Message(note)]
        return outgoing, frontier

    def _origin_of(self, letter: Record) -> Record:
        """A dead letter whose value was too large to keep, with the value, key and headers of the record it
        stands for, read from where it came from (its failure headers kept: they say where it goes)."""
        failure = failure_of(letter.headers)
        where = f"{self.topic}[{letter.partition}]@{letter.offset}"
        try:
            origin, partition, offset = (
                failure["origin.topic"],
                int(failure["origin.partition"]),
                int(failure["origin.offset"]),
            )
        except (KeyError, ValueError):
            raise ConfigurationError(f"{where}: its value was left out and it does not say where from") from None
        try:
            found = [r for r in self.log.read(origin, partition, offset, 1).records() if r.offset == offset]
        except TopicNotFoundError:
            found = []
        if not found:
            raise ConfigurationError(
                f"{where}: its value ({failure['value.omitted']}) was too large to keep in the dead letter, and "
                f"{origin}[{partition}]@{offset} is no longer held, so it cannot be replayed; replay the others "
                "with a --filter it does not match"
            )
        source = found[0]
        failures = tuple((k, v) for k, v in letter.headers or () if k.startswith(PREFIX))
        headers = (*(strip_failure_headers(source.headers) or ()), *failures)
        return letter._replace(value=source.value, key=source.key, headers=headers)

    def send(
        self,
        outgoing: dict[str, list[Message]],
        offsets: dict[TopicPartition, int],
        expected: dict[TopicPartition, int | None],
    ) -> None:
        if self.report.dry_run:
            return
        if self.ledger in outgoing and self.ledger not in self._known_targets:
            self.log.ensure_topic(self.ledger, 1)
            self._known_targets.add(self.ledger)
        try:
            self.log.append_and_commit(outgoing, self.group, offsets, expected)
        except PositionMovedError as exc:
            raise PositionMovedError(
                f"replaying {self.topic}: {exc} (another replay of it running?); nothing of this batch was sent, "
                "run the replay again to go on from where it is now"
            ) from None


def _noted(log: Log, ledger: str, starts: dict[int, int]) -> dict[int, set[int]]:
    """Per partition of the dead-letter topic, the offsets (from ``starts`` on) that earlier replays noted as
    sent in ``ledger``."""
    noted: dict[int, set[int]] = {}
    try:
        states = log.watermarks(ledger)
    except TopicNotFoundError:
        return noted
    for state in states:
        position = state.start_offset
        while position < state.end_offset:
            batch = log.read(ledger, state.partition, position, REPLAY_BATCH)
            if not batch.offsets:
                break
            position = batch.next_offset
            for value in batch.values:
                try:
                    note = orjson.loads(value or b"")
                    partition, offsets = note["partition"], note["offsets"]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue  # not a note of ours: nothing to skip for it
                start = starts.get(partition)
                if start is not None:
                    noted.setdefault(partition, set()).update(o for o in offsets if o >= start)
    return noted


def _check_target(log: Log, target: str, topic: str, partition: int, offset: int) -> None:
    try:
        log.topic(target)
    except TopicNotFoundError:
        raise ConfigurationError(
            f"{topic}[{partition}]@{offset} came from topic {target!r}, which does not exist any more; "
            f"create it, or send the dead letters elsewhere with --to"
        ) from None


def _matches(matcher: Any, value: bytes | None, headers: Any, avro: Any) -> bool:
    try:
        attrs = decode_record(value, strip_failure_headers(headers), avro)
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
