"""Client mistakes over HTTP are the client's: each is answered at once with a 4xx and a JSON body naming the
culprit (the attribute, the header, the query parameter, the event of a batch), never a 500 with a traceback in
the server's log; nothing of a refused request is written, and nothing accepted before it is lost."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from eventbus import App, Event
from eventbus.backends.sqlite import SQLiteLog
from eventbus.codecs import decode_record
from eventbus.codecs.avro import AvroDecoder
from eventbus.http import MAX_BODY_BYTES, HttpService
from eventbus.schemas.embedded import embedded_registry_for
from tests.conftest import REPO
from tests.postgres_server import fresh_database, postgres_server

PROMPTLY_S = 5.0
CLOUDEVENT = {"Content-Type": "application/cloudevents+json"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}
# Data deeper than orjson writes (254 levels), not as deep as it reads (1,024): the body parses, the event cannot
# be written.
DEEP_EVENT = b'{"type": "deposited", "id": "deep", "data": ' + b"[" * 300 + b"]" * 300 + b"}"
Scenario = Callable[[TestClient[Any, Any], SQLiteLog], Awaitable[None]]


def bank_app(store_url: str) -> App:
    app = App("bank")
    app.topic("commands")
    balances = app.projection("balances", topics="accounts", store=store_url)

    @balances.on("deposited")
    def deposited(event: Event, view: Any) -> None:
        view[event.data["account"]] = event.data

    return app


def serving(
    tmp_path: Path,
    app: App,
    scenario: Scenario,
    caplog: pytest.LogCaptureFixture,
    *,
    binary: bool = False,
    body_timeout_s: float = 30.0,
) -> None:
    """Run ``scenario`` against the app's HTTP service on a SQLite log (topics ``commands``, and ``accounts`` of 3
    partitions); then nothing may have been logged as an error (aiohttp logs a 500 with its traceback)."""
    log = SQLiteLog(tmp_path / "events.db")
    if binary:
        log.event_mode = "binary"  # as the Kafka log writes events
    log.create_topic("commands", 1)
    log.create_topic("accounts", 3)

    async def main() -> None:
        service = HttpService(app, log, body_timeout_s=body_timeout_s)
        try:
            async with TestClient(TestServer(service.routes())) as client:
                await scenario(client, log)
        finally:
            for reader in service._readers.values():
                reader.close()

    try:
        asyncio.run(main())
    finally:
        log.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def written(log: SQLiteLog, topic: str, avro: AvroDecoder | None = None) -> list[dict[str, Any]]:
    batch = log.read(topic, 0, 0, 100)
    return [decode_record(v, h, avro) for v, h in zip(batch.values, batch.headers, strict=True)]


async def answer(response: Any) -> tuple[int, Any]:
    return response.status, await response.json()


async def raw_post(client: TestClient[Any, Any], path: str, headers: list[bytes], body: bytes) -> tuple[int, Any]:
    """POST with header lines sent byte for byte (aiohttp's client will not send bytes that are not UTF-8)."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    head = [f"POST {path} HTTP/1.1".encode(), b"Host: localhost", b"Connection: close", *headers]
    writer.write(b"\r\n".join([*head, f"Content-Length: {len(body)}".encode(), b"", body]))
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), PROMPTLY_S)
    writer.close()
    await writer.wait_closed()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), orjson.loads(rest.partition(b"\r\n\r\n")[2])


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_data_too_deep_to_write_is_refused_by_its_place_in_a_batch_and_nothing_of_the_batch_is_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    good = orjson.dumps({"type": "deposited", "id": "good", "data": {"n": 1}})

    async def scenario(client: TestClient[Any, Any], log: SQLiteLog) -> None:
        status, body = await answer(await client.post("/topics/commands", data=DEEP_EVENT, headers=CLOUDEVENT))
        assert status == 400
        assert "data" in body["error"]
        batch = b"[" + b", ".join([good, DEEP_EVENT, good]) + b"]"
        status, body = await answer(await client.post("/topics/commands", data=batch, headers=BATCH))
        assert status == 400
        assert body["error"].startswith("event 1 of the batch: ")
        assert "data" in body["error"]
        status, body = await answer(await client.post("/topics/commands", data=good, headers=CLOUDEVENT))
        assert (status, body["offset"]) == (201, 0), "nothing of the refused requests was written"

    serving(tmp_path, bank_app(f"sqlite:///{tmp_path}/balances.db"), scenario, caplog, binary=mode == "binary")


@pytest.mark.parametrize(
    ("header", "culprit"),
    [
        (b"ce-subject: \xff", "header ce-subject"),
        (b"ce-type: deposited.\xfe", "header ce-type"),
        (b"ce-myext: caf\xe9", "header ce-myext"),
        (b"ce-subject: %FF%FE", "header ce-subject"),
        (b"Content-Type: application/json\xff", "header Content-Type"),
        (b"ce-id: one\r\nce-id: two", "header ce-id"),
        (b"ce-id: one\r\nCE-Id: two", "header CE-Id"),
    ],
    ids=["subject", "type", "extension", "percent-encoded", "content-type", "twice", "twice-in-other-case"],
)
def test_a_binary_mode_header_that_is_not_utf8_or_is_given_twice_is_refused_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, header: bytes, culprit: str
) -> None:
    others = [b"ce-specversion: 1.0", b"ce-type: deposited", b"Content-Type: application/json"]
    headers = [h for h in others if h.split(b":")[0].lower() != header.split(b":")[0].lower()] + [header]

    async def scenario(client: TestClient[Any, Any], log: SQLiteLog) -> None:
        status, body = await raw_post(client, "/topics/commands", headers, b"{}")
        assert status == 400
        assert body["error"].startswith(f"{culprit}: ")
        assert "codec" not in body["error"]
        status, body = await raw_post(client, "/topics/commands", [*others, b"ce-subject: caf%C3%A9"], b"{}")
        assert (status, body["offset"]) == (201, 0)
        assert [e["subject"] for e in written(log, "commands")] == ["café"]

    serving(tmp_path, bank_app(f"sqlite:///{tmp_path}/balances.db"), scenario, caplog)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/balances.db"
    return fresh_database(request.getfixturevalue("postgres_url"))


@pytest.mark.parametrize("value", ["9223372036854775808", "18446744073709551615"])
def test_a_query_integer_beyond_64_bits_is_refused_by_name_on_every_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, store_url: str, value: str
) -> None:
    async def scenario(client: TestClient[Any, Any], log: SQLiteLog) -> None:
        status, body = await answer(await client.get("/projections/balances", params={"balance": value}))
        assert status == 400
        assert body["error"].startswith("query field 'balance': ")
        assert value in body["error"]
        for largest in ("9223372036854775807", "-9223372036854775808"):
            status, body = await answer(await client.get("/projections/balances", params={"balance": largest}))
            assert (status, body["rows"]) == (200, [])

    serving(tmp_path, bank_app(store_url), scenario, caplog)


@pytest.mark.parametrize(
    ("after", "says"),
    [
        ("commands/0/0", "does not read commands/0; it reads accounts/0 to accounts/2"),
        ("nosuch/0/0", "does not read nosuch/0; it reads accounts/0 to accounts/2"),
        ("accounts/3/0", "does not read accounts/3; it reads accounts/0 to accounts/2"),
        ("accounts/2/\N{SUPERSCRIPT TWO}", "expected TOPIC/PARTITION/OFFSET"),
        ("accounts/\N{SUPERSCRIPT TWO}/0", "expected TOPIC/PARTITION/OFFSET"),
    ],
)
def test_a_wait_for_an_event_the_projection_never_folds_is_refused_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, after: str, says: str
) -> None:
    async def scenario(client: TestClient[Any, Any], log: SQLiteLog) -> None:
        for path in ("/projections/balances", "/projections/balances/ada"):
            request = client.get(path, params={"after": after, "timeout_s": "30"})
            status, body = await answer(await asyncio.wait_for(request, PROMPTLY_S))
            assert status == 400
            assert body["error"].startswith(f"after={after!r}: ")
            assert says in body["error"]
        # A partition the projection does read is still waited for.
        request = client.get("/projections/balances", params={"after": "accounts/2/0", "timeout_s": "0"})
        assert (await asyncio.wait_for(request, PROMPTLY_S)).status == 504

    serving(tmp_path, bank_app(f"sqlite:///{tmp_path}/balances.db"), scenario, caplog)


@pytest.mark.parametrize("limit", ["abc", "1.5", "", "\N{SUPERSCRIPT TWO}"])
def test_a_limit_that_is_not_a_whole_number_is_refused_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, limit: str
) -> None:
    async def scenario(client: TestClient[Any, Any], log: SQLiteLog) -> None:
        status, body = await answer(await client.get("/projections/balances", params={"limit": limit}))
        assert status == 400
        assert body["error"].startswith(f"limit={limit!r}: expected a whole number")
        status, body = await answer(await client.get("/projections/balances", params={"limit": "-3"}))
        assert (status, body["rows"]) == (200, [])

    serving(tmp_path, bank_app(f"sqlite:///{tmp_path}/balances.db"), scenario, caplog)


ORDER = {
    "order_id": "o-1",
    "customer": "ada",
    "email": "ada@example.com",
    "items": [{"sku": "KB-01", "quantity": 2, "unit_price": 49.5}],
    "currency": "EUR",
}


def test_events_posted_to_an_avro_topic_are_avro_records_and_data_that_does_not_fit_is_refused_by_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = App("shop", schemas=str(REPO / "schemas"))
    app.topic("orders", codec="avro")
    misfit = {**ORDER, "items": [{"sku": "KB-01", "quantity": "three", "unit_price": 49.5}]}
    placed = {"type": "shop.order.placed", "data": ORDER}

    async def scenario(client: TestClient[Any, Any], log: SQLiteLog) -> None:
        log.create_topic("orders", 1)
        status, body = await answer(await client.post("/topics/orders", data=orjson.dumps(placed), headers=CLOUDEVENT))
        assert (status, body["offset"]) == (201, 0)
        refused = orjson.dumps({"type": "shop.order.placed", "data": misfit})
        status, body = await answer(await client.post("/topics/orders", data=refused, headers=CLOUDEVENT))
        assert status == 400
        assert "data.items[0].quantity" in body["error"]
        batch = orjson.dumps([placed, {"type": "shop.order.placed", "data": misfit}])
        status, body = await answer(await client.post("/topics/orders", data=batch, headers=BATCH))
        assert status == 400
        assert body["error"].startswith("event 1 of the batch: ")
        assert "data.items[0].quantity" in body["error"]
        unknown = orjson.dumps({"type": "shop.order.unknown", "data": {}})
        status, body = await answer(await client.post("/topics/orders", data=unknown, headers=CLOUDEVENT))
        assert status == 400
        assert "'shop.order.unknown' has no Avro schema" in body["error"]

        events = written(log, "orders", AvroDecoder(embedded_registry_for(log), app.schema_set))
        assert [(e["datacontenttype"], e["data"]) for e in events] == [("application/avro", ORDER)]

    serving(tmp_path, app, scenario, caplog)


def test_unknown_routes_wrong_methods_and_large_bodies_answer_json(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(client: TestClient[Any, Any], log: SQLiteLog) -> None:
        response = await client.get("/nowhere")
        assert (response.status, response.content_type) == (404, "application/json")
        assert "/nowhere" in (await response.json())["error"]
        response = await client.delete("/healthz")
        assert (response.status, response.content_type) == (405, "application/json")
        assert response.headers["Allow"] == "GET,HEAD"
        assert "DELETE /healthz" in (await response.json())["error"]
        too_large = b'{"type": "x", "data": "' + b"a" * MAX_BODY_BYTES + b'"}'
        response = await client.post("/topics/commands", data=io.BytesIO(too_large), headers=CLOUDEVENT)
        assert (response.status, response.content_type) == (413, "application/json")
        assert str(MAX_BODY_BYTES) in (await response.json())["error"]
        assert written(log, "commands") == []

    serving(tmp_path, bank_app(f"sqlite:///{tmp_path}/balances.db"), scenario, caplog)


def test_an_integer_beyond_64_bits_is_refused_by_where_it_is_not_turned_into_a_float(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wide = b'{"type": "deposited", "id": "w", "data": {"amount": 18446744073709551616}}'
    widest_kept = b'{"type": "deposited", "id": "k", "data": {"amount": 18446744073709551615}}'

    async def scenario(client: TestClient[Any, Any], log: SQLiteLog) -> None:
        status, body = await answer(await client.post("/topics/commands", data=wide, headers=CLOUDEVENT))
        assert status == 400
        assert body["error"].startswith("data.amount: the integer 18446744073709551616 is out of the 64-bit range")
        batch = b"[" + widest_kept + b", " + wide + b"]"
        status, body = await answer(await client.post("/topics/commands", data=batch, headers=BATCH))
        assert status == 400
        assert body["error"].startswith("[1].data.amount: the integer 18446744073709551616")
        status, body = await answer(await client.post("/topics/commands", data=widest_kept, headers=CLOUDEVENT))
        assert (status, body["offset"]) == (201, 0), "nothing of the refused requests was written"
        assert written(log, "commands")[0]["data"] == {"amount": 18446744073709551615}

    serving(tmp_path, bank_app(f"sqlite:///{tmp_path}/balances.db"), scenario, caplog)


def test_a_body_that_stalls_answers_408_and_a_body_cut_off_publishes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    head = (
        b"POST /topics/commands HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/cloudevents+json\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    part = b'{"type": "deposited", "id": "cut", "data": {"n": '
    good = orjson.dumps({"type": "deposited", "id": "good", "data": {"n": 1}})

    async def scenario(client: TestClient[Any, Any], log: SQLiteLog) -> None:
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        writer.write(head + part)
        await writer.drain()
        head_lines = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PROMPTLY_S)).decode().split("\r\n")
        fields = {name.lower(): value for name, _, value in (line.partition(": ") for line in head_lines[1:])}
        body = await reader.readexactly(int(fields["content-length"]))
        writer.close()
        assert int(head_lines[0].split()[1]) == 408
        assert fields["connection"] == "close"
        assert orjson.loads(body) == {"error": "the request body did not all arrive within 0.3 s"}

        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        writer.write(head + part)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.2)  # the server notices the hang-up

        status, body = await answer(await client.post("/topics/commands", data=good, headers=CLOUDEVENT))
        assert (status, body["offset"]) == (201, 0), "nothing of the cut-off or stalled requests was written"

    serving(tmp_path, bank_app(f"sqlite:///{tmp_path}/balances.db"), scenario, caplog, body_timeout_s=0.3)
