"""Spec §4: prefix, suffix, equals-ignore-case and wildcard."""

from __future__ import annotations

import pytest
from routing_helpers import Decide

from eventbus.routing import InvalidPatternError, compile_pattern


def test_r4_1_prefix(matches: Decide) -> None:
    assert matches({"a": [{"prefix": "us-"}]}, {"a": "us-east-1"})
    assert matches({"a": [{"prefix": "us-"}]}, {"a": "us-"})
    assert not matches({"a": [{"prefix": "us-"}]}, {"a": "US-east-1"})
    assert not matches({"a": [{"prefix": "us-"}]}, {"a": "eu-us-"})


def test_r4_1_empty_prefix_matches_every_string(matches: Decide) -> None:
    assert matches({"a": [{"prefix": ""}]}, {"a": ""})
    assert matches({"a": [{"prefix": ""}]}, {"a": "anything"})
    assert not matches({"a": [{"prefix": ""}]}, {"a": 5})


def test_r4_1_string_operators_ignore_non_strings(matches: Decide) -> None:
    for operator in ({"prefix": "1"}, {"suffix": "1"}, {"equals-ignore-case": "1"}, {"wildcard": "*"}):
        for value in (1, 1.0, True, None):
            assert not matches({"a": [operator]}, {"a": value}), (operator, value)


@pytest.mark.parametrize("argument", [5, None, ["x"], {"exists": True}, {"equals-ignore-case": 5}, {}])
def test_r4_1_prefix_value_must_be_a_string(argument: object) -> None:
    with pytest.raises(InvalidPatternError):
        compile_pattern({"a": [{"prefix": argument}]})


def test_r4_2_prefix_ignoring_case(matches: Decide) -> None:
    pattern = {"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}
    assert matches(pattern, {"service": "eventbridge"})
    assert matches(pattern, {"service": "EVENTBRIDGE"})
    assert not matches(pattern, {"service": "event-bridge"})
    with pytest.raises(InvalidPatternError):
        compile_pattern({"a": [{"prefix": {"equals-ignore-case": "x", "other": 1}}]})


def test_r4_3_suffix(matches: Decide) -> None:
    assert matches({"f": [{"suffix": ".png"}]}, {"f": "image.png"})
    assert not matches({"f": [{"suffix": ".png"}]}, {"f": "image.PNG"})
    assert matches({"f": [{"suffix": ""}]}, {"f": ""})
    assert matches({"f": [{"suffix": ""}]}, {"f": "x"})


def test_r4_4_suffix_ignoring_case(matches: Decide) -> None:
    pattern = {"service": [{"suffix": {"equals-ignore-case": "tBridge"}}]}
    assert matches(pattern, {"service": "EventBRIDGE"})
    assert not matches(pattern, {"service": "EventBridges"})


def test_r4_5_equals_ignore_case(matches: Decide) -> None:
    assert matches({"n": [{"equals-ignore-case": "alice"}]}, {"n": "ALICE"})
    assert matches({"n": [{"equals-ignore-case": "alice"}]}, {"n": "aLiCe"})
    assert not matches({"n": [{"equals-ignore-case": "alice"}]}, {"n": "alicee"})
    assert matches({"n": [{"equals-ignore-case": ""}]}, {"n": ""})
    assert not matches({"n": [{"equals-ignore-case": ""}]}, {"n": "a"})


@pytest.mark.parametrize(
    ("pattern", "event"), [("ÉTÉ", "été"), ("αβγ", "ΑΒΓ"), ("привет", "ПРИВЕТ"), ("ß", "SS"), ("ß", "ß")]
)
def test_r4_5_case_rule_covers_other_scripts(matches: Decide, pattern: str, event: str) -> None:
    assert matches({"n": [{"equals-ignore-case": pattern}]}, {"n": event})


def test_r4_5_no_full_case_folding(matches: Decide) -> None:
    assert not matches({"n": [{"equals-ignore-case": "STRASSE"}]}, {"n": "straße"})
    assert not matches({"n": [{"equals-ignore-case": "SS"}]}, {"n": "ß"})


def test_r4_5_characters_beyond_the_bmp_match_only_themselves(matches: Decide) -> None:
    assert matches({"n": [{"equals-ignore-case": "a\U0001f600"}]}, {"n": "A\U0001f600"})
    assert not matches({"n": [{"equals-ignore-case": "a\U0001f600"}]}, {"n": "A??"})
    deseret_capital, deseret_small = "\U00010400", "\U00010428"
    assert not matches({"n": [{"equals-ignore-case": deseret_capital}]}, {"n": deseret_small})


def test_r4_5_prefix_and_suffix_ignoring_case_with_length_changing_letters(matches: Decide) -> None:
    assert matches({"n": [{"prefix": {"equals-ignore-case": "straß"}}]}, {"n": "STRASSE"})
    assert matches({"n": [{"suffix": {"equals-ignore-case": "ß"}}]}, {"n": "GROSS"})
    assert matches({"n": [{"prefix": {"equals-ignore-case": "İx"}}]}, {"n": "i\u0307xyz"})


def test_r4_6_wildcard_star_matches_any_run(matches: Decide) -> None:
    pattern = {"f": [{"wildcard": "dir/*.png"}]}
    assert matches(pattern, {"f": "dir/a.png"})
    assert matches(pattern, {"f": "dir/.png"})
    assert matches(pattern, {"f": "dir/sub/a.png"})
    assert not matches(pattern, {"f": "dir/a.jpg"})
    assert not matches(pattern, {"f": "xdir/a.png"})


def test_r4_6_wildcard_other_characters_are_literal(matches: Decide) -> None:
    assert matches({"f": [{"wildcard": "a?.[b]*"}]}, {"f": "a?.[b]c"})
    assert not matches({"f": [{"wildcard": "a?.[b]*"}]}, {"f": "ab.[b]c"})


def test_r4_6_wildcard_several_stars(matches: Decide) -> None:
    pattern = {"f": [{"wildcard": "*a*b*"}]}
    assert matches(pattern, {"f": "ab"})
    assert matches(pattern, {"f": "xxaxxbxx"})
    assert not matches(pattern, {"f": "ba"})
    assert matches({"f": [{"wildcard": "a*a"}]}, {"f": "aa"})
    assert not matches({"f": [{"wildcard": "a*a"}]}, {"f": "a"})
    assert matches({"f": [{"wildcard": "*"}]}, {"f": ""})


def test_r4_6_wildcard_escapes(matches: Decide) -> None:
    assert matches({"f": [{"wildcard": "a\\*b"}]}, {"f": "a*b"})
    assert not matches({"f": [{"wildcard": "a\\*b"}]}, {"f": "axb"})
    assert matches({"f": [{"wildcard": "a\\\\b"}]}, {"f": "a\\b"})
    assert matches({"f": [{"wildcard": "a\\**"}]}, {"f": "a*bc"})
    assert not matches({"f": [{"wildcard": "a\\**"}]}, {"f": "abc"})


@pytest.mark.parametrize("wildcard", ["a\\b", "a\\", "\\", "a**b", "**", "a\\\\**"])
def test_r4_6_invalid_wildcards(wildcard: str) -> None:
    with pytest.raises(InvalidPatternError):
        compile_pattern({"f": [{"wildcard": wildcard}]})


def test_r4_6_wildcard_without_star_is_equality(matches: Decide) -> None:
    assert matches({"f": [{"wildcard": "abc"}]}, {"f": "abc"})
    assert not matches({"f": [{"wildcard": "abc"}]}, {"f": "abcd"})
    assert matches({"f": [{"wildcard": ""}]}, {"f": ""})
    assert not matches({"f": [{"wildcard": ""}]}, {"f": "a"})
