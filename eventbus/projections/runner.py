"""The projection worker: poll → fold → write rows and checkpoint in one store transaction, then commit the group.

1. Poll a batch from the partitions this member owns.
2. Fold it: events below the store's checkpoint are skipped; a partition whose group position is past the store's
   checkpoint (a store that was reset or rebuilt) is read again from the checkpoint.
3. Write the round's rows and checkpoints in one transaction of the projection's store — on a writer thread, while
   the next round is polled and folded; the next write waits for this one.
4. Commit the consumer group's offsets (only so `eventbus topics describe` shows the lag: the store's checkpoint,
   not the group's, decides what is folded).

When a rebuild has swapped in a new version, the write is refused; the worker switches to the new version and
goes on from its checkpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from eventbus.app.projection import Projection, resolve_store_url
from eventbus.backends.base import Consumer, Log, RecordBatch, TopicPartition
from eventbus.codecs import AvroDataDecoder
from eventbus.errors import PartitionRevokedError
from eventbus.projections.fold import Folder
from eventbus.projections.store import ProjectionStore, VersionChangedError, open_store
from eventbus.runtime.gc_policy import collector_for_rounds
from eventbus.runtime.worker import WorkerSettings

logger = logging.getLogger("eventbus.projections")


class ProjectionRunner:
    def __init__(
        self,
        projection: Projection,
        log: Log,
        settings: WorkerSettings | None = None,
        avro: AvroDataDecoder | None = None,
        store_url: str | None = None,
    ) -> None:
        self.projection = projection
        self._avro = avro
        self.log = log
        self.settings = settings or WorkerSettings()
        self.store_url = store_url or resolve_store_url(projection.store)
        self._stopping = False
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"eventbus-{projection.name}-reader")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"eventbus-{projection.name}-writer")
        self.folded = 0
        # Set when the app's processors have stopped: with until_idle, folding stops only after that.
        self.upstream_done: asyncio.Event | None = None

    def stop(self) -> None:
        self._stopping = True

    async def _call(self, func: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._io, func, *args)

    async def run(self) -> int:
        """Fold until stopped (or, with ``until_idle``, until caught up); returns the number of events folded."""
        store: ProjectionStore | None = None
        consumer: Consumer | None = None
        try:
            store = await self._call(open_store, self.store_url)
            for topic in self.projection.topics:
                await self._call(self.log.ensure_topic, topic)
            consumer = await self._call(
                self.log.consumer, self.projection.group, self.projection.topics, self.settings.consumer
            )
            folder = await self._call(self._folder, store)
            logger.info(
                "projection %s started: version %d, store %s, topics %s",
                self.projection.name,
                folder.version,
                self.store_url,
                ",".join(self.projection.topics),
            )
            with collector_for_rounds(self.settings.gc_young_threshold):
                await self._loop(store, consumer, folder)
        finally:
            if consumer is not None:
                await self._call(consumer.close)
            if store is not None:
                await self._call(store.close)
            self._io.shutdown(wait=True)
            self._writer.shutdown(wait=True)
        return self.folded

    def _folder(self, store: ProjectionStore) -> Folder:
        version = store.current_version(self.projection.name)
        return Folder(self.projection, store, version, self.log, self._avro)

    async def _loop(self, store: ProjectionStore, consumer: Consumer, folder: Folder) -> None:
        settings = self.settings
        owned: frozenset[TopicPartition] = frozenset()
        # At most one store write in flight: round N is written while round N+1 is polled and folded.
        in_flight: asyncio.Future[None] | None = None
        while not self._stopping:
            batches: list[RecordBatch] = await self._call(
                consumer.poll, settings.max_poll_records, 0.0 if in_flight else settings.idle_poll_s
            )  # 1
            assignment = consumer.assignment()
            arrived = assignment - owned
            if assignment != owned:
                # Rows written by another worker for partitions that moved here may be newer than the cache.
                folder.forget_cache()
                owned = assignment
            for tp in arrived:
                # Read a partition that just arrived from the store's checkpoint, whatever the group said.
                await self._call(consumer.seek, tp, folder.start(tp))
            for batch in batches:
                if TopicPartition(batch.topic, batch.partition) in arrived:
                    continue  # read from the group's position; it comes again from the checkpoint
                await folder.fold(batch)  # 2
            if in_flight is not None:
                try:
                    await in_flight  # 3 (previous round)
                except VersionChangedError as exc:
                    logger.info("projection %s: %s; switching", self.projection.name, exc)
                    folder = await self._call(self._folder, store)
                    for tp in consumer.assignment():
                        await self._call(consumer.seek, tp, folder.start(tp))
                    in_flight = None
                    continue
                in_flight = None
                folder.written()
                await self._commit_group(consumer, folder)  # 4
            changes = folder.take_changes()
            if changes is not None:
                in_flight = asyncio.get_running_loop().run_in_executor(self._writer, folder.write_changes, changes)
            elif not batches and settings.until_idle and self._upstream_idle() and await self._call(consumer.caught_up):
                return
        if in_flight is not None:
            await in_flight
            folder.written()
            await self._commit_group(consumer, folder)

    def _upstream_idle(self) -> bool:
        return self.upstream_done is None or self.upstream_done.is_set()

    async def _commit_group(self, consumer: Consumer, folder: Folder) -> None:
        self.folded += folder.take_folded()
        offsets = {tp: o for tp, o in folder.checkpoints.items() if tp in consumer.assignment()}
        if offsets:
            # A partition that moved on refuses the commit; the store's checkpoint is what counts anyway.
            with contextlib.suppress(PartitionRevokedError):
                await self._call(consumer.commit, offsets)
