"""Reading a topic outside any group (`eventbus consume`): every record once, each partition in offset order, and a
partition at its end is not read again (on Kafka each read of one is a round trip to the broker)."""

from __future__ import annotations

from pathlib import Path

from eventbus.backends.base import Message, RecordBatch
from eventbus.backends.sqlite import SQLiteLog
from eventbus.reader import read_topic


class CountingLog(SQLiteLog):
    """A real SQLite log that counts the reads asked of it, per partition."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads: dict[int, int] = {}

    def read(self, topic: str, partition: int, offset: int, max_records: int) -> RecordBatch:
        self.reads[partition] = self.reads.get(partition, 0) + 1
        return super().read(topic, partition, offset, max_records)


def test_a_read_to_the_end_skips_empty_partitions_and_reads_each_other_one_to_its_end(tmp_path: Path) -> None:
    log = CountingLog(tmp_path / "events.db")
    try:
        log.create_topic("sparse", 200)
        log.append("sparse", [Message(f"a{n}".encode(), partition=7) for n in range(1200)])
        log.append("sparse", [Message(b"b", partition=150)])

        records = list(read_topic(log, "sparse"))

        assert [(r.partition, r.value) for r in records if r.partition == 7] == [
            (7, f"a{n}".encode()) for n in range(1200)
        ]
        assert [(r.partition, r.value) for r in records if r.partition == 150] == [(150, b"b")]
        assert len(records) == 1201
        # Batches of 500: three reads with records, one finding the end; one and one for the single record.
        assert log.reads == {7: 4, 150: 2}
    finally:
        log.close()


def test_a_read_of_new_events_only_ends_at_once_and_max_events_stops_early(tmp_path: Path) -> None:
    log = CountingLog(tmp_path / "events.db")
    try:
        log.create_topic("t", 3)
        log.append("t", [Message(str(n).encode(), partition=n % 3) for n in range(30)])
        assert list(read_topic(log, "t", from_beginning=False)) == []
        assert log.reads == {}
        assert len(list(read_topic(log, "t", max_events=4))) == 4
    finally:
        log.close()
