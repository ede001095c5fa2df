"""Declarations an EventBridge user writes out of habit: a 'type' key in the pattern of a typed processor."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from eventbus import App, Event, event_type
from eventbus.errors import ConfigurationError
from eventbus.testing import TestBus


@event_type("shop.order.placed", topic="orders")
@dataclass
class OrderPlaced:
    order_id: str
    amount: float


def test_a_type_key_agreeing_with_the_typed_parameter_is_taken_and_both_filters_hold() -> None:
    app = App("shop")
    seen: list[str] = []

    @app.processor("orders", pattern={"type": ["shop.order.placed"], "data": {"amount": [{"numeric": [">", 100]}]}})
    def large(order: OrderPlaced) -> None:
        seen.append(order.order_id)

    @app.processor("orders", pattern={"type": [{"prefix": "shop.order."}]}, name="any_order")
    def any_order(order: OrderPlaced) -> None:
        seen.append(f"any:{order.order_id}")

    bus = TestBus()
    bus.publish("orders", OrderPlaced("o-1", 250.0), OrderPlaced("o-2", 20.0), Event("shop.other", {"x": 1}))
    bus.run(app)
    assert sorted(seen) == ["any:o-1", "any:o-2", "o-1"]


def test_a_type_key_excluding_the_typed_parameters_type_names_the_class() -> None:
    app = App("shop")
    with pytest.raises(ConfigurationError) as refused:

        @app.processor("orders", pattern={"type": ["shop.order.paid"]})
        def never(order: OrderPlaced) -> None: ...

    message = str(refused.value)
    assert "never' (tests.app.test_pattern_type_narrowing" in message
    assert "its parameter's class OrderPlaced" in message
    assert "'shop.order.placed'" in message
    assert "types=" not in message, "the user gave no types="


def test_types_and_a_type_key_keep_the_types_both_accept() -> None:
    app = App("shop")

    @app.processor("orders", types=["a.one", "a.two"], pattern={"type": ["a.two", "a.three"]})
    def narrowed(event: Event) -> None: ...

    assert app.processors[0].pattern == {"type": ["a.two"]}
