"""``eventbus rules check`` and ``eventbus rules test``: handlers called directly, and once through a process."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from eventbus.routing import cli


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="eventbus")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.handler(args)
    return result


def _write(folder: Path, name: str, content: object) -> str:
    path = folder / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_check_valid_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = _write(tmp_path, "one.json", {"source": ["shop"]})
    many = _write(tmp_path, "many.json", [{"a": [1]}, {"b": [{"prefix": "x"}]}])
    assert _run(["rules", "check", one, many]) == 0
    out = capsys.readouterr().out
    assert f"{one}: 1 valid pattern" in out
    assert f"{many}: 2 valid patterns" in out


def test_check_reports_every_error_with_file_index_and_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(
        tmp_path,
        "bad.json",
        [{"a": [1]}, {"detail": {"amount": [{"numeric": [">", 5, "<", 5]}]}}, {"b": []}],
    )
    single = _write(tmp_path, "single.json", {"x": "scalar"})
    assert _run(["rules", "check", bad, single]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert f"{bad}[1]: detail.amount: numeric range bottom must be less than top" in lines
    assert any(line.startswith(f"{bad}[2]: b: ") for line in lines)
    assert any(line.startswith(f"{single}: x: ") for line in lines)


def test_check_missing_or_broken_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path, "good.json", {"a": [1]})
    broken = _write(tmp_path, "broken.json", "{not json")
    invalid = _write(tmp_path, "invalid.json", {"a": []})
    missing = str(tmp_path / "missing.json")
    assert _run(["rules", "check", good, invalid, broken, missing]) == 2
    err = capsys.readouterr().err
    assert broken in err
    assert f"{missing}: no such file" in err


def test_check_honours_profile_and_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "wild.json", {"a": [{"wildcard": "x*"}]})
    assert _run(["rules", "check", path]) == 0
    assert _run(["rules", "check", "--profile", "lambda", path]) == 1
    assert _run(["rules", "check", "--max-size", "10", path]) == 1
    assert "Lambda" in capsys.readouterr().out


def test_test_inline_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["rules", "test", '{"a": [{"prefix": "x"}]}', '{"a": "xyz"}']) == 0
    assert capsys.readouterr().out == "match\n"
    assert _run(["rules", "test", '{"a": [{"prefix": "x"}]}', '{"a": "abc"}']) == 1
    assert capsys.readouterr().out == "no match\n"


def test_test_files_and_number_spellings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pattern = _write(tmp_path, "p.json", '{"n": [0.30000000000000001]}')
    event = _write(tmp_path, "e.json", '{"n": 0.30000000000000001}')
    assert _run(["rules", "test", pattern, event]) == 0
    assert _run(["rules", "test", pattern, '{"n": 0.3}']) == 1
    assert capsys.readouterr().out == "match\nno match\n"


@pytest.mark.parametrize(
    ("pattern", "event", "culprit"),
    [
        ('{"a": []}', '{"a": 1}', "invalid pattern"),
        ("{bad", '{"a": 1}', "pattern"),
        ('{"a": [1]}', "{bad", "event"),
        ('{"a": [1]}', "[1]", "not a JSON object"),
        ("missing-file.json", '{"a": 1}', "missing-file.json"),
    ],
)
def test_test_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], pattern: str, event: str, culprit: str
) -> None:
    assert _run(["rules", "test", pattern, event]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert culprit in captured.err


def test_rules_without_a_subcommand_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as caught:
        _run(["rules"])
    assert caught.value.code == 2


def test_module_runs_as_a_process(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.json", {"a": [1]})
    done = subprocess.run(
        [sys.executable, "-m", "eventbus.routing.cli", "rules", "test", path, '{"a": 1.0}'],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert (done.returncode, done.stdout) == (0, "match\n")
