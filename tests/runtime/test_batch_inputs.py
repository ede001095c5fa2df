"""What a batch processor gets and what its outputs carry: events its typed parameter cannot take are left out of
its list and dead-lettered alone, as a one-at-a-time processor's would be; its outputs inherit the correlation id,
trace context and partition key its events share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eventbus import App, Event, event_type
from eventbus.backends.sqlite import SQLiteLog
from eventbus.testing import TestBus


@event_type("order.placed", topic="orders")
@dataclass
class OrderPlaced:
    order_id: str
    amount: float


def test_an_event_a_typed_batch_cannot_take_is_dead_lettered_alone_and_the_others_are_processed(
    tmp_path: Path,
) -> None:
    app = App("totals")
    seen: list[list[str]] = []

    @app.processor("orders", batch_size=10, to="totals")
    def total(orders: list[OrderPlaced]) -> Event:
        seen.append([o.order_id for o in orders])
        return Event("orders.totalled", {"total": sum(o.amount for o in orders)})

    bus = TestBus(log=SQLiteLog(tmp_path / "events.db"))
    bus.publish("orders", OrderPlaced("o-1", 10.0), OrderPlaced("o-2", 20.0))
    bus.publish("orders", Event("order.placed", {"order_id": "o-3", "amount": "lots"}, id="bad"))
    bus.publish("orders", OrderPlaced("o-4", 40.0))

    bus.run(app)

    assert seen == [["o-1", "o-2", "o-4"]]
    assert bus.data("totals") == [{"total": 70.0}]
    dead = bus.dead_letters("orders.dlq")
    assert [(event.id if event else None, failure["error.class"]) for event, failure in dead] == [
        ("bad", "eventbus.event.InvalidEventError")
    ]
    assert "data does not fit OrderPlaced" in dead[0][1]["error.message"]
    assert bus.committed("totals", "orders") == {0: 4}


def test_batch_outputs_inherit_what_their_events_share_and_a_batch_of_one_its_event(tmp_path: Path) -> None:
    app = App("fan-in")

    @app.processor("in", batch_size=3, to="out")
    def summarise(events: list[Event]) -> Event:
        return Event("summary", {"n": [e.data["n"] for e in events]})

    bus = TestBus(log=SQLiteLog(tmp_path / "events.db"))
    shared = {"partitionkey": "customer-7", "correlationid": "order-flow-1", "traceparent": "00-" + "a" * 32 + "-b"}
    # One run per batch, so that each batch holds exactly these events.
    bus.publish("in", *[Event("n", {"n": n}, **shared) for n in range(3)])  # type: ignore[arg-type]
    bus.run(app)
    bus.publish("in", Event("n", {"n": 3}, partitionkey="customer-7"), Event("n", {"n": 4}, partitionkey="other"))
    bus.run(app)
    bus.publish("in", Event("n", {"n": 5}, id="lone", partitionkey="customer-9", correlationid="flow-9"))
    bus.run(app)

    shared_out, mixed_out, lone_out = (e.to_dict() for e in bus.events("out"))
    assert [shared_out["data"]["n"], mixed_out["data"]["n"], lone_out["data"]["n"]] == [[0, 1, 2], [3, 4], [5]]
    assert {k: shared_out.get(k) for k in (*shared, "causationid")} == {**shared, "causationid": None}
    assert "partitionkey" not in mixed_out, "events of different keys: the output belongs to neither"
    assert "causationid" not in mixed_out
    assert "correlationid" not in mixed_out, "each event starts its own flow"
    assert (lone_out["causationid"], lone_out["correlationid"], lone_out["partitionkey"]) == (
        "lone",
        "flow-9",
        "customer-9",
    )
