"""Inputs for the worker tests on Kafka, and checks of what the workers did, read back from the broker."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

from eventbus import Event, Publisher
from eventbus.backends.kafka.log import KafkaLog

IN, OUT, GROUP = "kafka-in", "kafka-out", "kafka-pipeline"


def publish_inputs(log: KafkaLog, count: int, *, topic: str = IN, partitions: int = 6) -> list[str]:
    """``count`` events with a sequence number, spread over the partitions by key; returns their ids."""
    log.create_topic(topic, partitions, exist_ok=True)
    events = [Event("kafka.start", {"seq": i}, partitionkey=f"k{i % 101}") for i in range(count)]
    with Publisher(log) as publisher:
        for start in range(0, count, 1000):
            publisher.publish_many(topic, events[start : start + 1000])
    return [e.id for e in events]


def output_causes(log: KafkaLog, topic: str = OUT) -> Counter[str]:
    """How many outputs each input caused (by the outputs' causationid), as a read_committed reader sees them."""
    from eventbus.codecs import decode_record

    causes: Counter[str] = Counter()
    for state in log.watermarks(topic):
        position = state.start_offset
        while position < state.end_offset:
            batch = log.read(topic, state.partition, position, 5000)
            if not batch.offsets:
                break
            for value, headers in zip(batch.values, batch.headers, strict=True):
                causes[decode_record(value, headers)["causationid"]] += 1
            position = batch.next_offset
    return causes


def committed_total(log: KafkaLog, group: str = GROUP, topic: str = IN) -> int:
    return sum(log.committed(group, topic).values())


def wait_until_committed(log: KafkaLog, at_least: int, timeout_s: float, *, group: str = GROUP) -> int:
    deadline = time.monotonic() + timeout_s
    total = committed_total(log, group)
    while total < at_least and time.monotonic() < deadline:
        time.sleep(0.01)
        total = committed_total(log, group)
    return total


def all_processed(log: KafkaLog, *, group: str = GROUP, topic: str = IN) -> bool:
    ends = {s.partition: s.end_offset for s in log.watermarks(topic)}
    return log.committed(group, topic) == ends


_ASSIGNED = re.compile(r"partitions assigned: (.*)$", re.MULTILINE)
_GONE = re.compile(r"partitions (?:revoked|lost): (.*)$", re.MULTILINE)


def owned_partitions(stderr: Path, topic: str = IN) -> set[int]:
    """The partitions of ``topic`` a worker owns now, from the assignments and revocations it logged."""
    owned: set[int] = set()
    text = stderr.read_text(errors="replace")
    events = sorted(
        [(m.start(), True, m.group(1)) for m in _ASSIGNED.finditer(text)]
        + [(m.start(), False, m.group(1)) for m in _GONE.finditer(text)]
    )
    for _, assigned, listed in events:
        partitions = {int(p) for p in re.findall(rf"{re.escape(topic)}\[(\d+)\]", listed)}
        owned = owned | partitions if assigned else owned - partitions
    return owned
