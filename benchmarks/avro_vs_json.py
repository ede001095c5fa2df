"""Avro against JSON for the W1 event, in one run: encode + decode events/s, per-event latency, bytes per event.

The W1 event (``benchmarks/w1_embedded.py:make_events``): a CloudEvent with an id, source, type, time and partition
key, and ``data`` of an order id, a customer, an amount and a currency. Each codec encodes the event the way the
publisher does and decodes the record the way the worker does:

- JSON, structured mode (the embedded log's default): one orjson document; decoded with one parse.
- JSON, binary mode (Kafka's default): attributes in ``ce_*`` headers, the data as JSON.
- Avro, binary mode: attributes in ``ce_*`` headers, the data in the Confluent wire format with the registered
  schema (fastavro, checked against the schema as it is written); decoded with the writer's schema by id.

Throughput: every event encoded then decoded, timed as a whole; best of ``--repeat`` runs. Latency: each event's
encode + decode timed on its own, p50/p99. Bytes: the record's value, and value + headers.

usage: python benchmarks/avro_vs_json.py [--events N] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.w1_embedded import make_events
from eventbus.backends.base import Message
from eventbus.codecs import decode_record
from eventbus.codecs.avro import AvroDecoder, AvroEncoder
from eventbus.codecs.structured import decode_structured
from eventbus.publisher import encode_event, encode_event_binary
from eventbus.schemas import Schemas, SchemaSet, open_registry
from eventbus.schemas.loader import event_schema

W1_SCHEMA = {
    "type": "record",
    "name": "OrderEvent",
    "namespace": "w1",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "customer", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "currency", "type": "string"},
    ],
}
TYPES = ("order.paid", "order.placed", "order.shipped")

Encode = Callable[[dict[str, Any]], Message]
Decode = Callable[[Message], dict[str, Any]]


def avro_codec() -> tuple[Encode, Decode]:
    schemas = SchemaSet(
        [event_schema({**W1_SCHEMA, "eventbus.type": t, "name": f"w1.{t.split('.')[1].title()}"}) for t in TYPES]
    )
    registry = open_registry("memory://avro-vs-json")
    encoder = AvroEncoder("orders", schemas, registry, Schemas())
    decoder = AvroDecoder(registry, schemas)
    return encoder, lambda m: decode_record(m.value, m.headers, decoder)


CODECS: dict[str, Callable[[], tuple[Encode, Decode]]] = {
    "JSON structured": lambda: (encode_event, lambda m: decode_structured(m.value)),
    "JSON binary": lambda: (encode_event_binary, lambda m: decode_record(m.value, m.headers)),
    "Avro binary": avro_codec,
}


def run(events: list[dict[str, Any]], encode: Encode, decode: Decode) -> float:
    started = time.perf_counter()
    for attrs in events:
        decode(encode(attrs))
    return time.perf_counter() - started


def latencies_us(events: list[dict[str, Any]], encode: Encode, decode: Decode) -> list[float]:
    clock = time.perf_counter_ns
    found = []
    for attrs in events:
        started = clock()
        decode(encode(attrs))
        found.append((clock() - started) / 1000)
    return found


def sizes(events: list[dict[str, Any]], encode: Encode) -> tuple[float, float]:
    messages = [encode(attrs) for attrs in events[:10_000]]
    values = [len(m.value or b"") for m in messages]
    headers = [sum(len(k) + len(v) for k, v in m.headers or ()) for m in messages]
    return statistics.mean(values), statistics.mean(v + h for v, h in zip(values, headers, strict=True))


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best is reported")
    args = parser.parse_args()

    events = [orjson.loads(value) for _, value in make_events(args.events)]
    print(f"Avro vs JSON, W1 event: {args.events:,} events encoded then decoded, best of {args.repeat}")
    print(
        f"on: Python {platform.python_version()} {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, "
        f"orjson {version('orjson')}, fastavro {version('fastavro')}"
    )
    results: dict[str, dict[str, float]] = {}
    for name, make in CODECS.items():
        encode, decode = make()
        decoded = decode(encode(dict(events[0])))
        assert decoded["data"] == events[0]["data"], f"{name} must give the data back"
        best = min(run(events, encode, decode) for _ in range(args.repeat))
        latency = latencies_us(events[: min(len(events), 50_000)], encode, decode)
        value_bytes, record_bytes = sizes(events, encode)
        results[name] = {"rate": len(events) / best, "value": value_bytes, "record": record_bytes}
        print(
            f"  {name:<16} {len(events) / best:>10,.0f} events/s  encode+decode p50 {percentile(latency, 0.5):5.1f} us"
            f"  p99 {percentile(latency, 0.99):5.1f} us  value {value_bytes:5.1f} B"
            f"  value+headers {record_bytes:5.1f} B"
        )
    avro, json_structured, json_binary = results["Avro binary"], results["JSON structured"], results["JSON binary"]
    print(
        f"ratio Avro / JSON structured: {avro['rate'] / json_structured['rate']:.2f}x events/s, "
        f"{avro['record'] / json_structured['record']:.2f}x bytes per record"
    )
    print(
        f"ratio Avro / JSON binary:     {avro['rate'] / json_binary['rate']:.2f}x events/s, "
        f"{avro['value'] / json_binary['value']:.2f}x value bytes, "
        f"{avro['record'] / json_binary['record']:.2f}x record bytes"
    )


if __name__ == "__main__":
    main()
