"""Reading a topic directly, outside any consumer group (what `eventbus consume` and tests use).

Partitions are read in turn, a batch from each, from their start (or, for new events only, their end). Without
``follow``, a partition is done once a read finds nothing more in it. Nothing is committed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from eventbus.backends.base import Log, Record

_BATCH = 500


def read_topic(
    log: Log,
    topic: str,
    *,
    from_beginning: bool = True,
    max_events: int | None = None,
    follow: bool = False,
    poll_interval_s: float = 0.1,
) -> Iterator[Record]:
    """Records of ``topic``; with ``follow``, keep waiting for new ones (until ``max_events`` or the caller
    stops iterating), else stop at the end of every partition."""
    states = log.watermarks(topic)
    positions = {s.partition: (s.start_offset if from_beginning else s.end_offset) for s in states}
    if not follow:
        # A partition already at its end has nothing to give: on Kafka each read of one costs a round trip.
        positions = {s.partition: positions[s.partition] for s in states if positions[s.partition] < s.end_offset}
    remaining = max_events
    while positions or follow:
        found = 0
        for partition, position in list(positions.items()):
            batch = log.read(topic, partition, position, _BATCH if remaining is None else min(_BATCH, remaining))
            if not batch.offsets and batch.next_offset <= position and not follow:
                del positions[partition]  # at its end, as kcat -e sees it: not read again
                continue
            positions[partition] = max(batch.next_offset, position)
            for record in batch.records():
                yield record
                found += 1
                if remaining is not None:
                    remaining -= 1
                    if remaining <= 0:
                        return
        if found == 0 and follow:
            time.sleep(poll_interval_s)
