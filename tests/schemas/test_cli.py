"""`eventbus schema`, in real subprocesses: the CI gate (`check`), `register`, `list`, `show`, `compatibility` and
`codegen`, on the embedded registry and on a Confluent registry over HTTP; exit codes and messages."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PYTHON, REPO
from tests.schemas.conftest import record, write_schema
from tests.schemas.registry_server import RegistryServer

PLACED = record(
    "shop.OrderPlaced",
    {"name": "order_id", "type": "string"},
    {"name": "amount", "type": "double"},
    **{"eventbus.type": "shop.order.placed", "eventbus.topic": "orders"},
)


def eventbus(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "eventbus", "schema", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def with_field(schema: dict[str, Any], field: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "fields": [*schema["fields"], field]}


def test_check_is_a_gate_for_incompatible_changes(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    write_schema(tmp_path / "schemas", "order_placed.avsc", PLACED)
    first = eventbus("check", cwd=tmp_path, env=subprocess_env)
    assert first.returncode == 0, first.stderr
    assert "new        shop.OrderPlaced (schemas/order_placed.avsc): not registered yet" in first.stdout
    registered = eventbus("register", cwd=tmp_path, env=subprocess_env)
    assert registered.returncode == 0, registered.stderr
    assert "registered shop.OrderPlaced version 1 (id 1)" in registered.stdout
    assert (tmp_path / "eventbus.db").exists(), "the embedded registry lives in the default log's file"

    write_schema(
        tmp_path / "schemas", "order_placed.avsc", with_field(PLACED, {"name": "note", "type": "string", "default": ""})
    )
    compatible = eventbus("check", cwd=tmp_path, env=subprocess_env)
    assert compatible.returncode == 0, compatible.stdout
    assert "compatible shop.OrderPlaced (schemas/order_placed.avsc): BACKWARD with version 1" in compatible.stdout

    write_schema(tmp_path / "schemas", "order_placed.avsc", with_field(PLACED, {"name": "coupon", "type": "string"}))
    broken = eventbus("check", cwd=tmp_path, env=subprocess_env)
    assert broken.returncode == 1
    assert "BREAKS     shop.OrderPlaced (schemas/order_placed.avsc), BACKWARD:" in broken.stdout
    assert (
        "field 'coupon': the new schema has it without a default, and version 1 does not write it "
        "(BACKWARD: the new schema must read data written with version 1)"
    ) in broken.stdout
    assert "1 incompatible" in broken.stderr
    refused = eventbus("register", cwd=tmp_path, env=subprocess_env)
    assert refused.returncode == 1
    assert "refused    shop.OrderPlaced" in refused.stderr
    assert "field 'coupon'" in refused.stderr


def test_list_show_and_compatibility(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    write_schema(tmp_path / "schemas", "order_placed.avsc", PLACED)
    assert eventbus("register", cwd=tmp_path, env=subprocess_env).returncode == 0
    write_schema(
        tmp_path / "schemas", "order_placed.avsc", with_field(PLACED, {"name": "note", "type": "string", "default": ""})
    )
    assert eventbus("register", cwd=tmp_path, env=subprocess_env).returncode == 0

    listing = eventbus("list", cwd=tmp_path, env=subprocess_env)
    assert listing.stdout.splitlines() == [
        "SUBJECT           VERSIONS  LATEST ID  COMPATIBILITY",
        "shop.OrderPlaced         2          2  BACKWARD",
    ]
    latest = eventbus("show", "shop.OrderPlaced", cwd=tmp_path, env=subprocess_env)
    assert [f["name"] for f in json.loads(latest.stdout)["fields"]] == ["order_id", "amount", "note"]
    assert "shop.OrderPlaced version 2 (id 2)" in latest.stderr
    first = eventbus("show", "shop.OrderPlaced", "--version", "1", cwd=tmp_path, env=subprocess_env)
    assert [f["name"] for f in json.loads(first.stdout)["fields"]] == ["order_id", "amount"]
    by_id = eventbus("show", "--id", "1", cwd=tmp_path, env=subprocess_env)
    assert json.loads(by_id.stdout) == json.loads(first.stdout)
    missing = eventbus("show", "shop.OrderPlaced", "--version", "7", cwd=tmp_path, env=subprocess_env)
    assert missing.returncode == 1
    assert "has no version 7 (it has 1, 2)" in missing.stderr

    set_mode = eventbus(
        "compatibility", "shop.OrderPlaced", "--set", "full_transitive", cwd=tmp_path, env=subprocess_env
    )
    assert set_mode.stdout.strip() == "shop.OrderPlaced: FULL_TRANSITIVE"
    assert eventbus("compatibility", cwd=tmp_path, env=subprocess_env).stdout.strip() == "(registry default): BACKWARD"
    bad_mode = eventbus("compatibility", "shop.OrderPlaced", "--set", "SIDEWAYS", cwd=tmp_path, env=subprocess_env)
    assert bad_mode.returncode == 2
    assert "compatibility 'SIDEWAYS': use one of NONE, BACKWARD" in bad_mode.stderr


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"type": "record", "name": ', "not valid JSON"),
        (json.dumps(record("shop.A", {"name": "a", "type": "shop.Nowhere"})), "unknown type 'shop.Nowhere'"),
    ],
)
def test_an_invalid_file_is_named_with_exit_code_2(
    tmp_path: Path, subprocess_env: dict[str, str], content: str, problem: str
) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "broken.avsc").write_text(content)
    for action in ("check", "register", "codegen"):
        result = eventbus(action, cwd=tmp_path, env=subprocess_env)
        assert result.returncode == 2
        assert result.stderr.startswith("eventbus: error: schemas/broken.avsc: ")
        assert problem in result.stderr
        assert "Traceback" not in result.stderr


def test_usage_errors_exit_2(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    missing = eventbus("check", "nowhere", cwd=tmp_path, env=subprocess_env)
    assert missing.returncode == 2
    assert "schema directory nowhere does not exist" in missing.stderr
    write_schema(tmp_path / "schemas", "a.avsc", record("shop.Unplaced", {"name": "id", "type": "string"}))
    topic = eventbus("check", "--subject-strategy", "topic-name", cwd=tmp_path, env=subprocess_env)
    assert topic.returncode == 2
    assert "subject strategy 'topic-name' needs the topic of 'shop.Unplaced'" in topic.stderr
    url = eventbus("list", "--registry", "ftp://registry", cwd=tmp_path, env=subprocess_env)
    assert url.returncode == 2
    assert "schema registry 'ftp://registry': use http(s)://host:port" in url.stderr


def test_on_a_confluent_registry_with_topic_subjects(
    tmp_path: Path, subprocess_env: dict[str, str], http_registry: RegistryServer
) -> None:
    write_schema(tmp_path / "schemas", "order_placed.avsc", PLACED)
    env = {**subprocess_env, "EVENTBUS_SCHEMA_REGISTRY": http_registry.url}
    registered = eventbus("register", "--subject-strategy", "topic-name", cwd=tmp_path, env=env)
    assert registered.returncode == 0, registered.stderr
    assert http_registry.registry.subjects() == ["orders-value"]
    assert not (tmp_path / "eventbus.db").exists(), "no log is opened when a registry URL is given"
    write_schema(tmp_path / "schemas", "order_placed.avsc", with_field(PLACED, {"name": "coupon", "type": "string"}))
    broken = eventbus("check", "--subject-strategy", "topic-name", cwd=tmp_path, env=env)
    assert broken.returncode == 1
    assert "BREAKS     orders-value" in broken.stdout
    assert f"checked against {http_registry.url}" in broken.stderr


def test_codegen_writes_the_shop_classes(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    generated = eventbus(
        "codegen", str(REPO / "schemas"), "-o", str(tmp_path / "events.py"), cwd=tmp_path, env=subprocess_env
    )
    assert generated.returncode == 0, generated.stderr
    source = (tmp_path / "events.py").read_text()
    assert '@event_type("shop.order.placed", topic="orders")' in source
    assert '    items: list[LineItem]\n    currency: str = "EUR"' in source
    to_stdout = eventbus("codegen", str(REPO / "schemas"), cwd=tmp_path, env=subprocess_env)
    assert to_stdout.stdout == source
