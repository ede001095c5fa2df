"""A new user's unit tests of an order app with `TestBus`, as the README shows them: publish, run, read."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventbus.errors import ConfigurationError
from eventbus.testing import TestBus
from tests.order_apps import orders
from tests.order_apps.orders import OrderPlaced


@pytest.fixture
def working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory of the test's own, with no store named in the environment, as a user's shell has."""
    monkeypatch.delenv("EVENTBUS_STORE", raising=False)
    monkeypatch.delenv("EVENTBUS_EVENT_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_testbus_folds_projections_into_a_store_of_its_own(working_directory: Path) -> None:
    bus = TestBus(app=orders.app)
    bus.publish("orders", OrderPlaced("o-1", "ada", 10.0))
    bus.run(orders.app)
    with bus.projection(orders.status) as reader:
        assert reader.get("o-1").value == {"status": "confirmed"}
    assert list(working_directory.iterdir()) == [], "a test run leaves nothing in the working directory"


def test_each_testbus_folds_its_own_events_whatever_another_one_folded_before(working_directory: Path) -> None:
    first = TestBus(app=orders.app)
    first.publish("orders", *(OrderPlaced(f"o-{i}", "ada", 10.0) for i in range(6)))
    first.run(orders.app)
    second = TestBus(app=orders.app)
    second.publish("orders", OrderPlaced("fresh", "bob", 5.0))
    second.run(orders.app)
    with second.projection(orders.status) as reader:
        assert reader.get("fresh").value == {"status": "confirmed"}
        assert reader.get("o-1").value is None


def test_testbus_app_makes_the_declared_topics_before_anything_is_published(working_directory: Path) -> None:
    bus = TestBus(app=orders.app)
    bus.publish("orders", *(OrderPlaced(f"o-{i}", f"vip-{i}", 1.0) for i in range(12)))
    bus.run(orders.app)
    assert len(bus.log.watermarks("orders")) == 3
    assert sorted(e.type for e in bus.events("notifications")) == ["notify.vip"] * 12 + ["order.confirmed"] * 12


def test_a_topic_published_with_the_buss_partition_count_names_the_way_out(working_directory: Path) -> None:
    bus = TestBus(partitions=3)  # right for orders and order-events, wrong for notifications
    bus.publish("notifications", *(OrderPlaced(f"o-{i}", "ada", 1.0) for i in range(2)))
    with pytest.raises(ConfigurationError, match=r"topic 'notifications'.*TestBus\(app=app\)"):
        bus.run(orders.app)
