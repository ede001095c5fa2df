"""Apps the Kafka tests run in ``eventbus run`` subprocesses."""

from __future__ import annotations

import os
import time

from eventbus import App, Event

# Six input partitions, so that two workers each get three.
pipeline = App("kafka-pipeline")
pipeline.topic("kafka-in", partitions=6)
pipeline.topic("kafka-out", partitions=3)

# Slows every event down (seconds), so that a test can act while a worker is mid-stream.
_DELAY_S = float(os.environ.get("EVENTBUS_TEST_DELAY_S", "0"))


@pipeline.processor("kafka-in", to="kafka-out")
def forward(event: Event) -> Event:
    if _DELAY_S:
        time.sleep(_DELAY_S)
    seq = event.data["seq"]
    return Event("kafka.done", {"seq": seq, "pid": os.getpid()}, partitionkey=str(seq % 17))
