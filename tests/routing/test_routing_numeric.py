"""Spec §6: numeric matching, its grammar, operand representability, and wildcard complexity (R6.6)."""

from __future__ import annotations

import pytest
from routing_helpers import Decide

from eventbus.routing import InvalidPatternError, compile_pattern


@pytest.mark.parametrize(
    ("numeric", "inside", "outside"),
    [
        (["=", 5], [5, 5.0], [4.999, 6]),
        (["<", 5], [4.99, -1e9], [5, 6]),
        (["<=", 5], [5, -3], [5.0001]),
        ([">", 5], [5.01, 1e12], [5, 0]),
        ([">=", 5], [5, 7], [4.9]),
        ([">", 0, "<=", 5], [0.001, 5], [0, 5.001]),
        ([">=", 0, "<", 5], [0, 4.999], [5, -0.1]),
        ([">", -1, "<", 1], [-0.0, 0, 0.5], [-1, 1]),
    ],
)
def test_r6_1_operators_and_ranges(
    matches: Decide, numeric: list[object], inside: list[float], outside: list[float]
) -> None:
    pattern = {"n": [{"numeric": numeric}]}
    for value in inside:
        assert matches(pattern, {"n": value}), value
    for value in outside:
        assert not matches(pattern, {"n": value}), value


@pytest.mark.parametrize(
    "numeric",
    [
        [],
        "x",
        5,
        {"=": 5},
        ["!=", 5],
        ["==", 5],
        ["=", 5, "<", 6],
        ["<", 5, ">", 1],
        [">", 0, ">", 0],
        [">", 0, "<", 5, "<", 6],
        [">", 0, "<"],
        [">"],
        ["=", "5"],
        [">", 0, "<", "5"],
        [">", 5, "<", 5],
        [">=", 5, "<=", 5],
        [">", 6, "<", 5],
        [5, ">"],
        ["<=", 1, 2],
        ["=", True],
        ["=", None],
    ],
)
def test_r6_1_invalid_numeric_grammar(numeric: object) -> None:
    with pytest.raises(InvalidPatternError):
        compile_pattern({"n": [{"numeric": numeric}]})


def test_r6_1_bottom_must_be_less_than_top_message() -> None:
    with pytest.raises(InvalidPatternError) as caught:
        compile_pattern({"detail": {"amount": [{"numeric": [">", 10, "<", 10]}]}})
    assert str(caught.value) == "detail.amount: numeric range bottom must be less than top"
    assert caught.value.path == "detail.amount"


@pytest.mark.parametrize("operand", ["1e400", "-1e400", "0.30000000000000001", "9007199254740993"])
def test_r6_2_unrepresentable_operands_are_invalid(operand: str) -> None:
    with pytest.raises(InvalidPatternError, match="representable"):
        compile_pattern(f'{{"n": [{{"numeric": [">", {operand}]}}]}}')


def test_r6_2_representable_operands_in_any_spelling(matches: Decide) -> None:
    assert matches('{"n": [{"numeric": ["=", 3.018e2]}]}', {"n": 301.8})
    assert matches('{"n": [{"numeric": [">=", 1E6]}]}', {"n": 1000000})
    assert matches('{"n": [{"numeric": ["<", 1e300]}]}', {"n": 1e299})


def test_r6_3_only_json_numbers_qualify(matches: Decide) -> None:
    values: list[object] = ["5", True, False, None, [], {}]
    for value in values:
        assert not matches({"n": [{"numeric": [">", 0]}]}, {"n": value})


def test_r6_3_unrepresentable_event_numbers_never_satisfy_numeric() -> None:
    pattern = compile_pattern({"n": [{"numeric": [">", 0]}]})
    assert not pattern.matches_json('{"n": 0.30000000000000001}')
    assert pattern.matches_json('{"n": 0.3}')
    assert not pattern.matches({"n": 9007199254740993})
    assert pattern.matches({"n": 9007199254740992})


def test_r6_4_any_element_and_any_range(matches: Decide) -> None:
    pattern = {"n": [{"numeric": ["<", 0]}, {"numeric": [">", 10]}]}
    assert matches(pattern, {"n": [5, 11]})
    assert matches(pattern, {"n": -1})
    assert not matches(pattern, {"n": [0, 5, 10]})


def test_r6_5_full_double_range(matches: Decide) -> None:
    assert matches({"n": [{"numeric": [">", 5e9]}]}, {"n": 1e20})
    assert matches({"n": [{"numeric": ["<", -5e9]}]}, {"n": -1.5e300})
    assert matches({"n": [{"numeric": [">", 0.1234567, "<", 0.1234568]}]}, {"n": 0.12345675})


def test_r6_6_wildcard_complexity_limit() -> None:
    compile_pattern({"r": [{"wildcard": "arn:aws:events:us-east-1:*:event-bus/*"}]})
    compile_pattern({"r": [{"wildcard": "/Users/*/dir/dir/dir/dir/dir/doc.txt"}]})
    with pytest.raises(InvalidPatternError, match="too complex"):
        compile_pattern({"r": [{"wildcard": "*:*:*:*:*:event-bus/*"}]})
    with pytest.raises(InvalidPatternError, match="too complex"):
        compile_pattern({"r": [{"wildcard": "*a" * 20 + "*"}]})
