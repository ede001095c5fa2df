"""Options: the pattern size limit (R11 item 13) and the lambda profile (spec §12)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from eventbus.routing import InvalidPatternError, Router, compile_pattern


def _pattern_of_length(length: int) -> dict[str, Any]:
    pattern = {"a": ["x" * (length - len('{"a":[""]}'))]}
    assert len(json.dumps(pattern, separators=(",", ":"))) == length
    return pattern


def test_r11_13_default_limit_is_2048_characters() -> None:
    compile_pattern(_pattern_of_length(2048))
    with pytest.raises(InvalidPatternError, match="2048"):
        compile_pattern(_pattern_of_length(2049))


def test_r11_13_limit_is_configurable() -> None:
    compile_pattern(_pattern_of_length(4096), max_size=4096)
    with pytest.raises(InvalidPatternError):
        compile_pattern(_pattern_of_length(101), max_size=100)
    router: Router[str] = Router(max_size=100)
    with pytest.raises(InvalidPatternError):
        router.add(_pattern_of_length(101), "t")


def test_r11_13_whitespace_does_not_count() -> None:
    pattern = _pattern_of_length(2048)
    compile_pattern(json.dumps(pattern, indent=8))


def test_r11_13_number_literals_count_as_spelled() -> None:
    assert compile_pattern('{"a": [1.000]}', max_size=13)
    with pytest.raises(InvalidPatternError):
        compile_pattern('{"a": [1.000]}', max_size=12)


@pytest.mark.parametrize(
    "matcher",
    [
        {"wildcard": "a*"},
        {"cidr": "10.0.0.0/8"},
        {"anything-but": {"prefix": "a"}},
        {"anything-but": {"suffix": "a"}},
        {"anything-but": {"equals-ignore-case": "a"}},
        {"anything-but": {"wildcard": "a*"}},
        {"exactly": "a"},
    ],
)
def test_s12_lambda_profile_refuses_unsupported_operators(matcher: dict[str, Any]) -> None:
    compile_pattern({"a": [matcher]})
    with pytest.raises(InvalidPatternError, match="Lambda"):
        compile_pattern({"a": [matcher]}, profile="lambda")
    with pytest.raises(InvalidPatternError):
        Router[str](profile="lambda").add({"a": [matcher]}, "t")


@pytest.mark.parametrize(
    "matcher",
    [
        "x",
        None,
        5,
        {"prefix": "a"},
        {"prefix": {"equals-ignore-case": "a"}},
        {"suffix": "a"},
        {"suffix": {"equals-ignore-case": "a"}},
        {"equals-ignore-case": "a"},
        {"anything-but": "a"},
        {"anything-but": [1, 2]},
        {"numeric": [">", 0, "<=", 5]},
        {"exists": False},
    ],
)
def test_s12_lambda_profile_accepts_supported_operators(matcher: object) -> None:
    compile_pattern({"a": [matcher], "$or": [{"b": ["1"]}, {"c": ["2"]}]}, profile="lambda")


def test_s12_unknown_profile_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="profile"):
        compile_pattern({"a": ["x"]}, profile="pipes")


def test_r11_13_the_lambda_profile_takes_lambdas_limit_of_4096_characters() -> None:
    compile_pattern(_pattern_of_length(4096), profile="lambda")
    with pytest.raises(InvalidPatternError, match="over the limit of 4096"):
        compile_pattern(_pattern_of_length(4097), profile="lambda")
    router: Router[str] = Router(profile="lambda")
    router.add(_pattern_of_length(4096), "t")
    with pytest.raises(InvalidPatternError, match="over the limit of 2048"):
        compile_pattern(_pattern_of_length(2049), profile="eventbridge")
    with pytest.raises(InvalidPatternError, match="over the limit of 100"):
        compile_pattern(_pattern_of_length(101), profile="lambda", max_size=100)
