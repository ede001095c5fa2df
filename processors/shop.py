"""An online shop's order pipeline, as choreography: each step reacts to the previous step's event.

    orders ──validate_order──► payments ──charge_payment──► stock ──reserve_stock──► shipments
                                                                                        │
    emails ◄──notify_customer── notifications ◄─── rejections, declines ◄──ship_order───┘

``sales_report`` also reads ``orders`` (fan-out): it receives placed orders in batches and emits sales figures to
``analytics``. Every event is keyed by its order id, so each order's events stay in order in one partition.

Run it:  eventbus topics create --app processors.shop
         eventbus publish orders --type shop.order.placed --key-field order_id < processors/sample-orders.jsonl
         eventbus run processors.shop --until-idle
         eventbus consume emails --from-beginning --until-end

(Topics first: publishing to a missing topic creates it with one partition, and the app declares three.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eventbus import App, Event, event_type

app = App("shop")
for name in ("orders", "payments", "stock", "shipments", "notifications"):
    app.topic(name, partitions=3)
app.topic("emails", partitions=1)
app.topic("analytics", partitions=1)

# A card is declined above this amount: a stand-in for a payment provider's answer.
CARD_LIMIT = 2_000.00
# Units on hand per SKU: a stand-in for an inventory service.
WAREHOUSE = {"KB-01": 50, "MS-02": 120, "MN-27": 8, "HD-55": 3, "CB-10": 500}


@dataclass
class LineItem:
    sku: str
    quantity: int
    unit_price: float


@event_type("shop.order.placed", topic="orders")
@dataclass
class OrderPlaced:
    order_id: str
    customer: str
    email: str
    items: list[LineItem]
    currency: str = "EUR"

    @property
    def total(self) -> float:
        return round(sum(i.quantity * i.unit_price for i in self.items), 2)


@event_type("shop.payment.requested", topic="payments")
@dataclass
class PaymentRequested:
    order_id: str
    customer: str
    email: str
    amount: float
    currency: str
    items: list[LineItem]


@event_type("shop.payment.captured", topic="stock")
@dataclass
class PaymentCaptured:
    order_id: str
    email: str
    amount: float
    currency: str
    items: list[LineItem]


@event_type("shop.stock.reserved", topic="shipments")
@dataclass
class StockReserved:
    order_id: str
    email: str
    items: list[LineItem]


@event_type("shop.order.rejected", topic="notifications")
@dataclass
class OrderRejected:
    order_id: str
    email: str
    reason: str


@event_type("shop.shipment.dispatched", topic="notifications")
@dataclass
class ShipmentDispatched:
    order_id: str
    email: str
    carrier: str
    tracking_number: str


@event_type("shop.email.queued", topic="emails")
@dataclass
class EmailQueued:
    to: str
    subject: str
    body: str


@event_type("shop.analytics.sales", topic="analytics")
@dataclass
class SalesFigures:
    orders: int
    revenue: float
    currency: str
    top_skus: list[str] = field(default_factory=list)


@app.processor("orders")
def validate_order(order: OrderPlaced) -> PaymentRequested | OrderRejected:
    if not order.items:
        return OrderRejected(order.order_id, order.email, "the order has no items")
    unknown = sorted({i.sku for i in order.items if i.sku not in WAREHOUSE})
    if unknown:
        return OrderRejected(order.order_id, order.email, f"unknown products: {', '.join(unknown)}")
    if any(i.quantity <= 0 for i in order.items):
        return OrderRejected(order.order_id, order.email, "quantities must be positive")
    return PaymentRequested(order.order_id, order.customer, order.email, order.total, order.currency, order.items)


@app.processor("payments")
def charge_payment(payment: PaymentRequested) -> PaymentCaptured | OrderRejected:
    if payment.amount > CARD_LIMIT:
        return OrderRejected(payment.order_id, payment.email, f"payment of {payment.amount:.2f} was declined")
    return PaymentCaptured(payment.order_id, payment.email, payment.amount, payment.currency, payment.items)


@app.processor("stock")
def reserve_stock(paid: PaymentCaptured) -> StockReserved | OrderRejected:
    short = [i.sku for i in paid.items if WAREHOUSE[i.sku] < i.quantity]
    if short:
        # A real shop would also refund the payment here.
        return OrderRejected(paid.order_id, paid.email, f"out of stock: {', '.join(short)}")
    for item in paid.items:
        WAREHOUSE[item.sku] -= item.quantity
    return StockReserved(paid.order_id, paid.email, paid.items)


@app.processor("shipments")
def ship_order(reserved: StockReserved) -> ShipmentDispatched:
    tracking = "TRK" + reserved.order_id.upper().replace("-", "")
    return ShipmentDispatched(reserved.order_id, reserved.email, "parcel-express", tracking)


@app.processor("notifications", types=["shop.order.rejected", "shop.shipment.dispatched"], to="emails")
def notify_customer(event: Event) -> EmailQueued:
    data = event.data
    if event.type == "shop.order.rejected":
        subject = f"Order {data['order_id']} could not be completed"
        body = f"We are sorry: {data['reason']}."
    else:
        subject = f"Order {data['order_id']} is on its way"
        body = f"Your parcel travels with {data['carrier']}, tracking number {data['tracking_number']}."
    return EmailQueued(data["email"], subject, body)


@app.processor("orders", batch_size=50, batch_window_ms=200)
def sales_report(orders: list[OrderPlaced]) -> SalesFigures:
    units: dict[str, int] = {}
    for order in orders:
        for item in order.items:
            units[item.sku] = units.get(item.sku, 0) + item.quantity
    top = sorted(units, key=lambda sku: (-units[sku], sku))[:3]
    revenue = round(sum(o.total for o in orders), 2)
    return SalesFigures(len(orders), revenue, orders[0].currency if orders else "EUR", top)
