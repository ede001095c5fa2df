"""An app serving HTTP: what is posted as soon as it answers lands in the topics the app declares, as declared."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path

import pytest

from eventbus import App, Event
from eventbus.backends.sqlite import SQLiteLog
from eventbus.runtime import AppRunner, WorkerSettings
from eventbus.runtime.worker import Worker
from tests.postgres_server import free_port


def post(url: str, body: dict[str, object]) -> int:
    request = urllib.request.Request(  # noqa: S310 - loopback
        url, json.dumps(body).encode(), {"Content-Type": "application/cloudevents+json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        return int(response.status)


def test_an_event_posted_before_the_worker_has_started_goes_to_the_declared_partitions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = App("shop")
    app.topic("commands", partitions=3)
    handled: list[str] = []
    done = asyncio.Event()

    @app.processor("commands")
    def handle(event: Event) -> None:
        handled.append(event.type)
        done.set()

    # The worker gets to its topics late (a slow start), after the HTTP server already answers.
    ensure_topics = Worker._ensure_topics

    def slowly(self: Worker) -> None:
        time.sleep(0.5)
        ensure_topics(self)

    monkeypatch.setattr(Worker, "_ensure_topics", slowly)
    port = free_port()
    log = SQLiteLog(tmp_path / "events.db")
    runner = AppRunner(app, log, WorkerSettings(idle_poll_s=0.05), http_port=port)

    async def scenario() -> None:
        running = asyncio.ensure_future(runner.run())
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + 10
        while True:
            try:
                status = await loop.run_in_executor(
                    None, post, f"http://127.0.0.1:{port}/topics/commands", {"type": "order.placed", "data": {}}
                )
                break
            except OSError:
                assert time.monotonic() < deadline, "the app never started serving"
                await asyncio.sleep(0.01)
        assert status == 201
        handled_or_failed = [running, asyncio.ensure_future(done.wait())]
        await asyncio.wait(handled_or_failed, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        runner.stop()
        await running  # raises if the worker refused the topic

    try:
        asyncio.run(scenario())
    finally:
        info = log.topic("commands")
        log.close()
    assert handled == ["order.placed"]
    assert info.partitions == 3
