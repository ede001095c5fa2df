"""Running processors over routed events, and deciding what happens when they fail.

For each processor and partition, events go straight from the polled batch to the function (the happy path).
When an invocation fails, the failed event and every later event of that partition for that processor wait in a
`Lane` (order holds); the failure is retried after a backoff, and after the last attempt the event is written to
the dead-letter topic with the error and its coordinates, in the first commit that moves past it. Other partitions
and other processors go on meanwhile. A lane also holds events for batch windows, open circuit breakers and
concurrent processors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from eventbus.app.policies import event_id
from eventbus.app.processor import Processor
from eventbus.backends.base import Message, TopicPartition
from eventbus.errors import ProcessorError
from eventbus.event import Event, InvalidEventError
from eventbus.observability import metrics
from eventbus.publisher import EventEncoder
from eventbus.runtime.breaker import Breaker
from eventbus.runtime.dead_letter import DECODER, GiveUp, dead_letter, replayed_from
from eventbus.runtime.dispatch import PoisonRecordError, RoutedBatch
from eventbus.runtime.idempotency import IdempotencyStore, InDoubt, KeyJournal
from eventbus.runtime.invoke import Failure, call_batch, call_each, call_each_async
from eventbus.runtime.key_hashing import KeyHashing
from eventbus.runtime.lane import Attempts, Item, Lane, event_of, format_traceback
from eventbus.runtime.outbox import Outbox, OutputError

logger = logging.getLogger("eventbus.worker")


class IdempotencyKeyError(Exception):
    """A processor's idempotency key function raised for an event (it is dead-lettered, not retried)."""


class InDoubtError(Exception):
    """An idempotent processor's worker died while processing this event: whether its side effects happened is
    unknown, so it is not run again automatically."""

    def __str__(self) -> str:
        return (
            f"{self.args[0]}: the worker stopped while processing this event, so its side effects may or may not "
            "have happened; it was not run again: once you have checked, replay it with `eventbus dlq replay`"
        )


LaneKey = tuple[int, TopicPartition]

# Failures that another attempt cannot change: the event's data does not fit the processor's type, or the
# processor returned something that is not an event. They are dead-lettered at once.
_NEVER_RETRIED = (InvalidEventError, OutputError, IdempotencyKeyError)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Executor:
    """Lanes, breakers and failure decisions for every processor of one worker."""

    def __init__(
        self,
        processors: Sequence[Processor],
        outbox: Outbox,
        encode: EventEncoder,
        source: str,
        idempotency: IdempotencyStore | None,
        rng: random.Random | None = None,
    ) -> None:
        self.processors = tuple(processors)
        self.outbox = outbox
        self._encode = encode
        self._source = source
        self._idempotency = idempotency
        self._rng = rng or random.Random()
        self.lanes: dict[LaneKey, Lane] = {}
        self.breakers: dict[int, Breaker] = {}
        shared: dict[str, Breaker] = {}
        for index, processor in enumerate(self.processors):
            if processor.breaker is not None:
                name = processor.breaker.name or processor.name
                breaker = shared.get(name)
                if breaker is None:
                    breaker = shared[name] = Breaker(name, processor.breaker)
                self.breakers[index] = breaker
        self._threads: dict[int, ThreadPoolExecutor] = {}
        self.processed: dict[int, int] = {}
        # Dead letters wait here, with their record's partition and offset, until a commit moves past that
        # record (`release_dead_letters`): written sooner, a crash before such a commit would read the record
        # again and dead-letter it a second time.
        self.held_dead_letters: list[tuple[TopicPartition, int, str, Message]] = []
        self.dead_letters_written = 0

    # -- entry points ---------------------------------------------------------------------------------------------

    async def deliver(self, routed: list[RoutedBatch], now: float) -> None:
        """Run every processor over the events routed to it (step 3 of the worker's round)."""
        for batch in routed:
            if batch.poison:
                self._dead_letter_poison(batch)
        for index, processor in enumerate(self.processors):
            pending = [(r, r.targets[index]) for r in routed if r.targets.get(index)]
            if not pending:
                continue
            if processor.is_async and len(pending) > 1:
                await self._deliver_partitions_at_once(index, processor, pending, now)
            else:
                for batch, positions in pending:
                    await self._deliver_one(index, processor, batch, positions, now)

    async def _deliver_partitions_at_once(
        self, index: int, processor: Processor, pending: list[tuple[RoutedBatch, list[int]]], now: float
    ) -> None:
        """An async processor's partitions, awaited together (one task per partition, not per event). Each gets
        its own outbox, merged in partition order, so a failure in one takes back only its own outputs."""
        direct = [
            (b, p)
            for b, p in pending
            if processor.idempotency is None and self._direct(index, processor, self._key(index, b))
        ]
        boxes = [self.outbox.sibling() for _ in direct]
        failures = await asyncio.gather(
            *(
                call_each_async(processor, b.topic, b.partition, b.offsets, b.events, p, box)
                for (b, p), box in zip(direct, boxes, strict=True)
            )
        )
        for (batch, positions), box, failure in zip(direct, boxes, failures, strict=True):
            for topic, message in box.since(0):
                self.outbox.add_message(topic, message)
            self._after_direct(index, batch, positions, failure, now)
        for batch, positions in pending:
            if not any(batch is b for b, _ in direct):
                await self._deliver_one(index, processor, batch, positions, now)

    async def run_due(self, now: float, *, drain: bool = False) -> None:
        """Run lanes whose retry time or batch window has come (or every lane that can run, when draining)."""
        for key in list(self.lanes):
            lane = self.lanes.get(key)
            if lane is not None and (drain or self._due(key[0], lane, now)):
                await self._run_lane(key, lane, now, drain=drain)

    def first_pending_offset(self, tp: TopicPartition) -> int | None:
        """The lowest offset of ``tp`` some processor has not finished: the commit must not pass it."""
        lowest = None
        for (_, lane_tp), lane in self.lanes.items():
            if lane_tp == tp and lane.items:
                offset = lane.head_offset()
                lowest = offset if lowest is None else min(lowest, offset)
        return lowest

    def backlog(self, tp: TopicPartition) -> int:
        return sum(len(lane) for (_, lane_tp), lane in self.lanes.items() if lane_tp == tp)

    def next_wakeup(self, now: float) -> float | None:
        """The earliest moment a lane becomes due (a retry, a batch window, a breaker probe)."""
        soonest: float | None = None
        for (index, _), lane in self.lanes.items():
            if not lane.items:
                continue
            processor = self.processors[index]
            moments = [lane.retry_at]
            if processor.batched and len(lane) < (lane.limit or processor.batch_size):
                moments.append(lane.opened_monotonic + processor.batch_window_ms / 1000)
            breaker = self.breakers.get(index)
            if breaker is not None and breaker.state == "open":
                moments.append(breaker.reopens_at())
            moment = max(moments)
            soonest = moment if soonest is None else min(soonest, moment)
        for breaker in self.breakers.values():
            # An open breaker with nothing waiting still has partitions paused, to resume when it may probe (once
            # that moment has passed they are resumed, and nothing is due until an event comes).
            moment = breaker.reopens_at()
            if breaker.state == "open" and moment > now:
                soonest = moment if soonest is None else min(soonest, moment)
        return soonest

    def blocked_topics(self, now: float) -> set[str]:
        """Topics read by a processor whose circuit breaker is open: their partitions should pause until it may
        probe. Then they are read again, so that an event can be the probe even when none was left waiting (the
        one that opened it was dead-lettered, say)."""
        return {
            topic
            for index, breaker in self.breakers.items()
            if breaker.state == "open" and now < breaker.reopens_at()
            for topic in self.processors[index].topics
        }

    def forget(self, lost: Iterable[TopicPartition]) -> None:
        """Drop lanes of partitions this worker no longer owns (their events are redelivered elsewhere)."""
        gone = set(lost)
        for key in [k for k in self.lanes if k[1] in gone]:
            del self.lanes[key]
        if self.held_dead_letters:
            self.held_dead_letters = [held for held in self.held_dead_letters if held[0] not in gone]

    def release_dead_letters(self, commit_positions: Mapping[TopicPartition, int]) -> int:
        """Move to the outbox the dead letters whose records the coming commit moves past (``commit_positions``:
        the position each partition is committed to); returns how many."""
        held = self.held_dead_letters
        if not held:
            return 0
        kept = []
        for entry in held:
            tp, offset, topic, message = entry
            if offset < commit_positions.get(tp, offset):
                self.outbox.add_message(topic, message)
            else:
                kept.append(entry)
        self.held_dead_letters = kept
        return len(held) - len(kept)

    def close(self) -> None:
        for pool in self._threads.values():
            pool.shutdown(wait=True)

    # -- delivering new events ----------------------------------------------------------------------------------

    @staticmethod
    def _key(index: int, batch: RoutedBatch) -> LaneKey:
        return (index, TopicPartition(batch.topic, batch.partition))

    def _direct(self, index: int, processor: Processor, key: LaneKey) -> bool:
        """Whether new events can go straight to the function: nothing waits before them, nothing to hold."""
        breaker = self.breakers.get(index)
        return (
            key not in self.lanes
            and not processor.batched
            and processor.concurrency == 1
            and (breaker is None or breaker.state == "closed")
        )

    async def _deliver_one(
        self, index: int, processor: Processor, batch: RoutedBatch, positions: list[int], now: float
    ) -> None:
        key = self._key(index, batch)
        if not self._direct(index, processor, key):
            lane = self.lanes.get(key)
            if lane is None:
                lane = self.lanes[key] = Lane(now)
            lane.extend(batch, positions)
            if self._due(index, lane, now):
                await self._run_lane(key, lane, now, drain=False)
            return
        # The happy path: straight from the polled batch, no lane.
        if processor.idempotency is not None:
            failure = await self._call_idempotent(processor, batch, positions)
        elif processor.is_async:
            failure = await call_each_async(
                processor, batch.topic, batch.partition, batch.offsets, batch.events, positions, self.outbox
            )
        else:
            failure = call_each(
                processor, batch.topic, batch.partition, batch.offsets, batch.events, positions, self.outbox
            )
        self._after_direct(index, batch, positions, failure, now)

    def _after_direct(
        self, index: int, batch: RoutedBatch, positions: list[int], failure: Failure | None, now: float
    ) -> None:
        done = len(positions) if failure is None else failure.index
        self.processed[index] = self.processed.get(index, 0) + done
        breaker = self.breakers.get(index)
        if failure is None:
            if breaker is not None:
                breaker.succeeded(now)
            return
        key = self._key(index, batch)
        lane = self.lanes[key] = Lane(now)
        lane.extend(batch, positions[failure.index :])
        self._failed(key, lane, 1, failure.error, now)

    # -- lanes --------------------------------------------------------------------------------------------------

    def _due(self, index: int, lane: Lane, now: float) -> bool:
        if not lane.items or lane.retry_at > now:
            return False
        processor = self.processors[index]
        breaker = self.breakers.get(index)
        if breaker is not None and breaker.state == "open" and now < breaker.reopens_at():
            return False
        if processor.batched and lane.attempts is None and lane.limit is None:
            full = len(lane) >= processor.batch_size
            return (
                full
                or processor.batch_window_ms == 0
                or now >= lane.opened_monotonic + processor.batch_window_ms / 1000
            )
        return True

    async def _run_lane(self, key: LaneKey, lane: Lane, now: float, *, drain: bool) -> None:
        index = key[0]
        processor = self.processors[index]
        if processor.batched:
            await self._run_batches(key, lane, now, drain=drain)
        elif processor.concurrency > 1:
            await self._run_concurrently(key, lane, now)
        else:
            await self._run_in_order(key, lane, now)
        if not lane.items:
            del self.lanes[key]

    def _breaker_allows(self, index: int, now: float) -> bool:
        breaker = self.breakers.get(index)
        return breaker is None or breaker.allows(now)

    async def _run_in_order(self, key: LaneKey, lane: Lane, now: float) -> None:
        index = key[0]
        processor = self.processors[index]
        while lane.items and lane.retry_at <= now and self._breaker_allows(index, now):
            # A run of consecutive items from one polled batch is passed in one call; a breaker that is closed
            # lets all of them through, a half-open one only the probe.
            breaker = self.breakers.get(index)
            limit = 1 if breaker is not None and breaker.state != "closed" else len(lane.items)
            batch = lane.items[0][0]
            positions = []
            for item_batch, position in lane.take(limit):
                if item_batch is not batch:
                    break
                positions.append(position)
            if processor.idempotency is not None:
                failure = await self._call_idempotent(processor, batch, positions)
            elif processor.is_async:
                failure = await call_each_async(
                    processor, batch.topic, batch.partition, batch.offsets, batch.events, positions, self.outbox
                )
            else:
                failure = call_each(
                    processor, batch.topic, batch.partition, batch.offsets, batch.events, positions, self.outbox
                )
            done = len(positions) if failure is None else failure.index
            self.processed[index] = self.processed.get(index, 0) + done
            if done:
                lane.drop(done)
                if breaker is not None:
                    breaker.succeeded(now)
            if failure is not None:
                self._failed(key, lane, 1, failure.error, now)

    async def _run_batches(self, key: LaneKey, lane: Lane, now: float, *, drain: bool) -> None:
        index, tp = key
        processor = self.processors[index]
        while lane.items and lane.retry_at <= now and self._breaker_allows(index, now):
            size = lane.limit or processor.batch_size
            if len(lane) < size and not drain and lane.attempts is None and lane.limit is None:
                window_ends = lane.opened_monotonic + processor.batch_window_ms / 1000
                if processor.batch_window_ms and now < window_ends:
                    return
            chunk = lane.take(size)
            failure = await call_batch(
                processor, tp.topic, tp.partition, lane.head_offset(), [event_of(i) for i in chunk], self.outbox
            )
            done = len(chunk) if failure is None else failure.index
            self.processed[index] = self.processed.get(index, 0) + done
            breaker = self.breakers.get(index)
            if done:
                lane.drop(done)
                _forget_attempts_before_head(lane)
                if breaker is not None:
                    breaker.succeeded(now)
            if failure is None:
                if lane.limit is not None and lane.items and lane.head_offset() >= lane.bisect_end:
                    lane.limit = None
                lane.opened_monotonic = now
                continue
            failed_count = len(chunk) - failure.index
            if processor.bisect_on_error and failure.index == 0 and failed_count > 1:
                # Split the failing batch instead of retrying it whole: halves that succeed are done, and the
                # event that fails every batch it is in ends up alone, with its own attempts. A half-open
                # breaker's probe failed all the same: it opens again, and a half is the next probe.
                if breaker is not None and breaker.state == "half_open":
                    breaker.failed(now)
                if lane.limit is None:
                    lane.bisect_end = chunk[-1][0].offsets[chunk[-1][1]] + 1
                lane.limit = math.ceil(failed_count / 2)
                continue
            only = None if failure.reported is None else {i - failure.index for i in failure.reported}
            self._count_batch_failure(lane, chunk, failure)
            self._failed(key, lane, failed_count, failure.error, now, only)
            if lane.attempts is not None:  # to be retried: the head's attempts are its own from now on
                lane.event_attempts[lane.head_offset()] = lane.attempts
            _forget_attempts_before_head(lane)

    @staticmethod
    def _count_batch_failure(lane: Lane, chunk: list[Item], failure: Failure) -> None:
        """Count a failed batch call against each event it failed (all of them when it raised, those its report
        named otherwise), so that an event keeps its attempts when a report moves the checkpoint past the ones
        before it. The first failed event's attempts become the lane's, which `_failed` counts this failure on;
        the others are counted here (their tracebacks are taken if they come to the head and fail there)."""
        failed = range(failure.index, len(chunk)) if failure.reported is None else sorted(failure.reported)
        offsets = [_offset_of(chunk[i]) for i in failed]
        lane.attempts = lane.event_attempts.pop(offsets[0], None)
        now_ms = _now_ms()
        for offset in offsets[1:]:
            attempts = lane.event_attempts.get(offset)
            if attempts is None:
                lane.event_attempts[offset] = Attempts(1, now_ms, now_ms, failure.error, "")
            else:
                attempts.count += 1
                attempts.last_failure_ms = now_ms
                attempts.error = failure.error

    async def _run_concurrently(self, key: LaneKey, lane: Lane, now: float) -> None:
        """Up to ``concurrency`` invocations at once; events of one key stay in order (``ordering="key"``).

        A failed event (and, with key ordering, the events of its key behind it) stays in the lane; the lane's
        attempts count the runs that had failures, and once they are spent every event that failed in the last
        run is dead-lettered with its own error."""
        index, tp = key
        processor = self.processors[index]
        if lane.retry_at > now or not self._breaker_allows(index, now):
            return
        groups: dict[object, list[Item]] = {}
        for n, item in enumerate(lane.items):
            attrs = event_of(item)
            group = (
                (attrs.get("partitionkey") or attrs.get("subject") or ("#", n)) if processor.ordering == "key" else n
            )
            groups.setdefault(group, []).append(item)
        runs = list(groups.values())
        breaker = self.breakers.get(index)
        if breaker is not None and breaker.state == "half_open":
            runs = [runs[0][:1]]  # the probe: one call, not a run of them, while the dependency may still be down
        outcomes = await self._run_groups(processor, tp, runs)
        finished: set[int] = set()
        failures: list[tuple[Item, BaseException]] = []
        for items, (done, error) in zip(runs, outcomes, strict=True):
            finished.update(id(item) for item in items[:done])
            if error is not None:
                failures.append((items[done], error))
        remaining = [item for item in lane.items if id(item) not in finished]
        self.processed[index] = self.processed.get(index, 0) + len(finished)
        # Keep what is left in offset order, so the lane's head is the lowest offset not done.
        lane.items = deque(sorted(remaining, key=_offset_of))
        if lane.event_attempts:
            waiting = {_offset_of(item) for item in remaining}
            lane.event_attempts = {o: a for o, a in lane.event_attempts.items() if o in waiting}
        if not failures:
            lane.attempts, lane.retry_at = None, 0.0
            if breaker is not None:
                breaker.succeeded(now)
            return
        self._failed_together(key, lane, failures, now)

    def _failed_together(
        self, key: LaneKey, lane: Lane, failures: list[tuple[Item, BaseException]], now: float
    ) -> None:
        """Events of one concurrent run failed: retry them after the backoff, or give up on each that cannot be
        retried any more."""
        index, tp = key
        processor = self.processors[index]
        now_ms = _now_ms()
        for _, error in failures:
            metrics.failed_attempt(processor.name, error)
        breaker = self.breakers.get(index)
        if breaker is not None:
            breaker.failed(time.monotonic())  # open for open_s from the failure, not from the start of the round
        if processor.on_failure == "stop":
            (batch, position), error = failures[0]
            raise ProcessorError(processor.name, tp.topic, tp.partition, batch.offsets[position], error)
        given_up = set()
        retried: list[Attempts] = []
        for item, error in failures:
            offset = _offset_of(item)
            attempts = lane.event_attempts.get(offset)
            if attempts is None:
                attempts = lane.event_attempts[offset] = Attempts.first(error, now_ms)
            else:
                attempts.failed_again(error, now_ms)
            reason = self._give_up_reason(processor, error, attempts.count, item, now_ms)
            if reason is None:
                retried.append(attempts)
                continue
            why = GiveUp(processor.name, error, attempts.traceback, attempts.count, attempts.first_failure_ms, now_ms)
            self._write_dead_letter(processor, item[0], item[1], why, reason)
            given_up.add(id(item))
            del lane.event_attempts[offset]
        if given_up:
            lane.items = deque(i for i in lane.items if id(i) not in given_up)
        if not retried:
            lane.attempts, lane.retry_at = None, 0.0
        else:
            # The backoff of the event furthest along: the others wait for it, as events of one key wait for
            # their head.
            lane.attempts = max(retried, key=lambda a: a.count)
            lane.retry_at = time.monotonic() + processor.retry.delay_s(lane.attempts.count, self._rng)
            metrics.retried(processor.name)

    @staticmethod
    def _give_up_reason(
        processor: Processor, error: BaseException, attempts: int, item: Item, now_ms: int
    ) -> str | None:
        """Why an event that failed ``attempts`` times is not tried again (None: it is)."""
        policy = processor.retry
        if isinstance(error, _NEVER_RETRIED) or not policy.retries(error):
            return "not retryable"
        if attempts >= policy.max_attempts:
            return "attempts exhausted"
        if policy.max_event_age_s is not None:
            batch, position = item
            if now_ms - batch.records.timestamps_ms[position] > policy.max_event_age_s * 1000:
                return "too old"
        return None

    async def _run_groups(
        self, processor: Processor, tp: TopicPartition, groups: list[list[Item]]
    ) -> list[tuple[int, BaseException | None]]:
        """Run each group's events in order, up to ``concurrency`` groups at once, each with its own outbox
        (merged in group order afterwards, so outputs keep a stable order)."""
        outboxes = [self.outbox.sibling() for _ in groups]

        def run_sync(n: int) -> tuple[int, BaseException | None]:
            items = groups[n]
            batch = items[0][0]
            failure = (
                call_each(
                    processor, tp.topic, tp.partition, batch.offsets, batch.events, [p for _, p in items], outboxes[n]
                )
                if all(b is batch for b, _ in items)
                else _call_items(processor, tp, items, outboxes[n])
            )
            return (len(items), None) if failure is None else (failure.index, failure.error)

        async def run_async(n: int) -> tuple[int, BaseException | None]:
            for done, (batch, position) in enumerate(groups[n]):
                failure = await call_each_async(
                    processor, tp.topic, tp.partition, batch.offsets, batch.events, [position], outboxes[n]
                )
                if failure is not None:
                    return done, failure.error
            return len(groups[n]), None

        results: list[tuple[int, BaseException | None]]
        if processor.is_async:
            limit = asyncio.Semaphore(processor.concurrency)

            async def bounded(n: int) -> tuple[int, BaseException | None]:
                async with limit:
                    return await run_async(n)

            results = list(await asyncio.gather(*(bounded(n) for n in range(len(groups)))))
        else:
            pool = self._threads.get(id(processor))
            if pool is None:
                pool = self._threads[id(processor)] = ThreadPoolExecutor(
                    processor.concurrency, thread_name_prefix=f"eventbus-{processor.name}"
                )
            loop = asyncio.get_running_loop()
            results = list(await asyncio.gather(*(loop.run_in_executor(pool, run_sync, n) for n in range(len(groups)))))
        for box in outboxes:
            for topic, message in box.since(0):
                self.outbox.add_message(topic, message)
        return results

    # -- idempotency --------------------------------------------------------------------------------------------

    async def _call_idempotent(self, processor: Processor, batch: RoutedBatch, positions: list[int]) -> Failure | None:
        """Each event once: skip events whose key was recorded (emitting again only what a run cut short before its
        commit had emitted); record each new key as soon as its invocation succeeds. An event whose earlier
        invocation was cut short by a crash is dead-lettered as in doubt instead of being run again.

        Consecutive new events run in one `call_each`, which journals each invocation as it starts and ends."""
        store = self._idempotency
        policy = processor.idempotency
        assert store is not None
        assert policy is not None
        events = batch.events
        name = processor.name
        hashes, digests, failure_at, positions = self._key_hashes(store.keys, policy.key, name, events, positions)
        seen = store.seen(hashes, policy.ttl_s)
        journal = store.journal(self.outbox)
        if not seen and len(set(hashes)) == len(hashes):
            # The common case: every event new, none twice in the batch.
            failure = await self._run_new(processor, batch, positions, (hashes, digests), 0, len(hashes), journal)
            return failure if failure is not None else failure_at
        run_from = 0  # where the run of new events waiting to be invoked starts, among positions
        running: set[int] = set()
        for n, h in enumerate(hashes):
            outputs = seen.get(h)
            if isinstance(outputs, InDoubt) and replayed_from(batch.records.headers[positions[n]]) is not None:
                outputs = None  # a person checked it and replayed it from the dead-letter topic: run it
            if outputs is None and h not in running:
                running.add(h)
                continue
            failure = await self._run_new(processor, batch, positions, (hashes, digests), run_from, n, journal)
            if failure is not None:
                return failure
            run_from = n + 1
            for done in running:
                seen[done] = []  # handled now: a later copy in this batch is a duplicate
            running.clear()
            if outputs is None:
                # The same key twice in one run: its first invocation just succeeded; this one is a duplicate.
                metrics.duplicate_skipped(name)
            elif isinstance(outputs, InDoubt):
                now_ms = _now_ms()
                doubt = InDoubtError(f"event {events[positions[n]]['id']!r}")  # type: ignore[index]
                why = GiveUp(name, doubt, "", 1, now_ms, now_ms)
                self._write_dead_letter(processor, batch, positions[n], why, "in doubt")
            else:
                for topic, message in outputs:
                    self.outbox.add_message(topic, message)
                store.reemitted(h)
                seen[h] = []  # emitted now: a later copy in this batch is a duplicate
                metrics.duplicate_skipped(name)
        failure = await self._run_new(processor, batch, positions, (hashes, digests), run_from, len(hashes), journal)
        return failure if failure is not None else failure_at

    @staticmethod
    def _key_hashes(
        keys: KeyHashing,
        key_of: Callable[[Event], str],
        name: str,
        events: Sequence[dict[str, Any] | None],
        positions: list[int],
    ) -> tuple[list[int], list[bytes], Failure | None, list[int]]:
        """The key hashes of the events at ``positions``, the store's way (``keys``), and their digests: (hashes,
        digests, failure, positions).
        Where a key function raises, the events before that one run and it fails like a call: the failure, and the
        positions before it."""
        if key_of is event_id:
            # The default key, for the whole batch in one loop; an event whose key cannot be hashed (an id no
            # decoder lets through) is found and failed alone below.
            with contextlib.suppress(Exception):
                # Routed positions hold decoded events, never None.
                keyed = keys.default_key_digests(name, [events[p] for p in positions])  # type: ignore[misc]
                return keyed[0], keyed[1], None, positions
        digest_key = keys.digester(name)
        from_bytes = int.from_bytes
        hashes: list[int] = []
        digests: list[bytes] = []
        for n, position in enumerate(positions):
            attrs = events[position]
            assert attrs is not None
            try:
                digest = digest_key(key_of(Event.wrap(attrs)))
            except Exception as exc:
                error = IdempotencyKeyError(f"the idempotency key function raised {type(exc).__name__}: {exc}")
                error.__cause__ = exc
                return hashes, digests, Failure(n, error), positions[:n]
            digests.append(digest)
            hashes.append(from_bytes(digest, "little"))
        return hashes, digests, None, positions

    async def _run_new(
        self,
        processor: Processor,
        batch: RoutedBatch,
        positions: list[int],
        keys: tuple[list[int], list[bytes]],
        start: int,
        stop: int,
        journal: KeyJournal,
    ) -> Failure | None:
        """Invoke the idempotent processor on ``positions[start:stop]``, none of them seen before (``keys``: their
        key hashes and digests)."""
        if start == stop:
            return None
        journal.hashes = keys[0][start:stop]
        journal.digests = keys[1][start:stop]
        run = positions[start:stop]
        if processor.is_async:
            failure = await call_each_async(
                processor, batch.topic, batch.partition, batch.offsets, batch.events, run, self.outbox, journal
            )
        else:
            failure = journal.call_each(processor, batch.topic, batch.partition, batch.offsets, batch.events, run)
        return None if failure is None else Failure(start + failure.index, failure.error)

    # -- failures -----------------------------------------------------------------------------------------------

    def _failed(
        self, key: LaneKey, lane: Lane, count: int, error: BaseException, now: float, only: set[int] | None = None
    ) -> None:
        """The ``count`` events at the head of ``lane`` failed together: retry them later, or give up on them.
        ``only`` (positions among the ``count``) names the ones that really failed — a batch item failure report —
        the others succeeded every time and are done without a dead letter."""
        index, tp = key
        processor = self.processors[index]
        now_ms = _now_ms()
        metrics.failed_attempt(processor.name, error)
        breaker = self.breakers.get(index)
        if breaker is not None:
            breaker.failed(time.monotonic())  # open for open_s from the failure, not from the start of the round
        if lane.attempts is None:
            lane.attempts = Attempts.first(error, now_ms)
        else:
            lane.attempts.failed_again(error, now_ms)
        head_batch, head_position = lane.items[0]
        if processor.on_failure == "stop":
            raise ProcessorError(processor.name, tp.topic, tp.partition, head_batch.offsets[head_position], error)
        policy = processor.retry
        reason = self._give_up_reason(processor, error, lane.attempts.count, lane.items[0], now_ms)
        if reason is None:
            delay_s = policy.delay_s(lane.attempts.count, self._rng)
            lane.retry_at = time.monotonic() + delay_s  # from the failure, not the start of the round
            metrics.retried(processor.name)
            return
        attempts = lane.attempts
        why = GiveUp(
            processor.name,
            error,
            attempts.traceback,
            attempts.count,
            attempts.first_failure_ms,
            attempts.last_failure_ms,
        )
        succeeded = 0
        for n, (batch, position) in enumerate(lane.take(count)):
            if only is None or n in only:
                self._write_dead_letter(processor, batch, position, why, reason)
            else:
                succeeded += 1  # after the checkpoint, and not named by the report: done
        if succeeded:
            self.processed[index] = self.processed.get(index, 0) + succeeded
        lane.drop(count)
        if lane.limit is not None and (not lane.items or lane.head_offset() >= lane.bisect_end):
            lane.limit = None

    def _write_dead_letter(
        self, processor: Processor | None, batch: RoutedBatch, position: int, why: GiveUp, reason: str
    ) -> None:
        topic = processor.dead_letter_topic_for(batch.topic) if processor else self._poison_topic(batch.topic)
        tp = TopicPartition(batch.topic, batch.partition)
        letter = dead_letter(batch.records, position, why, self.outbox.oversized)
        self.held_dead_letters.append((tp, batch.offsets[position], topic, letter))
        self.dead_letters_written += 1
        metrics.dead_lettered(why.processor, batch.topic, reason)
        if self.dead_letters_written <= 10 or self.dead_letters_written % 1000 == 0:
            # Logged per dead letter only until the pattern is clear; the metric counts every one.
            logger.warning(
                "dead-lettered %s[%d]@%d to %s (%s: %s after %d attempt(s), %s)",
                batch.topic,
                batch.partition,
                batch.offsets[position],
                topic,
                type(why.error).__name__,
                why.error,
                why.attempts,
                reason,
            )

    def _poison_topic(self, topic: str) -> str:
        """Where undecodable records of ``topic`` go: its processors' dead-letter topic if they agree on one."""
        topics = {p.dead_letter_topic_for(topic) for p in self.processors if topic in p.topics}
        return topics.pop() if len(topics) == 1 else f"{topic}.dlq"

    def _dead_letter_poison(self, batch: RoutedBatch) -> None:
        readers = [p for p in self.processors if batch.topic in p.topics]
        if readers and all(p.on_failure == "stop" for p in readers):
            position, error = batch.poison[0]
            raise PoisonRecordError(batch.topic, batch.partition, batch.offsets[position], error)
        now_ms = _now_ms()
        for position, error in batch.poison:
            why = GiveUp(DECODER, error, format_traceback(error), 1, now_ms, now_ms)
            self._write_dead_letter(None, batch, position, why, "undecodable")


def _offset_of(item: Item) -> int:
    batch, position = item
    return batch.offsets[position]


def _forget_attempts_before_head(lane: Lane) -> None:
    """Drop the per-event attempts of events no longer in ``lane`` (done or given up)."""
    if lane.event_attempts:
        head = lane.head_offset() if lane.items else None
        lane.event_attempts = {o: a for o, a in lane.event_attempts.items() if head is not None and o >= head}


def _call_items(processor: Processor, tp: TopicPartition, items: list[Item], outbox: Outbox) -> Failure | None:
    for done, (batch, position) in enumerate(items):
        failure = call_each(processor, tp.topic, tp.partition, batch.offsets, batch.events, [position], outbox)
        if failure is not None:
            return Failure(done, failure.error)
    return None
