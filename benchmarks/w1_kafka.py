"""W1 on Kafka: ``eventbus run`` (a subprocess, as users run it) against a hand-written confluent-kafka loop doing
the same work, on the same broker kind, in one run.

W1: 200,000 JSON order events of ~270 bytes in a 3-partition topic; keep ``type == "order.paid" and data.amount >
100``; emit ``{id, customer, amount, currency, time}`` to a second topic keyed by customer; commit.

eventbus: ``python -m eventbus run benchmarks.w1_kafka:app --broker kafka://... --until-idle`` with the app below
(an event pattern as the filter). The subprocess is the CLI unchanged, plus a hook that writes the worker's
statistics to a file when it stops.
Baseline: what a careful user writes with confluent-kafka and orjson alone: consume batches of 1000, parse,
filter, produce each output, flush (wait for every delivery report), commit synchronously; per batch. Its outputs
are the records eventbus writes: CloudEvents in the Kafka binding's binary mode (attributes in ce_* headers, the
data as the value, keyed by customer).

Each run gets a broker of its own (started fresh, same kind) holding the same input records. Both must commit
every input partition to its end and emit an output for every qualifying input (at-least-once intact).

Figures: processing events/s from the first batch read to the last commit; start-up from process (or consumer)
start to the first committed batch; per-batch latency p50/p99 (eventbus: from the poll to the hand-over of its
outputs and offsets to the writer thread, which commits while the next batch is processed; baseline: from
consume to the end of the synchronous commit).

usage: python benchmarks/w1_kafka.py [--events N] [--repeat R] [--broker tansu|noida]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.w1_embedded import make_events, w1_app  # noqa: E402

PARTITIONS = 3
BATCH = 1000
IN, OUT, GROUP = "orders", "large-payments", "w1"

app = w1_app()


# -- brokers and records --------------------------------------------------------------------------------------------


@contextmanager
def broker_for(kind: str) -> Iterator[tuple[str, str]]:
    """(bootstrap, URL options) of a fresh broker of ``kind`` (tansu or noida), stopped afterwards."""
    from tests.kafka.brokers import running

    with running(kind) as broker:
        yield broker.bootstrap, f"session.timeout.ms={int(broker.session_s * 1000)}&heartbeat.interval.ms=500"


def fill(bootstrap: str, events: list[tuple[bytes, bytes]]) -> None:
    """The input topic with the events (partitioned by CRC-32 of the key, as eventbus does) and an empty output."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(IN, PARTITIONS, 1), NewTopic(OUT, PARTITIONS, 1)]).values():
        future.result()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    for key, value in events:
        while True:
            try:
                producer.produce(IN, value, key, partition=zlib.crc32(key) % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0


def check(bootstrap: str, events: list[tuple[bytes, bytes]], group: str) -> int:
    """At-least-once intact: every input partition committed to its end, every qualifying input has an output.
    Returns the number of outputs."""
    from eventbus.backends.kafka.log import open_kafka_log
    from eventbus.codecs import decode_record

    expected = set()
    for _, value in events:
        event = orjson.loads(value)
        if event["type"] == "order.paid" and event["data"]["amount"] > 100:
            expected.add(event["id"])
    with open_kafka_log(f"kafka://{bootstrap}") as log:
        ends = {s.partition: s.end_offset for s in log.watermarks(IN)}
        committed = log.committed(group, IN)
        assert committed == ends, f"not everything committed: {committed} != {ends}"
        seen = set()
        outputs = 0
        for state in log.watermarks(OUT):
            position = state.start_offset
            while position < state.end_offset:
                batch = log.read(OUT, state.partition, position, 50_000)
                for value, headers in zip(batch.values, batch.headers, strict=True):
                    seen.add(decode_record(value, headers)["data"]["id"])
                outputs += len(batch)
                position = batch.next_offset
    missing = expected - seen
    assert not missing, f"{len(missing)} qualifying inputs have no output"
    return outputs


# -- eventbus ---------------------------------------------------------------------------------------------------


def run_eventbus(kind: str, events: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    with broker_for(kind) as (bootstrap, options), tempfile.TemporaryDirectory() as tmp:
        fill(bootstrap, events)
        stats_path = Path(tmp) / "stats.json"
        url = f"kafka://{bootstrap}?{options}"
        argv = ["run", "benchmarks.w1_kafka:app", "--broker", url, "--until-idle", "--max-poll-records", str(BATCH)]
        started = time.time()
        child = subprocess.run(
            [sys.executable, __file__, "--child", str(stats_path), "--log-level", "WARNING", *argv],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert child.returncode == 0, child.stderr
        stats = json.loads(stats_path.read_text())
        outputs = check(bootstrap, events, GROUP)
    return {
        "elapsed_s": stats["last_commit"] - stats["first_batch"],
        "startup_s": stats["first_commit"] - started,
        "events": stats["events_in"],
        "outputs": outputs,
        "batch_s": stats["round_latencies_s"],
    }


def child_main(stats_path: str, argv: list[str]) -> int:
    """``eventbus`` with ``argv``, writing the worker's statistics (wall-clock times) to ``stats_path``: when the
    first poll that returned records began, when the first and the last commit finished, the round latencies."""
    from eventbus.backends.kafka.consumer import KafkaConsumer
    from eventbus.cli import main
    from eventbus.runtime import worker as worker_module

    marks: dict[str, float] = {}
    poll = KafkaConsumer.poll

    def poll_and_note(self: KafkaConsumer, max_records: int, timeout_s: float) -> Any:
        began = time.time()
        batches = poll(self, max_records, timeout_s)
        if batches:
            marks.setdefault("first_batch", began)
        return batches

    settle = worker_module.Worker._settle_commit

    async def settle_and_note(self: Any) -> None:
        had_commit = self._in_flight is not None
        await settle(self)
        if had_commit:
            marks["last_commit"] = time.time()
            marks.setdefault("first_commit", marks["last_commit"])

    run = worker_module.Worker.run

    async def run_and_record(self: Any) -> Any:
        stats = await run(self)
        record = {**marks, "events_in": stats.events_in, "round_latencies_s": list(stats.round_latencies_s)}
        Path(stats_path).write_text(json.dumps(record))  # noqa: ASYNC240 - once, as the worker stops
        return stats

    KafkaConsumer.poll = poll_and_note  # type: ignore[method-assign]
    worker_module.Worker._settle_commit = settle_and_note  # type: ignore[method-assign]
    worker_module.Worker.run = run_and_record  # type: ignore[method-assign]
    return main(argv)


# -- the hand-written loop --------------------------------------------------------------------------------------


def run_baseline(kind: str, events: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """What a careful user writes with confluent-kafka and orjson: batch, produce, flush, commit synchronously."""
    from confluent_kafka import Consumer, KafkaError, Producer

    with broker_for(kind) as (bootstrap, options):
        fill(bootstrap, events)
        session_ms = int(options.split("session.timeout.ms=")[1].split("&")[0])
        started = time.time()
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "w1-hand-written",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
                "session.timeout.ms": session_ms,
                "heartbeat.interval.ms": 500,
            }
        )
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
        consumer.subscribe([IN])
        loads, dumps = orjson.loads, orjson.dumps
        processed = outputs = 0
        at_end: set[int] = set()
        batch_s: list[float] = []
        first_batch = first_commit = last_commit = 0.0
        while len(at_end) < PARTITIONS or processed < len(events):
            t0 = time.time()
            messages = consumer.consume(BATCH, 0.1)
            if not messages:
                continue
            records = 0
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(message.partition())
                        continue
                    raise RuntimeError(error)
                at_end.discard(message.partition())
                records += 1
                event = loads(message.value())
                data = event["data"]
                if event["type"] == "order.paid" and data["amount"] > 100:
                    customer = data["customer"]
                    key = customer.encode()
                    out = {
                        "id": event["id"],
                        "customer": customer,
                        "amount": data["amount"],
                        "currency": data["currency"],
                        "time": event["time"],
                    }
                    headers = [
                        ("ce_specversion", b"1.0"),
                        ("ce_id", os.urandom(16).hex().encode()),
                        ("ce_source", b"/w1"),
                        ("ce_type", b"payment.large"),
                        ("ce_time", event["time"].encode()),
                        ("ce_partitionkey", key),
                        ("content-type", b"application/json"),
                    ]
                    producer.produce(OUT, dumps(out), key, partition=zlib.crc32(key) % PARTITIONS, headers=headers)
                    outputs += 1
            if not records:
                continue
            if not first_batch:
                first_batch = t0
            assert producer.flush(60) == 0, "every output acknowledged before the commit"
            consumer.commit(asynchronous=False)
            processed += records
            last_commit = time.time()
            first_commit = first_commit or last_commit
            batch_s.append(last_commit - t0)
        consumer.close()
        written = check(bootstrap, events, "w1-hand-written")
    assert written == outputs
    return {
        "elapsed_s": last_commit - first_batch,
        "startup_s": first_commit - started,
        "events": processed,
        "outputs": outputs,
        "batch_s": batch_s,
    }


# -- report -----------------------------------------------------------------------------------------------------


def percentile_ms(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def describe(name: str, result: dict[str, Any]) -> str:
    rate = result["events"] / result["elapsed_s"]
    p50, p99 = percentile_ms(result["batch_s"], 0.5), percentile_ms(result["batch_s"], 0.99)
    return (
        f"{name:<20} {rate:>9,.0f} events/s  {result['elapsed_s']:>5.2f} s  outputs {result['outputs']:>6,}"
        f"  batch p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  start-up {result['startup_s']:4.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best is reported")
    parser.add_argument("--broker", default="tansu", choices=["tansu", "noida"], help="started fresh for each run")
    args = parser.parse_args()

    import confluent_kafka

    events = make_events(args.events)
    size = statistics.mean(len(v) for _, v in events)
    print(f"W1 on Kafka ({args.broker}): {args.events:,} events, mean {size:.0f} bytes, {PARTITIONS} partitions")
    print(
        f"on: Python {platform.python_version()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"confluent-kafka {confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]})"
    )
    best: dict[str, dict[str, Any]] = {}
    for run in range(args.repeat):
        for name, runner in (("eventbus run", run_eventbus), ("hand-written loop", run_baseline)):
            result = runner(args.broker, events)
            print(f"  run {run + 1}: {describe(name, result)}", flush=True)
            if name not in best or result["elapsed_s"] < best[name]["elapsed_s"]:
                best[name] = result
    print("best of each:")
    for name, result in best.items():
        print("  " + describe(name, result))
    ours = best["eventbus run"]["events"] / best["eventbus run"]["elapsed_s"]
    theirs = best["hand-written loop"]["events"] / best["hand-written loop"]["elapsed_s"]
    print(f"ratio eventbus / hand-written: {ours / theirs:.2f}x  (target: >= 1.2x, at-least-once intact)")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.exit(child_main(sys.argv[2], sys.argv[3:]))
    main()
