"""The Avro codec: the Confluent wire format, refusals at publish with the field's path, old events read by new
code (schema resolution), undecodable records, and JSON staying the default for other topics."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastavro import parse_schema, schemaless_reader

from eventbus import App, Event, Publisher
from eventbus.backends.base import Message
from eventbus.backends.memory import MemoryLog
from eventbus.codecs import decode_record
from eventbus.codecs.avro import AvroDecoder, frame
from eventbus.errors import ConfigurationError, DecodeError, InvalidEventError
from eventbus.schemas import IncompatibleSchemaError, Schemas, SchemaSet, load_schemas
from eventbus.schemas.embedded import embedded_registry_for
from tests.schemas.conftest import record, write_schema

_logs = iter(range(1_000_000))
LINE = record("shop.Line", {"name": "sku", "type": "string"}, {"name": "quantity", "type": "int"})
ORDER = record(
    "shop.Order",
    {"name": "order_id", "type": "string"},
    {"name": "lines", "type": {"type": "array", "items": LINE}},
    {"name": "note", "type": ["null", "string"], "default": None},
    **{"eventbus.type": "shop.order"},
)
GOOD: dict[str, Any] = {"order_id": "o-1", "lines": [{"sku": "KB-01", "quantity": 2}], "note": None}
HEADERS = (
    ("ce_specversion", b"1.0"),
    ("ce_id", b"e-1"),
    ("ce_source", b"/tests"),
    ("ce_type", b"shop.order"),
    ("content-type", b"application/avro"),
)


def app_with(directory: Path, *schemas: dict[str, Any], auto_register: bool = True) -> App:
    for number, schema in enumerate(schemas):
        write_schema(directory, f"{number}.avsc", schema)
    app = App("codec", schemas=Schemas(directories=(str(directory),), auto_register=auto_register))
    app.topic("orders", codec="avro")
    app.topic("audit")  # JSON
    return app


def fresh_log() -> MemoryLog:
    return MemoryLog(f"codec-{next(_logs)}")


def decoder_for(log: MemoryLog, schemas: SchemaSet | None) -> AvroDecoder:
    return AvroDecoder(embedded_registry_for(log), schemas)


def test_records_are_in_the_confluent_wire_format(tmp_path: Path) -> None:
    app, log = app_with(tmp_path, ORDER), fresh_log()
    Publisher(log, app=app).publish("orders", Event("shop.order", GOOD, partitionkey="o-1"))
    batch = log.read("orders", 0, 0, 1)
    value = batch.values[0]
    assert value is not None
    registered = embedded_registry_for(log).versions("shop.Order")[0]
    assert value[:5] == b"\x00" + registered.schema_id.to_bytes(4, "big")
    body = io.BytesIO(value[5:])
    assert schemaless_reader(body, parse_schema(json.loads(registered.schema)), None) == GOOD
    assert batch.keys[0] == b"o-1"
    headers = dict(batch.headers[0] or ())
    assert headers["content-type"] == b"application/avro"
    assert headers["ce_dataschema"] == f"{log.url}#/schemas/ids/{registered.schema_id}".encode()


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (
            {**GOOD, "lines": [GOOD["lines"][0], {"sku": "MS-02", "quantity": "three"}]},
            "data.lines[1].quantity: expected int",
        ),
        ({**GOOD, "lines": [{"sku": "MS-02"}]}, "data.lines[0].quantity: missing"),
        ({**GOOD, "coupon": "X"}, "data.coupon: not a field of record shop.Order"),
        ({**GOOD, "note": 5}, "data.note: expected one of null, string, got int 5"),
        ("just text", "data: expected a record shop.Order, got str 'just text'"),
        # What fastavro's writer would have taken and changed without a word:
        ({**GOOD, "lines": [{"sku": "MS-02", "quantity": 1.7}]}, "data.lines[0].quantity: expected int, got float"),
        ({**GOOD, "lines": [{"sku": "MS-02", "quantity": True}]}, "data.lines[0].quantity: expected int, got bool"),
        ({**GOOD, "lines": [{"sku": "MS-02", "quantity": 2**40}]}, "data.lines[0].quantity: expected int"),
    ],
)
def test_data_that_does_not_fit_is_refused_at_publish_with_its_path(tmp_path: Path, data: Any, where: str) -> None:
    app, log = app_with(tmp_path, ORDER), fresh_log()
    log.create_topic("orders", 1)
    with pytest.raises(InvalidEventError) as refused:
        Publisher(log, app=app).publish("orders", Event("shop.order", data, id="bad-1"))
    message = str(refused.value)
    assert message.startswith(f"event 'bad-1' of type 'shop.order' does not fit schema shop.Order ({tmp_path}/0.avsc)")
    assert where in message
    assert log.watermarks("orders")[0].end_offset == 0, "nothing was appended"


def test_an_event_type_without_a_schema_is_refused_on_an_avro_topic(tmp_path: Path) -> None:
    app, log = app_with(tmp_path, ORDER), fresh_log()
    with pytest.raises(InvalidEventError, match=r"event type 'shop\.refund' has no Avro schema, and topic 'orders'"):
        Publisher(log, app=app).publish("orders", Event("shop.refund", {"x": 1}))


def test_other_topics_stay_json(tmp_path: Path) -> None:
    app, log = app_with(tmp_path, ORDER), fresh_log()
    publisher = Publisher(log, app=app)
    publisher.publish("audit", Event("shop.refund", {"x": 1}))
    value = log.read("audit", 0, 0, 1).values[0]
    assert value is not None
    assert orjson.loads(value)["data"] == {"x": 1}
    # An Avro event passed on to a JSON topic loses the attributes that described its Avro data.
    publisher.publish("audit", Event("shop.order", GOOD, datacontenttype="application/avro", dataschema="x:1"))
    passed = log.read("audit", 0, 1, 1).values[0]
    assert passed is not None
    assert "datacontenttype" not in orjson.loads(passed)
    assert "dataschema" not in orjson.loads(passed)


def test_without_auto_registration_the_schema_must_be_registered_first(tmp_path: Path) -> None:
    app, log = app_with(tmp_path, ORDER, auto_register=False), fresh_log()
    with pytest.raises(
        ConfigurationError, match=r"not registered under subject 'shop\.Order'.*eventbus schema register"
    ):
        Publisher(log, app=app).publish("orders", Event("shop.order", GOOD))
    schema = app.schema_set.for_type("shop.order")
    assert schema is not None
    embedded_registry_for(log).register("shop.Order", schema.text)
    Publisher(log, app=app).publish("orders", Event("shop.order", GOOD))


def test_publishing_with_a_schema_that_breaks_its_subject_is_refused(tmp_path: Path) -> None:
    log = fresh_log()
    embedded_registry_for(log).register("shop.Order", json.dumps(ORDER))
    breaking = {**ORDER, "fields": [*ORDER["fields"], {"name": "channel", "type": "string"}]}
    app = app_with(tmp_path, breaking)
    with pytest.raises(IncompatibleSchemaError, match=r"field 'channel'.*BACKWARD"):
        Publisher(log, app=app).publish("orders", Event("shop.order", {**GOOD, "channel": "web"}))


def test_old_events_are_read_by_new_code(tmp_path: Path) -> None:
    log = fresh_log()
    old_app = app_with(tmp_path / "v1", ORDER)
    Publisher(log, app=old_app).publish("orders", Event("shop.order", GOOD))
    renamed_line = record(
        "shop.Line", {"name": "product", "type": "string", "aliases": ["sku"]}, {"name": "quantity", "type": "long"}
    )
    new = {
        **ORDER,
        "fields": [
            ORDER["fields"][0],
            {"name": "lines", "type": {"type": "array", "items": renamed_line}},
            {"name": "channel", "type": "string", "default": "web"},
        ],
    }
    batch = log.read("orders", 0, 0, 1)
    decoded = decode_record(
        batch.values[0], batch.headers[0], decoder_for(log, app_with(tmp_path / "v2", new).schema_set)
    )
    assert decoded["data"] == {"order_id": "o-1", "lines": [{"product": "KB-01", "quantity": 2}], "channel": "web"}


def test_a_reader_that_cannot_read_the_writers_data_says_which_field(tmp_path: Path) -> None:
    log = fresh_log()
    Publisher(log, app=app_with(tmp_path / "v1", ORDER)).publish("orders", Event("shop.order", GOOD))
    stricter = {**ORDER, "fields": [*ORDER["fields"], {"name": "channel", "type": "string"}]}
    decoder = decoder_for(log, app_with(tmp_path / "v2", stricter).schema_set)
    batch = log.read("orders", 0, 0, 1)
    reason = "field 'channel': the app's schema has it without a default, and schema id 1 does not write it"
    with pytest.raises(DecodeError, match=reason):
        decode_record(batch.values[0], batch.headers[0], decoder)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (b"\x00\x00", "has 2 bytes: too short for the Confluent wire format"),
        (b"\x01\x00\x00\x00\x01\x06o-1", "starts with byte 1, not the Confluent magic byte 0"),
        (frame(4242, b"\x06o-1"), "schema id 4242 is not in the schema registry"),
        (frame(1, b"\x06o-"), "(schema id 1) does not decode: EOFError"),
        (frame(1, b"\x06o-1\x00\x00\x00\x00\x00"), "byte(s) left after a record of schema id 1"),
    ],
)
def test_undecodable_records_raise_a_decode_error_naming_the_problem(
    tmp_path: Path, value: bytes, problem: str
) -> None:
    log = fresh_log()
    embedded_registry_for(log).register("shop.Order", json.dumps(ORDER))
    with pytest.raises(DecodeError) as refused:
        decode_record(value, HEADERS, decoder_for(log, load_schemas(tmp_path)))
    assert problem in str(refused.value)


def test_without_a_decoder_avro_data_stays_bytes(tmp_path: Path) -> None:
    app, log = app_with(tmp_path, ORDER), fresh_log()
    Publisher(log, app=app).publish("orders", Event("shop.order", GOOD))
    batch = log.read("orders", 0, 0, 1)
    event = Event.wrap(decode_record(batch.values[0], batch.headers[0]))
    assert event.data == batch.values[0]
    assert event.datacontenttype == "application/avro"


def test_json_records_decode_the_same_with_a_decoder(tmp_path: Path) -> None:
    log = fresh_log()
    structured = orjson.dumps({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": {"a": 1}})
    decoder = decoder_for(log, None)
    assert decode_record(structured, None, decoder) == decode_record(structured, None)
    binary = (("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t"))
    assert decode_record(b'{"a": 1}', binary, decoder)["data"] == {"a": 1}
    assert Message(b"x").value == b"x"


# -- a type that says Avro -----------------------------------------------------------------------------------------


def json_app_with(directory: Path, *schemas: dict[str, Any]) -> App:
    for number, schema in enumerate(schemas):
        write_schema(directory, f"{number}.avsc", schema)
    return App("codec", schemas=Schemas(directories=(str(directory),)))


def test_a_type_declared_avro_is_avro_on_a_json_topic_and_other_types_stay_json(tmp_path: Path) -> None:
    app, log = json_app_with(tmp_path, ORDER), fresh_log()
    app.event_codec("shop.order", "avro")
    publisher = Publisher(log, app=app)
    publisher.publish_many("audit", [Event("shop.order", GOOD, id="o-1"), Event("shop.refund", {"x": 1}, id="r-1")])
    batch = log.read("audit", 0, 0, 2)
    avro_value, json_value = batch.values
    assert avro_value is not None
    assert json_value is not None
    registered = embedded_registry_for(log).versions("shop.Order")[0]
    assert avro_value[:5] == b"\x00" + registered.schema_id.to_bytes(4, "big")
    assert dict(batch.headers[0] or ())["content-type"] == b"application/avro"
    assert orjson.loads(json_value)["data"] == {"x": 1}
    decoded = [decode_record(v, h, decoder_for(log, None)) for v, h in zip(batch.values, batch.headers, strict=True)]
    assert [(e["id"], e["data"]) for e in decoded] == [("o-1", GOOD), ("r-1", {"x": 1})]


def test_a_type_declared_json_stays_json_on_an_avro_topic(tmp_path: Path) -> None:
    app, log = app_with(tmp_path, ORDER), fresh_log()
    app.event_codec("shop.order", "json")
    Publisher(log, app=app).publish("orders", Event("shop.order", GOOD))
    value = log.read("orders", 0, 0, 1).values[0]
    assert value is not None
    assert orjson.loads(value)["data"] == GOOD


def test_a_processor_output_of_an_avro_type_is_written_as_avro(tmp_path: Path) -> None:
    from eventbus.testing import TestBus

    app = json_app_with(tmp_path, ORDER)
    app.event_codec("shop.order", "avro")

    @app.processor("carts", to="orders")
    def checkout(event: Event) -> Event:
        return Event("shop.order", GOOD, partitionkey="o-1")

    bus = TestBus()
    bus.publish("carts", Event("shop.cart", {}))
    bus.run(app)
    value = bus.log.read("orders", 0, 0, 1).values[0]
    assert value is not None
    assert value[:1] == b"\x00", "the output is in the Confluent wire format"
    registry = embedded_registry_for(bus.log)
    decoded = decode_record(value, bus.log.read("orders", 0, 0, 1).headers[0], AvroDecoder(registry, None))
    assert decoded["data"] == GOOD


@pytest.mark.parametrize(
    ("type_name", "codec", "message"),
    [
        ("shop.refund", "avro", r"event type 'shop\.refund' is declared Avro but no schema binds it: add a \.avsc"),
        ("shop.order", "protobuf", r"event type 'shop\.order': codec must be one of \('json', 'avro'\)"),
        ("", "avro", r"event_codec needs an event type"),
    ],
)
def test_a_bad_type_codec_is_refused_at_declaration(tmp_path: Path, type_name: str, codec: Any, message: str) -> None:
    app = json_app_with(tmp_path, ORDER)
    with pytest.raises(ConfigurationError, match=message):
        app.event_codec(type_name, codec)
    app.event_codec("shop.order", "avro")
    with pytest.raises(ConfigurationError, match=r"declared with codec 'avro' and 'json'"):
        app.event_codec("shop.order", "json")


def test_bytes_in_any_record_branch_of_a_union_are_written_from_base64(tmp_path: Path) -> None:
    text = record("n.Text", {"name": "text", "type": "string"})
    blob = record("n.Blob", {"name": "data", "type": "bytes"})
    note = record("n.Note", {"name": "body", "type": [text, blob]}, **{"eventbus.type": "n.note"})
    app, log = app_with(tmp_path, note), fresh_log()
    log.create_topic("orders", 1)
    publisher = Publisher(log, app=app)
    publisher.publish("orders", Event("n.note", {"body": {"text": "hi"}}, id="t"))
    publisher.publish("orders", Event("n.note", {"body": {"data": base64.b64encode(b"\x00\x01").decode()}}, id="b"))
    batch = log.read("orders", 0, 0, 10)
    decode = decoder_for(log, app.schema_set)
    found = [decode_record(v, h, decode)["data"] for v, h in zip(batch.values, batch.headers, strict=True)]
    assert found == [{"body": {"text": "hi"}}, {"body": {"data": b"\x00\x01"}}]
