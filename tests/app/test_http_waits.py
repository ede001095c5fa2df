"""HTTP reads that wait for a position (``after=``, ``timeout_s``): a bad timeout is refused, and waiting readers never
take the threads that ingress and /metrics need — not even when there are more of them than the executor has."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from eventbus import App, Event
from eventbus import http as http_module
from eventbus.backends.sqlite import SQLiteLog
from eventbus.http import HttpService
from eventbus.projections.runner import ProjectionRunner
from eventbus.runtime import WorkerSettings

PROMPTLY_S = 5.0
CLOUDEVENT = {"Content-Type": "application/cloudevents+json"}


def balances_app(tmp_path: Path) -> App:
    app = App("bank")
    balances = app.projection("balances", topics="accounts", store=f"sqlite:///{tmp_path}/balances.db")

    @balances.on("deposited")
    def deposited(event: Event, view: Any) -> None:
        view[event.data["account"]] = event.data

    return app


def serving(
    tmp_path: Path, scenario: Callable[[TestClient[Any, Any], App, SQLiteLog], Awaitable[None]], executor_threads: int
) -> None:
    """Run ``scenario`` against the app's HTTP service, with a default executor of ``executor_threads`` threads."""
    app = balances_app(tmp_path)
    log = SQLiteLog(tmp_path / "events.db")
    log.create_topic("accounts", 1)

    async def main() -> None:
        executor = ThreadPoolExecutor(executor_threads)
        asyncio.get_running_loop().set_default_executor(executor)
        service = HttpService(app, log)
        try:
            async with TestClient(TestServer(service.routes())) as client:
                await scenario(client, app, log)
        finally:
            for reader in service._readers.values():
                reader.close()
            executor.shutdown(wait=False, cancel_futures=True)

    try:
        asyncio.run(main())
    finally:
        log.close()


@pytest.mark.parametrize("timeout_s", ["nan", "NaN", "inf", "-inf", "-1", "-0.5", "soon", ""])
def test_a_timeout_that_is_not_a_finite_number_of_seconds_is_refused(tmp_path: Path, timeout_s: str) -> None:
    async def scenario(client: TestClient[Any, Any], app: App, log: SQLiteLog) -> None:
        for path in ("/projections/balances", "/projections/balances/ada"):
            params = {"after": "accounts/0/0", "timeout_s": timeout_s}
            response = await asyncio.wait_for(client.get(path, params=params), PROMPTLY_S)
            assert response.status == 400
            assert "timeout_s" in (await response.json())["error"]

    serving(tmp_path, scenario, executor_threads=4)


def test_a_zero_timeout_answers_at_once(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any], app: App, log: SQLiteLog) -> None:
        params = {"after": "accounts/0/0", "timeout_s": "0"}
        response = await asyncio.wait_for(client.get("/projections/balances", params=params), PROMPTLY_S)
        assert response.status == 504

    serving(tmp_path, scenario, executor_threads=4)


def test_readers_waiting_for_a_position_do_not_starve_ingress_or_metrics(tmp_path: Path) -> None:
    threads = 4
    waiters = 2 * threads  # more waiting readers than the executor has threads

    async def scenario(client: TestClient[Any, Any], app: App, log: SQLiteLog) -> None:
        params = {"after": "accounts/0/0", "timeout_s": "25"}
        waiting = [asyncio.ensure_future(client.get("/projections/balances", params=params)) for _ in range(waiters)]
        await asyncio.sleep(0.5)
        assert not any(wait.done() for wait in waiting)

        event = b'{"type": "deposited", "data": {"account": "ada", "amount": 100}}'
        posted = await asyncio.wait_for(client.post("/topics/accounts", data=event, headers=CLOUDEVENT), PROMPTLY_S)
        assert posted.status == 201
        assert (await posted.json())["offset"] == 0
        scraped = await asyncio.wait_for(client.get("/metrics"), PROMPTLY_S)
        assert scraped.status == 200

        # The projection folds the posted event: every waiting reader then reads it.
        runner = ProjectionRunner(app.projections["balances"], log, WorkerSettings(until_idle=True, idle_poll_s=0.05))
        await asyncio.wait_for(runner.run(), 20)
        done, _ = await asyncio.wait(waiting, timeout=PROMPTLY_S)
        assert len(done) == waiters
        for wait in waiting:
            response = wait.result()
            assert response.status == 200
            body = await response.json()
            assert body["rows"] == [{"key": "ada", "value": {"account": "ada", "amount": 100}}]
            assert body["position"] == {"accounts/0": 1}

    serving(tmp_path, scenario, executor_threads=threads)


def test_waits_beyond_the_bound_are_turned_away_with_retry_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_module, "MAX_CONCURRENT_WAITS", 2)

    async def scenario(client: TestClient[Any, Any], app: App, log: SQLiteLog) -> None:
        params = {"after": "accounts/0/0", "timeout_s": "1"}
        waiting = [asyncio.ensure_future(client.get("/projections/balances", params=params)) for _ in range(2)]
        await asyncio.sleep(0.3)
        refused = await asyncio.wait_for(client.get("/projections/balances", params=params), PROMPTLY_S)
        assert refused.status == 503
        assert refused.headers["Retry-After"] == "1"
        # Reads that do not wait are not counted against the bound.
        plain = await asyncio.wait_for(client.get("/projections/balances"), PROMPTLY_S)
        assert plain.status == 200
        # The waits that were admitted time out cleanly, and then there is room again.
        for wait in waiting:
            assert (await asyncio.wait_for(wait, PROMPTLY_S)).status == 504
        again = await asyncio.wait_for(
            client.get("/projections/balances", params={"after": "accounts/0/0", "timeout_s": "0"}), PROMPTLY_S
        )
        assert again.status == 504

    serving(tmp_path, scenario, executor_threads=4)
