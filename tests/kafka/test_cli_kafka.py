"""The README's quick start, command by command, with ``--broker kafka://...``: the same commands and the same
shop example as on the embedded log."""

from __future__ import annotations

import subprocess

import orjson
import pytest

from tests.conftest import PYTHON, REPO
from tests.kafka.brokers import Broker

pytestmark = pytest.mark.kafka


def eventbus(env: dict[str, str], *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [PYTHON, "-m", "eventbus", *args], cwd=REPO, env=env, input=stdin, capture_output=True, timeout=120, check=False
    )


def test_the_quick_start_runs_on_kafka(own_broker: Broker, subprocess_env: dict[str, str]) -> None:
    env = {**subprocess_env, "EVENTBUS_BROKER": own_broker.url()}
    created = eventbus(env, "topics", "create", "orders", "--partitions", "3", "--exist-ok")
    assert created.returncode == 0, created.stderr.decode()
    orders = (REPO / "processors" / "sample-orders.jsonl").read_bytes()
    published = eventbus(
        env, "publish", "orders", "--type", "shop.order.placed", "--key-field", "order_id", stdin=orders
    )
    assert published.returncode == 0, published.stderr.decode()
    count = len(orders.splitlines())
    assert f"published {count} event(s) to orders" in published.stderr.decode()

    ran = eventbus(env, "run", "processors.shop", "--until-idle")
    assert ran.returncode == 0, ran.stderr.decode()

    consumed = eventbus(env, "consume", "emails", "--from-beginning", "--until-end")
    assert consumed.returncode == 0, consumed.stderr.decode()
    emails = [orjson.loads(line) for line in consumed.stdout.splitlines()]
    assert emails, "the pipeline's last step wrote emails"
    assert all(e["specversion"] == "1.0" and e["type"] for e in emails)

    listed = eventbus(env, "topics", "list")
    assert listed.returncode == 0, listed.stderr.decode()
    assert "orders         3 partitions" in listed.stdout.decode()
    described = eventbus(env, "topics", "describe", "orders")
    assert described.returncode == 0, described.stderr.decode()
    assert f"{count} records" in described.stdout.decode()
    assert "group shop: lag 0" in described.stdout.decode()


def test_a_bad_setting_in_the_url_is_a_usage_error_naming_it(
    own_broker: Broker, subprocess_env: dict[str, str]
) -> None:
    result = eventbus(subprocess_env, "topics", "list", "--broker", f"kafka://{own_broker.bootstrap}?linger.ms=soon")
    assert result.returncode == 2
    assert "linger.ms=soon: Invalid value for configuration property" in result.stderr.decode()
