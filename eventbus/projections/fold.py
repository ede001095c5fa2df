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
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any

from eventbus.app.projection import Handler, Projection
from eventbus.backends.base import Log, RecordBatch, TopicPartition
from eventbus.codecs import AvroDataDecoder, decode_record
from eventbus.codecs.structured import decode_structured
from eventbus.errors import DecodeError, EventbusError
from eventbus.event import Event, from_builtins
from eventbus.observability import metrics
from eventbus.projections.store import Changes, Checkpoints, ProjectionGapError, ProjectionStore
from eventbus.projections.view import View
from eventbus.runtime.dead_letter import DECODER, REPLAY_TARGET, GiveUp, dead_letter, replay_target
from eventbus.runtime.lane import format_traceback

logger = logging.getLogger("eventbus.projections")

# Rows kept in memory between rounds (most recently used); beyond this the oldest half is forgotten.
CACHE_ROWS = 200_000


class HandlerFailedError(EventbusError):
    """A projection's handler failed on an event, retries included, where dead-lettering it is not wanted."""

    def __init__(
        self, projection: str, handler: Handler, batch: RecordBatch, position: int, error: Exception, attempts: int
    ) -> None:
        where = f"{batch.topic}[{batch.partition}]@{batch.offsets[position]}"
        name = getattr(handler.func, "__qualname__", repr(handler.func))
        super().__init__(
            f"projection {projection!r}: handler {name} failed on {where} after {attempts} attempt(s): "
            f"{type(error).__name__}: {error}"
        )
        self.error = error


class Folder:
    def __init__(
        self,
        projection: Projection,
        store: ProjectionStore,
        version: int,
        log: Log,
        avro: AvroDataDecoder | None = None,
        dead_lettered: Mapping[str, set[tuple[int, int]]] | None = None,
        dead_letter_failures: bool = True,
    ) -> None:
        self.projection = projection
        self._avro = avro
        # Per topic, the (partition, offset) of records already in its dead-letter topic from this projection (a
        # rebuild folds them again): one that fails again is passed over, not retried and dead-lettered twice.
        self._dead_lettered = dead_lettered or {}
        # False (a rebuild): a handler that still fails after its retries stops the fold with `HandlerFailedError`
        # instead of dead-lettering the event, so a broken handler never becomes the current version.
        self._dead_letter_failures = dead_letter_failures
        # What a replayed record for this projection names (its dead letters' processor).
        self._replay_name = f"projection:{projection.name}"
        self.store = store
        self.version = version
        self.log = log
        self.checkpoints = store.checkpoints(projection.name, version)
        self.folded = 0
        self._cache: dict[str, str | None] = {}
        # Per row read from the store or written to it: its content there as this folder last saw it (None: no
        # row). A write hands these over for the rows it changes, and is refused if another worker changed one.
        self._base: dict[str, str | None] = {}
        # Every checkpoint of the version as this folder's last write left them (every write moves one, so a
        # store holding others means another worker wrote). A round's rows are read after the write before last
        # committed (one write is in flight while the next round folds), so a write may skip checking them when
        # nobody else wrote since then: `_seen` is the last write's checkpoints when nobody else wrote before it
        # either, else None (the store then checks the rows).
        self._last_stored: Checkpoints = dict(self.checkpoints)
        self._seen: Checkpoints | None = dict(self.checkpoints)
        self._stored: Checkpoints | None = None
        self._puts: dict[str, str] = {}
        self._deletes: set[str] = set()
        self._moved: dict[TopicPartition, int] = {}
        # Per partition folded this round: the checkpoint the round started from (None: never folded).
        self._started_from: dict[TopicPartition, int | None] = {}
        self._writing: Changes | None = None
        self._rng = random.Random()

    # -- reading rows -------------------------------------------------------------------------------------------

    def _fetch(self, key: str) -> str | None:
        if key in self._puts:
            return self._puts[key]
        if key in self._deletes:
            return None
        writing = self._writing
        if writing is not None:
            # Handed to the store but perhaps not committed yet: the newest value is here, not in the store.
            if key in writing.puts:
                return writing.puts[key]
            if key in writing.deletes:
                return None
        text = self._base[key] = self.store.fetch(self.projection.name, self.version, [key]).get(key)
        return text

    def forget_cache(self, keep: AbstractSet[str] = frozenset()) -> None:
        """Rows may have been changed by another worker (its partitions moved here): read them afresh.

        Rows changed since the last take (and ``keep``) keep what they were read as, and the next write checks
        them in the store."""
        kept = self._puts.keys() | self._deletes | keep
        self._cache = {key: text for key, text in self._cache.items() if key in kept}
        self._base = {key: text for key, text in self._base.items() if key in kept}
        self._seen = None

    # -- folding ------------------------------------------------------------------------------------------------

    def start(self, tp: TopicPartition) -> int:
        """Where to read a partition from when folding starts on it: this version's checkpoint (whatever the
        consumer group's position says) as the store has it now — another worker may have folded it since this
        one last held it. Refuses to fold over a gap the log's retention left."""
        stored = self.store.checkpoints(self.projection.name, self.version).get(tp)
        if stored is None:
            self.checkpoints.pop(tp, None)
        else:
            self.checkpoints[tp] = stored
        checkpoint = stored or 0
        bounds = {s.partition: (s.start_offset, s.end_offset) for s in self.log.watermarks(tp.topic)}
        start, end = bounds.get(tp.partition, (0, 0))
        if checkpoint < start:
            raise ProjectionGapError(
                f"projection {self.projection.name!r} is at {tp}@{checkpoint} but the log only holds that partition "
                f"from offset {start}: folding on would skip events. Rebuild it (eventbus projections rebuild "
                f"{self.projection.name}) from a log that still has them."
            )
        if checkpoint > end:
            # Folded from another log (the store was shared, or the topic deleted and created again): the events
            # this log holds below the checkpoint were never folded, and skipping them as redeliveries loses them.
            raise ProjectionGapError(
                f"projection {self.projection.name!r} is at {tp}@{checkpoint} but the log's partition ends at offset "
                f"{end}: its store holds what was folded from another log (or from the topic before it was "
                f"created again). Give the projection a store of this log's own, or rebuild it (eventbus projections "
                f"rebuild {self.projection.name}) from this log."
            )
        return checkpoint

    async def fold(self, batch: RecordBatch) -> None:
        tp = TopicPartition(batch.topic, batch.partition)
        checkpoint = self.checkpoints.get(tp, 0)
        handlers = self.projection.handlers
        view = View(self._cache, self._fetch)
        take_writes, merge = view.take_writes, self._merge
        structured = not any(batch.headers)
        values, headers = batch.values, batch.headers
        self._prefetch(batch)
        folded = 0
        for position, offset in enumerate(batch.offsets):
            if offset < checkpoint:
                continue  # folded before: a redelivery
            try:
                if structured:
                    attrs = decode_structured(values[position])
                else:
                    record_headers = headers[position]
                    if (
                        record_headers
                        and record_headers[0][0] == REPLAY_TARGET
                        and replay_target(record_headers) != self._replay_name
                    ):
                        continue  # replayed for a processor or another projection: folded as the original
                    attrs = decode_record(values[position], record_headers, self._avro)
            except DecodeError as exc:
                if not self._known_dead(batch, offset):
                    now_ms = time.time_ns() // 1_000_000
                    why = GiveUp(DECODER, exc, format_traceback(exc), 1, now_ms, now_ms)
                    self._dead_letter(batch, position, why)
                continue
            handler = handlers.get(attrs["type"])
            if handler is None:
                continue
            try:
                handler.func(self._argument(handler, attrs), view)
            except Exception as exc:
                take_writes()  # a failed handler leaves no trace
                if not self._known_dead(batch, offset):
                    await self._retry(handler, attrs, view, batch, position, exc)
                continue
            merge(take_writes())
            folded += 1
        self.folded += folded
        self._keep(tp, batch.next_offset)

    def _prefetch(self, batch: RecordBatch) -> None:
        """Read in one query the rows the batch will most likely touch: projections are usually keyed like the
        events' partition key. A wrong guess costs one row lookup; a right one saves a round trip per row."""
        cache = self._cache
        wanted = {key.decode("utf-8", "replace") for key in batch.keys if key is not None}
        missing = [k for k in wanted if k not in cache and k not in self._puts and k not in self._deletes]
        writing = self._writing
        if writing is not None:
            missing = [k for k in missing if k not in writing.puts and k not in writing.deletes]
        if not missing:
            return
        found = self.store.fetch(self.projection.name, self.version, missing)
        base = self._base
        for key in missing:
            cache[key] = base[key] = found.get(key)

    @staticmethod
    def _argument(handler: Handler, attrs: dict[str, Any]) -> Any:
        if handler.typed_class is None:
            return Event.wrap(attrs)
        return from_builtins(attrs.get("data"), handler.typed_class, what=f"event {attrs['id']!r}")

    async def _retry(
        self, handler: Handler, attrs: dict[str, Any], view: View, batch: RecordBatch, position: int, error: Exception
    ) -> None:
        """The handler failed once: try again after backoffs, then dead-letter the event and go on."""
        policy = self.projection.retry
        attempt = 1
        first_ms = time.time_ns() // 1_000_000
        while True:
            metrics.failed_attempt(f"projection:{self.projection.name}", error)
            if attempt >= policy.max_attempts or not policy.retries(error):
                if not self._dead_letter_failures:
                    raise HandlerFailedError(self.projection.name, handler, batch, position, error, attempt)
                now_ms = time.time_ns() // 1_000_000
                why = GiveUp(
                    f"projection:{self.projection.name}", error, format_traceback(error), attempt, first_ms, now_ms
                )
                self._dead_letter(batch, position, why)
                return
            await asyncio.sleep(policy.delay_s(attempt, self._rng))
            attempt += 1
            try:
                handler.func(self._argument(handler, attrs), view)
            except Exception as exc:
                view.take_writes()
                error = exc
                continue
            self._merge(view.take_writes())
            self.folded += 1
            return

    def _known_dead(self, batch: RecordBatch, offset: int) -> bool:
        dead = self._dead_lettered.get(batch.topic)
        return dead is not None and (batch.partition, offset) in dead

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
        if tp not in self._moved:
            self._started_from[tp] = self.checkpoints.get(tp)
        self.checkpoints[tp] = next_offset
        self._moved[tp] = next_offset

    def _dead_letter(self, batch: RecordBatch, position: int, why: GiveUp) -> None:
        # Written (durably) before the checkpoint that passes the event: never lost, at worst written twice.
        topic = f"{batch.topic}.dlq"
        self.log.append(topic, [dead_letter(batch, position, why, self.log.oversized)])
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

    def take_changes(self) -> Changes | None:
        """What was folded since the last take, to be written in one transaction (`write_changes`); until
        `written` is called it still answers reads of the rows it changes."""
        if not self._moved:
            return None
        base = self._base
        # Rows written without being read (blind writes) do not depend on what another worker put there.
        read = {key: base[key] for key in (*self._puts, *self._deletes) if key in base}
        changes = Changes(
            dict(self._puts), frozenset(self._deletes), dict(self._moved), dict(self._started_from), read, self._seen
        )
        self._puts.clear()
        self._deletes.clear()
        self._moved.clear()
        self._started_from.clear()
        self._writing = changes
        return changes

    def write_changes(self, changes: Changes) -> None:
        """Rows and checkpoints in one store transaction (may run on another thread than the folding)."""
        self._stored = self.store.write(self.projection.name, self.version, changes)

    def written(self) -> None:
        """The changes handed to `write_changes` are committed: the store now holds them."""
        writing, self._writing = self._writing, None
        stored, self._stored = self._stored, None
        if writing is not None and stored is not None:
            base = self._base
            base.update(writing.puts)
            base.update(dict.fromkeys(writing.deletes))
            others_wrote = stored != {**self._last_stored, **writing.checkpoints}
            self._last_stored = stored
            if others_wrote:
                # Rows read before may be stale; those this write changed are as it left them.
                self.forget_cache(keep=writing.puts.keys() | writing.deletes)
            else:
                self._seen = stored
        base = self._base
        if len(self._cache) > CACHE_ROWS:
            pending = self._puts.keys() | self._deletes
            for key in [k for k in list(self._cache)[: CACHE_ROWS // 2] if k not in pending]:
                del self._cache[key]
                base.pop(key, None)

    def write(self) -> None:
        """Everything folded since the last write, in one store transaction (on the calling thread)."""
        changes = self.take_changes()
        if changes is not None:
            self.write_changes(changes)
        self.written()
