"""Projections end to end on both stores: folding, exactly-once skipping, failures, reads, rebuilds, gaps."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from eventbus import App, Event, Retry, event_type
from eventbus.backends.base import TopicPartition
from eventbus.errors import ConfigurationError, TopicNotFoundError
from eventbus.projections import ProjectionGapError, ProjectionReader, View
from eventbus.projections.rebuild import rebuild
from eventbus.testing import TestBus


@event_type("bank.money.deposited")
@dataclass
class Deposited:
    account: str
    amount: int


def bank_app(store_url: str) -> App:
    app = App("bank")
    balances = app.projection("balances", topics="accounts", store=store_url)

    @balances.on("bank.account.opened")
    def opened(event: Event, view: View) -> None:
        view[event.data["account"]] = {"owner": event.data["owner"], "balance": 0, "moves": 0}

    @balances.on()
    def deposited(event: Deposited, view: View) -> None:
        row = view[event.account]
        row["balance"] += event.amount
        row["moves"] += 1
        view[event.account] = row

    @balances.on("bank.account.closed")
    def closed(event: Event, view: View) -> None:
        del view[event.data["account"]]

    return app


def open_account(account: str, owner: str) -> Event:
    return Event("bank.account.opened", {"account": account, "owner": owner}, partitionkey=account)


def deposit(account: str, amount: int) -> Event:
    return Event.of(Deposited(account, amount), partitionkey=account)


def test_a_projection_folds_events_into_rows_readable_by_key_and_by_field(store_url: str) -> None:
    bus = TestBus(partitions=2)
    app = bank_app(store_url)
    bus.publish("accounts", open_account("a1", "ada"), open_account("a2", "bob"), open_account("a3", "ada"))
    bus.publish("accounts", deposit("a1", 50), deposit("a2", 7), deposit("a1", 25))
    bus.publish("accounts", Event("bank.account.closed", {"account": "a3"}, partitionkey="a3"))
    bus.publish("accounts", Event("bank.unrelated", {}, partitionkey="a1"))
    bus.run(app)
    with ProjectionReader(store_url, "balances") as reader:
        one = reader.get("a1")
        assert one.value == {"owner": "ada", "balance": 75, "moves": 2}
        assert sum(one.position.values()) == 8, "the position covers every event, handled or not"
        assert reader.get("a3").value is None
        assert [r["key"] for r in reader.query({"owner": "ada"}).value] == ["a1"]
        assert reader.query({"balance": 7}).value == [
            {"key": "a2", "value": {"owner": "bob", "balance": 7, "moves": 1}}
        ]


def test_redelivered_events_are_not_folded_twice(store_url: str) -> None:
    bus = TestBus()
    app = bank_app(store_url)
    bus.publish("accounts", open_account("a1", "ada"), deposit("a1", 10), deposit("a1", 5))
    bus.run(app)
    # The group forgets its position (as after a crash before its commit): everything is delivered again.
    bus.log.commit("bank.projection.balances", {TopicPartition("accounts", 0): 0})
    bus.publish("accounts", deposit("a1", 1))
    bus.run(app)
    with ProjectionReader(store_url, "balances") as reader:
        assert reader.get("a1").value == {"owner": "ada", "balance": 16, "moves": 3}


def test_a_reset_store_is_refolded_from_its_own_checkpoint_not_the_groups(
    store_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    bus = TestBus()
    bus.publish("accounts", open_account("a1", "ada"), deposit("a1", 10))
    bus.run(bank_app(store_url))
    fresh_store = f"sqlite:///{tmp_path_factory.mktemp('fresh')}/p.db"
    bus.run(bank_app(fresh_store))  # same group, group offsets at the end, empty store
    with ProjectionReader(fresh_store, "balances") as reader:
        assert reader.get("a1").value == {"owner": "ada", "balance": 10, "moves": 1}


def test_a_failing_handler_is_retried_then_dead_lettered_and_leaves_no_partial_writes(store_url: str) -> None:
    app = App("bank")
    calls: list[int] = []
    totals = app.projection(
        "totals", topics="accounts", store=store_url, retry=Retry(max_attempts=3, initial_delay_ms=1)
    )

    @totals.on("n")
    def add(event: Event, view: View) -> None:
        calls.append(event.data["n"])
        row = view.get("sum", {"total": 0})
        view["sum"] = {"total": row["total"] + event.data["n"]}
        if event.data["n"] == 2:
            raise ValueError("two is not welcome")

    bus = TestBus()
    bus.publish_data("accounts", "n", [{"n": 1}, {"n": 2}, {"n": 3}])
    bus.run(app)
    assert calls == [1, 2, 2, 2, 3]
    with ProjectionReader(store_url, "totals") as reader:
        assert reader.get("sum").value == {"total": 4}
    ((event, failure),) = bus.dead_letters("accounts.dlq")
    assert event is not None
    assert event.data == {"n": 2}
    assert failure["processor"] == "projection:totals"
    assert failure["attempts"] == "3"


def test_rebuild_gives_the_same_content_as_the_live_projection_and_the_live_worker_follows_it(
    store_url: str,
) -> None:
    bus = TestBus(partitions=3)
    app = bank_app(store_url)
    bus.publish("accounts", *(open_account(f"a{i}", f"owner{i % 4}") for i in range(30)))
    bus.publish("accounts", *(deposit(f"a{i % 30}", i) for i in range(300)))
    bus.run(app)
    with ProjectionReader(store_url, "balances") as reader:
        live_hash = reader.content_hash()
        progress: list[tuple[int, int]] = []
        version = rebuild(
            app.projections["balances"], bus.log, reader.store, progress=lambda d, t: progress.append((d, t))
        )
        assert version == 2
        assert reader.store.current_version("balances") == 2
        assert reader.content_hash() == live_hash
        assert progress[-1] == (330, 330)
    bus.publish("accounts", deposit("a1", 1000))
    bus.run(app)  # a worker now folds into version 2, from its checkpoints
    with ProjectionReader(store_url, "balances") as reader:
        assert reader.get("a1").value["balance"] == 1000 + sum(i for i in range(300) if i % 30 == 1)


def test_a_rebuild_over_a_topic_missing_from_the_log_stops_before_making_a_version(store_url: str) -> None:
    bus = TestBus()
    app = bank_app(store_url)
    with ProjectionReader(store_url, "balances") as reader:
        with pytest.raises(TopicNotFoundError, match="accounts"):
            rebuild(app.projections["balances"], bus.log, reader.store)
        bus.publish("accounts", open_account("a1", "ada"))
        assert rebuild(app.projections["balances"], bus.log, reader.store) == 2, "no version was used up"


def test_a_checkpoint_before_the_logs_retention_stops_the_projection(store_url: str) -> None:
    bus = TestBus()
    bus.publish("accounts", open_account("a1", "ada"), deposit("a1", 1), deposit("a1", 2))
    bus.log.delete_records("accounts", {0: 2})
    with pytest.raises(ProjectionGapError, match=r"the log only holds that partition from offset 2"):
        bus.run(bank_app(store_url))


def test_projection_declarations_are_checked() -> None:
    app = App("t")
    with pytest.raises(ConfigurationError, match="projection name 'Bad Name'"):
        app.projection("Bad Name", topics="x")
    totals = app.projection("totals", topics="x")
    with pytest.raises(ConfigurationError, match="projection 'totals' is declared twice"):
        app.projection("totals", topics="x")

    def one_parameter(event: Event) -> None: ...

    with pytest.raises(ConfigurationError, match=r"it must take the event and the view"):
        totals.on("x")(one_parameter)

    def untyped(event: Event, view: View) -> None: ...

    with pytest.raises(ConfigurationError, match="name the event types"):
        totals.on()(untyped)
    totals.on("x")(untyped)
    with pytest.raises(ConfigurationError, match="'x' already has a handler"):
        totals.on("x")(untyped)


def test_view_documents_are_copies_and_keys_must_be_strings(store_url: str) -> None:
    app = App("t")
    seen: list[object] = []
    table = app.projection("table", topics="in", store=store_url)

    @table.on("x")
    def handle(event: Event, view: View) -> None:
        view["k"] = {"items": [1]}
        view.get("k")["items"].append(2)  # changes a copy, not the row
        seen.append(view["k"])
        with pytest.raises(TypeError, match="projection keys are strings"):
            view[1] = {}  # type: ignore[index]

    bus = TestBus()
    bus.publish_data("in", "x", [{}])
    bus.run(app)
    assert seen == [{"items": [1]}]
