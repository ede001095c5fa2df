"""Failure paths that once went wrong: each test pins the behaviour that was fixed."""

from __future__ import annotations

import itertools
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from eventbus import App, BatchItemFailures, CircuitBreaker, Event, Idempotency, Retry, event_type
from eventbus.backends.base import ConsumerSettings
from eventbus.backends.memory import MemoryLog
from eventbus.backends.sqlite import SQLiteLog
from eventbus.errors import ConfigurationError, PartitionRevokedError
from eventbus.testing import TestBus
from tests.conftest import PYTHON, REPO

FAST = {"initial_delay_ms": 1.0, "max_delay_ms": 2.0}


def test_concurrent_retries_wait_their_backoff_even_while_draining() -> None:
    bus = TestBus()
    app = App("t")
    times: list[float] = []

    @app.processor(
        "in",
        concurrency=2,
        ordering="none",
        retry=Retry(max_attempts=3, initial_delay_ms=200, max_delay_ms=200, jitter="none"),
    )
    def handle(event: Event) -> None:
        times.append(time.monotonic())
        raise ConnectionError("down")

    bus.publish("in", Event("n", {}))
    bus.run(app)
    assert len(times) == 3
    assert all(later - earlier >= 0.2 for earlier, later in itertools.pairwise(times))


def test_each_concurrent_failure_is_dead_lettered_after_its_attempts_not_retried_beyond() -> None:
    bus = TestBus()
    app = App("t")
    calls: list[int] = []

    @app.processor("in", concurrency=4, ordering="none", retry=Retry(max_attempts=1))
    def handle(event: Event) -> None:
        calls.append(event.data["n"])
        raise ValueError(f"bad {event.data['n']}")

    bus.publish("in", *[Event("n", {"n": i}) for i in range(6)])
    bus.run(app)
    assert sorted(calls) == list(range(6))
    dead = bus.dead_letters("in.dlq")
    assert sorted(f["error.message"] for _, f in dead) == [f"bad {i}" for i in range(6)]


def test_a_batch_report_dead_letters_only_the_events_it_names() -> None:
    bus = TestBus()
    app = App("t")

    @app.processor("in", batch_size=4, retry=Retry(max_attempts=3, **FAST))
    def handle(events: list[Event]) -> BatchItemFailures:
        return BatchItemFailures([e.id for e in events if e.data["n"] == 1])

    bus.publish("in", *[Event("n", {"n": i}) for i in range(4)])
    bus.run(app)
    assert [int(f["origin.offset"]) for _, f in bus.dead_letters("in.dlq")] == [1]
    assert bus.committed("t", "in") == {0: 4}


def test_idempotency_with_concurrency_is_refused_at_declaration() -> None:
    app = App("t")
    with pytest.raises(ConfigurationError, match="idempotency needs concurrency=1"):
        app.processor("in", idempotency=Idempotency(), concurrency=2, ordering="none")(lambda event: None)


def test_a_failing_idempotency_key_function_dead_letters_the_event() -> None:
    bus = TestBus()
    app = App("t")
    handled: list[int] = []

    @app.processor("in", idempotency=Idempotency(key=lambda e: e.data["order_id"]))
    def handle(event: Event) -> None:
        handled.append(event.data.get("n", -1))

    bus.publish(
        "in", Event("n", {"order_id": "a", "n": 0}), Event("n", {"other": 1}), Event("n", {"order_id": "b", "n": 2})
    )
    bus.run(app)
    assert handled == [0, 2]
    ((_, failure),) = bus.dead_letters("in.dlq")
    assert "idempotency key function raised KeyError" in failure["error.message"]


def test_publishing_to_an_invalid_topic_fails_that_event_not_the_worker(tmp_path: Path) -> None:
    bus = TestBus(log=SQLiteLog(tmp_path / "x.db"))
    app = App("t")

    @app.processor("in")
    def handle(event: Event, ctx: object) -> None:
        ctx.publish(Event("out", {}), topic="not a valid name!" if event.data["n"] == 1 else "good")  # type: ignore[attr-defined]

    bus.publish("in", *[Event("n", {"n": i}) for i in range(3)])
    bus.run(app)
    assert len(bus.events("good")) == 2
    ((_, failure),) = bus.dead_letters("in.dlq")
    assert "emitted to a bad topic" in failure["error.message"]


def test_a_topic_that_is_not_a_string_fails_that_event_with_a_clear_error(tmp_path: Path) -> None:
    bus = TestBus(log=SQLiteLog(tmp_path / "x.db"))
    app = App("t")

    @app.processor("in")
    def handle(event: Event, ctx: object) -> None:
        topic: object = ["good"] if event.data["n"] == 1 else "good"
        ctx.publish(Event("out", {}), topic=topic)  # type: ignore[attr-defined]

    bus.publish("in", *[Event("n", {"n": i}) for i in range(3)])
    bus.run(app)
    assert len(bus.events("good")) == 2
    ((_, failure),) = bus.dead_letters("in.dlq")
    assert "emitted to a bad topic: topic name must be a non-empty string, got ['good']" in failure["error.message"]


@pytest.mark.parametrize("driver", ["memory", "sqlite"])
def test_a_refused_commit_neither_loses_idempotent_outputs_nor_runs_the_events_again(
    driver: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = MemoryLog(f"refused-{driver}") if driver == "memory" else SQLiteLog(tmp_path / "x.db")
    cls = type(log)
    original = cls.commit_owned
    refused: list[object] = []

    def commit_owned(self, group, member_id, offsets, outputs):  # type: ignore[no-untyped-def]
        if not refused and outputs:
            refused.append(offsets)
            raise PartitionRevokedError("partitions moved to another member")  # what a fenced commit does
        return original(self, group, member_id, offsets, outputs)

    monkeypatch.setattr(cls, "commit_owned", commit_owned)
    bus = TestBus(log=log)
    app = App("t")

    calls: list[int] = []

    @app.processor("in", to="out", idempotency=Idempotency())
    def handle(event: Event) -> Event:
        calls.append(event.data["n"])
        return Event("done", {"n": event.data["n"]})

    bus.publish("in", *[Event("n", {"n": i}) for i in range(3)])
    bus.run(app)
    assert refused
    assert sorted(d["n"] for d in bus.data("out")) == [0, 1, 2]
    # Read again after the refusal, the events are not run again: what they emitted is emitted again.
    assert calls == [0, 1, 2]


def test_a_crash_before_a_round_commits_loses_no_idempotent_output(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    script = str(Path(__file__).with_name("idempotent_crash_app.py"))
    db = str(tmp_path / "x.db")
    crashed = subprocess.run(
        [PYTHON, script, db, "crash"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=subprocess_env,
        check=False,
        timeout=60,
    )
    assert crashed.returncode == -9, crashed.stderr
    resumed = subprocess.run(
        [PYTHON, script, db, "resume"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=subprocess_env,
        check=False,
        timeout=60,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "outputs: [0, 1, 2] committed: {0: 3}" in resumed.stdout


def test_a_default_idempotency_key_that_cannot_be_hashed_fails_its_event_alone() -> None:
    # No decoder lets a lone surrogate through, but the batch's default keys are hashed in one loop: one bad key
    # must fail its own event, the ones before it run, as a failing key function does.
    from eventbus.app.policies import event_id
    from eventbus.runtime.execution import Executor
    from eventbus.runtime.key_hashing import KeyedXxh3

    keys = KeyedXxh3(1)
    events: list[dict[str, Any] | None] = [{"source": "s", "id": "1"}, {"source": "s", "id": "a\udc80"}, None]
    hashes, _, failure, positions = Executor._key_hashes(keys, event_id, "p", events, [0, 1])
    assert hashes == [keys.hash("p", "s\x1f1")]
    assert failure is not None
    assert failure.index == 1
    assert "UnicodeEncodeError" in str(failure.error)
    assert positions == [0]


@event_type("regression.order", topic="orders")
@dataclass
class _Order:
    order_id: str
    amount: float


@pytest.mark.parametrize("driver", ["memory", "sqlite"])
def test_an_event_before_one_whose_argument_cannot_be_built_is_still_known_as_done(driver: str, tmp_path: Path) -> None:
    # The journal learns that an invocation returned when the next one begins: the next one must begin before its
    # argument is built, or an argument that fails to build loses the done record of the event before it.
    log = MemoryLog(f"regression-{driver}") if driver == "memory" else SQLiteLog(tmp_path / "events.db")
    bus = TestBus(log=log)
    app = App("billing")
    charged: list[str] = []

    @app.processor("orders", to="charges", idempotency=Idempotency())
    def charge(order: _Order) -> Event:
        charged.append(order.order_id)
        return Event("charged", {"order_id": order.order_id})

    good = Event("regression.order", {"order_id": "o-1", "amount": 1.0}, id="evt-1")
    unfit = Event("regression.order", {"order_id": "o-2"}, id="evt-2")  # no amount: no _Order can be built
    bus.publish("orders", good, unfit)
    bus.run(app)
    assert charged == ["o-1"]
    assert len(bus.dead_letters("orders.dlq")) == 1
    bus.publish("orders", Event("regression.order", {"order_id": "o-1", "amount": 1.0}, id="evt-1"))
    bus.run(app)
    assert charged == ["o-1"], "a duplicate of evt-1 ran again: its key was never recorded"
    assert len(bus.data("charges")) == 1


def test_a_breaker_stays_open_for_open_s_after_a_slow_call_failed() -> None:
    """Counted from the failure, not from the start of the round that made the call: a call that took 0.2 s before
    failing does not shorten a 0.3 s open period to 0.1 s."""
    app = App("t")
    ends: list[float] = []
    starts: list[float] = []

    @app.processor(
        "in",
        breaker=CircuitBreaker("slow-api", failure_threshold=1, window_s=10, open_s=0.3),
        retry=Retry(max_attempts=5, initial_delay_ms=1, max_delay_ms=1),
    )
    def call(event: Event) -> None:
        starts.append(time.monotonic())
        if len(starts) == 1:
            time.sleep(0.2)
            ends.append(time.monotonic())
            raise ConnectionError("slow-api timed out")

    bus = TestBus()
    bus.publish_data("in", "x", [{}])
    bus.run(app)
    assert len(starts) == 2
    assert starts[1] - ends[0] >= 0.3


class _RefusingOnce:
    """A member of a real memory log whose first commit is refused, as one is when the group rebalances under
    it; the offsets of the commits that land are noted."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.refused = False
        self.committed: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def publish_and_commit(self, outputs: Any, offsets: Any) -> None:
        if not self.refused:
            self.refused = True
            raise PartitionRevokedError("partitions moved to another member")
        self._inner.publish_and_commit(outputs, offsets)
        self.committed.extend(offsets.values())


class _BrokerLikeLog(MemoryLog):
    """A memory log whose calls the worker makes on its reader and writer threads, as it does on Kafka: polls read
    ahead while the round before is committed."""

    local_calls = False
    member: _RefusingOnce | None = None

    def consumer(self, *args: Any, **kwargs: Any) -> Any:
        self.member = _RefusingOnce(super().consumer(*args, **kwargs))
        return self.member


def test_a_read_ahead_from_before_a_refused_commit_is_not_processed_or_committed() -> None:
    log = _BrokerLikeLog("read-ahead-across-a-refused-commit")
    bus = TestBus(log=log)
    bus.publish("orders", *(Event("order", {"n": n}) for n in range(30)))
    app = App("shop")
    seen: list[int] = []

    @app.processor("orders")
    def record(event: Event) -> None:
        seen.append(event.data["n"])

    bus.run(app, max_poll_records=10, commit_interval_ms=0)
    assert log.member is not None
    assert log.member.refused
    committed = log.member.committed
    assert committed == sorted(committed), f"the committed offset went back: {committed}"
    assert committed[-1] == 30
    assert sorted(set(seen)) == list(range(30))


class _LatestRefusingOnce(_RefusingOnce):
    """`_RefusingOnce`, and new events arrive once the member has joined (at the end of the topic)."""

    def __init__(self, inner: Any, bus: TestBus) -> None:
        super().__init__(inner)
        self._bus = bus
        self._arrived = False

    def poll(self, max_records: int, timeout_s: float) -> Any:
        batches = self._inner.poll(max_records, timeout_s)
        if not self._arrived:
            self._arrived = True
            self._bus.publish("orders", *(Event("order", {"n": n}) for n in range(100, 110)))
        return batches


class _LatestLog(_BrokerLikeLog):
    bus: TestBus | None = None

    def consumer(self, *args: Any, **kwargs: Any) -> Any:
        assert self.bus is not None
        self.member = _LatestRefusingOnce(MemoryLog.consumer(self, *args, **kwargs), self.bus)
        return self.member


def test_a_refused_commit_reads_a_partition_without_a_commit_again_from_where_it_started() -> None:
    # reset=latest: the worker starts at the end of the topic. When its first commit is refused there is no
    # committed offset to go back to; it must go back to where it started reading, not to the topic's beginning.
    log = _LatestLog("latest-across-a-refused-commit")
    bus = TestBus(log=log)
    log.bus = bus
    bus.publish("orders", *(Event("order", {"n": n}) for n in range(20)))  # history the worker never reads
    app = App("shop")
    seen: list[int] = []

    @app.processor("orders")
    def record(event: Event) -> None:
        seen.append(event.data["n"])

    settings = ConsumerSettings(reset="latest", session_timeout_s=60.0, heartbeat_interval_s=30.0)
    bus.run(app, consumer=settings, commit_interval_ms=0)
    assert log.member is not None
    assert log.member.refused
    assert sorted(set(seen)) == list(range(100, 110)), f"history was read after the refused commit: {seen}"
    assert log.member.committed[-1] == 30


def test_a_partition_paused_for_backpressure_is_resumed_when_the_worker_starts_over() -> None:
    # Event 0 waits for a retry and the rest of its partition queues behind it past max_pending_per_partition, so
    # the partition is paused. The refused commit drops what was waiting; the partition must be read again.
    log = _BrokerLikeLog("paused-across-a-refused-commit")
    bus = TestBus(log=log)
    bus.publish("orders", *(Event("order", {"n": n}) for n in range(20)))
    app = App("shop")
    seen: list[int] = []
    failed = False

    @app.processor("orders", retry=Retry(max_attempts=5, initial_delay_ms=50, max_delay_ms=50))
    def record(event: Event) -> None:
        nonlocal failed
        if event.data["n"] == 0 and not failed:
            failed = True
            raise ConnectionError("the first call fails once")
        seen.append(event.data["n"])

    outcome: list[object] = []
    runner = threading.Thread(
        target=lambda: outcome.append(
            bus.run(app, max_poll_records=20, max_pending_per_partition=4, commit_interval_ms=0)
        ),
        daemon=True,
    )
    runner.start()
    runner.join(30)
    assert not runner.is_alive(), f"the worker stalled on a paused partition; processed {sorted(set(seen))}"
    assert log.member is not None
    assert log.member.refused
    assert sorted(set(seen)) == list(range(20))
    assert log.member.committed[-1] == 20


def _run_within(bus: TestBus, app: App, timeout_s: float, **settings: Any) -> None:
    """``bus.run`` on a thread: a worker that stalls fails the test instead of hanging it."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            bus.run(app, **settings)
        except BaseException as exc:  # handed to the test below
            failure.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(timeout_s)
    assert not runner.is_alive(), f"the worker was still running after {timeout_s} s"
    if failure:
        raise failure[0]


def test_a_breaker_opened_by_an_event_it_dead_lettered_lets_the_next_events_probe() -> None:
    # Nothing is left waiting once the failing event is dead-lettered: the paused partition must be read again
    # when the breaker may probe, or no probe ever comes.
    app = App("t")
    handled: list[int] = []

    @app.processor("in", retry=Retry(max_attempts=1), breaker=CircuitBreaker("api", failure_threshold=1, open_s=0.05))
    def handle(event: Event) -> None:
        if event.data["n"] == 0:
            raise ConnectionError("the api is down")
        handled.append(event.data["n"])

    bus = TestBus()
    bus.publish("in", *[Event("n", {"n": n}) for n in range(3)])
    _run_within(bus, app, 20, max_poll_records=1)
    assert handled == [1, 2]
    assert len(bus.dead_letters("in.dlq")) == 1
    assert bus.committed("t", "in") == {0: 3}


def test_a_probe_batch_that_fails_and_is_split_reopens_the_breaker_and_the_halves_probe_next() -> None:
    app = App("t")
    handled: list[str] = []

    @app.processor(
        "in",
        batch_size=2,
        bisect_on_error=True,
        retry=Retry(max_attempts=1),
        breaker=CircuitBreaker("api", failure_threshold=1, open_s=0.02),
    )
    def handle(events: list[Event]) -> None:
        if any(e.data["bad"] for e in events):
            raise ValueError("a bad event in the batch")
        handled.extend(e.data["name"] for e in events)

    bus = TestBus()
    bus.publish("in", *[Event("n", {"name": name, "bad": name != "c"}) for name in "abcd"])
    _run_within(bus, app, 20)
    assert handled == ["c"]
    assert sorted(event.data["name"] for event, _ in bus.dead_letters("in.dlq") if event is not None) == ["a", "b", "d"]
    assert bus.committed("t", "in") == {0: 4}


def test_an_async_processor_raising_cancelled_error_of_its_own_fails_that_event_only() -> None:
    import asyncio

    app = App("t")
    done: list[int] = []

    @app.processor("in", retry=Retry(max_attempts=2, initial_delay_ms=1, max_delay_ms=1))
    async def handle(event: Event) -> None:
        if event.data["n"] == 1:
            dependency = asyncio.ensure_future(asyncio.sleep(10))
            await asyncio.sleep(0)
            dependency.cancel()
            await dependency  # raises CancelledError here, though nobody is stopping the worker
        done.append(event.data["n"])

    bus = TestBus()
    bus.publish("in", *[Event("n", {"n": n}) for n in range(3)])
    _run_within(bus, app, 20)
    assert done == [0, 2]
    ((_, failure),) = bus.dead_letters("in.dlq")
    assert failure["error.class"].endswith("ProcessorCancelledError")
    assert failure["attempts"] == "2"
    assert bus.committed("t", "in") == {0: 3}


def test_with_concurrency_each_event_has_its_own_attempts() -> None:
    # a1 fails once and a2 twice, behind it on the same key; p always fails, on another key. Their retries
    # overlap: a2 must still get its 3 attempts (and succeed), and p's dead letter must say 3.
    app = App("t")
    calls: dict[str, int] = {}
    fails = {"a1": 1, "a2": 2, "p": 99}

    @app.processor("in", concurrency=2, ordering="key", retry=Retry(max_attempts=3, initial_delay_ms=1, max_delay_ms=1))
    def handle(event: Event) -> None:
        name = event.data["name"]
        calls[name] = calls.get(name, 0) + 1
        if calls[name] <= fails[name]:
            raise ConnectionError(f"{name}: attempt {calls[name]} failed")

    bus = TestBus()
    bus.publish(
        "in",
        Event("n", {"name": "a1"}, partitionkey="k1"),
        Event("n", {"name": "a2"}, partitionkey="k1"),
        Event("n", {"name": "p"}, partitionkey="k2"),
    )
    _run_within(bus, app, 20)
    assert calls == {"a1": 2, "a2": 3, "p": 3}
    dead = {event.data["name"]: failure["attempts"] for event, failure in bus.dead_letters("in.dlq") if event}
    assert dead == {"p": "3"}


def test_a_dead_letter_is_written_with_the_commit_that_moves_past_its_record(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    # Records 1 and 2 are dead-lettered while event 0 waits for its retry, so no commit passes them before the
    # crash. Written then, they would be read again after it and dead-lettered twice (and event 2, whose
    # processor succeeds this time, would be both dead-lettered and processed).
    from eventbus.backends.base import Message

    db = tmp_path / "x.db"
    log = SQLiteLog(db)
    bus = TestBus(log=log)
    bus.publish("in", Event("n", {"n": 0}))
    log.append("in", [Message(b"not json")])
    bus.publish("in", Event("n", {"n": 2}))
    script = str(Path(__file__).with_name("dead_letter_crash_app.py"))
    run = [PYTHON, script, str(db)]
    options: dict[str, Any] = {"capture_output": True, "text": True, "cwd": REPO, "env": subprocess_env, "timeout": 60}
    crashed = subprocess.run([*run, "crash"], check=False, **options)
    assert crashed.returncode == 9, crashed.stderr
    assert log.committed("g", "in").get(0, 0) == 0, "no commit passed event 0"
    resumed = subprocess.run([*run, "resume"], check=False, **options)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.split("\n")[:2] == ["picky processed 0", "picky processed 2"]
    letters = [(failure["processor"], failure["origin.offset"]) for _, failure in bus.dead_letters("in.dlq")]
    assert letters == [("(decoder)", "1")]
    assert log.committed("g", "in") == {0: 3}
    log.close()


def test_a_half_open_breaker_lets_one_call_through_with_concurrency() -> None:
    # The dependency is down for its first 0.3 s. Once the breaker has opened, each probe must be a single call,
    # open_s apart: not `concurrency` calls at once.
    app = App("t")
    calls: list[float] = []
    down_until: list[float] = []

    @app.processor(
        "in",
        concurrency=3,
        ordering="none",
        retry=Retry(max_attempts=50, initial_delay_ms=1, max_delay_ms=1),
        breaker=CircuitBreaker("api", failure_threshold=1, open_s=0.1),
    )
    async def call(event: Event) -> None:
        now = time.monotonic()
        if not down_until:
            down_until.append(now + 0.3)
        calls.append(now)
        if now < down_until[0]:
            raise ConnectionError("the api is down")

    bus = TestBus()
    bus.publish("in", *[Event("n", {"n": n}) for n in range(6)])
    _run_within(bus, app, 20)
    failing = [t for t in calls if t < down_until[0]]
    first_round = [t for t in failing if t - failing[0] < 0.05]
    probes = failing[len(first_round) :]
    assert probes, "the breaker never probed while the api was down"
    gaps = [b - a for a, b in zip([first_round[-1], *probes], probes, strict=False)]
    assert min(gaps) >= 0.09, f"calls came {gaps} s apart while the breaker was open or probing"
    assert bus.committed("t", "in") == {0: 6}
    assert bus.dead_letters("in.dlq") == []


@pytest.mark.parametrize(
    ("failing", "expected"),
    [
        ("always", "outputs: [1, 2, 3] dead letters: [0] committed: {0: 4}"),
        ("once", "outputs: [0, 1, 2, 3] dead letters: [] committed: {0: 4}"),
    ],
)
def test_outputs_recovered_after_a_crash_survive_a_failure_before_them(
    failing: str, expected: str, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    # After the restart, events 1-3 are known as done with their outputs; event 0, new, fails first. Their
    # outputs must still be emitted again, not taken for outputs committed before.
    script = str(Path(__file__).with_name("idempotent_failing_crash_app.py"))
    run = [PYTHON, script, str(tmp_path / "x.db")]
    options: dict[str, Any] = {"capture_output": True, "text": True, "cwd": REPO, "env": subprocess_env, "timeout": 60}
    crashed = subprocess.run([*run, "crash", failing], check=False, **options)
    assert crashed.returncode == -9, crashed.stderr
    resumed = subprocess.run([*run, "resume", failing], check=False, **options)
    assert resumed.returncode == 0, resumed.stderr
    assert expected in resumed.stdout


def test_a_report_naming_an_id_two_copies_share_fails_both_copies() -> None:
    # A producer's retry leaves two copies of an event with one id: a report naming it cannot say which one
    # failed. The first copy used to be committed past, neither processed nor dead-lettered.
    bus = TestBus()
    app = App("t")
    calls: list[list[tuple[str, int]]] = []

    @app.processor("in", batch_size=10, retry=Retry(max_attempts=2, initial_delay_ms=1, max_delay_ms=2))
    def handle(events: list[Event]) -> BatchItemFailures:
        calls.append([(e.id, e.data["copy"]) for e in events])
        return BatchItemFailures([e.id for e in events if e.id == "x"])

    bus.publish("in", Event("n", {"copy": 0}, id="x"), Event("n", {"copy": 1}, id="x"), Event("n", {"copy": 0}, id="y"))
    bus.run(app)
    assert calls[1][0] == ("x", 0)  # retried from the first copy
    assert sorted(event.data["copy"] for event, _ in bus.dead_letters("in.dlq") if event is not None) == [0, 1]
    assert bus.committed("t", "in") == {0: 3}


def test_an_event_keeps_its_attempts_when_a_report_moves_the_checkpoint() -> None:
    # Event 2 fails in every call, events 1 only in the first: the checkpoint moves to 1, then to 2. Event 2 used to
    # start its attempts again each time, so it ran three times with max_attempts=2 and its dead letter said 2.
    bus = TestBus()
    app = App("t")
    calls: list[list[int]] = []

    @app.processor("in", batch_size=3, retry=Retry(max_attempts=2, initial_delay_ms=0, max_delay_ms=0))
    def handle(events: list[Event]) -> BatchItemFailures:
        calls.append([e.data["n"] for e in events])
        first = len(calls) == 1
        return BatchItemFailures([e.id for e in events if e.data["n"] == 2 or (first and e.data["n"] == 1)])

    bus.publish("in", *[Event("n", {"n": n}) for n in range(3)])
    bus.run(app)
    assert calls == [[0, 1, 2], [1, 2]]
    ((event, failure),) = bus.dead_letters("in.dlq")
    assert event is not None
    assert event.data["n"] == 2
    assert failure["attempts"] == "2"


def test_events_a_report_does_not_name_count_as_processed_when_the_named_ones_are_given_up() -> None:
    from eventbus.observability import metrics

    bus = TestBus()
    app = App("t")

    @app.processor("in", name="reports-first", batch_size=3, retry=Retry(max_attempts=1))
    def handle(events: list[Event]) -> BatchItemFailures:
        return BatchItemFailures([events[0].id])

    before = metrics.PROCESSED.value("reports-first")
    bus.publish("in", *[Event("n", {"n": n}) for n in range(3)])
    bus.run(app)
    assert len(bus.dead_letters("in.dlq")) == 1
    assert metrics.PROCESSED.value("reports-first") - before == 2
