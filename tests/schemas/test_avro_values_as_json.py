"""Avro data holding bytes goes on as JSON: passed by a processor to a JSON topic, and printed by `eventbus
consume`, as base64 text (which the Avro encoder reads back into bytes). A decimal is read as its Avro bytes."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import orjson

from eventbus import App, Event, Publisher
from eventbus.backends.sqlite import SQLiteLog
from eventbus.schemas import Schemas
from eventbus.testing import TestBus
from tests.conftest import PYTHON, REPO
from tests.schemas.conftest import record, write_schema

PAYMENT = record(
    "pay.Payment",
    {"name": "ref", "type": "bytes"},
    {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    **{"eventbus.type": "pay.made"},
)
REF = b"\x00\xffref"
CENTS_1234 = (1234).to_bytes(2, "big", signed=True)  # a decimal(10, 2) of 12.34, as Avro writes it

AS_JSON = {"ref": base64.b64encode(REF).decode(), "amount": base64.b64encode(CENTS_1234).decode()}


def payments_app(schemas: Path) -> App:
    write_schema(schemas, "payment.avsc", PAYMENT)
    app = App("audit", schemas=Schemas(directories=(str(schemas),)))
    app.topic("payments", codec="avro")
    app.topic("audit")  # JSON

    @app.processor("payments", to="audit")
    def audit(event: Event) -> Event:
        return Event("pay.audited", event.data)

    return app


def test_bytes_from_avro_data_reach_a_json_topic_and_eventbus_consume(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    app = payments_app(tmp_path / "schemas")
    log = SQLiteLog(tmp_path / "events.db")
    Publisher(log, app=app).publish("payments", Event("pay.made", {"ref": REF, "amount": CENTS_1234}, id="p1"))
    bus = TestBus(log=log)
    bus.run(app)
    assert bus.dead_letters("payments.dlq") == []
    assert bus.data("audit") == [AS_JSON]
    log.close()

    consumed = subprocess.run(
        [PYTHON, "-m", "eventbus", "consume", "payments", "--from-beginning", "--until-end",
         "--broker", f"sqlite:///{tmp_path}/events.db"],
        capture_output=True, text=True, cwd=REPO, env=subprocess_env, timeout=60, check=False,
    )  # fmt: skip
    assert consumed.returncode == 0, consumed.stderr
    (line,) = consumed.stdout.splitlines()
    printed: dict[str, Any] = orjson.loads(line)
    assert printed["data"] == AS_JSON
