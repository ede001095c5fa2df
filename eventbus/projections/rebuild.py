"""Rebuilding a projection blue/green: fold a new version from the start of the log beside the live one, then
make it current in one transaction. Reads keep coming from the live version until the swap; a worker folding the
live version notices the swap at its next write and carries on from the new version's checkpoints.

Two rebuilds of one projection may overlap (each folds its own, newer version); the swap only ever moves to a newer
version, so the one that started last wins and the other fails with `StaleVersionError`, leaving the newer version
current."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from eventbus.app.projection import Projection, resolve_store_url
from eventbus.backends.base import Log, TopicPartition
from eventbus.codecs import AvroDataDecoder
from eventbus.errors import EventbusError
from eventbus.projections.fold import Folder, HandlerFailedError
from eventbus.projections.store import ProjectionStore, VersionChangedError, open_store, stale_version
from eventbus.runtime.dead_letter import DECODER, dead_lettered

READ_BATCH = 2000


class RebuildFailedError(EventbusError):
    """A rebuild stopped before its swap: the projection's current version is unchanged."""


Progress = Callable[[int, int], None]


def rebuild(
    projection: Projection,
    log: Log,
    store: ProjectionStore | None = None,
    *,
    progress: Progress | None = None,
    avro: AvroDataDecoder | None = None,
    dead_letter_failures: bool = False,
) -> int:
    """Fold a fresh version from offset 0, swap it in when it has caught up; returns the new version.

    A handler that fails on an event (retries included) stops the rebuild with `RebuildFailedError` and the
    current version stays: a rebuild is how a changed handler goes live, and one that breaks on the history must
    not replace a good read model with an empty one. With ``dead_letter_failures`` such events are dead-lettered
    and passed over, as the live projection does. Events the live projection dead-lettered already are passed
    over either way when they fail again."""
    owned = store is None
    store = store or open_store(resolve_store_url(projection.store))
    try:
        for topic in projection.topics:
            # A topic missing from the log (TopicNotFoundError) stops the rebuild before it makes a version.
            log.topic(topic)
        version = store.create_version(projection.name)
        # What the live projection dead-lettered is in the dead-letter topics already: fails again, passed over.
        ours = {f"projection:{projection.name}", DECODER}
        dead = {topic: dead_lettered(log, topic, ours) for topic in projection.topics}
        folder = Folder(projection, store, version, log, avro, dead, dead_letter_failures=dead_letter_failures)
        try:
            asyncio.run(_catch_up(folder, log, projection, progress))
            # Fold what arrived while catching up, then swap; a live worker continues from here.
            asyncio.run(_catch_up(folder, log, projection, None))
        except HandlerFailedError as exc:
            current = store.current_version(projection.name)
            raise RebuildFailedError(
                f"{exc}; the rebuild stopped and version {current} stays current (fix the handler, or rebuild with "
                "--dead-letter, dead_letter_failures=True, to dead-letter what it fails on as the live projection does)"
            ) from exc.error
        except VersionChangedError:
            current = store.current_version(projection.name)
            if current >= version:
                # Another rebuild of this projection swapped in a newer version meanwhile: this one is dropped.
                raise stale_version(projection.name, version, current) from None
            raise
        # Refused (StaleVersionError) unless this version is still newer than the current one.
        store.make_current(projection.name, version)
        return version
    finally:
        if owned:
            store.close()


async def _catch_up(folder: Folder, log: Log, projection: Projection, progress: Progress | None) -> None:
    ends = {
        TopicPartition(topic, s.partition): s.end_offset for topic in projection.topics for s in log.watermarks(topic)
    }
    total = sum(ends.values())
    done = sum(min(folder.checkpoints.get(tp, 0), end) for tp, end in ends.items())
    for tp, end in ends.items():
        position = folder.start(tp)
        while position < end:
            batch = log.read(tp.topic, tp.partition, position, min(READ_BATCH, end - position))
            if not batch.offsets:
                break
            await folder.fold(batch)
            folder.write()
            await asyncio.sleep(0)  # lets Ctrl-C in between batches (asyncio delivers it at an await)
            done += batch.next_offset - position
            position = batch.next_offset
            if progress is not None:
                progress(done, total)
