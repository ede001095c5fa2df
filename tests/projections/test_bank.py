"""The bank example: commands decided by an event-sourced aggregate, balances read from a projection, over Python
and over HTTP from a real `eventbus run --http` process."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from eventbus import Event
from eventbus.projections import ProjectionReader
from eventbus.testing import TestBus
from processors import bank
from tests.conftest import PYTHON, REPO
from tests.postgres_server import free_port


def command(kind: str, account: str, **data: object) -> Event:
    return Event(f"bank.{kind}", {"account": account, **data}, partitionkey=account)


def test_commands_become_balances_and_overdrafts_are_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTBUS_STORE", f"sqlite:///{tmp_path}/read.db")
    bus = TestBus(partitions=3)
    bus.publish(
        "account-commands",
        command("open", "acc-1", owner="ada"),
        command("open", "acc-2", owner="bob"),
        command("deposit", "acc-1", amount=100),
        command("withdraw", "acc-1", amount=30),
        command("withdraw", "acc-2", amount=1),
        command("deposit", "acc-9", amount=5),
        command("open", "acc-1", owner="eve"),
    )
    bus.run(bank.app)
    with ProjectionReader(f"sqlite:///{tmp_path}/read.db", "balances") as reader:
        assert reader.get("acc-1").value == {"owner": "ada", "balance": 70}
        assert reader.get("acc-2").value == {"owner": "bob", "balance": 0}
        assert reader.get("acc-9").value is None
    reasons = sorted(e.data["reason"] for e in bus.events("account-rejections"))
    assert reasons == [
        "account acc-1 is already open",
        "account acc-2 has 0, cannot withdraw 1",
        "account acc-9 is not open",
    ]


JSON = {"Content-Type": "application/json"}


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


def test_write_then_read_over_http_from_a_running_worker(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    port = free_port()
    env = {**subprocess_env, "EVENTBUS_STORE": f"sqlite:///{tmp_path}/read.db"}
    worker = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "eventbus",
            "run",
            "processors.bank",
            "--broker",
            f"sqlite:///{tmp_path}/bank.db",
            "--http",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, health = http("GET", f"{base}/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline, "the worker never started serving"
                time.sleep(0.05)
        assert (status, health) == (200, {"status": "ok", "app": "bank"})
        for body in (
            {"type": "bank.open", "data": {"account": "acc-1", "owner": "ada"}, "partitionkey": "acc-1"},
            {"type": "bank.deposit", "data": {"account": "acc-1", "amount": 250}, "partitionkey": "acc-1"},
        ):
            status, accepted = http(
                "POST", f"{base}/topics/account-commands", body, {"Content-Type": "application/cloudevents+json"}
            )
            assert status == 201, accepted
            assert accepted["topic"] == "account-commands"
        # Binary mode: attributes in ce-* headers, the data as the body.
        status, _ = http(
            "POST",
            f"{base}/topics/account-commands",
            {"account": "acc-1", "amount": 50},
            {
                "ce-specversion": "1.0",
                "ce-type": "bank.withdraw",
                "ce-id": "w-1",
                "ce-source": "/curl",
                "ce-partitionkey": "acc-1",
                "Content-Type": "application/json",
            },
        )
        assert status == 201
        deadline = time.monotonic() + 30
        while True:
            status, row = http("GET", f"{base}/projections/balances/acc-1")
            if status == 200 and row["value"]["balance"] == 200:
                break
            assert time.monotonic() < deadline, row
            time.sleep(0.05)
        assert row["value"] == {"owner": "ada", "balance": 200}
        assert sum(row["position"].values()) == 3
        status, found = http("GET", f"{base}/projections/balances?owner=%22ada%22")
        assert status == 200
        assert [r["key"] for r in found["rows"]] == ["acc-1"]
        status, found = http("GET", f"{base}/projections/balances?balance=200")
        assert [r["key"] for r in found["rows"]] == ["acc-1"]

        assert http("GET", f"{base}/projections/balances/nobody")[0] == 404
        assert http("GET", f"{base}/projections/ghost/x")[0] == 404
        status, problem = http("GET", f"{base}/projections/balances/acc-1?after=nonsense")
        assert status == 400
        assert "TOPIC/PARTITION/OFFSET" in problem["error"]
        status, problem = http("GET", f"{base}/projections/balances/acc-1?after=accounts/0/999999&timeout_s=0.2")
        assert status == 504
        status, problem = http("POST", f"{base}/topics/account-commands", {"data": "no type"}, JSON)
        assert status == 400
        assert "type: required attribute is missing" in problem["error"]
        status, problem = http("POST", f"{base}/topics/account-commands", {"type": "x"})  # a form, as urllib says
        assert status == 415
        assert "application/x-www-form-urlencoded" in problem["error"]
        status, text = http("GET", f"{base}/metrics")
        assert status == 200
        assert "eventbus_events_processed_total" in text
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
