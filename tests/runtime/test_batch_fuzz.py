"""Seeded random scenarios of failing batch processors, checked against the guarantees.

Each seed draws one or two batch processors over one topic (sync or async; ``batch_size``, ``batch_window_ms``,
``bisect_on_error`` or not; 1 to 4 attempts; a circuit breaker or not) and how each one fails: by raising for the
whole batch, or by returning a batch item failure report (`BatchItemFailures` or Lambda's dict form; an empty
report, or none, when nothing failed). Events may fail a few times (transient), always (poison), with an error
the retry policy does not retry (raised), or make the processor return a malformed report (a whole-batch failure).
It publishes up to 200 events over three partitions, a second copy of a few of them (same id) somewhere after the
first, and a few undecodable records among them, and runs the app until idle on the memory log.

Which batches a processor is given depends on polls, windows and retries, so the checks judge the calls that
really happened against the documented rules (AWS Lambda's, for batches), in three tests sharing each seed's run:

- every event takes effect or is dead-lettered once: a call gets consecutive events of one partition (the not
  yet finished ones from the lowest on, in offset order, at most ``batch_size``) and its first event never goes
  back; every copy of an event was given to the processor; a copy whose last call failed it (a raise or a
  malformed report fails the whole batch; a report fails the events whose ids it names, every copy of such an
  id) is in the dead-letter topic once, with its own coordinates, and any other copy took effect in its last call
  and was never dead-lettered. A copy dead-lettered after taking effect is one a whole-batch failure took with it
  after a report had left it behind the checkpoint. With a raising processor, events took effect in offset order
  in each partition. The group's committed offsets are the partitions' ends, and each undecodable record is
  dead-lettered once;
- failed events are given up after their attempts: the events a call fails are dead-lettered together once the
  first of them (the checkpoint) has failed ``max_attempts`` times (at once for an error the policy does not
  retry), each dead letter with that count and the error that ended it, and no event fails more often than that;
  an event that joined the retried batch late goes with it, having failed fewer times. A failure from the
  batch's first event on, of more than one event, with ``bisect_on_error`` splits the batch instead and does not
  count, so a batch that fails as a whole is given up only once it is one event (bisection isolates it);
- for each processor, events processed + dead-lettered = events published (by the worker's metrics), and the
  worker's dead-letter count is what the dead-letter topics hold.
"""

from __future__ import annotations

import asyncio
import functools
import random
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from eventbus import App, BatchItemFailures, CircuitBreaker, Event, Idempotency, Retry
from eventbus.app.context import Context
from eventbus.backends.base import Message, TopicPartition, partition_for_key
from eventbus.backends.memory import MemoryLog
from eventbus.errors import ConfigurationError
from eventbus.observability import metrics
from eventbus.runtime.worker import WorkerStats
from eventbus.testing import TestBus

PARTITIONS = 3
KEYS = 9
RUN_TIMEOUT_S = 30.0
# What makes a batch depends on time only through windows, backoffs and breakers. So that each seed makes the same
# batches on a slow machine as on a fast one, a window is none (each round's events at once) or one that never
# runs out (a batch fills, or goes when the worker has caught up); a retry waits for the next round; and a breaker
# lets its probe through in the next round.
LONG_WINDOW_MS = 60_000
BREAKER_OPEN_S = 1e-6

Mode = Literal["raise", "report", "lambda"]
Kind = Literal["transient", "poison", "permanent", "malformed"]
Copy = tuple[int, int]  # (event number, copy number): copies of one event share its id


class PermanentError(ValueError):
    """A failure the processors' retry policy does not retry."""


@dataclass(frozen=True)
class Call:
    """One invocation of a batch processor, as the processor saw it."""

    partition: int
    copies: tuple[Copy, ...]
    failed: frozenset[Copy]  # the copies that failed in it
    whole: bool  # it failed as a whole: it raised, or returned a malformed report
    permanent: bool  # it raised an error the retry policy does not retry


@dataclass
class Plan:
    """One batch processor of a scenario, and what happened to it."""

    name: str
    is_async: bool
    mode: Mode
    batch_size: int
    window_ms: int
    bisect: bool
    max_attempts: int
    breaker: CircuitBreaker | None
    # Per event number: how it fails, and how many times each copy of it fails (transient and malformed).
    kinds: dict[int, tuple[Kind, int]]
    seen: Counter[Copy] = field(default_factory=Counter)
    calls: list[Call] = field(default_factory=list)
    effects: list[tuple[int, Copy]] = field(default_factory=list)  # (partition, copy), in order of effect


def _draw(rng: random.Random, seed: int, index: int, events: int) -> Plan:
    kinds: dict[int, tuple[Kind, int]] = {}
    for n in range(events):
        if rng.random() < 0.12:
            kind: Kind = rng.choice(["transient", "transient", "poison", "permanent", "malformed"])
            kinds[n] = (kind, rng.randint(1, 4))
    return Plan(
        name=f"s{seed}b{index}",  # the metrics are process-wide: a name of its own per seed
        is_async=rng.random() < 0.4,
        mode=rng.choice(["raise", "report", "lambda"]),
        batch_size=rng.choice([1, 2, 3, 5, 8, 16, 100]),
        window_ms=rng.choice([0, 0, LONG_WINDOW_MS]),
        bisect=rng.random() < 0.5,
        max_attempts=rng.randint(1, 4),
        breaker=(
            CircuitBreaker(f"dependency-{index}", failure_threshold=rng.randint(1, 3), open_s=BREAKER_OPEN_S)
            if rng.random() < 0.3
            else None
        ),
        kinds=kinds,
    )


def _malformed(events: list[Event]) -> object:
    """A report the worker must take for a failure of the whole batch."""
    shape = len(events) % 3
    if shape == 0:
        return BatchItemFailures(["not-in-this-batch"])
    if shape == 1:
        return {"batchItemFailures": "all of them"}
    return BatchItemFailures([1])  # type: ignore[list-item]  # not an id: malformed on purpose


def _report(plan: Plan, ids: list[str], call_number: int) -> object:
    if not ids and call_number % 3 == 0:
        return None  # no report at all: every event succeeded
    if plan.mode == "lambda":
        return {"batchItemFailures": [{"itemIdentifier": i} for i in ids]}
    return BatchItemFailures(ids)


def _attempt(plan: Plan, events: list[Event], ctx: Context) -> object:
    copies = tuple((int(e.data["n"]), int(e.data["copy"])) for e in events)
    failed: set[Copy] = set()
    malformed = permanent = False
    for copy in copies:
        plan.seen[copy] += 1
        kind, times = plan.kinds.get(copy[0], ("transient", 0))
        if kind in ("poison", "permanent") or plan.seen[copy] <= times:
            failed.add(copy)
            malformed |= kind == "malformed" and plan.mode != "raise"
            permanent |= kind == "permanent" and plan.mode == "raise"
    whole = malformed or (plan.mode == "raise" and bool(failed))
    plan.calls.append(Call(ctx.partition, copies, frozenset(failed), whole, permanent))
    if whole:
        if plan.mode == "raise":
            raise (PermanentError if permanent else ConnectionError)(f"{plan.name}: a batch of {len(events)} fails")
        return _malformed(events)
    plan.effects.extend((ctx.partition, copy) for copy in copies if copy not in failed)
    if plan.mode == "raise":
        return None
    return _report(plan, [e.id for e, copy in zip(events, copies, strict=True) if copy in failed], len(plan.calls))


def _declare(app: App, plan: Plan) -> None:
    options: dict[str, Any] = {
        "name": plan.name,
        "batch_size": plan.batch_size,
        "batch_window_ms": plan.window_ms,
        "bisect_on_error": plan.bisect,
        "retry": Retry(
            max_attempts=plan.max_attempts, initial_delay_ms=0, max_delay_ms=0, no_retry_on=(PermanentError,)
        ),
        "dead_letter_topic": f"{plan.name}.dlq",
    }
    if plan.breaker is not None:
        options["breaker"] = plan.breaker

    if plan.is_async:

        async def handle_async(events: list[Event], ctx: Context) -> object:
            await asyncio.sleep(0)
            return _attempt(plan, events, ctx)

        app.processor("in", **options)(handle_async)
    else:

        def handle(events: list[Event], ctx: Context) -> object:
            return _attempt(plan, events, ctx)

        app.processor("in", **options)(handle)


@dataclass
class Published:
    """Where each copy landed, and each partition's copies in offset order."""

    where: dict[Copy, tuple[int, int]] = field(default_factory=dict)
    order: dict[int, list[Copy]] = field(default_factory=lambda: defaultdict(list))
    undecodable: int = 0


def _poll_order() -> list[int]:
    """The partitions of ``in`` in the order the memory log's group consumer polls them: that of the set its
    claim returns, which follows this process's string hashing (PYTHONHASHSEED). Events are placed by that order,
    so that a seed makes the same batches in every process."""
    claimed: set[TopicPartition] = set()
    for partition in range(PARTITIONS):
        claimed.add(TopicPartition("in", partition))
    return [tp.partition for tp in claimed]


def _keys(order: list[int]) -> list[str]:
    """KEYS partition keys, the n-th on the (n % PARTITIONS)-th partition the consumer polls."""
    by_partition: dict[int, list[str]] = defaultdict(list)
    for candidate in (f"k{i}" for i in range(1000)):
        by_partition[partition_for_key(candidate.encode(), PARTITIONS)].append(candidate)
    return [by_partition[order[n % PARTITIONS]][n // PARTITIONS] for n in range(KEYS)]


def _publish(rng: random.Random, bus: TestBus, log: MemoryLog, count: int) -> Published:
    """Every event once, a second copy of a few somewhere after the first, undecodable records among them."""
    order = _poll_order()
    key_names = _keys(order)
    keys = [key_names[rng.randrange(KEYS)] for _ in range(count)]
    sequence: list[Copy | None] = [(n, 0) for n in range(count)]  # None: an undecodable record
    for n in rng.sample(range(count), k=rng.randint(0, 6)):
        sequence.insert(rng.randint(sequence.index((n, 0)) + 1, len(sequence)), (n, 1))
    for _ in range(rng.randint(0, 3)):
        sequence.insert(rng.randint(0, len(sequence)), None)
    published = Published()
    for item in sequence:
        if item is None:
            log.append("in", [Message(b"not json", partition=order[rng.randrange(PARTITIONS)])])
            published.undecodable += 1
            continue
        n, copy = item
        (position,) = bus.publish("in", Event("n", {"n": n, "copy": copy}, id=f"e{n}", partitionkey=keys[n]))
        published.where[item] = (position.partition, position.offset)
        published.order[position.partition].append(item)
    return published


def _run_within(bus: TestBus, app: App, timeout_s: float, **settings: Any) -> WorkerStats:
    """``bus.run`` on a thread: a worker that stalls fails the test instead of hanging it."""
    failure: list[BaseException] = []
    stats: list[WorkerStats] = []

    def run() -> None:
        try:
            stats.append(bus.run(app, **settings))
        except BaseException as exc:  # handed to the test below
            failure.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(timeout_s)
    assert not runner.is_alive(), f"the worker was still running after {timeout_s} s"
    if failure:
        raise failure[0]
    return stats[0]


def _dead_letter_count(name: str) -> float:
    return sum(value for labels, value in metrics.DEAD_LETTERED.values.items() if labels[0] == name)


def _counters(name: str) -> tuple[float, float]:
    """Events processed and dead-lettered by processor ``name``, by the worker's metrics."""
    return metrics.PROCESSED.value(name), _dead_letter_count(name)


def _since(before: tuple[float, float], after: tuple[float, float]) -> tuple[float, float]:
    return after[0] - before[0], after[1] - before[1]


@dataclass
class Outcome:
    """What one seed's run left: its processors, their dead letters and counts, the log's offsets."""

    plans: list[Plan]
    published: Published
    letters: dict[str, dict[Copy, list[dict[str, str]]]]  # by processor: each copy's dead letters
    undecodable_dead_letters: int
    committed: dict[int, int]
    ends: dict[int, int]
    counted: dict[str, tuple[float, float]]  # by processor: (processed, dead-lettered), by the metrics
    stats_dead_lettered: int
    dead_letters_written: int


@functools.cache
def _scenario(seed: int) -> Outcome:
    """Run one seed's scenario (once for the tests below)."""
    rng = random.Random(seed)
    count = rng.randint(40, 200)
    plans = [_draw(rng, seed, index, count) for index in range(rng.randint(1, 2))]
    app = App("fuzz")
    for plan in plans:
        _declare(app, plan)
    log = MemoryLog(f"batch-fuzz-{seed}")
    log.create_topic("in", PARTITIONS)
    bus = TestBus(log=log)
    published = _publish(rng, bus, log, count)
    before = {plan.name: _counters(plan.name) for plan in plans}

    stats = _run_within(bus, app, RUN_TIMEOUT_S, max_poll_records=rng.choice([1, 7, 50, 500]), retry_seed=seed)

    letters: dict[str, dict[Copy, list[dict[str, str]]]] = {}
    for plan in plans:
        letters[plan.name] = defaultdict(list)
        for event, failure in bus.dead_letters(f"{plan.name}.dlq"):
            if event is not None:
                letters[plan.name][(int(event.data["n"]), int(event.data["copy"]))].append(failure)
    # Undecodable records go to the dead-letter topic the topic's processors agree on, else to in.dlq.
    poison_topic = f"{plans[0].name}.dlq" if len(plans) == 1 else "in.dlq"
    dead_letter_topics = {f"{plan.name}.dlq" for plan in plans} | {poison_topic}
    return Outcome(
        plans=plans,
        published=published,
        letters=letters,
        undecodable_dead_letters=sum(event is None for event, _ in bus.dead_letters(poison_topic)),
        committed=bus.committed("fuzz", "in"),
        ends={state.partition: state.end_offset for state in log.watermarks("in")},
        counted={plan.name: _since(before[plan.name], _counters(plan.name)) for plan in plans},
        stats_dead_lettered=stats.dead_lettered,
        dead_letters_written=sum(len(bus.dead_letters(topic)) for topic in dead_letter_topics),
    )


# Each seed makes the same batches in every run (see LONG_WINDOW_MS and _poll_order): a failure is not timing.
SEEDS = range(50)


@pytest.mark.parametrize("seed", SEEDS)
def test_every_event_takes_effect_or_is_dead_lettered_once(seed: int) -> None:
    outcome = _scenario(seed)
    assert outcome.committed == outcome.ends
    assert outcome.undecodable_dead_letters == outcome.published.undecodable
    for plan in outcome.plans:
        _check_fates(plan, outcome.published, outcome.letters[plan.name])


@pytest.mark.parametrize("seed", SEEDS)
def test_failed_events_are_given_up_after_their_attempts(seed: int) -> None:
    outcome = _scenario(seed)
    for plan in outcome.plans:
        _check_attempts(plan, outcome.published, outcome.letters[plan.name])


@pytest.mark.parametrize("seed", SEEDS)
def test_processed_and_dead_lettered_add_up_to_published(seed: int) -> None:
    outcome = _scenario(seed)
    assert outcome.stats_dead_lettered == outcome.dead_letters_written
    for plan in outcome.plans:
        processed, dead = outcome.counted[plan.name]
        assert dead == sum(map(len, outcome.letters[plan.name].values()))
        assert processed + dead == len(outcome.published.where), f"{plan.name}: processed {processed}, dead {dead}"


def _is_split(plan: Plan, call: Call) -> bool:
    """Whether the worker splits this failed call instead of counting it as an attempt: bisection is on, more than
    one event failed, from the batch's first event on."""
    return plan.bisect and len(call.copies) > 1 and (call.whole or call.copies[0] in call.failed)


def _check_calls(plan: Plan, published: Published) -> None:
    """Each call's events against its partition's order."""
    start: dict[int, int] = {}
    for call in plan.calls:
        order = published.order[call.partition]
        assert all(published.where[c][0] == call.partition for c in call.copies), f"{plan.name}: {call}"
        first = order.index(call.copies[0])
        assert list(call.copies) == order[first : first + len(call.copies)], f"{plan.name}: not consecutive: {call}"
        assert len(call.copies) <= plan.batch_size, f"{plan.name}: a batch larger than batch_size: {call}"
        assert first >= start.get(call.partition, 0), f"{plan.name}: a batch went back before a finished event: {call}"
        if call.partition not in start:
            assert first == 0, f"{plan.name}: the first batch of partition {call.partition} skipped events"
        start[call.partition] = first


def _last_calls(plan: Plan) -> dict[Copy, Call]:
    return {copy: call for call in plan.calls for copy in call.copies}


def _failed_last(call: Call, copy: Copy) -> bool:
    return call.whole or copy in call.failed


def _check_fates(plan: Plan, published: Published, letters: dict[Copy, list[dict[str, str]]]) -> None:
    _check_calls(plan, published)
    last = _last_calls(plan)
    took_effect = Counter(copy for _, copy in plan.effects)
    for copy, (partition, offset) in published.where.items():
        call = last.get(copy)
        assert call is not None, f"{plan.name}: {copy} was never given to the processor"
        if _failed_last(call, copy):
            assert len(letters[copy]) == 1, (
                f"{plan.name}: {copy} failed in its last call; dead letters: {letters[copy]}"
            )
            (failure,) = letters[copy]
            assert (failure["origin.partition"], failure["origin.offset"]) == (str(partition), str(offset))
            assert not took_effect[copy] or (call.whole and plan.mode != "raise"), f"{plan.name}: {copy} took effect"
        else:
            assert letters[copy] == [], f"{plan.name}: {copy} dead-lettered though its last call succeeded"
    if plan.mode == "raise":
        for partition, order in published.order.items():
            firsts = list(dict.fromkeys(copy for p, copy in plan.effects if p == partition))
            assert firsts == [c for c in order if c in took_effect], f"{plan.name}: out of order in {partition}"


def _check_attempts(plan: Plan, published: Published, letters: dict[Copy, list[dict[str, str]]]) -> None:
    attempts: Counter[Copy] = Counter()  # each copy's failed calls, but for those the worker split
    for call in plan.calls:
        if not _is_split(plan, call):
            attempts.update(call.copies if call.whole else call.failed)
    for copy in published.where:
        assert attempts[copy] <= plan.max_attempts, f"{plan.name}: {copy} failed {attempts[copy]} times"
    given_up: dict[Call, list[Copy]] = defaultdict(list)
    for copy, call in _last_calls(plan).items():
        if _failed_last(call, copy) and letters[copy]:
            given_up[call].append(copy)
    for call, copies in given_up.items():
        _check_given_up(plan, call, copies, {copy: letters[copy][0] for copy in copies}, attempts)


def _check_given_up(
    plan: Plan, call: Call, copies: list[Copy], failures: dict[Copy, dict[str, str]], attempts: Counter[Copy]
) -> None:
    """The copies one call failed, dead-lettered together: with the attempts of the first of them (the checkpoint),
    which used them all unless its error is not retried."""
    checkpoint = call.copies[0] if call.whole else min(call.failed, key=call.copies.index)
    counts = {int(failure["attempts"]) for failure in failures.values()}
    assert counts == {attempts[checkpoint]}, f"{plan.name}: attempts {counts} for {call}, {attempts[checkpoint]} made"
    if not call.permanent:
        assert attempts[checkpoint] == plan.max_attempts, f"{plan.name}: given up early: {call}"
    assert all(attempts[copy] <= attempts[checkpoint] for copy in copies)
    if plan.bisect and call.whole:
        assert len(call.copies) == 1, f"{plan.name}: bisection did not isolate the failing event: {call}"
    expected = (
        ("PermanentError" if call.permanent else "ConnectionError")
        if plan.mode == "raise"
        else ("MalformedReportError" if call.whole else "BatchItemError")
    )
    assert {failure["error.class"].rpartition(".")[2] for failure in failures.values()} == {expected}


def test_batch_processors_refuse_idempotency() -> None:
    app = App("t")
    with pytest.raises(ConfigurationError, match="idempotency applies to processors that take one event at a time"):
        app.processor("in", batch_size=10, idempotency=Idempotency())(lambda events: None)
