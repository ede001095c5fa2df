"""The worker: poll → decode → route → invoke → emit → checkpoint, in rounds, until stopped.

One round, in this order (the numbers appear again in the code):

1. Poll a batch of records from the partitions this member owns (except paused ones).
2. Decode each record once and route it to the processors whose filters it matches (fan-out). A record that
   cannot be decoded is dead-lettered.
3. Invoke: per processor, per partition, in offset order. Events a processor cannot take now — a failed event
   waiting for its retry and the events behind it, events in a batch window or behind an open circuit breaker —
   wait in lanes (see `execution`); lanes that are due run too.
4. Emit: append everything the processors returned or published, and the dead letters, and wait until the log
   has them durably.
5. Checkpoint: commit, per partition, the offset of the first event some processor has not finished, else the
   position after the batch. The commit never passes an event that was neither processed nor dead-lettered.

Steps 4 and 5 are one call to the consumer: drivers that can (SQLite, memory) make them one transaction. With a
commit interval (``commit_interval_ms``; 100 ms on a broker), the rounds processed within it are emitted and
committed together, in one such call, once it has passed or when a poll returns nothing.

On a broker, log calls run on two threads, so this one only runs processors: a *reader* polls (the next round is
read while this round is processed) and a *writer* emits and commits (round N is written while round N+1 is
processed). At most one commit is in flight and commits happen in round order. When the group takes partitions
away, the revoke listener, called from inside a poll, first waits for the commit in flight, so finished work is
committed before the partitions move. On the embedded logs, whose calls are local and short (`Log.local_calls`),
this thread polls and commits itself, and only a poll that waits for new records goes to the reader: there the
threads would cost more than they overlap, since every one of them needs the GIL for its share of the work.

Backpressure: a partition with more than ``max_pending_per_partition`` events waiting in lanes, or read by a
processor whose circuit breaker is open, is paused: no more of it is fetched until it drains.

SIGINT/SIGTERM stop polling, flush open batch windows, emit, commit, leave the group and return.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from eventbus.app import App
from eventbus.backends.base import Consumer, ConsumerSettings, Log, RecordBatch, TopicPartition
from eventbus.errors import ConfigurationError, PartitionRevokedError, TopicNotFoundError
from eventbus.observability import metrics
from eventbus.publisher import encoder_for
from eventbus.runtime.dispatch import Dispatcher
from eventbus.runtime.execution import Executor
from eventbus.runtime.gc_policy import collector_for_rounds
from eventbus.runtime.idempotency import IdempotencyStore, Round
from eventbus.runtime.outbox import Outbox

logger = logging.getLogger("eventbus.worker")

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How one worker runs. ``group`` defaults to the app's name.

    ``idempotency_store`` is the directory where idempotent processors keep their keys (by default beside a
    SQLite log, ``events.idempotency/`` for ``events.db``; in memory for the memory log). ``retry_seed`` fixes
    the jitter of retry delays (tests).

    ``commit_interval_ms`` (Kafka Streams' ``commit.interval.ms``): while records keep coming, the outputs and
    offsets of the rounds processed within it are written and committed together, so the round trips of one flush
    and one offset commit are shared by many rounds. A round that polls nothing and a stop commit at once; the
    held rounds' events of a partition taken away by a rebalance are processed again by its new owner (at least
    once). ``None``: every round on the embedded logs (a local transaction), `BROKER_COMMIT_INTERVAL_MS` on a
    broker; 0: every round. Exactly-once mode always commits every round.

    ``gc_young_threshold``: while the worker runs, the garbage collector's young generation is collected after this
    many allocations rather than 700, and the heap built before the run is frozen (see
    :mod:`eventbus.runtime.gc_policy`); ``None`` leaves the collector as it is.
    """

    group: str | None = None
    max_poll_records: int = 2000
    commit_interval_ms: float | None = None
    idle_poll_s: float = 0.2
    until_idle: bool = False
    max_pending_per_partition: int = 10_000
    idempotency_store: str | None = None
    retry_seed: int | None = None
    consumer: ConsumerSettings = field(default_factory=ConsumerSettings)
    gc_young_threshold: int | None = 50_000


# On a broker, commits every 100 ms (Kafka Streams' interval in exactly-once mode): at most that much work is
# repeated after a crash, and a flush and an offset commit are paid every few rounds rather than every round.
BROKER_COMMIT_INTERVAL_MS = 100.0
# How long a revoke listener waits for the round being processed to be handed to the writer (normally
# milliseconds); past it, that round's commit is refused and the worker starts over from the committed offsets.
_HANDOVER_WAIT_S = 10.0
# Outputs held for a later commit are handed over earlier when there are this many.
_MAX_HELD_OUTPUTS = 50_000


@dataclass(slots=True)
class WorkerStats:
    events_in: int = 0
    events_out: int = 0
    dead_lettered: int = 0
    rounds: int = 0
    started_monotonic: float = field(default_factory=time.monotonic)
    first_commit_monotonic: float | None = None
    # Seconds from the start of a poll that returned records to the end of its checkpoint (the latest 10,000).
    round_latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


def ensure_declared_topics(app: App, log: Log) -> None:
    """Create the topics ``app`` declares, with their partition counts; an existing one must have its count."""
    for spec in app.topics.values():
        info = log.ensure_topic(spec.name, spec.partitions)
        if info.partitions != spec.partitions:
            raise ConfigurationError(
                f"app {app.name!r} declares topic {spec.name!r} with {spec.partitions} partitions but it "
                f"exists with {info.partitions}; a topic's partition count cannot change"
            )


class Worker:
    def __init__(self, app: App, log: Log, settings: WorkerSettings | None = None) -> None:
        if not app.processors:
            raise ConfigurationError(f"app {app.name!r} declares no processors; nothing to run")
        self.app = app
        self.log = log
        self.settings = settings or WorkerSettings()
        self.group = self.settings.group or app.name
        self.stats = WorkerStats()
        from eventbus.codecs.avro import LazyAvroDecoder

        # Avro records are decoded with the app's schemas as readers; fastavro loads at the first one.
        self._dispatcher = Dispatcher(app.processors, LazyAvroDecoder(app.schema_settings, log, lambda: app.schema_set))
        encode = encoder_for(log, app)
        self._outbox = Outbox(app.source, encode, log)
        self._idempotency = self._open_idempotency_store()
        rng = random.Random(self.settings.retry_seed) if self.settings.retry_seed is not None else None
        self._executor = Executor(app.processors, self._outbox, encode, app.source, self._idempotency, rng)
        self._positions: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._revoked: list[frozenset[TopicPartition]] = []
        # How many times a refused commit made the worker start over: a read-ahead from before one is dropped.
        self._start_overs = 0
        # Per partition held, the offset of the first record polled from it: where a start-over goes back to when
        # the group has no committed offset for it (the reset policy chose that start). Reader-thread state.
        self._first_polled: dict[TopicPartition, int] = {}
        self._stopping = False
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eventbus-reader")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eventbus-writer")
        self._consumer: Consumer | None = None
        self._in_flight: tuple[Future[None], dict[TopicPartition, int], int, int, Round | None] | None = None
        # Clear while a round is processed but not yet handed to the writer, with the next poll already under way.
        self._handed_over = threading.Event()
        self._handed_over.set()
        self._commit_interval_s = self._choose_commit_interval_s()
        # Polls that find records and commits run on this thread (see Log.local_calls): there is then no reading
        # ahead, and a commit is complete when it is handed over.
        self._local_calls = log.local_calls
        self._next_handover = 0.0

    def _choose_commit_interval_s(self) -> float:
        settings = self.settings
        if settings.consumer.processing_guarantee == "exactly_once":
            return 0.0
        interval_ms = settings.commit_interval_ms
        if interval_ms is None:
            from eventbus.backends.group import EmbeddedLog

            interval_ms = 0.0 if isinstance(self.log, EmbeddedLog) else BROKER_COMMIT_INTERVAL_MS
        if interval_ms < 0:
            raise ConfigurationError(f"commit_interval_ms must be 0 or more, got {interval_ms:g}")
        return interval_ms / 1000

    def _open_idempotency_store(self) -> IdempotencyStore | None:
        policies = [p.idempotency for p in self.app.processors if p.idempotency is not None]
        if not policies:
            return None
        from eventbus.runtime.idempotency import FileIdempotencyStore, memory_store_for

        directory = self.settings.idempotency_store
        if directory is None:
            from eventbus.backends.memory import MemoryLog
            from eventbus.backends.sqlite import SQLiteLog

            if isinstance(self.log, MemoryLog):
                return memory_store_for(self.log)
            directory = (
                str(self.log.path.with_suffix(".idempotency"))
                if isinstance(self.log, SQLiteLog)
                else "eventbus.idempotency"
            )
        return FileIdempotencyStore(directory, retention_s=max(p.ttl_s for p in policies), landed=self._landed)

    def _landed(self, group: str, moves: list[tuple[str, int, int, int]]) -> bool:
        """Whether a commit of ``group`` that moved offsets (``moves``: topic, partition, before, after) landed:
        some partition's committed offset is past where it was, and at or past where that commit put it."""
        committed: dict[str, dict[int, int]] = {}
        for topic, partition, before, after in moves:
            if topic not in committed:
                committed[topic] = self.log.committed(group, topic)
            if before < after <= committed[topic].get(partition, -1):
                return True
        return False

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        """Ask the worker to finish the current round, flush, commit and return from `run`."""
        self._stopping = True

    async def _read(self, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``func`` on the reader thread and wait for it."""
        return await self._read_soon(func, *args, **kwargs)

    def _read_soon(self, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> asyncio.Future[R]:
        """Start ``func`` on the reader thread; reader calls run one at a time, in submission order."""
        return asyncio.get_running_loop().run_in_executor(self._reader, lambda: func(*args, **kwargs))

    def _on_revoke(self, lost: frozenset[TopicPartition]) -> None:
        # Runs inside a poll, before the partitions are released: on the reader thread, or on the worker's own
        # thread when the log's calls are local (there is then nothing to wait for below). A read-ahead poll may
        # have started while the round before it was still being handed to the writer: wait for that (bounded),
        # so its commit lands before the partitions move instead of being refused after; then let the commit in
        # flight land (the writer thread finishes it on its own) and hand the loss to the processing thread.
        self._handed_over.wait(_HANDOVER_WAIT_S)
        in_flight = self._in_flight
        if in_flight is not None:
            wait([in_flight[0]])
        for tp in lost:
            self._first_polled.pop(tp, None)
        self._revoked.append(lost)

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def run(self) -> WorkerStats:
        try:
            await self._read(self._ensure_topics)
            consumer = await self._read(self.log.consumer, self.group, self._dispatcher.topics, self.settings.consumer)
            self._consumer = consumer
            consumer.set_revoke_listener(self._on_revoke)
            logger.info(
                "worker started: app=%s group=%s topics=%s processors=%d log=%s",
                self.app.name,
                self.group,
                ",".join(self._dispatcher.topics),
                len(self.app.processors),
                self.log.url,
            )
            with collector_for_rounds(self.settings.gc_young_threshold):
                try:
                    await self._loop(consumer)
                    # Drain: everything held in batch windows is invoked now, emitted and committed. Events
                    # waiting for a retry stay uncommitted and are delivered again after a restart.
                    await self._executor.run_due(time.monotonic(), drain=True)
                    await self._checkpoint(consumer)
                finally:
                    # Whatever ended the loop, a commit already handed to the writer thread completes first.
                    await self._settle_commit()
        finally:
            if self._consumer is not None:
                await self._read(self._consumer.close)
            self._reader.shutdown(wait=True)
            self._writer.shutdown(wait=True)
            self._executor.close()
            if self._idempotency is not None:
                self._idempotency.close()
        logger.info(
            "worker stopped: %d events in, %d out, %d dead-lettered, %d rounds",
            self.stats.events_in,
            self.stats.events_out,
            self.stats.dead_lettered,
            self.stats.rounds,
        )
        return self.stats

    def _ensure_topics(self) -> None:
        ensure_declared_topics(self.app, self.log)
        for topic in self._dispatcher.topics:
            self.log.ensure_topic(topic)
        if self.log.auto_create:
            return  # dead-letter topics are created with the first dead letter
        for processor in self.app.processors:
            if processor.on_failure != "dead_letter":
                continue
            for topic in processor.topics:
                dead_letters = processor.dead_letter_topic_for(topic)
                try:
                    self.log.topic(dead_letters)
                except TopicNotFoundError:
                    raise ConfigurationError(
                        f"processor {processor.name!r} dead-letters to {dead_letters!r}, which does not exist and "
                        f"the log does not create topics on first use: create it (eventbus topics create "
                        f"{dead_letters})"
                    ) from None

    async def _loop(self, consumer: Consumer) -> None:
        settings = self.settings
        executor = self._executor
        prefetched: asyncio.Future[list[RecordBatch]] | None = None
        prefetched_in = self._start_overs
        found_records = False
        while not self._stopping:
            started = time.monotonic()
            if prefetched is not None:
                batches, prefetched = await self._read_ahead(prefetched, prefetched_in), None
            else:
                # After a round that found records, look again without waiting, as the read-ahead poll does: an
                # empty answer then means caught up (the idle check, a held commit) at once.
                batches = await self._poll(consumer, 0.0 if found_records else self._poll_timeout())  # 1
            found_records = bool(batches)
            self._apply_revocations()
            now = time.monotonic()
            if batches:
                routed = [self._dispatcher.route(batch) for batch in batches]  # 2
                for batch in batches:
                    self._positions[TopicPartition(batch.topic, batch.partition)] = batch.next_offset
                    self.stats.events_in += len(batch)
                await executor.deliver(routed, now)  # 3
            await executor.run_due(now)  # 3: retries, windows and probes that are due
            await self._apply_backpressure(consumer)
            if batches and not self._stopping and not self._local_calls:
                # Read the next round (without waiting for new records) while this round is being written.
                self._handed_over.clear()
                prefetched = self._read_soon(self._poll_now, consumer, settings.max_poll_records, 0.0)
                prefetched_in = self._start_overs
            try:
                await self._checkpoint(consumer, now=not batches)  # 4, 5
            finally:
                self._handed_over.set()
            if batches:
                self.stats.round_latencies_s.append(time.monotonic() - started)
            if not batches and settings.until_idle:
                await self._settle_commit()
                if await self._read(consumer.caught_up):
                    if not executor.lanes:
                        return
                    # Caught up, with events still waiting: run batch windows now; what they emit may be input
                    # to this app again, so go round once more before calling it idle.
                    await executor.run_due(time.monotonic(), drain=True)
                    await self._checkpoint(consumer)
        if prefetched is not None:
            # Stopping: records read ahead are not processed; they stay uncommitted and are read again later.
            await prefetched

    async def _poll(self, consumer: Consumer, timeout_s: float) -> list[RecordBatch]:
        """A poll on the reader thread; on a log with local calls, one that finds records is made here."""
        max_records = self.settings.max_poll_records
        if self._local_calls:
            batches = self._poll_now(consumer, max_records, 0.0)
            if batches or timeout_s <= 0:
                # Nothing below may await (sync processors, commits held for the commit interval): let the event
                # loop's other tasks (projections, HTTP, signal handlers) have a turn each round.
                await asyncio.sleep(0)
                return batches
        return await self._read(self._poll_now, consumer, max_records, timeout_s)

    def _poll_now(self, consumer: Consumer, max_records: int, timeout_s: float) -> list[RecordBatch]:
        """``consumer.poll``, noting where each partition's first records started (see `_rewind`)."""
        batches = consumer.poll(max_records, timeout_s)
        first_polled = self._first_polled
        for batch in batches:
            tp = TopicPartition(batch.topic, batch.partition)
            if tp not in first_polled:
                first_polled[tp] = batch.offsets[0] if batch.offsets else batch.next_offset
        return batches

    async def _read_ahead(self, prefetched: asyncio.Future[list[RecordBatch]], started_in: int) -> list[RecordBatch]:
        """What a read-ahead poll found, unless the worker started over since it began: its partitions are then
        read again from the committed offsets, and these records come after them."""
        batches = await prefetched
        return batches if started_in == self._start_overs else []

    def _poll_timeout(self) -> float:
        timeout = self.settings.idle_poll_s
        wakeup = self._executor.next_wakeup(time.monotonic())
        if wakeup is not None:
            timeout = min(timeout, max(0.0, wakeup - time.monotonic()))
        return timeout

    def _apply_revocations(self) -> None:
        while self._revoked:
            lost = self._revoked.pop()
            # Events of lost partitions not yet committed will be redelivered to their new owner.
            self._executor.forget(lost)
            for tp in lost:
                self._positions.pop(tp, None)
                self._committed.pop(tp, None)
                self._paused.discard(tp)
            logger.info("partitions revoked: %s", ", ".join(sorted(map(str, lost))))

    async def _start_over(self, sealed: Round | None) -> None:
        """A commit was refused (a partition moved): the refused round's outputs were not written, and what was
        processed on top of it is dropped too — its outputs, its waiting events, its idempotency keys — and every
        partition still held is read again from the group's committed offset. Nothing is lost, and in exactly-once
        mode nothing is emitted twice."""
        self._handed_over.set()  # a revoke listener waiting for this round would hold the reader thread needed below
        self._start_overs += 1
        if self._idempotency is not None:
            if sealed is not None:
                self._idempotency.refused(sealed)
            self._idempotency.refused(self._idempotency.seal())
        self._outbox.take()
        self._executor.held_dead_letters.clear()
        self._executor.processed.clear()
        # Paused for what was waiting, which is dropped now: the consumer keeps its own pause, so resume them, or
        # nothing would ever poll them again.
        paused = [tp for tp in self._paused if tp in self._positions]
        self._revoked.append(frozenset(self._positions))
        self._apply_revocations()
        if paused and self._consumer is not None:
            await self._read(self._consumer.resume, paused)
            metrics.paused_partitions(len(self._paused))
        await self._read(self._rewind)

    def _rewind(self) -> None:
        """Seek every partition held back to the group's committed offset; one the group never committed goes
        back to its first polled record, where the reset policy started it (``latest`` is not the beginning)."""
        consumer = self._consumer
        if consumer is None:
            return
        held = consumer.assignment()
        for topic in {tp.topic for tp in held}:
            committed = self.log.committed(self.group, topic)
            for tp in held:
                if tp.topic != topic:
                    continue
                offset = committed.get(tp.partition, self._first_polled.get(tp))
                if offset is not None:  # else nothing was polled from it: its position has not moved
                    consumer.seek(tp, offset)

    async def _apply_backpressure(self, consumer: Consumer) -> None:
        """Pause partitions that have too much waiting (or an open breaker); resume them once they drain."""
        limit = self.settings.max_pending_per_partition
        blocked = self._executor.blocked_topics(time.monotonic())
        pause, resume = [], []
        for tp in self._positions:
            waiting = self._executor.backlog(tp)
            if tp not in self._paused and (waiting >= limit or tp.topic in blocked):
                pause.append(tp)
            elif tp in self._paused and waiting <= limit // 2 and tp.topic not in blocked:
                resume.append(tp)
        if pause:
            await self._read(consumer.pause, pause)
            self._paused.update(pause)
            logger.info("paused %s: events are waiting in lanes", ", ".join(map(str, pause)))
        if resume:
            await self._read(consumer.resume, resume)
            self._paused.difference_update(resume)
            logger.info("resumed %s", ", ".join(map(str, resume)))
        if pause or resume:
            metrics.paused_partitions(len(self._paused))

    async def _checkpoint(self, consumer: Consumer, *, now: bool = True) -> None:
        """Hand the outputs and offsets of the rounds processed since the last commit to the writer thread (4, 5),
        after that commit has finished: at most one commit is in flight, and commits happen in round order.

        ``now=False`` (a round that polled records) holds them instead while the commit interval runs."""
        if (
            not now
            and time.monotonic() < self._next_handover
            and self._outbox.count < _MAX_HELD_OUTPUTS
            and not self._stopping
        ):
            return
        await self._settle_commit()
        self._next_handover = time.monotonic() + self._commit_interval_s
        offsets: dict[TopicPartition, int] = {}
        positions: dict[TopicPartition, int] = {}
        for tp, polled in self._positions.items():
            waiting = self._executor.first_pending_offset(tp)
            safe = positions[tp] = polled if waiting is None else min(polled, waiting)
            if self._committed.get(tp) != safe:
                offsets[tp] = safe
        dead = self._executor.release_dead_letters(positions)
        outputs = self._outbox.take()
        if not offsets and not outputs:
            return
        emitted = sum(len(m) for m in outputs.values())
        # The idempotency keys recorded in this round count only once its commit lands.
        sealed = None
        if self._idempotency is not None:
            moves = [(tp.topic, tp.partition, self._committed.get(tp, -1), o) for tp, o in offsets.items()]
            sealed = self._idempotency.seal((self.group, moves))
        if self._local_calls:
            self._in_flight = (_done_now(consumer.publish_and_commit, outputs, offsets), offsets, emitted, dead, sealed)
            await self._settle_commit()  # done already: record it now, not at the next checkpoint
            return
        future = self._writer.submit(consumer.publish_and_commit, outputs, offsets)
        self._in_flight = (future, offsets, emitted, dead, sealed)

    async def _settle_commit(self) -> None:
        """Wait for the commit in flight, if any, and record its outcome."""
        if self._in_flight is None:
            return
        future, offsets, emitted, dead, sealed = self._in_flight
        try:
            await asyncio.wrap_future(future)
        except PartitionRevokedError as exc:
            logger.warning("commit refused, partitions moved to another member: %s", exc)
            await self._start_over(sealed)
            return
        finally:
            self._in_flight = None
        self._committed.update(offsets)
        if sealed is not None and self._idempotency is not None:
            self._idempotency.committed(sealed)
        self.stats.events_out += emitted - dead
        self.stats.dead_lettered += dead
        self.stats.rounds += 1
        processed = self._executor.processed
        if processed:
            for index, count in processed.items():
                metrics.processed(self.app.processors[index].name, count)
            processed.clear()
        if self.stats.first_commit_monotonic is None:
            self.stats.first_commit_monotonic = time.monotonic()
            logger.info("first round committed: %d events in, %d out", self.stats.events_in, emitted)


def _done_now(func: Callable[P, None], *args: P.args, **kwargs: P.kwargs) -> Future[None]:
    """Call ``func`` here and now, its outcome in a future as the writer thread would give it."""
    future: Future[None] = Future()
    try:
        func(*args, **kwargs)
    except Exception as exc:
        future.set_exception(exc)
    else:
        future.set_result(None)
    return future
