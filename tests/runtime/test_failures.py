"""Failure handling on every driver (Kafka too): retries and backoff, timeouts, dead letters, partial batch failure,
bisection, circuit breakers, concurrency, idempotency, poison input."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventbus import App, BatchItemFailures, CircuitBreaker, Event, Idempotency, Retry
from eventbus.backends.base import Message
from eventbus.errors import ConfigurationError
from eventbus.observability import metrics
from eventbus.runtime.idempotency import FileIdempotencyStore, key_hash
from eventbus.runtime.key_hashing import KeyedXxh3, KeyHashing
from eventbus.testing import TestBus
from tests.conftest import ALL_DRIVERS, open_log

FAST = {"initial_delay_ms": 1.0, "max_delay_ms": 5.0}


@pytest.fixture(params=ALL_DRIVERS)
def bus(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestBus]:
    with open_log(request.param, request, tmp_path) as log:
        yield TestBus(log=log)


def n_events(bus: TestBus, topic: str, count: int, **attributes: object) -> list[Event]:
    events = [Event("n", {"n": i}, **attributes) for i in range(count)]  # type: ignore[arg-type]
    bus.publish(topic, *events)
    return events


# -- retries -------------------------------------------------------------------------------------------------------


def test_transient_failures_are_applied_once_after_k_plus_1_attempts_no_sooner_than_the_schedule(bus: TestBus) -> None:
    app = App("t")
    attempts: dict[int, list[float]] = {}
    applied: list[int] = []
    policy = Retry(max_attempts=5, initial_delay_ms=20, multiplier=2, max_delay_ms=1000, jitter="none")

    @app.processor("in", retry=policy)
    def flaky(event: Event) -> None:
        n = event.data["n"]
        attempts.setdefault(n, []).append(time.monotonic())
        if len(attempts[n]) <= n:  # event n fails n times, then succeeds
            raise ConnectionError(f"try again ({len(attempts[n])})")
        applied.append(n)

    n_events(bus, "in", 4)
    bus.run(app)
    assert applied == [0, 1, 2, 3]
    for n, times in attempts.items():
        assert len(times) == n + 1
        for retry, (before, after) in enumerate(itertools.pairwise(times), start=1):
            assert after - before >= policy.ceiling_s(retry), (n, retry, after - before)
    assert bus.dead_letters("in.dlq") == []


def test_permanent_failures_are_dead_lettered_after_exactly_max_attempts_never_applied(bus: TestBus) -> None:
    app = App("t")
    calls: dict[int, int] = {}

    @app.processor("in", retry=Retry(max_attempts=3, **FAST))
    def broken(event: Event) -> None:
        calls[event.data["n"]] = calls.get(event.data["n"], 0) + 1
        if event.data["n"] % 2:
            raise ValueError(f"odd {event.data['n']}")

    events = n_events(bus, "in", 6)
    bus.run(app)
    assert calls == {0: 1, 1: 3, 2: 1, 3: 3, 4: 1, 5: 3}
    dead = bus.dead_letters("in.dlq")
    assert [e.id for e, _ in dead if e] == [events[1].id, events[3].id, events[5].id]
    for event, failure in dead:
        assert event is not None
        assert failure["attempts"] == "3"
        assert failure["error.class"] == "ValueError"
        assert failure["error.message"] == f"odd {event.data['n']}"
        assert failure["processor"].endswith("broken")
        assert failure["origin.topic"] == "in"
        assert failure["origin.partition"] == "0"
        assert int(failure["origin.offset"]) == event.data["n"]
        assert "raise ValueError" in failure["error.traceback"]
        assert failure["failure.first"] <= failure["failure.last"]
    assert bus.committed("t", "in") == {0: 6}


def test_no_retry_on_and_retry_on_decide_which_errors_get_another_attempt(bus: TestBus) -> None:
    app = App("t")
    calls: list[str] = []

    class FatalError(Exception):
        pass

    @app.processor("in", retry=Retry(max_attempts=4, retry_on=(OSError,), no_retry_on=(PermissionError,), **FAST))
    def picky(event: Event) -> None:
        kind = event.data["kind"]
        calls.append(kind)
        raise {"os": OSError, "perm": PermissionError, "fatal": FatalError}[kind](kind)

    bus.publish_data("in", "x", [{"kind": "os"}, {"kind": "perm"}, {"kind": "fatal"}])
    bus.run(app)
    assert calls.count("os") == 4
    assert calls.count("perm") == 1
    assert calls.count("fatal") == 1
    assert [f["attempts"] for _, f in bus.dead_letters("in.dlq")] == ["4", "1", "1"]


def test_events_older_than_max_event_age_stop_being_retried(bus: TestBus) -> None:
    app = App("t")
    calls = []

    @app.processor("in", retry=Retry(max_attempts=100, max_event_age_s=0.05, **FAST))
    def always_fails(event: Event) -> None:
        calls.append(time.monotonic())
        raise TimeoutError("down")

    # A minute ago, not in 1970: a broker with retention would delete the record before it is read.
    a_minute_ago = int(time.time() * 1000) - 60_000
    record = b'{"specversion":"1.0","id":"e","source":"/s","type":"t"}'
    bus.log.append("in", [Message(record, timestamp_ms=a_minute_ago)])
    bus.run(app)
    ((_, failure),) = bus.dead_letters("in.dlq")
    assert len(calls) == 1, "appended long ago: too old after its first failure"
    assert failure["attempts"] == "1"


def test_a_retrying_event_holds_back_its_partition_but_not_the_others(bus: TestBus) -> None:
    bus.log.create_topic("in", 2)
    app = App("t")
    order: list[tuple[int, int]] = []
    failed_once: set[int] = set()

    @app.processor("in", retry=Retry(max_attempts=3, initial_delay_ms=150, jitter="none"))
    def handle(event: Event) -> None:
        partition, n = event.data["p"], event.data["n"]
        if partition == 0 and n == 1 and n not in failed_once:
            failed_once.add(n)
            raise ConnectionError("blip")
        order.append((partition, n))

    bus.log.append(
        "in",
        [
            Message(
                b'{"specversion":"1.0","id":"%d-%d","source":"/t","type":"x","data":{"p":%d,"n":%d}}' % (p, n, p, n),
                partition=p,
            )
            for n in range(4)
            for p in (0, 1)
        ],
    )
    bus.run(app)
    p0 = [n for p, n in order if p == 0]
    assert p0 == [0, 1, 2, 3], "order within the failing partition holds"
    first_p0_retry = order.index((0, 1))
    assert {(1, n) for n in range(4)} <= set(order[:first_p0_retry]), "the other partition went on meanwhile"


# -- timeouts ------------------------------------------------------------------------------------------------------


def test_sync_and_async_invocations_that_run_too_long_count_as_failed_attempts(bus: TestBus) -> None:
    app = App("t")
    calls = {"sync": 0, "async": 0}
    first_call: list[float] = []

    @app.processor("in", timeout_s=0.05, retry=Retry(max_attempts=2, **FAST))
    def slow_sync(event: Event) -> None:
        first_call.append(time.monotonic())
        calls["sync"] += 1
        if event.data["n"] == 1:
            time.sleep(5)

    @app.processor("in", timeout_s=0.05, retry=Retry(max_attempts=2, **FAST), dead_letter_topic="async.dlq")
    async def slow_async(event: Event) -> None:
        first_call.append(time.monotonic())
        calls["async"] += 1
        if event.data["n"] == 1:
            await asyncio.sleep(5)

    n_events(bus, "in", 3)
    bus.run(app)
    # From the first invocation (joining a Kafka group comes before): waiting out the sleeps would take 20 s.
    assert time.monotonic() - first_call[0] < 3
    assert calls == {"sync": 4, "async": 4}
    for topic in ("in.dlq", "async.dlq"):
        ((event, failure),) = bus.dead_letters(topic)
        assert event is not None
        assert event.data == {"n": 1}
        assert failure["error.class"] == "eventbus.runtime.invoke.ProcessorTimeoutError"
        assert "timeout_s=0.05" in failure["error.message"]


def test_a_timeout_cannot_be_swallowed_by_the_processor(bus: TestBus) -> None:
    app = App("t")

    first_call: list[float] = []

    @app.processor("in", timeout_s=0.05, retry=Retry(max_attempts=1))
    def stubborn(event: Event) -> None:
        first_call.append(time.monotonic())
        try:
            time.sleep(5)
        except Exception:
            time.sleep(5)

    n_events(bus, "in", 1)
    bus.run(app)
    assert time.monotonic() - first_call[0] < 3, "from the invocation on (joining a Kafka group comes before)"
    assert len(bus.dead_letters("in.dlq")) == 1


# -- poison input ---------------------------------------------------------------------------------------------------


def test_one_percent_poison_records_never_stop_the_worker(bus: TestBus) -> None:
    rng = random.Random(7)
    bus.log.create_topic("in", 3)
    app = App("t")
    processed: list[str] = []

    @app.processor("in", retry=Retry(max_attempts=2, **FAST))
    def handle(event: Event) -> None:
        if event.data.get("poison"):
            raise RuntimeError("poison pill")
        processed.append(event.id)

    messages: list[Message] = []
    good_ids, poison_ids, undecodable = [], [], 0
    for i in range(3000):
        roll = rng.random()
        if roll < 0.005:
            messages.append(Message(rng.choice([b"{bad json", b"", b"\xff\xfe", b'{"type": "no id"}', b"[]"])))
            undecodable += 1
        elif roll < 0.01:
            event = Event("x", {"poison": True}, id=f"poison-{i}", source="/t")
            messages.append(
                Message(
                    b'{"specversion":"1.0","id":"%s","source":"/t","type":"x","data":{"poison":true}}'
                    % event.id.encode()
                )
            )
            poison_ids.append(event.id)
        else:
            good_ids.append(f"good-{i}")
            messages.append(Message(b'{"specversion":"1.0","id":"good-%d","source":"/t","type":"x","data":{}}' % i))
    bus.log.append("in", messages)
    stats = bus.run(app)
    dead = bus.dead_letters("in.dlq")
    assert sorted(processed) == sorted(good_ids)
    assert sorted(e.id for e, _ in dead if e is not None) == sorted(poison_ids)
    assert (
        sum(1 for e, _ in dead if e is None)
        + sum(1 for e, f in dead if e is not None and f["processor"] == "(decoder)")
        == undecodable
    )
    assert len(processed) + len(dead) == len(messages)
    assert stats.dead_lettered == len(dead)
    assert bus.committed("t", "in") == {s.partition: s.end_offset for s in bus.log.watermarks("in")}


# -- batches -------------------------------------------------------------------------------------------------------


def test_a_batch_item_failure_report_moves_the_checkpoint_to_the_lowest_failed_item(bus: TestBus) -> None:
    app = App("t")
    seen_batches: list[list[int]] = []
    committed_at_retry: list[dict[int, int]] = []

    @app.processor("in", batch_size=10, retry=Retry(initial_delay_ms=200, jitter="none"))
    def handle(events: list[Event]) -> BatchItemFailures:
        seen_batches.append([e.data["n"] for e in events])
        if len(seen_batches) == 1:
            return BatchItemFailures([events[8].id, events[5].id])
        committed_at_retry.append(bus.committed("t", "in"))
        return BatchItemFailures([])

    n_events(bus, "in", 10)
    bus.run(app)
    assert seen_batches == [list(range(10)), list(range(5, 10))]
    assert committed_at_retry == [{0: 5}]
    assert bus.committed("t", "in") == {0: 10}


def test_the_lambda_report_shape_works_and_a_malformed_report_fails_the_whole_batch(bus: TestBus) -> None:
    app = App("t")
    seen: list[list[int]] = []

    @app.processor("in", batch_size=4, retry=Retry(max_attempts=3, **FAST))
    def handle(events: list[Event]) -> dict[str, object]:
        seen.append([e.data["n"] for e in events])
        if len(seen) == 1:
            return {"batchItemFailures": [{"itemIdentifier": events[2].id}]}
        return {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]}

    n_events(bus, "in", 4)
    bus.run(app)
    assert seen == [[0, 1, 2, 3], [2, 3], [2, 3]]
    dead = bus.dead_letters("in.dlq")
    assert [e.data["n"] for e, _ in dead if e] == [2, 3]
    assert all("not-in-this-batch" in f["error.message"] for _, f in dead)
    assert all(f["attempts"] == "3" for _, f in dead), "a malformed report is a failed attempt of the whole batch"


def test_bisection_isolates_one_poison_event_in_a_batch_of_100(bus: TestBus) -> None:
    app = App("t")
    failing_calls: list[int] = []
    applied: list[int] = []

    @app.processor("in", batch_size=100, bisect_on_error=True, retry=Retry(max_attempts=1))
    def handle(events: list[Event]) -> None:
        numbers = [e.data["n"] for e in events]
        if 37 in numbers:
            failing_calls.append(len(numbers))
            raise ValueError("poison 37")
        applied.extend(numbers)

    n_events(bus, "in", 100)
    bus.run(app)
    splits = [size for size in failing_calls if size > 1]
    assert len(splits) <= 8
    assert sorted(applied) == [n for n in range(100) if n != 37]
    assert len(applied) == 99, "every other event processed exactly once"
    ((event, failure),) = bus.dead_letters("in.dlq")
    assert event is not None
    assert event.data == {"n": 37}
    assert failure["error.message"] == "poison 37"


# -- circuit breakers ----------------------------------------------------------------------------------------------


def test_a_breaker_opens_on_a_failing_dependency_pauses_probes_and_closes_without_losing_events(
    bus: TestBus, caplog: pytest.LogCaptureFixture
) -> None:
    app = App("t")
    dependency_up = threading.Event()
    calls: list[tuple[float, int]] = []
    applied: list[int] = []
    breaker = CircuitBreaker("payments-api", failure_threshold=3, window_s=10, open_s=0.3)

    @app.processor("in", breaker=breaker, retry=Retry(max_attempts=1000, initial_delay_ms=1, max_delay_ms=1))
    def pay(event: Event) -> None:
        calls.append((time.monotonic(), event.data["n"]))
        if not dependency_up.is_set():
            if len(calls) >= 5:
                dependency_up.set()  # the dependency comes back after the first probe
            raise ConnectionError("payments api down")
        applied.append(event.data["n"])

    n_events(bus, "in", 20)
    caplog.set_level("WARNING", logger="eventbus.breaker")
    caplog.set_level("INFO", logger="eventbus.worker")
    bus.run(app)
    assert applied == list(range(20)), "nothing lost, order kept"
    failures_before_open = 3
    # While open, no call was made for open_s: the gap after the third failure is the open period.
    gap = calls[failures_before_open][0] - calls[failures_before_open - 1][0]
    assert gap >= 0.3
    transitions = [r.getMessage() for r in caplog.records if "circuit breaker" in r.getMessage()]
    assert any("closed -> open" in t for t in transitions)
    assert any("open -> half_open" in t for t in transitions)
    assert any("half_open -> closed" in t for t in transitions)
    worker_said = [r.getMessage() for r in caplog.records if r.name == "eventbus.worker"]
    assert any(m.startswith("paused in[0]") for m in worker_said), "its partition paused while it was open"
    assert any(m.startswith("resumed in[0]") for m in worker_said)
    assert metrics.BREAKER_STATE.value("payments-api") == 0.0
    assert metrics.BREAKER_TRANSITIONS.value("payments-api", "open") >= 1
    assert bus.dead_letters("in.dlq") == []


# -- concurrency ---------------------------------------------------------------------------------------------------


def test_concurrency_with_key_ordering_keeps_each_keys_order(bus: TestBus) -> None:
    app = App("t")
    seen: dict[str, list[int]] = {}
    active = {"now": 0, "most": 0}
    lock = threading.Lock()

    @app.processor("in", concurrency=4, ordering="key")
    def handle(event: Event) -> None:
        with lock:
            active["now"] += 1
            active["most"] = max(active["most"], active["now"])
        time.sleep(0.002)
        with lock:
            active["now"] -= 1
            seen.setdefault(event.partitionkey or "", []).append(event.data["n"])

    bus.publish("in", *(Event("x", {"n": i}, partitionkey=f"k{i % 5}") for i in range(100)))
    bus.run(app)
    assert active["most"] > 1, "ran concurrently"
    assert active["most"] <= 4
    for key, numbers in seen.items():
        assert numbers == sorted(numbers), key
    assert sum(len(v) for v in seen.values()) == 100


def test_the_commit_never_passes_a_failed_event_with_concurrency(bus: TestBus) -> None:
    app = App("t")
    commits_seen: list[int] = []

    @app.processor("in", concurrency=8, ordering="none", retry=Retry(max_attempts=3, initial_delay_ms=50))
    async def handle(event: Event) -> None:
        committed = bus.committed("t", "in").get(0, 0)
        commits_seen.append(committed)
        await asyncio.sleep(0.001)
        if event.data["n"] == 3:
            raise RuntimeError("three fails")

    n_events(bus, "in", 50)
    bus.run(app)
    assert max(commits_seen) <= 3, "no commit went past the failing event while it was being retried"
    assert [e.data["n"] for e, _ in bus.dead_letters("in.dlq") if e] == [3]
    assert bus.committed("t", "in") == {0: 50}


# -- idempotency ---------------------------------------------------------------------------------------------------


def test_an_idempotent_processor_skips_events_it_has_seen(bus: TestBus) -> None:
    app = App("t")
    side_effects: list[str] = []

    @app.processor("in", idempotency=Idempotency(), to="out")
    def charge(event: Event) -> Event:
        side_effects.append(event.id)
        return Event("charged", {"for": event.id})

    first = Event("charge", {}, id="c-1", source="/t")
    bus.publish("in", first, Event("charge", {}, id="c-2", source="/t"), first)
    bus.run(app)
    bus.publish("in", first)
    bus.run(app)
    assert side_effects == ["c-1", "c-2"]
    assert [e.data["for"] for e in bus.events("out")] == ["c-1", "c-2"], "a committed event's outputs are not repeated"
    assert metrics.DUPLICATES.value("test_an_idempotent_processor_skips_events_it_has_seen.<locals>.charge") >= 2


def test_idempotency_keys_can_be_derived_from_the_event(bus: TestBus) -> None:
    app = App("t")
    applied: list[str] = []

    @app.processor("in", idempotency=Idempotency(key=lambda e: e.data["order_id"]))
    def ship(event: Event) -> None:
        applied.append(event.data["order_id"])

    bus.publish_data("in", "x", [{"order_id": "a"}, {"order_id": "b"}, {"order_id": "a"}])
    bus.run(app)
    assert applied == ["a", "b"]


def test_an_idempotent_run_around_seen_events_keeps_order_and_retries_only_the_failed_one(bus: TestBus) -> None:
    app = App("t")
    calls: list[str] = []
    failures = {"b": 1}

    @app.processor("in", idempotency=Idempotency(), retry=Retry(max_attempts=3, initial_delay_ms=1), to="out")
    def charge(event: Event) -> Event:
        calls.append(event.id)
        if failures.get(event.id, 0) > 0:
            failures[event.id] -= 1
            raise ConnectionError("flaky")
        return Event("charged", {"for": event.id})

    seen = Event("charge", {}, id="s", source="/t")
    bus.publish("in", seen)
    bus.run(app)
    bus.publish("in", *(Event("charge", {}, id=i, source="/t") for i in ("a", "b")), seen, Event("charge", {}, id="c"))
    bus.run(app)
    assert calls == ["s", "a", "b", "b", "c"], "a is not run again when b is retried; the seen event is skipped"
    assert [e.data["for"] for e in bus.events("out")] == ["s", "a", "b", "c"]


def test_an_event_delivered_three_times_in_one_batch_runs_once(bus: TestBus) -> None:
    app = App("t")
    calls: list[str] = []

    @app.processor("in", idempotency=Idempotency(), to="out")
    def charge(event: Event) -> Event:
        calls.append(event.id)
        return Event("charged", {"for": event.id})

    again = Event("charge", {}, id="x", source="/t")
    bus.publish("in", again, Event("charge", {}, id="y", source="/t"), again, Event("charge", {}, id="z"), again)
    bus.run(app)
    assert calls == ["x", "y", "z"]
    assert [e.data["for"] for e in bus.events("out")] == ["x", "y", "z"]


@pytest.mark.parametrize("keys", [KeyHashing(), KeyedXxh3(0x5EED)], ids=["blake2b-64", "xxh3-64"])
def test_the_worker_hashes_keys_as_the_store_defines_them(keys: KeyHashing) -> None:
    from eventbus.app.policies import event_id
    from eventbus.runtime.idempotency import default_key

    attrs = {"specversion": "1.0", "id": "e-1", "source": "/shop", "type": "t", "data": {}}
    assert default_key(attrs) == event_id(Event.wrap(attrs))
    digest_key = keys.digester("orders.charge")
    for key in ("", "e-1", default_key(attrs), "ключ"):
        assert int.from_bytes(digest_key(key), "little") == keys.hash("orders.charge", key)
    assert digest_key("e-1") != keys.digester("orders.refund")("e-1")
    hashes, digests = keys.default_key_digests("orders.charge", [attrs])
    assert (hashes, digests) == ([keys.hash("orders.charge", default_key(attrs))], [digest_key(default_key(attrs))])


def test_stores_made_by_earlier_versions_keep_hashing_with_blake2b(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "keys-1-abcdef01-0.bin").write_bytes(b"")
    store = FileIdempotencyStore(legacy, retention_s=60)
    assert store.keys.describe() == "blake2b-64"
    assert store.keys.hash("p", "k") == key_hash("p", "k")
    store.close()

    new = FileIdempotencyStore(tmp_path / "new", retention_s=60)
    again = FileIdempotencyStore(tmp_path / "new", retention_s=60)  # another worker of the host: the same way
    assert isinstance(new.keys, KeyedXxh3)
    assert again.keys.describe() == new.keys.describe()
    new.close()
    again.close()


@pytest.mark.parametrize(
    "text", ["md5\n", "xxh3-64 0x10\n", "xxh3-64 1ffffffffffffffff\n", "xxh3-64\n", "\xff\xfe"], ids=repr
)
def test_a_key_hash_file_that_says_nothing_known_is_refused_naming_it(tmp_path: Path, text: str) -> None:
    (tmp_path / "key-hash").write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigurationError, match=rf"idempotency store {tmp_path}: .*key-hash"):
        FileIdempotencyStore(tmp_path, retention_s=60)


def test_a_key_function_that_returns_no_string_fails_its_events_instead_of_sharing_a_key(bus: TestBus) -> None:
    app = App("t")
    processed: list[str] = []

    @app.processor("in", idempotency=Idempotency(key=lambda e: e.data.get("order_id")))  # type: ignore[arg-type, return-value]
    def handle(event: Event) -> None:
        processed.append(event.id)

    bus.publish("in", *[Event("n", {}) for _ in range(3)])
    bus.run(app)
    assert processed == []
    failures = [failure for _, failure in bus.dead_letters("in.dlq")]
    assert len(failures) == 3
    assert all("IdempotencyKeyError" in failure["error.class"] for failure in failures)


def test_dead_letter_partition_offsets_commit_with_the_dead_letter(bus: TestBus) -> None:
    app = App("t")

    @app.processor("in", retry=Retry(max_attempts=1))
    def fail(event: Event) -> None:
        raise ValueError("no")

    n_events(bus, "in", 3)
    bus.run(app)
    assert len(bus.dead_letters("in.dlq")) == 3
    assert bus.committed("t", "in") == {0: 3}


# -- backpressure --------------------------------------------------------------------------------------------------


def test_a_partition_stuck_behind_a_retry_is_paused_instead_of_buffered_without_bound(bus: TestBus) -> None:
    from eventbus.runtime import Worker, WorkerSettings, run_coroutine

    app = App("t")
    gate = threading.Event()

    @app.processor("in", retry=Retry(max_attempts=1000, initial_delay_ms=20, max_delay_ms=20, jitter="none"))
    def stuck(event: Event) -> None:
        if not gate.is_set():
            raise ConnectionError("downstream is slow")

    n_events(bus, "in", 5000)
    settings = WorkerSettings(max_pending_per_partition=300, max_poll_records=100, idle_poll_s=0.01)
    worker = Worker(app, bus.log, settings)

    def stop_a_second_after_the_first_events() -> None:
        # From the first event, not from the start: joining a Kafka group takes a while.
        deadline = time.monotonic() + 60
        while worker.stats.events_in == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(1.0)
        worker.stop()

    stopper = threading.Thread(target=stop_a_second_after_the_first_events, daemon=True)
    stopper.start()
    run_coroutine(worker.run())
    stopper.join()
    assert worker.stats.events_in <= 300 + 2 * 100, "fetching paused once 300 events waited"
    assert metrics.PAUSED_PARTITIONS.value() >= 1
    gate.set()
    bus.run(app)
    assert bus.committed("t", "in") == {0: 5000}
