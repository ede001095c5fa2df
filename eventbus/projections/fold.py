"""Folding: events of a projection's topics, applied by its handlers to a version of its rows.

The `Folder` keeps what a round changed (rows to put, rows to delete, checkpoints) until `write` hands all of it
to the store in one transaction. Events below a partition's checkpoint were folded before and are skipped: that is
what makes a projection exactly-once while delivery is at-least-once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from eventbus.app.projection import Handler, Projection
from eventbus.backends.base import Log, RecordBatch, TopicPartition
from eventbus.codecs import decode_record
from eventbus.errors import DecodeError
from eventbus.event import Event, from_builtins
from eventbus.observability import metrics
from eventbus.projections.store import Changes, ProjectionGapError, ProjectionStore
from eventbus.projections.view import View
from eventbus.runtime.dead_letter import DECODER, GiveUp, dead_letter
from eventbus.runtime.lane import format_traceback

logger = logging.getLogger("eventbus.projections")

# Rows kept in memory between rounds (most recently used); beyond this the oldest half is forgotten.
CACHE_ROWS = 200_000


class Folder:
    def __init__(self, projection: Projection, store: ProjectionStore, version: int, log: Log) -> None:
        self.projection = projection
        self.store = store
        self.version = version
        self.log = log
        self.checkpoints = store.checkpoints(projection.name, version)
        self.folded = 0
        self._cache: dict[str, str | None] = {}
        self._puts: dict[str, str] = {}
        self._deletes: set[str] = set()
        self._moved: dict[TopicPartition, int] = {}
        self._rng = random.Random()

    # -- reading rows -------------------------------------------------------------------------------------------

    def _fetch(self, key: str) -> str | None:
        if key in self._puts:
            return self._puts[key]
        if key in self._deletes:
            return None
        return self.store.fetch(self.projection.name, self.version, [key]).get(key)

    def forget_cache(self) -> None:
        """Rows may have been changed by another worker (its partitions moved here): read them afresh."""
        self._cache.clear()

    # -- folding ------------------------------------------------------------------------------------------------

    def start(self, tp: TopicPartition) -> int:
        """Where to read a partition from when folding starts on it: this version's checkpoint (whatever the
        consumer group's position says). Refuses to fold over a gap the log's retention left."""
        checkpoint = self.checkpoints.get(tp, 0)
        start = {s.partition: s.start_offset for s in self.log.watermarks(tp.topic)}.get(tp.partition, 0)
        if checkpoint < start:
            raise ProjectionGapError(
                f"projection {self.projection.name!r} is at {tp}@{checkpoint} but the log only holds that partition "
                f"from offset {start}: folding on would skip events. Rebuild it (eventbus projections rebuild "
                f"{self.projection.name}) from a log that still has them."
            )
        return checkpoint

    async def fold(self, batch: RecordBatch) -> None:
        tp = TopicPartition(batch.topic, batch.partition)
        checkpoint = self.checkpoints.get(tp, 0)
        handlers = self.projection.handlers
        view = View(self._cache, self._fetch)
        for position, offset in enumerate(batch.offsets):
            if offset < checkpoint:
                continue  # folded before: a redelivery
            try:
                attrs = decode_record(batch.values[position], batch.headers[position])
            except DecodeError as exc:
                now_ms = time.time_ns() // 1_000_000
                self._dead_letter(batch, position, GiveUp(DECODER, exc, format_traceback(exc), 1, now_ms, now_ms))
                continue
            handler = handlers.get(attrs["type"])
            if handler is not None:
                await self._apply(handler, attrs, view, batch, position)
        self._keep(tp, batch.next_offset)

    async def _apply(
        self, handler: Handler, attrs: dict[str, Any], view: View, batch: RecordBatch, position: int
    ) -> None:
        policy = self.projection.retry
        attempt = 0
        first_ms = time.time_ns() // 1_000_000
        while True:
            attempt += 1
            try:
                argument = (
                    Event.wrap(attrs)
                    if handler.typed_class is None
                    else from_builtins(attrs.get("data"), handler.typed_class, what=f"event {attrs['id']!r}")
                )
                handler.func(argument, view)
            except Exception as exc:
                view.take_writes()  # a failed handler leaves no trace
                metrics.failed_attempt(f"projection:{self.projection.name}", exc)
                if attempt >= policy.max_attempts or not policy.retries(exc):
                    now_ms = time.time_ns() // 1_000_000
                    why = GiveUp(
                        f"projection:{self.projection.name}", exc, format_traceback(exc), attempt, first_ms, now_ms
                    )
                    self._dead_letter(batch, position, why)
                    return
                await asyncio.sleep(policy.delay_s(attempt, self._rng))
                continue
            self._merge(view.take_writes())
            self.folded += 1
            return

    def _merge(self, writes: dict[str, str | None]) -> None:
        cache, puts, deletes = self._cache, self._puts, self._deletes
        for key, text in writes.items():
            cache[key] = text
            if text is None:
                puts.pop(key, None)
                deletes.add(key)
            else:
                deletes.discard(key)
                puts[key] = text

    def _keep(self, tp: TopicPartition, next_offset: int) -> None:
        self.checkpoints[tp] = next_offset
        self._moved[tp] = next_offset

    def _dead_letter(self, batch: RecordBatch, position: int, why: GiveUp) -> None:
        # Written (durably) before the checkpoint that passes the event: never lost, at worst written twice.
        topic = f"{batch.topic}.dlq"
        self.log.append(topic, [dead_letter(batch, position, why)])
        metrics.dead_lettered(
            why.processor, batch.topic, "handler failed" if why.processor != DECODER else "undecodable"
        )
        logger.warning(
            "projection %s: dead-lettered %s[%d]@%d to %s (%s: %s)",
            self.projection.name,
            batch.topic,
            batch.partition,
            batch.offsets[position],
            topic,
            type(why.error).__name__,
            why.error,
        )

    # -- writing ------------------------------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        return bool(self._moved)

    def take_folded(self) -> int:
        """Events folded since the last call (for counters)."""
        folded, self.folded = self.folded, 0
        return folded

    def write(self) -> None:
        """Rows and checkpoints of everything folded since the last write, in one store transaction."""
        if not self._moved:
            return
        changes = Changes(dict(self._puts), frozenset(self._deletes), dict(self._moved))
        self.store.write(self.projection.name, self.version, changes)
        self._puts.clear()
        self._deletes.clear()
        self._moved.clear()
        if len(self._cache) > CACHE_ROWS:
            for key in list(self._cache)[: CACHE_ROWS // 2]:
                del self._cache[key]
