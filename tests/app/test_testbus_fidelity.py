"""`TestBus` shows a test what the real worker and `eventbus consume` show: Avro outputs as their data, and, when a
processor stops the run, the processor's own exception and line."""

from __future__ import annotations

import subprocess
import traceback
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventbus import App, Event, Retry
from eventbus.backends.sqlite import SQLiteLog
from eventbus.errors import ProcessorError
from eventbus.publisher import Publisher
from eventbus.testing import TestBus
from processors.shop import LineItem, OrderPlaced, PaymentRequested
from tests.conftest import PYTHON, REPO

BILLING = f'''
"""Orders in JSON, payment requests out in Avro."""

from eventbus import App
from processors.shop import OrderPlaced, PaymentRequested

app = App("billing", schemas={str(REPO / "schemas")!r})
app.topic("payments", codec="avro")


@app.processor("orders")
def request_payment(order: OrderPlaced) -> PaymentRequested:
    return PaymentRequested(order.order_id, order.customer, order.email, order.total, order.currency, order.items)
'''

ORDERS = [
    OrderPlaced("o-1", "ada", "ada@example.com", [LineItem("KB-01", 2, 49.5)]),
    OrderPlaced("o-2", "bob", "bob@example.com", [LineItem("MS-02", 1, 25.0), LineItem("KB-01", 1, 49.5)]),
]


def _billing_app() -> App:
    namespace: dict[str, Any] = {"__name__": "billing_in_memory"}
    exec(compile(BILLING, "billing.py", "exec"), namespace)  # noqa: S102 - the module the worker runs, in process
    app = namespace["app"]
    assert isinstance(app, App)
    return app


def test_avro_outputs_read_back_as_data_as_eventbus_consume_shows_them(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    (tmp_path / "billing.py").write_text(BILLING)
    database = tmp_path / "events.db"
    url = f"sqlite:///{database}"
    with SQLiteLog(database) as log:
        Publisher(log, source="/tests").publish_many("orders", ORDERS)

    def eventbus(*argv: str) -> str:
        result = subprocess.run(
            [PYTHON, "-m", "eventbus", *argv, "--broker", url],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=subprocess_env,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    eventbus("run", "billing", "--until-idle")
    consumed = [
        orjson.loads(line) for line in eventbus("consume", "payments", "--from-beginning", "--until-end").splitlines()
    ]
    assert [c["datacontenttype"] for c in consumed] == ["application/avro", "application/avro"]
    shown = [c["data"] for c in consumed]
    assert shown[0] == {
        "order_id": "o-1",
        "customer": "ada",
        "email": "ada@example.com",
        "amount": 99.0,
        "currency": "EUR",
        "items": [{"sku": "KB-01", "quantity": 2, "unit_price": 49.5}],
    }

    # The same records, looked at through a TestBus over that file.
    with SQLiteLog(database) as log:
        assert TestBus(log=log).data("payments") == shown

    # The same app run in memory.
    bus = TestBus()
    bus.publish("orders", *ORDERS)
    bus.run(_billing_app())
    assert [e.datacontenttype for e in bus.events("payments")] == ["application/avro", "application/avro"]
    assert bus.data("payments") == shown
    assert [p.order_id for p in bus.typed("payments", PaymentRequested)] == ["o-1", "o-2"]


def test_a_stopping_processor_error_carries_the_processors_own_exception_and_line() -> None:
    app = App("stops")

    @app.processor("in", on_failure="stop", retry=Retry(max_attempts=1))
    def look_up(event: Event) -> None:
        {"known": 1}[event.data["key"]]  # the line a test wants to see

    bus = TestBus()
    bus.publish("in", Event("x", {"key": "unknown"}))
    with pytest.raises(ProcessorError, match=r"processor '.*look_up' failed on in\[0\]@0: KeyError") as raised:
        bus.run(app)
    cause = raised.value.__cause__
    assert isinstance(cause, KeyError)
    assert cause is raised.value.cause
    shown = "".join(traceback.format_exception(raised.value))
    assert "The above exception was the direct cause" in shown
    assert '{"known": 1}[event.data["key"]]  # the line a test wants to see' in shown


def test_typed_reads_only_the_events_of_the_classs_type_as_a_typed_processor_receives_them(tmp_path: Path) -> None:
    app = App("orders")
    received: list[OrderPlaced] = []

    @app.processor("orders")
    def collect(order: OrderPlaced) -> None:
        received.append(order)

    cancelled = Event("shop.order.cancelled", {"order_id": "o-9", "customer": "x", "email": "x@example.com"})
    with SQLiteLog(tmp_path / "events.db") as log:
        bus = TestBus(log=log)
        bus.publish("orders", ORDERS[0], cancelled, ORDERS[1])
        bus.run(app)
        assert bus.typed("orders", OrderPlaced) == received == ORDERS


def test_publishing_a_list_or_a_single_data_item_is_refused_rather_than_misread() -> None:
    bus = TestBus()
    with pytest.raises(
        TypeError, match=r"takes the events one by one, got a list of them: bus.publish\('in', \*events\)"
    ):
        bus.publish("in", [Event("x", {})])
    with pytest.raises(TypeError, match="takes a list of data items, got a dict: wrap a single one in a list"):
        bus.publish_data("in", "x", {"n": 1})
    assert bus.events("in") == []
    bus.publish_data("in", "x", [{"n": 1}])
    assert bus.data("in") == [{"n": 1}]
