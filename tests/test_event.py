"""Event: CloudEvents attributes, validation, the JSON form, typed data."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
import pytest

from eventbus import Event, event_type
from eventbus.codecs import decode_record, encode_binary, encode_structured
from eventbus.errors import DecodeError, InvalidEventError
from eventbus.event import complete, now_rfc3339


@event_type("user.created", topic="users", source="/accounts")
@dataclass
class UserCreated:
    user_id: str
    tags: list[str]


class Payment(msgspec.Struct):
    amount: int


event_type("payment.made")(Payment)


def test_attributes_and_extensions() -> None:
    event = Event(
        "order.placed",
        {"id": 1},
        source="/shop",
        id="e-1",
        subject="order-1",
        partitionkey="cust-1",
        correlationid="c-1",
        extensions={"tenant": "acme", "priority": 3},
    )
    assert (event.type, event.source, event.id, event.subject, event.specversion) == (
        "order.placed",
        "/shop",
        "e-1",
        "order-1",
        "1.0",
    )
    assert event.key == "cust-1"
    assert event.extensions == {"partitionkey": "cust-1", "correlationid": "c-1", "tenant": "acme", "priority": 3}
    assert event.to_dict()["data"] == {"id": 1}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": ""}, "type: expected a non-empty string"),
        ({"type": "t", "source": 5}, "source: expected a non-empty string"),
        ({"type": "t", "extensions": {"Bad-Name": "x"}}, "extension 'Bad-Name'"),
        ({"type": "t", "extensions": {"ok": [1]}}, "expected a string, integer or boolean"),
        ({"type": "t", "extensions": {"seq": 1 << 31}}, "extension 'seq': the integer 2147483648 is outside"),
        ({"type": "t", "extensions": {"seq": -(1 << 31) - 1}}, "extension 'seq': the integer -2147483649"),
        ({"type": "t", "time": datetime(2026, 1, 1)}, "timezone-aware"),
    ],
)
def test_invalid_attributes_name_the_attribute(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidEventError, match=message):
        Event(**kwargs)  # type: ignore[arg-type]


def test_time_accepts_aware_datetimes_and_complete_fills_id_time_source() -> None:
    event = Event("t", time=datetime(2026, 11, 23, 22, 0, tzinfo=UTC))
    assert event.time == "2026-11-23T22:00:00Z"
    bare = Event("t")
    attrs = complete(bare, "/default")
    assert attrs["source"] == "/default"
    assert len(attrs["id"]) == 36
    assert attrs["time"].endswith("Z")


def test_now_is_rfc3339_with_milliseconds() -> None:
    text = now_rfc3339()
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 5


def test_binary_data_uses_data_base64() -> None:
    event = Event("blob", b"\x00\x01")
    assert "data_base64" in event.to_dict()
    assert event.data == b"\x00\x01"


def test_typed_instances_wrap_into_events_of_their_bound_type_and_back() -> None:
    event = Event.of(UserCreated("u1", ["a"]))
    assert event.type == "user.created"
    assert event.source == "/accounts"
    assert event.data == {"user_id": "u1", "tags": ["a"]}
    assert event.as_type(UserCreated) == UserCreated("u1", ["a"])
    assert Event.of(Payment(5)).as_type(Payment) == Payment(5)


def test_typed_conversion_errors_name_the_field_path() -> None:
    with pytest.raises(
        InvalidEventError, match=r"does not fit UserCreated: Expected `array`, got `str` - at `\$.tags`"
    ):
        Event("user.created", {"user_id": "u", "tags": "x"}, id="e").as_type(UserCreated)


def test_unknown_fields_are_ignored_so_old_readers_accept_new_events() -> None:
    event = Event("user.created", {"user_id": "u", "tags": [], "added_later": True})
    assert event.as_type(UserCreated) == UserCreated("u", [])


def test_wrapping_an_unbound_class_is_refused() -> None:
    with pytest.raises(InvalidEventError, match="not bound to an event type"):
        Event.of(object())


def test_structured_and_binary_forms_decode_to_the_same_dict() -> None:
    attrs = complete(Event("order.placed", {"amount": 5}, subject="s", extensions={"tenant": "x"}), "/src")
    structured = decode_record(encode_structured(attrs), None)
    headers, value = encode_binary(attrs)
    binary = decode_record(value, headers)
    assert structured == attrs
    assert {k: v for k, v in binary.items() if k != "datacontenttype"} == attrs
    assert dict(headers)["content-type"] == b"application/json"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"", "empty value"),
        (b"{bad", "not valid JSON"),
        (b"[1]", "JSON list, not a CloudEvents object"),
        (b'{"specversion":"1.0","source":"/s","type":"t"}', "id: required attribute is missing"),
        (b'{"specversion":"0.3","id":"1","source":"/s","type":"t"}', "only '1.0' is supported"),
        (b'{"specversion":"1.0","id":7,"source":"/s","type":"t"}', "id: expected a non-empty string, got 7"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_undecodable_records_raise_decode_error_naming_the_problem(value: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_record(value, None)


def test_binary_records_without_required_headers_are_decode_errors() -> None:
    with pytest.raises(DecodeError, match="binary mode"):
        decode_record(b"{}", (("ce_type", b"t"),))


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ((("ce_specversion", b"0.3"), ("ce_id", b"e"), ("ce_source", b"/s"), ("ce_type", b"t")), "specversion"),
        ((("ce_specversion", b"1.0"), ("ce_id", b""), ("ce_source", b"/s"), ("ce_type", b"t")), "id: expected"),
        ((("ce_specversion", b"1.0"), ("ce_id", b"e"), ("ce_type", b"t")), "source: required attribute is missing"),
        ((("ce_specversion", b"1.0"), ("ce_id", b"\xff"), ("ce_source", b"/s"), ("ce_type", b"t")), "'ce_id' is not"),
    ],
)
def test_a_binary_record_names_what_is_wrong_with_its_event_headers(
    headers: tuple[tuple[str, bytes], ...], problem: str
) -> None:
    with pytest.raises(DecodeError, match=problem):
        decode_record(b"{}", headers)


def test_headers_that_are_not_the_events_are_left_alone_and_names_are_read_in_any_case() -> None:
    headers = (
        ("CE_SpecVersion", b"1.0"),
        ("ce_id", b"e1"),
        ("Ce_Source", b"/s"),
        ("ce_type", b"t"),
        ("trace-bin", b"\xff\xfe"),  # another producer's binary header: not UTF-8, and none of the event's
        ("ce_", b"text/plain"),  # an attribute with no name: kept as such, not taken for the content type
        ("Content-Type", b"application/vnd.x+json"),
    )
    for _ in range(2):  # the second time, from what was worked out about each name the first time
        assert decode_record(b'{"a": 1}', headers) == {
            **BASE,
            "": "text/plain",
            "datacontenttype": "application/vnd.x+json",
            "data": {"a": 1},
        }


class Unit(enum.StrEnum):
    KG = "kg"


BASE = {"specversion": "1.0", "id": "e1", "source": "/s", "type": "t"}
BASE_HEADERS = [("ce_specversion", b"1.0"), ("ce_id", b"e1"), ("ce_source", b"/s"), ("ce_type", b"t")]


@pytest.mark.parametrize(
    ("extra", "headers", "value"),
    [
        ({"data": {"a": 1}}, [("content-type", b"application/json")], b'{"a":1}'),
        ({}, [], None),
        ({"tenant": 5, "data": [1]}, [("ce_tenant", b"5"), ("content-type", b"application/json")], b"[1]"),
        ({"flag": True, "data": None}, [("ce_flag", b"true"), ("content-type", b"application/json")], b"null"),
        ({"datacontenttype": "text/plain", "data": "hi"}, [("content-type", b"text/plain")], b"hi"),
        (
            {"datacontenttype": "application/vnd.x+json", "data": "hi"},
            [("content-type", b"application/vnd.x+json")],
            b'"hi"',
        ),
        (
            {"datacontenttype": "application/octet-stream", "data_base64": "AAEC"},
            [("content-type", b"application/octet-stream")],
            b"\x00\x01\x02",
        ),
        ({"subject": "s/1", "data": 1}, [("ce_subject", b"s/1"), ("content-type", b"application/json")], b"1"),
        # Text data of a str subclass (an enum member) under a non-JSON type is written as text, unquoted.
        ({"datacontenttype": "text/plain", "data": Unit.KG}, [("content-type", b"text/plain")], b"kg"),
        # A datacontenttype of None is no datacontenttype: JSON (a "None" header would not read back as JSON).
        ({"datacontenttype": None, "data": "x"}, [("content-type", b"application/json")], b'"x"'),
    ],
)
def test_binary_mode_headers_and_value(
    extra: dict[str, object], headers: list[tuple[str, bytes]], value: object
) -> None:
    encoded_headers, encoded_value = encode_binary({**BASE, **extra})
    assert list(encoded_headers) == [*BASE_HEADERS, *headers]
    assert encoded_value == value


def test_extension_integers_span_the_32_bit_range_cloudevents_allows() -> None:
    event = Event("t", extensions={"low": -(1 << 31), "high": (1 << 31) - 1, "flag": True})
    assert event.extensions == {"low": -(1 << 31), "high": (1 << 31) - 1, "flag": True}
    with pytest.raises(InvalidEventError, match="extension 'high'"):
        event.replace(high=1 << 31)


def test_a_record_of_a_producer_that_writes_no_cloudevents_says_how_to_read_it() -> None:
    for value in (b"order 7 shipped", b'{"order": 7}', b""):
        with pytest.raises(DecodeError, match=r"add \?default_type=TYPE to the broker URL$"):
            decode_record(value, None)
