"""Structured logs: with ``--log-format json`` (or ``EVENTBUS_LOG_FORMAT=json``) everything a command writes to
standard error is one JSON object per line, worker processes of ``--workers`` included, its final error too."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import orjson

from eventbus.observability.logs import JsonLogFormatter, configure_logging
from tests.cli.test_cli import eventbus
from tests.conftest import REPO


def json_lines(stderr: str) -> list[dict[str, Any]]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "nothing was logged"
    parsed = [orjson.loads(line) for line in lines]  # raises on any line that is not JSON
    for entry in parsed:
        assert {"time", "level", "logger", "message", "pid"} <= entry.keys(), entry
        assert entry["time"].endswith("Z")
    return parsed


def test_a_worker_logs_json_lines_and_so_do_the_processes_of_workers(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    orders = (REPO / "processors" / "sample-orders.jsonl").read_text()
    created = eventbus("topics", "create", "orders", "--partitions", "3", "--broker", url, cwd=REPO, env=subprocess_env)
    assert created.returncode == 0, created.stderr
    published = eventbus(
        "publish", "orders", "--type", "shop.order.placed", "--key-field", "order_id", "--broker", url,
        cwd=REPO, env=subprocess_env, stdin=orders,
    )  # fmt: skip
    assert published.returncode == 0, published.stderr

    one = eventbus(
        "--log-format", "json", "run", "processors.shop", "--until-idle", "--broker", url,
        cwd=REPO, env=subprocess_env,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    entries = json_lines(one.stderr)
    assert any(e["logger"] == "eventbus.worker" and e["message"].startswith("worker started") for e in entries)

    several = eventbus(
        "run", "processors.shop", "--until-idle", "--workers", "2", "--group", "other", "--broker", url,
        cwd=REPO, env={**subprocess_env, "EVENTBUS_LOG_FORMAT": "json"},
    )  # fmt: skip
    assert several.returncode == 0, several.stderr
    started = [e["pid"] for e in json_lines(several.stderr) if e["message"].startswith("worker started")]
    assert len(set(started)) == 2


def test_a_command_that_fails_says_so_in_a_json_line(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    failed = eventbus(
        "--log-format", "json", "run", "no_such_module", "--broker", f"sqlite:///{tmp_path}/events.db",
        cwd=tmp_path, env=subprocess_env,
    )  # fmt: skip
    assert failed.returncode == 2
    (entry,) = json_lines(failed.stderr)
    assert (entry["level"], entry["outcome"]) == ("ERROR", "error")
    assert "cannot find module 'no_such_module'" in entry["message"]
    text = eventbus("run", "no_such_module", cwd=tmp_path, env=subprocess_env)
    assert text.stderr.startswith("eventbus: error: cannot find module 'no_such_module'")


def test_a_json_line_holds_the_exception_and_the_extra_fields() -> None:
    stream = io.StringIO()
    record_logger = logging.getLogger("eventbus.test.json")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter())
    record_logger.addHandler(handler)
    record_logger.propagate = False
    try:
        try:
            raise ValueError("bad amount")
        except ValueError:
            record_logger.exception("processor %s failed", "bill", extra={"offset": 7, "file": Path("/x/y")})
    finally:
        record_logger.removeHandler(handler)
        record_logger.propagate = True
    entry = orjson.loads(stream.getvalue())
    assert entry["message"] == "processor bill failed"
    assert (entry["level"], entry["offset"], entry["file"]) == ("ERROR", 7, "/x/y")
    assert entry["exception"].startswith("Traceback")
    assert "ValueError: bad amount" in entry["exception"]


def test_configuring_logs_leaves_a_host_applications_own_handlers_alone() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    host = logging.StreamHandler(io.StringIO())
    root.addHandler(host)
    try:
        configure_logging(logging.INFO, "json")
        assert root.handlers == [*before, host]
    finally:
        root.removeHandler(host)
