"""Spec §5: every form of anything-but, its semantics, and its invalid forms."""

from __future__ import annotations

from typing import Any

import pytest
from routing_helpers import Decide

from eventbus.routing import InvalidPatternError, compile_pattern


def test_r5_1_single_string_and_number_forms(matches: Decide) -> None:
    assert matches({"s": [{"anything-but": "initializing"}]}, {"s": "running"})
    assert not matches({"s": [{"anything-but": "initializing"}]}, {"s": "initializing"})
    assert matches({"n": [{"anything-but": 100}]}, {"n": 101})
    assert not matches({"n": [{"anything-but": 100}]}, {"n": 100.0})


def test_r5_1_list_forms(matches: Decide) -> None:
    assert not matches({"s": [{"anything-but": ["stopped", "overloaded"]}]}, {"s": "stopped"})
    assert matches({"s": [{"anything-but": ["stopped", "overloaded"]}]}, {"s": "running"})
    assert not matches({"n": [{"anything-but": [100, 200, 300]}]}, {"n": 200})
    assert matches({"n": [{"anything-but": [100, 200, 300]}]}, {"n": 999})


def test_r5_1_object_forms(matches: Decide) -> None:
    assert not matches({"r": [{"anything-but": {"prefix": "us-"}}]}, {"r": "us-east-1"})
    assert matches({"r": [{"anything-but": {"prefix": "us-"}}]}, {"r": "eu-west-1"})
    assert not matches({"r": [{"anything-but": {"prefix": ["us-", "eu-"]}}]}, {"r": "eu-west-1"})
    assert not matches({"f": [{"anything-but": {"suffix": ".png"}}]}, {"f": "a.png"})
    assert matches({"f": [{"anything-but": {"suffix": [".png", ".jpg"]}}]}, {"f": "a.gif"})
    assert not matches({"s": [{"anything-but": {"equals-ignore-case": "init"}}]}, {"s": "INIT"})
    assert not matches({"s": [{"anything-but": {"equals-ignore-case": ["a", "init"]}}]}, {"s": "Init"})
    assert matches({"s": [{"anything-but": {"equals-ignore-case": ["a", "init"]}}]}, {"s": "initx"})
    assert not matches({"p": [{"anything-but": {"wildcard": "*/lib/*"}}]}, {"p": "/usr/lib/x"})
    assert matches({"p": [{"anything-but": {"wildcard": ["*/lib/*", "*.txt"]}}]}, {"p": "/usr/bin/x"})


def test_r5_2_missing_or_empty_field_never_matches(matches: Decide) -> None:
    events: list[dict[str, Any]] = [{}, {"s": []}, {"s": {}}, {"s": {"x": "y"}}]
    for event in events:
        assert not matches({"s": [{"anything-but": "x"}]}, event)
        assert not matches({"s": [{"anything-but": {"prefix": "x"}}]}, event)
        assert not matches({"s": [{"anything-but": [1, 2]}]}, event)


def test_r5_2_other_types_are_never_excluded(matches: Decide) -> None:
    for value in (5, True, None):
        assert matches({"s": [{"anything-but": "x"}]}, {"s": value})
    assert matches({"n": [{"anything-but": [100]}]}, {"n": "100"})
    assert matches({"s": [{"anything-but": {"prefix": "init"}}]}, {"s": 12})
    assert matches({"s": [{"anything-but": {"wildcard": "*"}}]}, {"s": 12})
    assert matches({"s": [{"anything-but": {"equals-ignore-case": "12"}}]}, {"s": 12})


def test_r5_2_arrays_match_when_some_element_is_not_excluded(matches: Decide) -> None:
    pattern = {"s": [{"anything-but": "initializing"}]}
    assert matches(pattern, {"s": ["initializing", "running"]})
    assert not matches(pattern, {"s": ["initializing", "initializing"]})


def test_r5_2_wildcard_forms_at_the_extremes(matches: Decide) -> None:
    assert not matches({"s": [{"anything-but": {"wildcard": "*"}}]}, {"s": ""})
    assert not matches({"s": [{"anything-but": {"wildcard": "*"}}]}, {"s": "abc"})
    assert not matches({"s": [{"anything-but": {"wildcard": ""}}]}, {"s": ""})
    assert matches({"s": [{"anything-but": {"wildcard": ""}}]}, {"s": "a"})


def test_r5_2_numbers_excluded_by_value(matches: Decide) -> None:
    assert not matches('{"n": [{"anything-but": [3.0e2]}]}', {"n": 300})
    assert not matches('{"n": [{"anything-but": 0}]}', {"n": -0.0})


@pytest.mark.parametrize(
    "argument",
    [
        None,
        True,
        False,
        [],
        ["a", 1],
        [None],
        [True],
        [{"prefix": "a"}],
        [["a"]],
        {},
        {"numeric": [">", 1]},
        {"exists": True},
        {"cidr": "10.0.0.0/8"},
        {"anything-but": "x"},
        {"prefix": "a", "suffix": "b"},
        {"prefix": ""},
        {"suffix": ""},
        {"prefix": ["a", ""]},
        {"prefix": []},
        {"prefix": 5},
        {"suffix": [5]},
        {"wildcard": 5},
        {"wildcard": "a**"},
        {"wildcard": "a\\b"},
        {"equals-ignore-case": 5},
        {"equals-ignore-case": [None]},
        {"prefix": {"equals-ignore-case": "x"}},
    ],
)
def test_r5_3_invalid_anything_but(argument: object) -> None:
    with pytest.raises(InvalidPatternError):
        compile_pattern({"s": [{"anything-but": argument}]})


def test_r5_3_valid_edge_forms() -> None:
    compile_pattern({"s": [{"anything-but": {"wildcard": ""}}]})
    compile_pattern({"s": [{"anything-but": {"equals-ignore-case": ""}}]})
    compile_pattern({"s": [{"anything-but": ""}]})
    compile_pattern('{"s": [{"anything-but": [1e300, 2]}]}')
    with pytest.raises(InvalidPatternError, match="representable"):
        compile_pattern('{"s": [{"anything-but": [1e400, 2]}]}')
