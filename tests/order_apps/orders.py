"""An order pipeline as a new user writes it from the README: topics of different partition counts, a router
fanning orders out, and an event-sourced order whose states a projection (with no store named) serves."""

from __future__ import annotations

from dataclasses import dataclass

from eventbus import App, Event, event_type
from eventbus.projections import Aggregate, CommandRejectedError, ConcurrencyError, View

app = App("orders-demo")
app.topic("orders", partitions=3)
app.topic("notifications", partitions=1)
app.topic("order-events", partitions=3)


@event_type("order.placed", topic="orders")
@dataclass
class OrderPlaced:
    order_id: str
    customer: str
    amount: float


@app.processor("orders", pattern={"data": {"amount": [{"numeric": [">", 0]}]}}, to="notifications")
def confirm(order: OrderPlaced) -> Event:
    return Event("order.confirmed", {"order_id": order.order_id}, partitionkey=order.order_id)


@app.processor("orders", pattern={"data": {"customer": [{"prefix": "vip-"}]}}, to="notifications")
def vip_notice(order: OrderPlaced) -> Event:
    return Event("notify.vip", {"order_id": order.order_id})


class Order(Aggregate):
    topic = "order-events"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.status: str | None = None

    def apply(self, event: Event) -> None:
        self.status = event.type.removeprefix("order.state.")

    def transition(self, to: str) -> list[Event]:
        if self.status == to:
            raise CommandRejectedError(f"order {self.id} is already {to}")
        return [self.event(f"order.state.{to}", {"order_id": self.id})]


@app.processor("notifications", types="order.confirmed")
def record_state(event: Event) -> None:
    store = app.event_store()
    for _ in range(3):
        order = store.load(Order, event.data["order_id"])
        try:
            store.save(order, order.transition("confirmed"))
        except CommandRejectedError:
            return
        except ConcurrencyError:
            continue
        return


status = app.projection("order_status", topics="order-events")


@status.on("order.state.confirmed")
def on_state(event: Event, view: View) -> None:
    view[event.data["order_id"]] = {"status": "confirmed"}
