"""Interop with confluent-kafka's own serializers, through a schema registry served over HTTP in the test:
what eventbus writes with Avro, Confluent's `AvroDeserializer` reads; what Confluent's `AvroSerializer` writes,
an eventbus worker reads (resolving it to a newer schema of its own)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from eventbus import App, Event, Publisher, event_type
from eventbus.backends.base import Message
from eventbus.schemas import Schemas, SubjectStrategy
from eventbus.testing import TestBus
from tests.schemas.conftest import record, write_schema
from tests.schemas.registry_server import RegistryServer

ORDER_V1 = record(
    "shop.OrderPlaced",
    {"name": "order_id", "type": "string"},
    {"name": "amount", "type": "double"},
    {"name": "status", "type": {"type": "enum", "name": "shop.Status", "symbols": ["NEW", "PAID"]}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "note", "type": ["null", "string"], "default": None},
)
ORDER_V2 = {
    **ORDER_V1,
    "fields": [*ORDER_V1["fields"], {"name": "channel", "type": "string", "default": "web"}],
    "eventbus.type": "shop.order.placed",
}
DATA: list[dict[str, Any]] = [
    {"order_id": "o-1", "amount": 120.5, "status": "PAID", "tags": ["gift"], "note": None},
    {"order_id": "o-2", "amount": 9.99, "status": "NEW", "tags": [], "note": "leave at the door"},
]


@event_type("shop.order.placed", topic="orders")
@dataclass
class OrderV2:
    order_id: str
    amount: float
    status: str
    tags: list[str]
    note: str | None
    channel: str


def avro_app(
    tmp_path: Path, schema: dict[str, object], registry_url: str, strategy: SubjectStrategy = "topic-name"
) -> App:
    write_schema(tmp_path / "schemas", "order.avsc", {**schema, "eventbus.type": "shop.order.placed"})
    settings = Schemas(directories=(str(tmp_path / "schemas"),), registry=registry_url, subject_strategy=strategy)
    app = App("interop", schemas=settings)
    app.topic("orders", codec="avro")
    return app


def test_confluent_avro_deserializer_reads_what_eventbus_writes(tmp_path: Path, http_registry: RegistryServer) -> None:
    app = avro_app(tmp_path, ORDER_V1, http_registry.url)
    bus = TestBus()
    with Publisher(bus.log, app=app) as publisher:
        publisher.publish_many("orders", [Event("shop.order.placed", d, subject=d["order_id"]) for d in DATA])
    batch = bus.log.read("orders", 0, 0, 10)
    client = SchemaRegistryClient({"url": http_registry.url})
    deserialize = AvroDeserializer(client)
    context = SerializationContext("orders", MessageField.VALUE)
    assert [deserialize(value, context) for value in batch.values] == DATA
    headers = [dict(h or ()) for h in batch.headers]
    assert {h["content-type"] for h in headers} == {b"application/avro"}
    schema_id = int.from_bytes(batch.values[0][1:5], "big")  # type: ignore[index]
    assert {h["ce_dataschema"] for h in headers} == {f"{http_registry.url}/schemas/ids/{schema_id}".encode()}
    assert client.get_latest_version("orders-value").schema_id == schema_id, "registered by the topic-name strategy"


def test_eventbus_reads_what_the_confluent_avro_serializer_writes(
    tmp_path: Path, http_registry: RegistryServer
) -> None:
    client = SchemaRegistryClient({"url": http_registry.url})
    serialize = AvroSerializer(client, json.dumps(ORDER_V1))
    context = SerializationContext("orders", MessageField.VALUE)
    values = [serialize(d, context) for d in DATA]
    # A producer using the CloudEvents Kafka binding puts the attributes in ce_* headers, the data as the value.
    bus = TestBus()
    bus.log.append(
        "orders",
        [
            Message(
                value,
                f"o-{n}".encode(),
                (
                    ("ce_specversion", b"1.0"),
                    ("ce_id", f"confluent-{n}".encode()),
                    ("ce_source", b"/legacy-checkout"),
                    ("ce_type", b"shop.order.placed"),
                    ("content-type", b"application/avro"),
                ),
            )
            for n, value in enumerate(values)
        ],
    )
    # The app reads with a newer schema of its own (a field added with a default): resolved from the writer's.
    app = avro_app(tmp_path, ORDER_V2, http_registry.url)
    seen: list[OrderV2] = []

    @app.processor("orders", to="seen")
    def keep(order: OrderV2) -> Event:
        seen.append(order)
        return Event("shop.order.seen", {"order_id": order.order_id})

    bus.run(app)
    assert [o.order_id for o in seen] == ["o-1", "o-2"]
    assert {o.channel for o in seen} == {"web"}, "the reader's default fills the field the writer did not have"
    assert seen[1].note == "leave at the door"
    assert bus.data("seen") == [{"order_id": "o-1"}, {"order_id": "o-2"}]
    fetched = [path for method, path in http_registry.requests if method == "GET" and path.startswith("/schemas/ids/")]
    assert len(fetched) == 1, "the writer's schema is fetched once, not once per record"


@pytest.mark.parametrize(
    ("strategy", "subject"),
    [
        ("topic-name", "orders-value"),
        ("record-name", "shop.OrderPlaced"),
        ("topic-record-name", "orders-shop.OrderPlaced"),
    ],
)
def test_subject_name_strategies(
    tmp_path: Path, http_registry: RegistryServer, strategy: SubjectStrategy, subject: str
) -> None:
    app = avro_app(tmp_path, ORDER_V1, http_registry.url, strategy)
    with Publisher(TestBus().log, app=app) as publisher:
        publisher.publish("orders", Event("shop.order.placed", DATA[0]))
    assert SchemaRegistryClient({"url": http_registry.url}).get_subjects() == [subject]
