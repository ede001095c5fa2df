"""Every case of shared/conformance/expected.json (outcomes computed by running event-ruler 2.0.1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from routing_helpers import decide, find_shared_dir

from eventbus.routing import InvalidPatternError, Router, compile_pattern

SHARED = find_shared_dir()
NOT_FOUND = "shared/conformance not found beside the repository; set EVENTBUS_SHARED_DIR to the shared/ folder"
pytestmark = pytest.mark.skipif(SHARED is None, reason=NOT_FOUND)


def _conformance() -> Path:
    assert SHARED is not None
    return Path(SHARED) / "conformance"


def _expected() -> dict[str, Any]:
    if SHARED is None:
        return {"expected": [], "array_rules": {}, "valid_rule_files": [], "invalid_rule_files": []}
    result: dict[str, Any] = json.loads((_conformance() / "expected.json").read_text())
    return result


EXPECTED = _expected()


def _test_data(name: str) -> Path:
    return _conformance() / "event-ruler-data" / "test-data" / name


def _array_events() -> list[Path]:
    if SHARED is None:
        return []
    folder = _conformance() / "event-ruler-data" / "test-data"
    return [*sorted(folder.glob("arrayEvent*.json")), folder / "bigEvent.json"]


@pytest.mark.parametrize("case", EXPECTED["expected"], ids=lambda c: f"{c['index']}-{c['name']}")
def test_correctness_case(case: dict[str, Any]) -> None:
    cases = json.loads((_conformance() / EXPECTED["file"]).read_text())
    triple = cases[case["index"]]
    assert triple["name"] == case["name"]
    assert decide(triple["rule"], triple["event"]) is case["match"]


@pytest.mark.parametrize("rule_file", sorted(EXPECTED["array_rules"]))
def test_array_rule_matches_exactly_its_events(rule_file: str) -> None:
    text = _test_data(rule_file).read_text()
    pattern = compile_pattern(text)
    for event_file in _array_events():
        raw = event_file.read_bytes()
        want = event_file.name in EXPECTED["array_rules"][rule_file]
        assert pattern.matches_json(raw) is want, event_file.name
        assert decide(pattern, json.loads(raw)) is want, event_file.name


def test_array_rules_routed_together() -> None:
    router: Router[str] = Router()
    for rule_file in sorted(EXPECTED["array_rules"]):
        router.add(_test_data(rule_file).read_text(), rule_file)
    for event_file in _array_events():
        want = sorted(r for r, events in EXPECTED["array_rules"].items() if event_file.name in events)
        assert sorted(router.match_json(event_file.read_bytes())) == want, event_file.name


@pytest.mark.parametrize("rule_file", EXPECTED["valid_rule_files"])
def test_valid_rule_file(rule_file: str) -> None:
    patterns = json.loads(_test_data(rule_file).read_text())
    assert patterns
    for pattern in patterns:
        compile_pattern(pattern)
        compile_pattern(json.dumps(pattern))


@pytest.mark.parametrize(
    "rule_file", [*EXPECTED["invalid_rule_files"], *EXPECTED.get("rejected_by_strict_compiler", [])]
)
def test_invalid_rule_file(rule_file: str) -> None:
    patterns = json.loads(_test_data(rule_file).read_text())
    assert patterns
    for pattern in patterns:
        with pytest.raises(InvalidPatternError):
            compile_pattern(pattern)
        with pytest.raises(InvalidPatternError):
            compile_pattern(json.dumps(pattern))
