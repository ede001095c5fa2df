"""The worker through the test harness: routing, fan-out, typed events, batches, outputs, lineage, checkpoints."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from eventbus import App, Context, Event, event_type
from eventbus.backends.sqlite import SQLiteLog
from eventbus.errors import ProcessorError
from eventbus.runtime.dispatch import PoisonRecordError
from eventbus.testing import TestBus


@event_type("order.placed", topic="orders")
@dataclass
class OrderPlaced:
    order_id: str
    amount: float
    customer: str = "anon"


@event_type("order.approved", topic="approved")
@dataclass
class OrderApproved:
    order_id: str


def test_a_processor_receives_matching_events_and_its_outputs_go_to_its_topic() -> None:
    app = App("t")

    @app.processor("orders", types="order.placed", to="confirmations")
    def confirm(event: Event) -> Event:
        return Event("order.confirmed", {"order_id": event.data["order_id"]})

    bus = TestBus()
    bus.publish("orders", Event("order.placed", {"order_id": "a"}), Event("order.cancelled", {"order_id": "b"}))
    bus.run(app)
    assert bus.data("confirmations") == [{"order_id": "a"}]
    assert bus.committed("t", "orders") == {0: 2}


def test_patterns_filter_on_data_and_one_event_fans_out_to_every_match() -> None:
    app = App("t")
    seen: dict[str, list[str]] = {"big": [], "eur": [], "all": []}

    @app.processor("orders", pattern={"data": {"amount": [{"numeric": [">", 100]}]}})
    def big(event: Event) -> None:
        seen["big"].append(event.data["order_id"])

    @app.processor("orders", pattern={"data": {"currency": ["EUR"]}})
    def eur(event: Event) -> None:
        seen["eur"].append(event.data["order_id"])

    @app.processor("orders")
    def everything(event: Event) -> None:
        seen["all"].append(event.data["order_id"])

    bus = TestBus()
    bus.publish_data(
        "orders",
        "order.placed",
        [
            {"order_id": "1", "amount": 50, "currency": "EUR"},
            {"order_id": "2", "amount": 500, "currency": "USD"},
            {"order_id": "3", "amount": 101, "currency": "EUR"},
        ],
    )
    bus.run(app)
    assert seen == {"big": ["2", "3"], "eur": ["1", "3"], "all": ["1", "2", "3"]}


def test_typed_parameters_receive_instances_and_returned_instances_go_to_their_bound_topic() -> None:
    app = App("t")

    @app.processor("orders")
    def approve(order: OrderPlaced) -> OrderApproved | None:
        assert isinstance(order, OrderPlaced)
        return OrderApproved(order.order_id) if order.amount < 1000 else None

    bus = TestBus()
    bus.publish("orders", OrderPlaced("a", 10.0), OrderPlaced("b", 5000.0), Event("other.type", {"x": 1}))
    bus.run(app)
    approved = bus.events("approved")
    assert [e.type for e in approved] == ["order.approved"]
    assert bus.typed("approved", OrderApproved) == [OrderApproved("a")]


def test_outputs_carry_the_lineage_of_their_input() -> None:
    app = App("lineage")

    @app.processor("orders", to="out")
    def step(event: Event) -> Event:
        return Event("next", {"n": 1})

    bus = TestBus()
    source = Event("order.placed", {}, id="in-1", partitionkey="cust-9", traceparent="00-abc-def-01")
    bus.publish("orders", source)
    bus.run(app)
    (out,) = bus.events("out")
    assert out.causationid == "in-1"
    assert out.correlationid == "in-1"
    assert out.partitionkey == "cust-9"
    assert out.traceparent == "00-abc-def-01"
    assert out.source == "/lineage"
    assert out.id
    assert out.id != "in-1"
    assert out.time is not None


def test_an_event_returned_many_times_gets_a_new_id_each_time() -> None:
    app = App("t")
    constant = Event("tick", {})

    @app.processor("in", to="out")
    def forward(event: Event) -> Event:
        return constant

    bus = TestBus()
    bus.publish_data("in", "x", [{}, {}, {}])
    bus.run(app)
    assert len({e.id for e in bus.events("out")}) == 3


def test_context_publish_and_list_results_emit_several_events() -> None:
    app = App("t")

    @app.processor("orders", to="lines")
    def split(event: Event, ctx: Context) -> list[Event]:
        ctx.publish(Event("audit", {"offset": ctx.offset, "topic": ctx.topic}), topic="audit")
        return [Event("line", {"sku": sku}) for sku in event.data["skus"]]

    bus = TestBus()
    bus.publish_data("orders", "order", [{"skus": ["a", "b"]}, {"skus": ["c"]}])
    bus.run(app)
    assert bus.data("lines") == [{"sku": "a"}, {"sku": "b"}, {"sku": "c"}]
    assert bus.data("audit") == [{"offset": 0, "topic": "orders"}, {"offset": 1, "topic": "orders"}]


def test_a_pipeline_of_processors_runs_to_the_end_in_one_run() -> None:
    app = App("pipe")

    @app.processor("a", to="b")
    def one(event: Event) -> Event:
        return Event("step", {"n": event.data["n"] + 1})

    @app.processor("b", to="c")
    def two(event: Event) -> Event:
        return Event("step", {"n": event.data["n"] * 10})

    bus = TestBus()
    bus.publish_data("a", "start", [{"n": 1}, {"n": 2}])
    bus.run(app)
    assert bus.data("c") == [{"n": 20}, {"n": 30}]


def test_async_processors_are_awaited_in_partition_order() -> None:
    app = App("t")
    order: list[int] = []

    @app.processor("in", to="out")
    async def slow_echo(event: Event) -> Event:
        await asyncio.sleep(0.001 * (5 - event.data["n"] % 5))
        order.append(event.data["n"])
        return Event("echo", event.data)

    bus = TestBus()
    bus.publish_data("in", "n", [{"n": i} for i in range(10)])
    bus.run(app)
    assert order == list(range(10))
    assert [d["n"] for d in bus.data("out")] == list(range(10))


def test_batch_processors_receive_lists_of_at_most_batch_size() -> None:
    app = App("t")
    sizes: list[int] = []

    @app.processor("in", batch_size=4, to="sums")
    def total(events: list[Event]) -> Event:
        sizes.append(len(events))
        return Event("sum", {"total": sum(e.data["n"] for e in events)})

    bus = TestBus()
    bus.publish_data("in", "n", [{"n": i} for i in range(10)])
    bus.run(app)
    assert sizes == [4, 4, 2]
    assert sum(d["total"] for d in bus.data("sums")) == sum(range(10))


def test_a_batch_window_gathers_events_across_polls_and_commits_only_what_was_invoked() -> None:
    app = App("t")
    batches: list[list[int]] = []

    @app.processor("in", batch_size=100, batch_window_ms=60_000)
    def gather(orders: list[OrderPlaced]) -> None:
        batches.append([int(o.order_id) for o in orders])

    bus = TestBus()
    bus.publish("in", *(OrderPlaced(str(i), 1.0) for i in range(150)))
    bus.run(app)  # the window never expires in this test: the drain at the end invokes the rest
    assert batches == [list(range(100)), list(range(100, 150))]
    assert bus.committed("t", "in") == {0: 150}


def test_typed_batch_processors_receive_instances() -> None:
    app = App("t")
    got: list[OrderPlaced] = []

    @app.processor("orders", batch_size=2)
    def collect(orders: list[OrderPlaced]) -> None:
        got.extend(orders)

    bus = TestBus()
    bus.publish("orders", OrderPlaced("a", 1), OrderPlaced("b", 2), OrderPlaced("c", 3))
    bus.run(app)
    assert [o.order_id for o in got] == ["a", "b", "c"]


def test_a_processor_that_stops_on_failure_stops_the_worker_without_committing_past_it() -> None:
    app = App("t")

    @app.processor("in", to="out", on_failure="stop")
    def explode(event: Event) -> Event:
        if event.data["n"] == 3:
            raise RuntimeError("boom")
        return Event("ok", event.data)

    bus = TestBus()
    bus.publish_data("in", "n", [{"n": i} for i in range(5)])
    with pytest.raises(
        ProcessorError, match=r"processor 'test_a_processor.*explode' failed on in\[0\]@3: RuntimeError: boom"
    ):
        bus.run(app)
    assert bus.committed("t", "in") == {}
    assert bus.events("out") == []


def test_typed_data_that_does_not_fit_names_the_field() -> None:
    app = App("t")

    @app.processor("orders", on_failure="stop")
    def handle(order: OrderPlaced) -> None:
        return None

    bus = TestBus()
    bus.publish("orders", Event("order.placed", {"order_id": "x", "amount": "lots"}))
    with pytest.raises(ProcessorError, match=r"\$\.amount"):
        bus.run(app)


def test_data_that_does_not_fit_is_dead_lettered_at_once_without_retries() -> None:
    app = App("t")
    calls: list[str] = []

    @app.processor("orders")
    def handle(order: OrderPlaced) -> None:
        calls.append(order.order_id)

    bus = TestBus()
    bus.publish("orders", Event("order.placed", {"order_id": "x", "amount": "lots"}), OrderPlaced("ok", 1.0))
    bus.run(app)
    assert calls == ["ok"]
    (dead,) = bus.log.read("orders.dlq", 0, 0, 10).records()
    headers = dict(dead.headers or ())
    assert b"$.amount" in headers["eventbus.error.message"]
    assert headers["eventbus.attempts"] == b"1"
    assert bus.committed("t", "orders") == {0: 2}


def test_an_undecodable_record_is_dead_lettered_with_the_decode_error() -> None:
    from eventbus.backends.base import Message

    app = App("t")
    seen: list[int] = []

    @app.processor("in")
    def handle(event: Event) -> None:
        seen.append(event.data["n"])

    bus = TestBus()
    bus.publish_data("in", "ok", [{"n": 0}])
    bus.log.append("in", [Message(b"{not json", key=b"k")])
    bus.publish_data("in", "ok", [{"n": 2}])
    bus.run(app)
    assert seen == [0, 2]
    (dead,) = bus.log.read("in.dlq", 0, 0, 10).records()
    assert dead.value == b"{not json"
    assert dead.key == b"k"
    headers = dict(dead.headers or ())
    assert headers["eventbus.processor"] == b"(decoder)"
    assert headers["eventbus.origin.offset"] == b"1"
    assert b"not valid JSON" in headers["eventbus.error.message"]
    assert bus.committed("t", "in") == {0: 3}


def test_an_undecodable_record_stops_processors_that_stop_on_failure() -> None:
    from eventbus.backends.base import Message

    app = App("t")

    @app.processor("in", on_failure="stop")
    def handle(event: Event) -> None:
        return None

    bus = TestBus()
    bus.publish_data("in", "ok", [{}])
    bus.log.append("in", [Message(b"{not json")])
    with pytest.raises(PoisonRecordError, match=r"in\[0\]@1: record value is not valid JSON"):
        bus.run(app)
    assert bus.committed("t", "in") == {}


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (42, "returned a int"),
        ({"not": "an event"}, "returned a dict"),
    ],
)
def test_returning_something_that_is_not_an_event_is_a_clear_failure(returned: object, message: str) -> None:
    app = App("t")

    @app.processor("in", to="out", on_failure="stop")
    def bad(event: Event) -> object:
        return returned

    bus = TestBus()
    bus.publish_data("in", "x", [{}])
    with pytest.raises(ProcessorError, match=message):
        bus.run(app)


def test_an_output_with_no_topic_is_a_clear_failure() -> None:
    app = App("t")

    # Unannotated, so only the run can tell (an annotated one is refused when declared).
    @app.processor("in", on_failure="stop")
    def nowhere(event: Event):  # type: ignore[no-untyped-def]
        return Event("x", {})

    bus = TestBus()
    bus.publish_data("in", "x", [{}])
    with pytest.raises(ProcessorError, match="names no topic"):
        bus.run(app)


def test_per_partition_order_holds_over_many_partitions() -> None:
    app = App("t")
    seen: dict[str, list[int]] = {}

    @app.processor("in")
    def record(event: Event) -> None:
        seen.setdefault(event.partitionkey or "", []).append(event.data["seq"])

    bus = TestBus(partitions=4)
    bus.publish("in", *(Event("tick", {"seq": i}, partitionkey=f"k{i % 7}") for i in range(700)))
    bus.run(app)
    assert set(seen) == {f"k{i}" for i in range(7)}
    for key, sequence in seen.items():
        assert sequence == sorted(sequence), key
        assert len(sequence) == 100


# -- commit interval ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("interval_ms", [0.0, 60_000.0])
def test_a_commit_interval_holds_the_commits_of_busy_rounds_and_commits_everything_at_idle(
    tmp_path: Path, interval_ms: float
) -> None:
    log = SQLiteLog(tmp_path / "log.db")
    app = App("t")
    committed_while_running: set[tuple[tuple[int, int], ...]] = set()

    @app.processor("in", to="out")
    def copy(event: Event) -> Event:
        committed_while_running.add(tuple(log.committed("t", "in").items()))
        return Event("copied", {"n": event.data["n"]})

    bus = TestBus(log=log)
    bus.publish("in", *(Event("n", {"n": n}) for n in range(100)))
    stats = bus.run(app, max_poll_records=10, commit_interval_ms=interval_ms)
    assert [e.data["n"] for e in bus.events("out")] == list(range(100))
    assert log.committed("t", "in") == {0: 100}
    if interval_ms == 0:
        # Every round of 10 records commits (a commit lands while the next round runs, so some go unobserved).
        assert len(committed_while_running) >= 4
        assert stats.rounds >= 10
    else:
        # The first round commits at once (a worker shows it works); the nine busy rounds after it are committed
        # together once the partition is caught up.
        assert committed_while_running == {(), ((0, 10),)}
        assert stats.rounds == 2
    log.close()


def test_a_stop_commits_the_rounds_held_for_the_commit_interval(tmp_path: Path) -> None:
    from eventbus.runtime import Worker, WorkerSettings, run_coroutine

    log = SQLiteLog(tmp_path / "log.db")
    app = App("t")
    worker: Worker | None = None
    seen: list[int] = []

    @app.processor("in")
    def count(event: Event) -> None:
        seen.append(event.data["n"])
        if len(seen) == 35 and worker is not None:
            worker.stop()

    TestBus(log=log).publish("in", *(Event("n", {"n": n}) for n in range(100)))
    worker = Worker(app, log, WorkerSettings(max_poll_records=10, commit_interval_ms=60_000.0, idle_poll_s=0.01))
    run_coroutine(worker.run())
    assert seen == list(range(40)), "the round under way when asked to stop is finished"
    assert log.committed("t", "in") == {0: 40}, "and what was held is committed on the way out"
    log.close()


def test_other_tasks_on_the_event_loop_get_a_turn_every_round_while_commits_are_held(tmp_path: Path) -> None:
    # Projections, the HTTP server and signal handlers share the worker's event loop. With a sync processor, the
    # embedded log's calls made inline and commits held for the interval, nothing in a round waits on anything.
    from eventbus.runtime import Worker, WorkerSettings, run_coroutine

    log = SQLiteLog(tmp_path / "log.db")
    app = App("t")
    turns = 0
    turns_seen: set[int] = set()

    @app.processor("in")
    def count(event: Event) -> None:
        turns_seen.add(turns)

    TestBus(log=log).publish("in", *(Event("n", {"n": n}) for n in range(200)))
    worker = Worker(app, log, WorkerSettings(max_poll_records=10, commit_interval_ms=60_000.0, until_idle=True))

    async def main() -> None:
        async def another_task() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        other = asyncio.create_task(another_task())
        await worker.run()
        other.cancel()

    run_coroutine(main())
    assert len(turns_seen) >= 19, "the other task ran between every two of the 20 rounds"
    log.close()


def test_a_worker_run_until_idle_stops_once_caught_up_without_waiting_for_records(tmp_path: Path) -> None:
    import time

    from eventbus.runtime import Worker, WorkerSettings, run_coroutine

    log = SQLiteLog(tmp_path / "log.db")
    app = App("t")
    app.processor("in")(lambda event: None)
    TestBus(log=log).publish("in", *(Event("n", {"n": n}) for n in range(30)))
    worker = Worker(app, log, WorkerSettings(max_poll_records=10, until_idle=True, idle_poll_s=30.0))
    started = time.monotonic()
    run_coroutine(worker.run())
    assert time.monotonic() - started < 15, "it did not wait out a 30 s poll for records that are not coming"
    assert log.committed("t", "in") == {0: 30}
    log.close()


def test_a_negative_commit_interval_is_refused() -> None:
    from eventbus.errors import ConfigurationError
    from eventbus.runtime import Worker, WorkerSettings

    app = App("t")

    @app.processor("in")
    def noop(event: Event) -> None:
        pass

    with pytest.raises(ConfigurationError, match="commit_interval_ms must be 0 or more, got -5"):
        Worker(app, TestBus().log, WorkerSettings(commit_interval_ms=-5))
