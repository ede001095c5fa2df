"""``--log-level`` and ``--log-format`` are taken before the command (``eventbus --log-level DEBUG run app``) and
after it (``eventbus run app --log-level DEBUG``), by every command and subcommand."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from eventbus.cli import build_parser
from tests.cli.test_cli import eventbus

COMMANDS = [
    ["run", "processors.shop"],
    ["publish", "orders"],
    ["consume", "orders"],
    ["topics"],
    ["topics", "list"],
    ["topics", "create", "orders"],
    ["topics", "describe", "orders"],
    ["dlq", "list", "orders.dlq"],
    ["dlq", "replay", "orders.dlq"],
    ["replay", "orders", "--group", "g", "--from", "earliest"],
    ["projections", "status", "--app", "processors.bank"],
    ["projections", "rebuild", "balances", "--app", "processors.bank"],
    ["schema", "check"],
    ["schema", "list"],
    ["rules", "check", "patterns.json"],
    ["rules", "test", "{}", "{}"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_takes_the_log_options_after_its_name(command: list[str]) -> None:
    args = build_parser().parse_args([*command, "--log-level", "DEBUG", "--log-format", "json"])
    assert (args.log_level, args.log_format) == ("DEBUG", "json")


def test_given_after_the_command_they_override_those_given_before() -> None:
    args = build_parser().parse_args(["--log-level", "ERROR", "--log-format", "json", "topics", "--log-level", "DEBUG"])
    assert (args.log_level, args.log_format) == ("DEBUG", "json")


def test_given_only_before_the_command_or_not_at_all_they_keep_their_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EVENTBUS_LOG_FORMAT", raising=False)
    assert build_parser().parse_args(["--log-level", "WARNING", "topics", "list"]).log_level == "WARNING"
    args = build_parser().parse_args(["topics", "list"])
    assert (args.log_level, args.log_format) == ("INFO", "text")


def test_the_final_error_of_a_command_is_json_with_log_format_after_the_command(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    result = eventbus("run", "no_such_module", "--log-format", "json", cwd=tmp_path, env=subprocess_env)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    entry = orjson.loads(line)
    assert entry["level"] == "ERROR"
    assert "no_such_module" in entry["message"]
