"""Seeded random scenarios of failing processors, checked against the guarantees.

Each seed draws one to three processors over one topic (sync or async; one event at a time, or concurrent with
ordering per key; idempotent or not, when one at a time; 1 to 4 attempts; a circuit breaker or not), and for
each processor the events that fail, how many times, and whether permanently. It publishes up to 300 events over
three partitions, a second copy of a few of them (same id), and a few undecodable records, and runs the app until
idle on the memory log. Then, for each processor:

- an event whose failures fit in ``max_attempts`` took effect once per copy (once in all, with idempotency) and
  was never dead-lettered;
- one whose failures do not (or whose failure is permanent) is in the dead-letter topic once per copy, each time
  with the attempt count it really had, and never took effect;
- the events of one partition took effect in offset order (of one key, for concurrent processors);
- the group's committed offsets are the partitions' ends, and each undecodable record is dead-lettered once.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest

from eventbus import App, CircuitBreaker, Event, Idempotency, Retry
from eventbus.app.context import Context
from eventbus.backends.base import Message
from eventbus.backends.memory import MemoryLog
from eventbus.testing import TestBus

PARTITIONS = 3
KEYS = 8


class PermanentError(ValueError):
    """A failure the processors' retry policy does not retry."""


@dataclass
class Plan:
    """One processor of a scenario, and what happened to it."""

    name: str
    is_async: bool
    concurrent: bool
    idempotent: bool
    max_attempts: int
    breaker: CircuitBreaker | None
    # Per event number: how many times each copy of it fails, and whether that failure is permanent.
    failures: dict[int, tuple[int, bool]]
    calls: Counter[tuple[int, int]] = field(default_factory=Counter)  # by (partition, offset)
    effects: list[tuple[int, int, str]] = field(default_factory=list)  # (partition, n, key), in order of effect


def _draw(rng: random.Random, index: int, events: int) -> Plan:
    failures = {n: (rng.randint(1, 4), rng.random() < 0.2) for n in range(events) if rng.random() < 0.15}
    concurrent = rng.random() < 0.4
    return Plan(
        name=f"p{index}",
        is_async=rng.random() < 0.5,
        concurrent=concurrent,
        idempotent=not concurrent and rng.random() < 0.5,  # idempotency needs concurrency=1
        max_attempts=rng.randint(1, 4),
        breaker=(
            CircuitBreaker(f"dependency-{index}", failure_threshold=rng.randint(1, 3), open_s=rng.choice([0.002, 0.01]))
            if rng.random() < 0.3
            else None
        ),
        failures=failures,
    )


def _declare(app: App, plan: Plan) -> None:
    options: dict[str, Any] = {
        "name": plan.name,
        "retry": Retry(
            max_attempts=plan.max_attempts, initial_delay_ms=1, max_delay_ms=2, no_retry_on=(PermanentError,)
        ),
        "dead_letter_topic": f"{plan.name}.dlq",
    }
    if plan.concurrent:
        options.update(concurrency=3, ordering="key")
    if plan.idempotent:
        options["idempotency"] = Idempotency()
    if plan.breaker is not None:
        options["breaker"] = plan.breaker

    def attempt(event: Event, ctx: Context) -> None:
        n = event.data["n"]
        copy = (ctx.partition, ctx.offset)
        plan.calls[copy] += 1
        count, permanent = plan.failures.get(n, (0, False))
        if plan.calls[copy] <= count:
            raise (PermanentError if permanent else ConnectionError)(f"{plan.name}: event {n} fails")
        plan.effects.append((ctx.partition, n, str(event.partitionkey)))

    if plan.is_async:

        async def handle_async(event: Event, ctx: Context) -> None:
            await asyncio.sleep(0)
            attempt(event, ctx)

        app.processor("in", **options)(handle_async)
    else:

        def handle(event: Event, ctx: Context) -> None:
            attempt(event, ctx)

        app.processor("in", **options)(handle)


@pytest.mark.parametrize("seed", range(60))
def test_random_failures_keep_every_guarantee(seed: int) -> None:
    rng = random.Random(seed)
    count = rng.randint(50, 300)
    plans = [_draw(rng, index, count) for index in range(rng.randint(1, 3))]
    app = App("fuzz")
    for plan in plans:
        _declare(app, plan)
    log = MemoryLog(f"fuzz-{seed}")
    log.create_topic("in", PARTITIONS)
    bus = TestBus(log=log)
    events = [Event("n", {"n": n}, id=f"e{n}", partitionkey=f"k{rng.randrange(KEYS)}") for n in range(count)]
    bus.publish("in", *events)
    duplicates = rng.sample(range(count), k=5)
    bus.publish("in", *[events[n] for n in duplicates])
    poison = rng.randint(0, 3)
    for _ in range(poison):
        log.append("in", [Message(b"not json", partition=rng.randrange(PARTITIONS))])

    bus.run(app, max_poll_records=rng.choice([1, 7, 50, 500]), retry_seed=seed)

    ends = {state.partition: state.end_offset for state in log.watermarks("in")}
    assert bus.committed("fuzz", "in") == ends
    # Undecodable records go to the dead-letter topic the topic's processors agree on, else to in.dlq.
    poison_topic = f"{plans[0].name}.dlq" if len(plans) == 1 else "in.dlq"
    assert sum(event is None for event, _ in bus.dead_letters(poison_topic)) == poison, "undecodable records"
    copies = Counter(range(count)) + Counter(duplicates)
    for plan in plans:
        _check(plan, bus, copies)


def _check(plan: Plan, bus: TestBus, copies: Counter[int]) -> None:
    letters = bus.dead_letters(f"{plan.name}.dlq")
    dead: dict[int, list[int]] = defaultdict(list)  # n -> the attempt count of each of its dead letters
    for event, failure in letters:
        if event is not None:
            dead[event.data["n"]].append(int(failure["attempts"]))
    took_effect = Counter(n for _, n, _ in plan.effects)
    for n, delivered in copies.items():
        fails, permanent = plan.failures.get(n, (0, False))
        if permanent or fails >= plan.max_attempts:
            tried = 1 if permanent else plan.max_attempts
            assert dead[n] == [tried] * delivered, f"{plan.name}: event {n}: dead letters with attempts {dead[n]}"
            assert took_effect[n] == 0, f"{plan.name}: event {n} took effect though it was given up"
        else:
            assert dead[n] == [], f"{plan.name}: event {n} dead-lettered though it succeeded"
            expected = 1 if plan.idempotent else delivered
            assert took_effect[n] == expected, f"{plan.name}: event {n} took effect {took_effect[n]} times"
    order: dict[Any, list[int]] = defaultdict(list)
    for partition, n, key in plan.effects:
        stream = (partition, key) if plan.concurrent else partition
        if n not in order[stream]:
            order[stream].append(n)
    for stream, numbers in order.items():
        assert numbers == sorted(numbers), f"{plan.name}: {stream} took effect out of order: {numbers}"
