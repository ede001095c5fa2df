"""End to end: the shop's order pipeline with every topic on Avro — in memory through `TestBus`, and in a real
`eventbus run` process on a SQLite file — gives the same emails as on JSON; a record that does not decode goes to
the dead-letter topic with the decode error; and an app on JSON never loads fastavro."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventbus import App, Event, Publisher
from eventbus.backends.base import Log, Message
from eventbus.backends.sqlite import SQLiteLog
from eventbus.codecs import decode_record
from eventbus.codecs.avro import AvroDecoder
from eventbus.schemas.embedded import embedded_registry_for
from eventbus.testing import TestBus
from processors import shop
from tests.conftest import PYTHON, REPO

SHOP_ON_AVRO = f'''
"""The shop's order pipeline with every topic on Avro: the processors of processors.shop, declared again."""

from eventbus import App
from processors import shop

app = App("shop-avro", schemas={str(REPO / "schemas")!r})
for spec in shop.app.topics.values():
    app.topic(spec.name, partitions=spec.partitions, codec="avro")
for p in shop.app.processors:
    app.processor(
        list(p.topics),
        name=p.name,
        pattern=None if p.typed_class else p.pattern,
        batch_size=p.batch_size if p.batched else None,
        batch_window_ms=p.batch_window_ms if p.batched else None,
        to=p.to,
    )(p.func)
'''
GARBAGE = Message(
    b"\x00\x00\x00\x00\x63not avro",
    b"o-9999",
    (
        ("ce_specversion", b"1.0"),
        ("ce_id", b"garbage-1"),
        ("ce_source", b"/tests"),
        ("ce_type", b"shop.order.placed"),
        ("content-type", b"application/avro"),
    ),
)


def sample_orders() -> list[Event]:
    lines = (REPO / "processors" / "sample-orders.jsonl").read_bytes().splitlines()
    return [Event("shop.order.placed", d, partitionkey=d["order_id"]) for d in map(orjson.loads, lines)]


def load_module(path: Path, source: str, name: str) -> Any:
    import importlib.util
    import sys

    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def read_events(log: Log, topic: str, decoder: AvroDecoder | None) -> list[Event]:
    found = []
    for state in log.watermarks(topic):
        batch = log.read(topic, state.partition, 0, state.end_offset)
        found += [Event.wrap(decode_record(v, h, decoder)) for v, h in zip(batch.values, batch.headers, strict=True)]
    return found


def outcomes(events: list[Event]) -> dict[str, str]:
    """Each order's email body, by order id (one email per order)."""
    found = {e.data["subject"].split()[1]: e.data["body"] for e in events}
    assert len(found) == len(events) == 30, "one email per sample order"
    return found


def assert_same_outcomes(avro: dict[str, str], json: dict[str, str]) -> None:
    """The same outcome for every order, except where orders competed for the last units of a product: which of
    them gets it depends on the order partitions are processed in, on either codec."""
    assert avro.keys() == json.keys()
    contended = {o for o in avro if "out of stock" in avro[o] + json[o]}
    assert len(contended) < 10
    assert {o: avro[o] for o in avro if o not in contended} == {o: json[o] for o in json if o not in contended}


def json_outcomes() -> dict[str, str]:
    bus = TestBus(partitions=3)
    for spec in shop.app.topics.values():
        bus.create_topic(spec.name, spec.partitions)
    bus.publish("orders", *sample_orders())
    bus.run(shop.app)
    return outcomes(bus.events("emails"))


@pytest.fixture
def avro_app(tmp_path: Path) -> App:
    app: App = load_module(tmp_path / "shop_avro.py", SHOP_ON_AVRO, "shop_avro").app
    return app


def test_the_pipeline_on_avro_through_testbus(avro_app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shop, "WAREHOUSE", dict(shop.WAREHOUSE))
    expected = json_outcomes()
    monkeypatch.setattr(shop, "WAREHOUSE", dict(shop.WAREHOUSE))
    bus = TestBus()
    for spec in avro_app.topics.values():
        bus.create_topic(spec.name, spec.partitions)
    with Publisher(bus.log, app=avro_app) as publisher:
        publisher.publish_many("orders", sample_orders())
    bus.log.append("orders", [GARBAGE])
    bus.run(avro_app)
    decoder = AvroDecoder(embedded_registry_for(bus.log), avro_app.schema_set)
    sent = read_events(bus.log, "emails", decoder)
    assert {e.datacontenttype for e in sent} == {"application/avro"}
    assert_same_outcomes(outcomes(sent), expected)
    figures = read_events(bus.log, "analytics", decoder)
    assert sum(e.data["orders"] for e in figures) == 30
    [(event, failure)] = bus.dead_letters("orders.dlq")
    assert event is not None
    assert event.id == "garbage-1"
    assert failure["error.class"] == "eventbus.errors.DecodeError"
    assert "schema id 99 is not in the schema registry" in failure["error.message"]


def test_the_pipeline_on_avro_in_an_eventbus_run_process_on_sqlite(
    avro_app: App, tmp_path: Path, subprocess_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shop, "WAREHOUSE", dict(shop.WAREHOUSE))
    expected = json_outcomes()
    path = tmp_path / "events.db"
    log = SQLiteLog(path)
    for spec in avro_app.topics.values():
        log.create_topic(spec.name, spec.partitions)
    with Publisher(log, app=avro_app) as publisher:
        publisher.publish_many("orders", sample_orders())
    log.append("orders", [GARBAGE])
    ran = subprocess.run(
        [PYTHON, "-m", "eventbus", "run", "shop_avro", "--broker", f"sqlite:///{path}", "--until-idle"],
        cwd=tmp_path,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert "dead-lettered orders" in ran.stderr
    decoder = AvroDecoder(embedded_registry_for(log), avro_app.schema_set)
    assert_same_outcomes(outcomes(read_events(log, "emails", decoder)), expected)
    [dead] = read_events(log, "orders.dlq", None)
    assert dead.id == "garbage-1"
    assert dead.data == GARBAGE.value, "dead-lettered unchanged"
    headers = dict(log.read("orders.dlq", 0, 0, 1).headers[0] or ())
    assert b"schema id 99 is not in the schema registry" in headers["eventbus.error.message"]
    subjects = embedded_registry_for(log).subjects()
    assert "shop.EmailQueued" in subjects, "the worker registered the schemas of what it wrote"
    log.close()


ECHO_APP = """
from eventbus import App, Event

app = App("echo")

@app.processor("in", to="out")
def echo(event: Event) -> Event:
    return Event("echoed", event.data)
"""


def test_an_app_on_json_never_imports_fastavro(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    (tmp_path / "echo_app.py").write_text(ECHO_APP)
    (tmp_path / "schemas").mkdir()  # even with a schemas/ directory beside it
    log = SQLiteLog(tmp_path / "eventbus.db")
    log.append("in", [Message(orjson.dumps({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}))])
    log.close()
    script = (
        "import sys\n"
        "from eventbus.cli import main\n"
        "code = main(['run', 'echo_app', '--until-idle'])\n"
        "print(code, 'fastavro' in sys.modules)\n"
    )
    ran = subprocess.run(
        [PYTHON, "-c", script],
        cwd=tmp_path,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.stdout.split() == ["0", "False"], ran.stderr
