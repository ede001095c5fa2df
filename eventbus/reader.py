"""Reading a topic directly, outside any consumer group (what `eventbus consume` and tests use).

Partitions are read in turn, a batch from each, from their start (or, for new events only, their end).
Nothing is committed.
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
    remaining = max_events
    while True:
        found = 0
        for partition, position in positions.items():
            batch = log.read(topic, partition, position, _BATCH if remaining is None else min(_BATCH, remaining))
            positions[partition] = batch.next_offset if batch.offsets else position
            for record in batch.records():
                yield record
                found += 1
                if remaining is not None:
                    remaining -= 1
                    if remaining <= 0:
                        return
        if found == 0:
            if not follow:
                return
            time.sleep(poll_interval_s)
