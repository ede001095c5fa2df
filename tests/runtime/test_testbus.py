"""The test harness on every driver: its helpers read what a run wrote, and its runs leave nothing behind."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from eventbus import App, Event, Idempotency, Retry, event_type
from eventbus.testing import TestBus
from tests.conftest import ALL_DRIVERS, open_log


@event_type("testbus.order", topic="orders")
@dataclass
class Order:
    order_id: str
    amount: float


@event_type("testbus.invoice", topic="invoices")
@dataclass
class Invoice:
    order_id: str


@pytest.fixture(params=ALL_DRIVERS)
def bus(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestBus]:
    with open_log(request.param, request, tmp_path) as log:
        yield TestBus(log=log)


def test_the_helpers_read_what_a_run_wrote(bus: TestBus) -> None:
    app = App("billing")

    @app.processor("orders", retry=Retry(max_attempts=1))
    def invoice(order: Order) -> Invoice:
        if order.amount < 0:
            raise ValueError(f"negative amount in {order.order_id}")
        return Invoice(order.order_id)

    bus.create_topic("orders", 1)
    bus.publish("orders", Order("o-1", 10.0), Order("o-2", -1.0))
    bus.publish_data("orders", "testbus.order", [{"order_id": "o-3", "amount": 3.0}])
    stats = bus.run(app)

    assert [e.type for e in bus.events("orders")] == ["testbus.order"] * 3
    assert bus.typed("invoices", Invoice) == [Invoice("o-1"), Invoice("o-3")]
    assert bus.data("invoices") == [{"order_id": "o-1"}, {"order_id": "o-3"}]
    ((event, failure),) = bus.dead_letters("orders.dlq")
    assert event is not None
    assert event.as_type(Order) == Order("o-2", -1.0)
    assert (failure["error.class"], failure["error.message"]) == ("ValueError", "negative amount in o-2")
    assert (failure["origin.topic"], failure["origin.partition"], failure["origin.offset"]) == ("orders", "0", "1")
    assert bus.committed("billing", "orders") == {0: 3}
    assert (stats.events_in, stats.dead_lettered) == (3, 1)
    assert bus.dead_letters("no-such-topic") == []
    assert bus.events("no-such-topic") == []


def test_idempotency_keys_last_as_long_as_the_bus_and_stay_out_of_the_working_directory(
    bus: TestBus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = App("t")
    applied: list[str] = []

    @app.processor("in", idempotency=Idempotency())
    def charge(event: Event) -> None:
        applied.append(event.id)

    charge_once = Event("charge", {}, id="c-1", source="/t")
    bus.publish("in", charge_once)
    bus.run(app)
    bus.publish("in", charge_once)
    bus.run(app)
    assert applied == ["c-1"], "the second run knows the key of the first"
    assert not (tmp_path / "eventbus.idempotency").exists(), "a worker's default store, shared by every test"
