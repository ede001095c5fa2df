"""A projection store and the log it was folded from: moving to another log (a fresh file, a new cluster, a
topic created again) with the same store must not fold the new log's events as if they had been folded."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from eventbus import App, Event
from eventbus.backends.sqlite import SQLiteLog
from eventbus.projections import ProjectionGapError, ProjectionReader, View
from eventbus.testing import TestBus
from tests.conftest import PYTHON
from tests.kafka.brokers import running

APP = "tests.order_apps.orders"


def eventbus(*args: str, cwd: Path, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "eventbus", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )


def orders(prefix: str, count: int) -> str:
    return "".join(
        json.dumps({"order_id": f"{prefix}-{i}", "customer": "ada", "amount": 1}) + "\n" for i in range(count)
    )


def test_a_store_folded_from_a_longer_log_stops_the_projection_instead_of_skipping_events(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    env = {**subprocess_env, "EVENTBUS_STORE": f"sqlite:///{tmp_path}/store.db"}
    env.pop("EVENTBUS_EVENT_STORE", None)
    for name, count in (("first", 8), ("second", 1)):
        broker = f"sqlite:///{tmp_path}/{name}.db"
        assert eventbus("topics", "create", "--app", APP, "--broker", broker, cwd=tmp_path, env=env).returncode == 0
        published = eventbus(
            "publish",
            "orders",
            "--type",
            "order.placed",
            "--broker",
            broker,
            cwd=tmp_path,
            env=env,
            stdin=orders(name, count),
        )
        assert published.returncode == 0, published.stderr
        ran = eventbus("run", APP, "--broker", broker, "--until-idle", cwd=tmp_path, env=env)
    assert ran.returncode == 1, ran.stderr
    last_line = ran.stderr.strip().splitlines()[-1]
    assert "projection 'order_status' is at order-events[" in last_line
    assert "folded from another log" in last_line
    status = eventbus("projections", "status", "--app", APP, "--broker", broker, cwd=tmp_path, env=env)
    assert status.returncode == 0, status.stderr
    assert "ahead of the log" in status.stdout.splitlines()[0]
    assert "lag       -" not in status.stdout, status.stdout


def test_a_declared_topic_a_projection_folds_is_made_with_its_partitions_even_when_the_worker_cannot_start(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    broker = f"sqlite:///{tmp_path}/events.db"
    env = {**subprocess_env, "EVENTBUS_STORE": f"sqlite:///{tmp_path}/store.db"}
    # The user's slip: publishing before `topics create --app` makes 'orders' with one partition.
    eventbus(
        "publish", "orders", "--type", "order.placed", "--broker", broker, cwd=tmp_path, env=env, stdin=orders("o", 1)
    )
    ran = eventbus("run", APP, "--broker", broker, "--until-idle", cwd=tmp_path, env=env)
    assert ran.returncode == 2
    assert "declares topic 'orders' with 3 partitions but it exists with 1" in ran.stderr
    listed = eventbus("topics", "list", "--broker", broker, cwd=tmp_path, env=env).stdout
    # Had the projection made it with one partition, the app could not start even once 'orders' is put right.
    assert "order-events  1 partition" not in listed, listed


@pytest.mark.slow
@pytest.mark.kafka
# Without the check a worker on Kafka waits forever to catch up with a position the log never reaches.
@pytest.mark.timeout(60)
def test_moving_a_projection_store_from_the_embedded_log_to_kafka_stops_instead_of_skipping(tmp_path: Path) -> None:
    from eventbus.backends.kafka import open_kafka_log

    store = f"sqlite:///{tmp_path}/store.db"
    app = App("store-move")
    seen = app.projection("seen", topics="order-events", store=store)

    @seen.on("order.state.confirmed")
    def confirmed(event: Event, view: View) -> None:
        view[event.data["order_id"]] = {"status": "confirmed"}

    def confirmations(prefix: str, count: int) -> list[Event]:
        return [Event("order.state.confirmed", {"order_id": f"{prefix}-{i}"}) for i in range(count)]

    with SQLiteLog(tmp_path / "events.db") as embedded:
        bus = TestBus(log=embedded)
        bus.publish("order-events", *confirmations("sqlite", 5))
        bus.run(app)
    with running("tansu") as broker:
        kafka = open_kafka_log(broker.url())
        try:
            bus = TestBus(log=kafka)
            bus.publish("order-events", *confirmations("kafka", 2))
            with pytest.raises(
                ProjectionGapError, match=r"order-events\[0\]@5 but the log's partition ends at offset 2"
            ):
                bus.run(app)
        finally:
            kafka.close()
    with ProjectionReader(store, "seen") as reader:
        assert reader.get("kafka-0").value is None, "nothing was folded past the events it never saw"
