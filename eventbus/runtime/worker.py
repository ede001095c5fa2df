"""The worker: poll → decode → route → invoke → emit → checkpoint, in rounds, until stopped.

One round, in this order (the numbers appear again in the code):

1. Poll a batch of records from the partitions this member owns.
2. Decode each record once and route it to the processors whose filters it matches (fan-out).
3. Invoke: per processor, per partition, in offset order. Batch processors collect events until ``batch_size``
   or until ``batch_window_ms`` has passed since the first one arrived.
4. Emit: append everything the processors returned or published, and wait until the log has it durably.
5. Checkpoint: commit, per partition, the offset of the first event some processor has not finished (events held
   in a batch window), else the position after the batch. The commit never passes an event that is not done.

Steps 4 and 5 are one call to the consumer: drivers that can (SQLite, memory) make them one transaction.

Log calls run on two threads, so this one only runs processors: a *reader* polls (the next round is read while
this round is processed) and a *writer* emits and commits (round N is written while round N+1 is processed). At
most one commit is in flight and commits happen in round order. When the group takes partitions away, the revoke
listener, called from inside a poll, first waits for the commit in flight, so finished work is committed before
the partitions move.

SIGINT/SIGTERM stop polling, flush open batch windows, emit, commit, leave the group and return.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from eventbus.app import App
from eventbus.app.processor import Processor
from eventbus.backends.base import Consumer, ConsumerSettings, Log, RecordBatch, TopicPartition
from eventbus.errors import ConfigurationError, PartitionRevokedError
from eventbus.publisher import encoder_for
from eventbus.runtime.dispatch import Dispatcher, RoutedBatch
from eventbus.runtime.invoke import call_batch, call_each, call_each_async
from eventbus.runtime.outbox import Outbox

logger = logging.getLogger("eventbus.worker")

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How one worker runs. ``group`` defaults to the app's name."""

    group: str | None = None
    max_poll_records: int = 2000
    idle_poll_s: float = 0.2
    until_idle: bool = False
    consumer: ConsumerSettings = field(default_factory=ConsumerSettings)


@dataclass(slots=True)
class WorkerStats:
    events_in: int = 0
    events_out: int = 0
    rounds: int = 0
    started_monotonic: float = field(default_factory=time.monotonic)
    first_commit_monotonic: float | None = None
    # Seconds from the start of a poll that returned records to the end of its checkpoint (the latest 10,000).
    round_latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


@dataclass(slots=True)
class _OpenBatch:
    """Events waiting in a batch processor's window, for one partition."""

    offsets: list[int]
    events: list[dict[str, Any]]
    opened_monotonic: float


class Worker:
    def __init__(self, app: App, log: Log, settings: WorkerSettings | None = None) -> None:
        if not app.processors:
            raise ConfigurationError(f"app {app.name!r} declares no processors; nothing to run")
        self.app = app
        self.log = log
        self.settings = settings or WorkerSettings()
        self.group = self.settings.group or app.name
        self.stats = WorkerStats()
        self._dispatcher = Dispatcher(app.processors)
        self._outbox = Outbox(app.source, encoder_for(log))
        self._positions: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._open: dict[tuple[int, TopicPartition], _OpenBatch] = {}
        self._revoked: list[frozenset[TopicPartition]] = []
        self._stopping = False
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eventbus-reader")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eventbus-writer")
        self._consumer: Consumer | None = None
        self._in_flight: tuple[Future[None], dict[TopicPartition, int], int] | None = None

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
        # Runs on the reader thread inside a poll, before the partitions are released: let the commit in flight
        # land first (the writer thread finishes it on its own), then hand the loss to the processing thread.
        in_flight = self._in_flight
        if in_flight is not None:
            wait([in_flight[0]])
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
            try:
                await self._loop(consumer)
                # Drain: everything held in batch windows is invoked now, emitted and committed.
                await self._flush_windows(force=True)
                await self._checkpoint(consumer)
            finally:
                # Whatever ended the loop, a commit already handed to the log thread completes first.
                await self._settle_commit()
        finally:
            if self._consumer is not None:
                await self._read(self._consumer.close)
            self._reader.shutdown(wait=True)
            self._writer.shutdown(wait=True)
        logger.info(
            "worker stopped: %d events in, %d out, %d rounds",
            self.stats.events_in,
            self.stats.events_out,
            self.stats.rounds,
        )
        return self.stats

    def _ensure_topics(self) -> None:
        for spec in self.app.topics.values():
            info = self.log.ensure_topic(spec.name, spec.partitions)
            if info.partitions != spec.partitions:
                raise ConfigurationError(
                    f"app {self.app.name!r} declares topic {spec.name!r} with {spec.partitions} partitions but it "
                    f"exists with {info.partitions}; a topic's partition count cannot change"
                )
        for topic in self._dispatcher.topics:
            self.log.ensure_topic(topic)

    async def _loop(self, consumer: Consumer) -> None:
        settings = self.settings
        prefetched: asyncio.Future[list[RecordBatch]] | None = None
        while not self._stopping:
            started = time.monotonic()
            if prefetched is not None:
                batches, prefetched = await prefetched, None
            else:
                batches = await self._read(consumer.poll, settings.max_poll_records, self._poll_timeout())  # 1
            self._apply_revocations()
            if batches:
                await self._process(batches)  # 2, 3
            await self._flush_windows(force=False)  # 3 (windows that are due)
            if batches and not self._stopping:
                # Read the next round (without waiting for new records) while this round is being written.
                prefetched = self._read_soon(consumer.poll, settings.max_poll_records, 0.0)
            await self._checkpoint(consumer)  # 4, 5
            if batches:
                self.stats.round_latencies_s.append(time.monotonic() - started)
            if not batches and settings.until_idle:
                await self._settle_commit()
                if await self._read(consumer.caught_up):
                    if not self._open:
                        return
                    # Caught up with events still in batch windows: invoke them now; what they emit may be input
                    # to this app again, so go round once more before calling it idle.
                    await self._flush_windows(force=True)
                    await self._checkpoint(consumer)
        if prefetched is not None:
            # Stopping: records read ahead are not processed; they stay uncommitted and are read again later.
            await prefetched

    def _poll_timeout(self) -> float:
        timeout = self.settings.idle_poll_s
        if self._open:
            now = time.monotonic()
            for (index, _), pending in self._open.items():
                window_s = self._dispatcher.processors[index].batch_window_ms / 1000
                timeout = min(timeout, max(0.0, pending.opened_monotonic + window_s - now))
        return timeout

    def _apply_revocations(self) -> None:
        while self._revoked:
            lost = self._revoked.pop()
            # Events of lost partitions not yet committed will be redelivered to their new owner.
            for key in [k for k in self._open if k[1] in lost]:
                del self._open[key]
            for tp in lost:
                self._positions.pop(tp, None)
                self._committed.pop(tp, None)
            logger.info("partitions revoked: %s", ", ".join(sorted(map(str, lost))))

    # -- one round --------------------------------------------------------------------------------------------

    async def _process(self, batches: list[RecordBatch]) -> None:
        routed = [self._dispatcher.route(batch) for batch in batches]  # 2
        processors = self._dispatcher.processors
        outbox = self._outbox
        for index, processor in enumerate(processors):  # 3
            if processor.batched:
                await self._collect(index, processor, routed)
            elif processor.is_async:
                await asyncio.gather(
                    *(
                        call_each_async(processor, r.topic, r.partition, r.offsets, r.events, r.targets[index], outbox)
                        for r in routed
                        if r.targets.get(index)
                    )
                )
            else:
                for r in routed:
                    positions = r.targets.get(index)
                    if positions:
                        call_each(processor, r.topic, r.partition, r.offsets, r.events, positions, outbox)
        for r in routed:
            self._positions[TopicPartition(r.topic, r.partition)] = r.next_offset
            self.stats.events_in += len(r.offsets)

    async def _collect(self, index: int, processor: Processor, routed: list[RoutedBatch]) -> None:
        now = time.monotonic()
        for r in routed:
            positions = r.targets.get(index)
            if not positions:
                continue
            key = (index, TopicPartition(r.topic, r.partition))
            pending = self._open.get(key)
            if pending is None:
                pending = self._open[key] = _OpenBatch([], [], now)
            pending.offsets.extend(r.offsets[p] for p in positions)
            pending.events.extend(r.events[p] for p in positions)
            if processor.batch_window_ms == 0 or len(pending.events) >= processor.batch_size:
                await self._invoke_open(key, processor, keep_partial=processor.batch_window_ms > 0)

    async def _invoke_open(self, key: tuple[int, TopicPartition], processor: Processor, *, keep_partial: bool) -> None:
        pending = self._open[key]
        size = processor.batch_size
        tp = key[1]
        while pending.events and (len(pending.events) >= size or not keep_partial):
            chunk, offset = pending.events[:size], pending.offsets[0]
            await call_batch(processor, tp.topic, tp.partition, offset, chunk, self._outbox)
            del pending.events[:size], pending.offsets[:size]
        if pending.events:
            pending.opened_monotonic = time.monotonic()
        else:
            del self._open[key]

    async def _flush_windows(self, *, force: bool) -> None:
        if not self._open:
            return
        now = time.monotonic()
        processors = self._dispatcher.processors
        for key in list(self._open):
            processor = processors[key[0]]
            pending = self._open[key]
            if force or now - pending.opened_monotonic >= processor.batch_window_ms / 1000:
                await self._invoke_open(key, processor, keep_partial=False)

    async def _checkpoint(self, consumer: Consumer) -> None:
        """Hand this round's outputs and offsets to the log thread (4, 5), after the previous round's commit has
        finished: at most one commit is in flight, and commits happen in round order."""
        await self._settle_commit()
        offsets: dict[TopicPartition, int] = {}
        for tp, polled in self._positions.items():
            safe = min([polled, *(p.offsets[0] for (_, open_tp), p in self._open.items() if open_tp == tp)])
            if self._committed.get(tp) != safe:
                offsets[tp] = safe
        outputs = self._outbox.take()
        if not offsets and not outputs:
            return
        emitted = sum(len(m) for m in outputs.values())
        self._in_flight = (self._writer.submit(consumer.publish_and_commit, outputs, offsets), offsets, emitted)

    async def _settle_commit(self) -> None:
        """Wait for the commit in flight, if any, and record its outcome."""
        if self._in_flight is None:
            return
        future, offsets, emitted = self._in_flight
        try:
            await asyncio.wrap_future(future)
        except PartitionRevokedError as exc:
            logger.warning("commit refused, partitions moved to another member: %s", exc)
            self._revoked.append(frozenset(offsets))
            self._apply_revocations()
            return
        finally:
            self._in_flight = None
        self._committed.update(offsets)
        self.stats.events_out += emitted
        self.stats.rounds += 1
        if self.stats.first_commit_monotonic is None:
            self.stats.first_commit_monotonic = time.monotonic()
            logger.info("first round committed: %d events in, %d out", self.stats.events_in, emitted)
