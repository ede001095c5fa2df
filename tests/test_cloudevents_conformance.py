"""CloudEvents 1.0 conformance: each test names the rule of the core spec (spec.md), the JSON event format
(json-format.md) or the Kafka protocol binding it checks. Strict on what eventbus writes, lenient on what it reads."""

from __future__ import annotations

import asyncio
import enum
import json
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventbus import App, Event
from eventbus.backends.memory import MemoryLog
from eventbus.backends.sqlite import SQLiteLog
from eventbus.codecs import decode_record, encode_binary, encode_structured
from eventbus.codecs.binary import is_json_content_type
from eventbus.errors import InvalidEventError
from eventbus.event import complete
from eventbus.publisher import Publisher, event_from_json, publish_lines
from eventbus.testing import TestBus
from tests.conftest import PYTHON

# The JSON format's own examples (json-format.md, 3.2), one per line as `eventbus publish` reads them.
SPEC_EXAMPLES: list[dict[str, Any]] = [
    {
        "specversion": "1.0",
        "type": "com.example.someevent",
        "source": "/mycontext",
        "id": "A234-1234-1234",
        "time": "2018-04-05T17:31:00Z",
        "comexampleextension1": "value",
        "comexampleothervalue": 5,
        "datacontenttype": "application/vnd.apache.thrift.binary",
        "data_base64": "AAECAw==",
    },
    {
        "specversion": "1.0",
        "type": "com.example.someevent",
        "source": "/mycontext",
        "id": "B234-1234-1234",
        "time": "2018-04-05T17:31:00Z",
        "comexampleextension1": "value",
        "comexampleothervalue": 5,
        "unsetextension": None,
        "datacontenttype": "application/xml",
        "data": '<much wow="xml"/>',
    },
    {
        "specversion": "1.0",
        "type": "com.example.someevent",
        "source": "/mycontext",
        "subject": None,
        "id": "C234-1234-1234",
        "time": "2018-04-05T17:31:00Z",
        "comexampleextension1": "value",
        "comexampleothervalue": 5,
        "datacontenttype": "application/json",
        "data": {"appinfoA": "abc", "appinfoB": 123, "appinfoC": True},
    },
    {
        "specversion": "1.0",
        "type": "com.example.someevent",
        "source": "/mycontext",
        "subject": None,
        "id": "D234-1234-1234",
        "time": "2018-04-05T17:31:00Z",
        "comexampleextension1": "value",
        "comexampleothervalue": 5,
        "data": "I'm just a string",
    },
]


def without_nulls(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if v is not None}


# -- JSON format 2.2: "When decoding attributes and a null value is encountered, it MUST be treated as the
# equivalent of unset or omitted." -------------------------------------------------------------------------------


def test_json_format_2_2_null_attributes_are_unset_so_the_spec_examples_all_publish() -> None:
    log = MemoryLog("conformance-nulls")
    report = publish_lines(Publisher(log), "examples", [json.dumps(e) for e in SPEC_EXAMPLES])
    assert report.errors == []
    batch = log.read("examples", 0, 0, 10)
    read = [decode_record(v, h) for v, h in zip(batch.values, batch.headers, strict=True)]
    assert read == [without_nulls(e) for e in SPEC_EXAMPLES]


def test_json_format_2_2_a_null_specversion_is_unset_like_a_missing_one() -> None:
    assert event_from_json({"specversion": None, "type": "t"}).specversion == "1.0"


def test_json_format_2_2_null_attributes_a_structured_producer_wrote_get_no_binary_header() -> None:
    read = decode_record(
        b'{"specversion":"1.0","id":"1","source":"/s","type":"t","subject":null,"unset":null,"data":1}', None
    )
    headers, value = encode_binary(read)
    assert dict(headers) == {
        "ce_specversion": b"1.0",
        "ce_id": b"1",
        "ce_source": b"/s",
        "ce_type": b"t",
        "content-type": b"application/json",
    }
    assert value == b"1"
    assert Event.wrap(read).extensions == {}


def test_json_format_3_1_1_a_null_data_member_is_a_null_payload_not_no_data() -> None:
    event = event_from_json({"type": "t", "source": "/s", "id": "1", "data": None})
    assert "data" in event.to_dict()
    attrs = complete(event, "/s")
    assert orjson.loads(encode_structured(attrs))["data"] is None
    headers, value = encode_binary(attrs)
    assert value == b"null"
    assert "data" in decode_record(value, headers)
    assert "data" not in event_from_json({"type": "t"}).to_dict()


# -- JSON format 3.1.1: "the presence of the data and data_base64 members is mutually exclusive" ---------------


def post(tmp_path: Path, headers: dict[str, str], body: bytes) -> tuple[int, Any, list[dict[str, Any]]]:
    """POST one request to the HTTP ingress; its status, its JSON answer, and what the topic then holds."""
    from aiohttp.test_utils import TestClient, TestServer

    from eventbus.http import HttpService

    app = App("conformance")
    app.topic("events")
    log = SQLiteLog(tmp_path / "events.db")
    log.create_topic("events", 1)
    answer: list[Any] = []

    async def main() -> None:
        async with TestClient(TestServer(HttpService(app, log).routes())) as client:
            response = await client.post("/topics/events", data=body, headers=headers)
            answer.extend([response.status, await response.json()])

    try:
        asyncio.run(main())
        batch = log.read("events", 0, 0, 100)
        events = [decode_record(v, h) for v, h in zip(batch.values, batch.headers, strict=True)]
    finally:
        log.close()
    return answer[0], answer[1], events


def test_json_format_3_1_1_data_and_data_base64_together_are_refused_by_http_ingress(tmp_path: Path) -> None:
    body = orjson.dumps(
        {"specversion": "1.0", "type": "t", "source": "/s", "id": "1", "data": 1, "data_base64": "AA=="}
    )
    status, answer, events = post(tmp_path, {"Content-Type": "application/cloudevents+json"}, body)
    assert (status, events) == (400, [])
    assert "data and data_base64" in answer["error"]


# -- JSON format 3.1.1: non-JSON content types hold "a string representation of the data value" ------------------


def test_json_format_3_1_1_data_under_a_content_type_that_is_not_json_is_text_or_bytes() -> None:
    with pytest.raises(InvalidEventError, match=r"data: datacontenttype 'application/xml' is not JSON.*got dict"):
        Event("t", {"a": 1}, datacontenttype="application/xml")
    with pytest.raises(InvalidEventError, match="datacontenttype 'text/plain' is not JSON"):
        Event("t", {"a": 1}).replace(datacontenttype="text/plain")
    assert Event("t", "<a/>", datacontenttype="application/xml").data == "<a/>"
    assert Event("t", b"\x00", datacontenttype="application/octet-stream").data == b"\x00"
    assert Event("t", [1], datacontenttype="application/vnd.x+json; charset=utf-8").data == [1]
    assert Event("t", 5, datacontenttype="text/json").data == 5


def test_json_format_3_1_1_a_json_content_type_is_any_subtype_json_or_suffix_json() -> None:
    for content_type in (
        None,
        "application/json",
        "text/json",
        "application/geo+json",
        "APPLICATION/JSON; charset=utf-8",
    ):
        assert is_json_content_type(content_type), content_type
    assert is_json_content_type("image/json")  # "*/json": the subtype is what counts
    for content_type in ("text/plain", "application/xml", "application/jsonl", "application/json-seq"):
        assert not is_json_content_type(content_type), content_type


# -- Kafka protocol binding, binary mode: content-type carries datacontenttype --------------------------------------


def test_kafka_binding_binary_data_without_a_content_type_is_read_back_as_bytes() -> None:
    attrs = complete(Event("blob", b"\x00\x01\xff"), "/s")
    headers, value = encode_binary(attrs)
    assert dict(headers)["content-type"] == b"application/octet-stream"
    read = decode_record(value, headers)
    assert Event.wrap(read).data == b"\x00\x01\xff"


def test_kafka_binding_binary_data_read_by_the_cloudevents_sdk_is_bytes() -> None:
    kafka = pytest.importorskip("cloudevents.core.bindings.kafka")
    from cloudevents.core.formats.json import JSONFormat

    headers, value = encode_binary(complete(Event("blob", b"\xff\xfe"), "/s"))
    assert value is not None
    read = kafka.from_binary(kafka.KafkaMessage(dict(headers), None, value), JSONFormat())
    assert read.get_data() == b"\xff\xfe"


# -- Core spec, REQUIRED attributes: specversion "MUST use a value of 1.0"; the others have their own types ---------


@pytest.mark.parametrize("name", ["specversion", "id", "source", "type", "time", "subject", "dataschema"])
def test_core_context_attributes_cannot_be_passed_as_extensions_around_their_checks(name: str) -> None:
    with pytest.raises(InvalidEventError, match=f"extension '{name}': {name} is a CloudEvents context attribute"):
        Event("t", extensions={name: "0.3" if name == "specversion" else 5})


def test_core_specversion_cannot_be_replaced_by_another_version() -> None:
    with pytest.raises(InvalidEventError, match=r"specversion: only '1.0' is supported, got '0\.3'"):
        Event("t").replace(specversion="0.3")
    assert Event("t").replace(specversion="1.0").specversion == "1.0"


@pytest.mark.parametrize(
    "line",
    [
        {"specversion": "0.3", "type": "t"},
        {"specversion": "1.1", "type": "t"},
        {"specversion": 1.0, "type": "t"},
    ],
)
def test_core_specversion_other_than_1_0_is_refused_by_name(line: dict[str, Any]) -> None:
    with pytest.raises(InvalidEventError, match=r"specversion: only '1\.0' is supported"):
        event_from_json(line)


# -- Core spec, source: "MUST be a non-empty URI-reference" (RFC 3986 section 4.1) ---------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "https://github.com/cloudevents",
        "mailto:cncf-wg-serverless@lists.cncf.io",
        "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
        "/cloudevents/spec/pull/123",
        "/sensors/tn-1234567/alerts",
        "1-555-123-4567",
        "//host:8080/a?b=c#d",
        "/a%20b",
        "/caf\u00e9",  # an IRI: its percent-encoded UTF-8 is the URI
    ],
)
def test_core_source_accepts_uri_references(source: str) -> None:
    assert Event("t", source=source).source == source


@pytest.mark.parametrize(
    ("source", "why"),
    [("my service", "is not a URI-reference"), ("/a%zz", "is not a URI-reference"), ("1:2", "is not a URI-reference")],
)
def test_core_source_refuses_what_is_no_uri_reference(source: str, why: str) -> None:
    with pytest.raises(InvalidEventError, match=f"source: {source!r} {why}"):
        Event("t", source=source)
    with pytest.raises(InvalidEventError, match="source: "):
        Publisher(MemoryLog("conformance-source"), source=source)


def test_core_source_refused_on_a_publish_line_names_the_line_and_keeps_the_others() -> None:
    log = MemoryLog("conformance-source-lines")
    lines = ['{"type": "t", "source": "/ok"}', '{"type": "t", "source": "not a uri"}', '{"type": "t"}']
    report = publish_lines(Publisher(log), "events", lines)
    assert report.published == 2
    assert [(n, m.split(":")[0]) for n, m in report.errors] == [(2, "source")]


# -- Core spec, dataschema: "If present, MUST be a non-empty URI" (absolute, RFC 3986 section 4.3) -----------------


def test_core_dataschema_is_an_absolute_uri() -> None:
    for uri in ("https://example.com/schemas/order.json", "urn:schema:order:1", "sqlite:///eventbus.db#/schemas/ids/1"):
        assert Event("t", dataschema=uri).dataschema == uri
    for bad in ("/schemas/order.json", "order.json", "https://example.com/a b"):
        with pytest.raises(InvalidEventError, match=f"dataschema: {bad!r} is not an absolute URI"):
            Event("t", dataschema=bad)
    with pytest.raises(InvalidEventError, match="dataschema: 'order' is not an absolute URI"):
        Event("t").replace(dataschema="order")


# -- Core spec, datacontenttype: "If present, MUST adhere to the format specified in RFC 2046" -----------------------


def test_core_datacontenttype_is_a_media_type() -> None:
    for media_type in (
        "application/json",
        "application/json; charset=utf-8",
        'multipart/form-data; boundary="a b"',
        "application/vnd.apache.thrift.binary",
        "text/plain;",
    ):
        assert Event("t", datacontenttype=media_type).datacontenttype == media_type
    for bad in ("json", "text/ plain", "application/json; charset"):
        with pytest.raises(InvalidEventError, match=f"datacontenttype: {bad!r} is not a media type"):
            Event("t", datacontenttype=bad)


# -- Core spec, type system, String: control characters and lone surrogates are disallowed -----------------------


@pytest.mark.parametrize(
    ("kwargs", "culprit"),
    [
        ({"type": "order\nplaced"}, "type"),
        ({"type": "t", "id": "a\x00b"}, "id"),
        ({"type": "t", "subject": "s\x85"}, "subject"),
        ({"type": "t", "partitionkey": "k\ud800"}, "partitionkey"),
        ({"type": "t", "extensions": {"tenant": "a\tb"}}, "extension 'tenant'"),
    ],
)
def test_core_type_system_strings_refuse_control_characters(kwargs: dict[str, Any], culprit: str) -> None:
    with pytest.raises(InvalidEventError, match=f"{culprit}: .* is not allowed in a CloudEvents string"):
        Event(**kwargs)


def test_core_type_system_strings_allow_other_characters_printing_would_not_show() -> None:
    # U+00A0 and U+200B are not printable to Python, and are allowed CloudEvents characters.
    event = Event("t", subject="a\u00a0b\u200bc", extensions={"note": "caf\u00e9 \U0001f600"})
    assert event.subject == "a\u00a0b\u200bc"


# -- Core spec, type system, Integer: -2,147,483,648 to +2,147,483,647 ------------------------------------------


class Big(enum.IntEnum):
    VALUE = 1 << 40


def test_core_type_system_integer_range_holds_for_int_subclasses_too() -> None:
    with pytest.raises(InvalidEventError, match=r"extension 'size': the integer .* is outside the 32-bit range"):
        Event("t", extensions={"size": Big.VALUE})


# -- Core spec, time: RFC 3339 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2018-04-05T17:31:00Z",
        "2018-04-05t17:31:00z",  # RFC 3339 5.6: "T" and "Z" may be lower case
        "2018-04-05T17:31:00.123456789+05:30",
        "2018-04-05T17:31:00-00:00",
        "2018-04-05T17:31:00+23:59",
        "2016-12-31T23:59:60Z",  # a leap second
    ],
)
def test_core_time_accepts_rfc_3339(text: str) -> None:
    assert Event("t", time=text).time == text


@pytest.mark.parametrize(
    "text",
    ["2018-04-05T17:31:00+05:60", "2018-04-05T17:31:00+24:00", "2018-04-05 17:31:00Z", "2018-04-05T17:31:00"],
)
def test_core_time_refuses_what_is_not_rfc_3339(text: str) -> None:
    with pytest.raises(InvalidEventError, match="time: "):
        Event("t", time=text)


# -- Core spec, extension attributes: null/None is unset; "data" is reserved -------------------------------------


def test_core_an_extension_given_as_none_is_unset() -> None:
    assert Event("t", extensions={"tenant": None, "region": "eu"}).extensions == {"region": "eu"}


def test_core_data_is_no_extension_name() -> None:
    with pytest.raises(InvalidEventError, match="extension 'data': the name is reserved"):
        Event("t", extensions={"data": "x"})


# -- Event.replace keeps data as the JSON format maps it ------------------------------------------------------


def test_json_format_3_1_1_bytes_given_to_replace_are_binary_data_in_data_base64() -> None:
    event = Event("t", {"a": 1}).replace(data=b"\x00\x01")
    assert "data" not in event.to_dict()
    assert event.data == b"\x00\x01"
    assert orjson.loads(encode_structured(complete(event, "/s")))["data_base64"] == "AAE="
    assert "data_base64" not in Event("t", b"\x00").replace(data=None).to_dict()


# -- Round trips through the public surfaces and the official SDK -------------------------------------------------


def test_testbus_round_trips_each_kind_of_data_and_extension_value() -> None:
    bus = TestBus()
    sent = [
        Event("t", {"a": 1}, id="1", extensions={"flag": True, "count": -5, "tenant": "acme"}),
        Event("t", b"\x00\xff", id="2"),
        Event("t", "hi", id="3", datacontenttype="text/plain"),
        Event("t", None, id="4", time="2016-12-31T23:59:60Z"),
    ]
    bus.publish("events", *sent)
    read = bus.events("events")
    assert [e.data for e in read] == [{"a": 1}, b"\x00\xff", "hi", None]
    assert read[0].extensions == {"flag": True, "count": -5, "tenant": "acme"}
    assert read[3].time == "2016-12-31T23:59:60Z"


def test_json_format_round_trips_through_the_cloudevents_sdk_both_ways() -> None:
    pytest.importorskip("cloudevents.core.formats.json")
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    json_format = JSONFormat()
    ours = complete(Event("t", {"a": 1}, id="1", subject="s", extensions={"n": 7, "b": True}), "/s")
    theirs = json_format.read(None, encode_structured(ours))
    assert theirs.get_data() == {"a": 1}
    assert theirs.get_attributes()["n"] == 7
    sdk_event = CloudEvent({"type": "t", "source": "/s", "id": "2", "datacontenttype": "text/plain"}, "hi")
    read = Event.wrap(decode_record(json_format.write(sdk_event), None))
    assert (read.id, read.data, read.datacontenttype) == ("2", "hi", "text/plain")


def test_cli_publish_of_the_spec_examples_reads_back_with_consume(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-m", "eventbus", *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=subprocess_env,
            timeout=60,
            check=False,
        )

    lines = [json.dumps(e) for e in SPEC_EXAMPLES] + ['{"type": "t", "source": "has space"}']
    published = run("publish", "examples", stdin="\n".join(lines))
    assert published.returncode == 1
    assert "line 5: source: 'has space' is not a URI-reference" in published.stderr
    assert "published 4 event(s)" in published.stderr
    consumed = run("consume", "examples", "--from-beginning", "--until-end")
    assert consumed.returncode == 0, consumed.stderr
    assert [json.loads(line) for line in consumed.stdout.splitlines()] == [without_nulls(e) for e in SPEC_EXAMPLES]
