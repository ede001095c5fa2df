"""Routing throughput: the Router against a naive loop over compiled patterns, at 10 to 10,000 rules; and one rule.

    python benchmarks/routing.py            # full run (about two minutes)
    python benchmarks/routing.py --quick    # seconds, for a smoke test

Events are CloudEvents-shaped orders of about 1 KB (nested objects, an array of line items, an IP address);
rules mix every operator: exact values, prefix, suffix, equals-ignore-case, wildcard, anything-but, numeric
ranges, exists, cidr and $or. Each rule targets one slice of the traffic (a service, an event type, a customer,
a country...), as rules in a real deployment do. The more rules, the more of them an event matches: about none
at 10 rules, 0.7 per event at 10,000 (the table's matches/ev column); the cost of those matches is part of the
cost at 10,000, and the targets are checked on this table.
A second table, for comparison, holds the same 10 rules about this traffic and adds rules about traffic it never
carries (other services, entities and customers), as on a bus shared by many producers: what holding rules costs
when events do not bring them up.
Both the router and the baseline are timed on one core, from parsed dicts and from raw JSON bytes.

The single-rule table times the W1 rule (``type`` is ``order.paid`` and ``data.amount`` > 100) on the ~250-byte
events of ``benchmarks/w1_embedded.py``, through ``Router.match`` and ``Pattern.matches``, against the same check
written by hand in Python (from bytes: ``orjson.loads`` first).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventbus.routing import Pattern, Router, compile_pattern

RULE_COUNTS = (10, 100, 1_000, 10_000)
SERVICES = [f"svc-{n:03d}" for n in range(60)]
ENTITIES = ["order", "payment", "shipment", "invoice", "refund", "cart", "account", "review"]
ACTIONS = ["created", "updated", "cancelled", "completed", "failed", "retried"]
COUNTRIES = ["DE", "FR", "US", "GB", "ES", "IT", "NL", "SE", "PL", "JP", "BR", "IN", "CA", "AU", "MX"]
TIERS = ["free", "standard", "gold", "platinum"]
REGIONS = ["eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-south-1", "sa-east-1"]
STATUSES = ["new", "pending", "active", "blocked", "closed"]
CUSTOMERS = 20_000


def make_event(rng: random.Random, serial: int) -> dict[str, Any]:
    service = rng.choice(SERVICES)
    entity = rng.choice(ENTITIES)
    customer = rng.randrange(CUSTOMERS)
    lines = [(rng.randint(1, 5), round(rng.uniform(1, 300), 2)) for _ in range(rng.randint(1, 3))]
    items = [{"sku": f"SKU-{rng.randrange(10_000):05d}", "qty": qty, "price": price} for qty, price in lines]
    return {
        "specversion": "1.0",
        "id": f"{serial:08x}-{rng.getrandbits(32):08x}-4c1e-9f2a-{rng.getrandbits(48):012x}",
        "source": f"com.example.{service}",
        "type": f"{service}.{entity}.{rng.choice(ACTIONS)}",
        "subject": f"{entity}/{rng.randrange(1_000_000)}",
        "time": f"2024-05-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:07.125Z",
        "datacontenttype": "application/json",
        "partitionkey": f"customer-{customer}",
        "data": {
            "customer": {
                "id": f"c-{customer}",
                "tier": rng.choice(TIERS),
                "country": rng.choice(COUNTRIES),
                "email": f"user{customer}@example.com",
                "since": 2010 + customer % 14,
            },
            "order": {
                "id": f"o-{rng.getrandbits(40):010x}",
                "total": round(sum(qty * price for qty, price in lines), 2),
                "currency": rng.choice(["EUR", "USD", "GBP"]),
                "items": items,
                "status": rng.choice(STATUSES),
            },
            "client": {
                "ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
                "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0",
                "channel": rng.choice(["web", "ios", "android", "api"]),
            },
            "region": rng.choice(REGIONS),
            "tags": rng.sample(["priority", "gift", "b2b", "promo", "fragile", "express"], k=2),
            "notes": None,
        },
    }


@dataclass(frozen=True)
class Values:
    """The values rules name: those the benchmark's traffic carries, or those of traffic it never carries."""

    services: Sequence[str]
    entities: Sequence[str]
    first_customer: int
    customers: int


TRAFFIC = Values(SERVICES, ENTITIES, 0, CUSTOMERS)
# Rules a shared bus holds for other producers' events: other services and entities, customers this traffic never
# names (and whose partition-key suffixes no customer number here ends with).
OTHER_TRAFFIC = Values(
    [f"svc-{n:03d}" for n in range(100, 400)],
    ["ticket", "loan", "claim", "policy", "booking", "parcel", "lead", "quote"],
    20_000,
    80_000,
)


def _customer(rng: random.Random, values: Values) -> int:
    return values.first_customer + rng.randrange(values.customers)


def _rule_by_type(rng: random.Random, values: Values) -> dict[str, Any]:
    service, entity = rng.choice(values.services), rng.choice(values.entities)
    return {
        "source": [f"com.example.{service}"],
        "type": [f"{service}.{entity}.{rng.choice(ACTIONS)}"],
        "data": {"order": {"total": [{"numeric": [">", rng.choice([0, 50, 100, 250])]}]}},
    }


def _rule_by_customer(rng: random.Random, values: Values) -> dict[str, Any]:
    return {
        "data": {
            "customer": {"id": [f"c-{_customer(rng, values)}"]},
            "order": {"status": [{"anything-but": ["blocked", "closed"]}]},
            "client": {"ip": [{"exists": True}]},
        }
    }


def _rule_by_subject(rng: random.Random, values: Values) -> dict[str, Any]:
    entity = rng.choice(values.entities)
    return {
        "subject": [{"prefix": f"{entity}/{rng.randrange(100, 1000)}"}],
        "data": {"customer": {"country": [{"equals-ignore-case": rng.choice(COUNTRIES).lower()}]}},
    }


def _rule_by_partition(rng: random.Random, values: Values) -> dict[str, Any]:
    return {
        "partitionkey": [{"suffix": f"-{_customer(rng, values)}"}],
        "data": {"client": {"ip": [{"cidr": "10.0.0.0/8"}]}, "tags": [{"exists": True}]},
    }


def _rule_by_wildcard(rng: random.Random, values: Values) -> dict[str, Any]:
    entity = rng.choice(values.entities)
    return {
        "subject": [{"wildcard": f"{entity}/{rng.randrange(100, 1000)}*{rng.randrange(10)}"}],
        "type": [{"wildcard": f"*.{entity}.*"}],
        "data": {"customer": {"since": [{"numeric": [">=", rng.randint(2010, 2023), "<", 2030]}]}},
    }


def _rule_with_or(rng: random.Random, values: Values) -> dict[str, Any]:
    service = rng.choice(values.services)
    return {
        "source": [f"com.example.{service}"],
        "$or": [
            {"data": {"customer": {"tier": ["platinum"], "id": [f"c-{_customer(rng, values)}"]}}},
            {"subject": [f"{rng.choice(values.entities)}/{rng.randrange(1_000_000)}"]},
        ],
    }


RULE_KINDS: list[Callable[[random.Random, Values], dict[str, Any]]] = [
    _rule_by_type,
    _rule_by_customer,
    _rule_by_subject,
    _rule_by_partition,
    _rule_by_wildcard,
    _rule_with_or,
]


def make_rules(rng: random.Random, count: int, values: Values = TRAFFIC) -> list[dict[str, Any]]:
    return [RULE_KINDS[n % len(RULE_KINDS)](rng, values) for n in range(count)]


def rules_for_this_traffic(seed: int, count: int) -> list[dict[str, Any]]:
    """The main table's rules: every one of them about the traffic measured."""
    return make_rules(random.Random(seed + count), count)


def rules_mostly_for_other_traffic(seed: int, count: int) -> list[dict[str, Any]]:
    """The second table's rules: the main table's 10 rules, and ``count - 10`` about traffic this stream never
    carries (a bus shared by many producers): the cost of holding rules that events here do not bring up."""
    live = min(count, LIVE_RULES)
    return rules_for_this_traffic(seed, live) + make_rules(random.Random(seed + count + 1), count - live, OTHER_TRAFFIC)


LIVE_RULES = 10


@dataclass
class Timing:
    events_per_second: float
    p50_us: float
    p99_us: float


@dataclass
class Row:
    rules: int
    source: str
    router: Timing
    naive: Timing
    matches_per_event: float

    @property
    def speedup(self) -> float:
        return self.router.events_per_second / self.naive.events_per_second


def throughput(route: Callable[[Any], object], inputs: Sequence[Any], seconds: float) -> float:
    """Events per second of the fastest whole pass through ``inputs``, passes repeated for ``seconds``.

    The fastest pass is the one least disturbed by other work on the machine.
    """
    best = math.inf
    gc.disable()
    try:
        deadline = time.perf_counter() + seconds
        while True:
            start = time.perf_counter()
            for item in inputs:
                route(item)
            finished = time.perf_counter()
            best = min(best, finished - start)
            if finished > deadline:
                break
    finally:
        gc.enable()
    return len(inputs) / best


def latencies(route: Callable[[Any], object], inputs: Sequence[Any], seconds: float) -> tuple[float, float]:
    """p50 and p99 per-event latency in microseconds, each call timed on its own."""
    samples: list[int] = []
    clock = time.perf_counter_ns
    deadline = time.perf_counter() + seconds
    gc.disable()
    try:
        while time.perf_counter() < deadline or not samples:
            for item in inputs:
                started = clock()
                route(item)
                samples.append(clock() - started)
    finally:
        gc.enable()
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49] / 1000, cuts[98] / 1000


def measure(route: Callable[[Any], object], inputs: Sequence[Any], seconds: float) -> Timing:
    route(inputs[0])  # warm up caches and lazy imports
    rate = throughput(route, inputs, seconds)
    p50, p99 = latencies(route, inputs, seconds / 2)
    return Timing(rate, p50, p99)


def naive_router(patterns: list[Pattern]) -> tuple[Callable[[Any], list[int]], Callable[[bytes], list[int]]]:
    def match(event: Any) -> list[int]:
        return [n for n, p in enumerate(patterns) if p.matches(event)]

    def match_json(raw: bytes) -> list[int]:
        from eventbus.routing.parse import loads_event

        return match(loads_event(raw))

    return match, match_json


W1_RULE: dict[str, Any] = {"type": ["order.paid"], "data": {"amount": [{"numeric": [">", 100]}]}}


def w1_by_hand(event: dict[str, Any]) -> bool:
    """The W1 rule as a user would write it for these events (it assumes their shape)."""
    return bool(event["type"] == "order.paid" and event["data"]["amount"] > 100)


@dataclass
class SingleRow:
    name: str
    source: str
    timing: Timing


def run_single_rule(seconds: float, event_count: int) -> list[SingleRow]:
    """The W1 rule alone: router, pattern and the hand-written check, from dicts and from bytes."""
    from benchmarks.w1_embedded import make_events

    raws = [value for _, value in make_events(event_count)]
    events = [orjson.loads(raw) for raw in raws]
    pattern = compile_pattern(W1_RULE)
    router: Router[str] = Router()
    router.add(pattern, "large-payments")
    for event in events:
        assert (router.match(event) == ["large-payments"]) == pattern.matches(event) == w1_by_hand(event)
    candidates: list[tuple[str, str, Callable[[Any], object], Sequence[Any]]] = [
        ("hand-written check", "dict", w1_by_hand, events),
        ("hand-written check", "bytes", lambda raw: w1_by_hand(orjson.loads(raw)), raws),
        ("Router.match", "dict", router.match, events),
        ("Router.match_json", "bytes", router.match_json, raws),
        ("Pattern.matches", "dict", pattern.matches, events),
        ("Pattern.matches_json", "bytes", pattern.matches_json, raws),
    ]
    return [SingleRow(name, source, measure(route, inputs, seconds)) for name, source, route, inputs in candidates]


def run(
    counts: Sequence[int],
    seconds: float,
    event_count: int,
    seed: int,
    rules_for: Callable[[int, int], list[dict[str, Any]]] = rules_for_this_traffic,
) -> list[Row]:
    rng = random.Random(seed)
    events = [make_event(rng, n) for n in range(event_count)]
    raws = [orjson.dumps(e) for e in events]
    rows = []
    for count in counts:
        patterns = [compile_pattern(rule) for rule in rules_for(seed, count)]
        router: Router[int] = Router()
        for number, pattern in enumerate(patterns):
            router.add(pattern, number)
        naive_match, naive_match_json = naive_router(patterns)
        matched = sum(len(router.match(e)) for e in events)
        # The baseline's cost grows with the rules; give it fewer events so that a pass stays short.
        naive_inputs = max(10, min(event_count, 20_000 // count))
        for event in events[:naive_inputs]:
            assert router.match(event) == naive_match(event), "router and baseline disagree"
        for source, inputs, route, slow in (
            ("dict", events, router.match, naive_match),
            ("bytes", raws, router.match_json, naive_match_json),
        ):
            fast = measure(route, inputs, seconds)
            baseline = measure(slow, inputs[:naive_inputs], seconds / 2)
            rows.append(Row(count, source, fast, baseline, matched / len(events)))
    return rows


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loop_calibration() -> float:
    """Nanoseconds per iteration of a trivial Python loop: how fast this machine runs Python at all."""

    def count(n: int) -> int:
        total = 0
        for i in range(n):
            total += i
        return total

    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        count(200_000)
        best = min(best, time.perf_counter() - start)
    return best / 200_000 * 1e9


def pin_to_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = max(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}"
    return "not pinned"


def report(rows: list[Row], other_rows: list[Row], event_size: float, settings: str) -> None:
    print("eventbus routing benchmark")
    print(f"  python   {platform.python_implementation()} {platform.python_version()} ({sys.platform})")
    print(f"  cpu      {cpu_name()}, {os.cpu_count()} logical cores; process {settings}")
    print(f"  speed    {loop_calibration():.1f} ns per iteration of a trivial Python loop (compare machines by it)")
    print(f"  events   CloudEvents orders, {event_size:.0f} bytes of JSON on average")
    print("  rules    mixed: exact, prefix, suffix, equals-ignore-case, wildcard, anything-but, numeric,")
    print("           exists, cidr, $or")
    print()
    print("rules about this traffic (the more rules, the more each event matches)")
    _table(rows)
    for source in ("dict", "bytes"):
        ratio = _cost_ratio(rows, source)
        if ratio is not None:
            low, high, cost = ratio
            print(f"router cost at {high:,} rules / cost at {low:,} rules ({source}): {cost:.2f}x (target <= 1.5x)")
    dicts = {r.rules: r for r in rows if r.source == "dict"}
    if 1_000 in dicts:
        rate = dicts[1_000].router.events_per_second
        verdict = "met" if rate >= 200_000 else "NOT met"
        print(f"router at 1,000 rules from dicts: {rate:,.0f} events/s (target >= 200,000: {verdict})")
    if other_rows:
        print()
        print(f"for comparison: the same {LIVE_RULES} rules about this traffic, the others about traffic it never has")
        _table(other_rows)
        for source in ("dict", "bytes"):
            ratio = _cost_ratio(other_rows, source)
            if ratio is not None:
                print(f"router cost at {ratio[1]:,} rules / cost at {ratio[0]:,} rules ({source}): {ratio[2]:.2f}x")


def _table(rows: list[Row]) -> None:
    header = (
        f"{'rules':>6} {'input':>5} {'matches/ev':>10} | {'router ev/s':>12} {'p50 us':>7} {'p99 us':>7} | "
        f"{'naive ev/s':>11} {'p50 us':>8} {'p99 us':>8} | {'speed-up':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.rules:>6} {row.source:>5} {row.matches_per_event:>10.2f} | "
            f"{row.router.events_per_second:>12,.0f} {row.router.p50_us:>7.2f} {row.router.p99_us:>7.2f} | "
            f"{row.naive.events_per_second:>11,.0f} {row.naive.p50_us:>8.1f} {row.naive.p99_us:>8.1f} | "
            f"{row.speedup:>7.1f}x"
        )


def _cost_ratio(rows: list[Row], source: str) -> tuple[int, int, float] | None:
    """(fewest rules, most rules, cost at the most / cost at the fewest) for one input kind."""
    by_count = {r.rules: r for r in rows if r.source == source}
    if len(by_count) < 2:
        return None
    low, high = min(by_count), max(by_count)
    return low, high, by_count[low].router.events_per_second / by_count[high].router.events_per_second


def report_single_rule(rows: list[SingleRow]) -> None:
    print()
    print("single W1 rule (type order.paid, data.amount > 100) on the W1 events (~250 bytes)")
    header = (
        f"{'':<22} {'input':>5} | {'us/event':>8} {'events/s':>12} {'p50 us':>7} {'p99 us':>7} | {'x hand-written':>14}"
    )
    print(header)
    print("-" * len(header))
    by_hand = {r.source: r.timing.events_per_second for r in rows if r.name == "hand-written check"}
    for row in rows:
        rate = row.timing.events_per_second
        print(
            f"{row.name:<22} {row.source:>5} | {1e6 / rate:>8.3f} {rate:>12,.0f} {row.timing.p50_us:>7.2f} "
            f"{row.timing.p99_us:>7.2f} | {by_hand[row.source] / rate:>13.1f}x"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few seconds in all, for smoke tests")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    seconds, event_count = (0.05, 200) if args.quick else (2.0, 2_000)
    pinning = pin_to_one_core()
    rows = run(RULE_COUNTS, seconds, event_count, args.seed)
    other_rows = run(RULE_COUNTS, seconds, event_count, args.seed, rules_mostly_for_other_traffic)
    single = run_single_rule(seconds, event_count)
    sample = [len(orjson.dumps(make_event(random.Random(args.seed), n))) for n in range(200)]
    report(rows, other_rows, sum(sample) / len(sample), pinning)
    report_single_rule(single)
    if args.json is not None:
        payload = {
            "rules": [{**asdict(r), "speedup": r.speedup} for r in rows],
            "rules_mostly_for_other_traffic": [{**asdict(r), "speedup": r.speedup} for r in other_rows],
            "single_rule": [asdict(r) for r in single],
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
