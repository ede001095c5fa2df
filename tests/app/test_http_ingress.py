"""HTTP ingress (``POST /topics/TOPIC``) as the CloudEvents HTTP binding has it: structured, binary and batch mode;
media types are case-insensitive, binary-mode header values percent-decoded; what is not a CloudEvent is refused
with the status that says why, and nothing of a refused request is published."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from eventbus import App
from eventbus.backends.sqlite import SQLiteLog
from eventbus.codecs import decode_record
from eventbus.http import HttpService


def posting(tmp_path: Path, requests: list[tuple[str, dict[str, str], bytes]]) -> tuple[list[tuple[int, Any]], list]:
    """The (status, JSON answer) of each request to ``POST /topics/orders``, and the events ``orders`` then holds."""
    app = App("shop")
    app.topic("orders")
    log = SQLiteLog(tmp_path / "events.db")
    log.create_topic("orders", 1)
    answers: list[tuple[int, Any]] = []

    async def main() -> None:
        async with TestClient(TestServer(HttpService(app, log).routes())) as client:
            for path, headers, body in requests:
                response = await client.post(path, data=body, headers=headers)
                answers.append((response.status, await response.json()))

    try:
        asyncio.run(main())
        batch = log.read("orders", 0, 0, 100)
        events = [decode_record(v, h) for v, h in zip(batch.values, batch.headers, strict=True)]
    finally:
        log.close()
    return answers, events


def test_structured_mode_with_any_case_of_its_media_type(tmp_path: Path) -> None:
    event = orjson.dumps({"specversion": "1.0", "type": "order.placed", "source": "/shop", "id": "o-1", "data": {}})
    answers, events = posting(
        tmp_path,
        [
            ("/topics/orders", {"Content-Type": "Application/CloudEvents+JSON; charset=utf-8"}, event),
            ("/topics/orders", {"Content-Type": "application/json"}, event),
        ],
    )
    assert [status for status, _ in answers] == [201, 201]
    assert [(e["type"], e["id"]) for e in events] == [("order.placed", "o-1")] * 2


def test_binary_mode_header_values_are_percent_decoded(tmp_path: Path) -> None:
    headers = {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-type": "order.placed",
        "ce-source": "/caf%C3%A9",
        "ce-id": "o-2",
        "ce-subject": "100%25 off",
    }
    answers, events = posting(tmp_path, [("/topics/orders", headers, b'{"total": 3}')])
    assert answers[0][0] == 201
    assert (events[0]["source"], events[0]["subject"], events[0]["data"]) == ("/café", "100% off", {"total": 3})


def test_batch_mode_publishes_every_event_or_none(tmp_path: Path) -> None:
    good = [{"specversion": "1.0", "type": "order.placed", "source": "/shop", "id": f"o-{n}"} for n in range(3)]
    batch = {"Content-Type": "application/cloudevents-batch+json"}
    answers, events = posting(
        tmp_path,
        [
            ("/topics/orders", batch, orjson.dumps(good)),
            ("/topics/orders", batch, orjson.dumps([*good, {"id": "no type"}])),
            ("/topics/orders", batch, orjson.dumps(good[0])),
            ("/topics/orders", batch, b"[]"),
        ],
    )
    assert answers[0] == (201, [{"id": f"o-{n}", "topic": "orders", "partition": 0, "offset": n} for n in range(3)])
    assert answers[1][0] == 400
    assert "event 3 of the batch: type" in answers[1][1]["error"]
    assert answers[2][0] == 400
    assert "JSON array" in answers[2][1]["error"]
    assert answers[3][0] == 400
    assert [e["id"] for e in events] == ["o-0", "o-1", "o-2"], "nothing of a refused batch is published"


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "says"),
    [
        ("/topics/orders", {"Content-Type": "text/plain"}, b'{"type": "x"}', 415, "text/plain"),
        (
            "/topics/orders",
            {"Content-Type": "application/cloudevents+json"},
            b'{"type": "x", "time": "now"}',
            400,
            "time: expected RFC 3339",
        ),
        (
            "/topics/orders",
            {"Content-Type": "application/cloudevents+json"},
            b'{"type": "x", "time": "2026-02-30T10:00:00Z"}',
            400,
            "time: '2026-02-30T10:00:00Z' is not a valid",
        ),
        (
            "/topics/orders",
            {"Content-Type": "application/json", "ce-type": "x", "ce-source": "%FF"},
            b"{}",
            400,
            "utf-8",
        ),
        ("/topics/nowhere", {"Content-Type": "application/json"}, b'{"type": "x"}', 404, "no topic 'nowhere'"),
    ],
)
def test_what_is_not_a_cloudevent_for_an_existing_topic_is_refused(
    tmp_path: Path, path: str, headers: dict[str, str], body: bytes, status: int, says: str
) -> None:
    answers, events = posting(tmp_path, [(path, headers, body)])
    assert answers[0][0] == status
    assert says in answers[0][1]["error"]
    assert events == []
