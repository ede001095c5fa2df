"""Spec audit: the boundaries of each rule of shared/specs/event-patterns.md, case by case.

Every matching case goes through :func:`routing_helpers.decide` (``Pattern.matches``, the pattern's generated
function, ``Router.match`` and both of the router's generated functions, and ``matches_json``/``match_json`` on
the event's JSON text), so a case fails if any entry point disagrees with the spec or with another. Cases whose
numbers must keep their spelling go through :func:`decide_raw`, which parses the raw event the way
``matches_json`` does and then asks every entry point as well. Invalid patterns go through :func:`refuse`, which
checks the dict form, the JSON text form and ``Router.add``, and the path the error names.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from routing_helpers import decide

from eventbus.routing import InvalidPatternError, Pattern, Router, compile_pattern
from eventbus.routing.parse import loads_event
from eventbus.routing.pattern import SPECIALISE_AFTER

Case = tuple[Any, Any, bool]


def decide_raw(pattern: dict[str, Any] | str, raw: str) -> bool:
    """Whether ``pattern`` matches the raw JSON event ``raw``, asked of every entry point (R3.3 spellings kept)."""
    compiled = compile_pattern(pattern)
    by_json = compiled.matches_json(raw)
    assert decide(compiled, loads_event(raw)) is by_json
    router: Router[str] = Router()
    router.add(compiled, "hit")
    # Past SPECIALISE_AFTER calls match_json runs the router's generated function: it must agree throughout.
    for _ in range(SPECIALISE_AFTER + 1):
        assert (router.match_json(raw) == ["hit"]) is by_json
    assert router._route is not None
    return by_json


def refuse(pattern: dict[str, Any] | str, path: str, problem: str = "", **options: Any) -> InvalidPatternError:
    """Assert that ``pattern`` is invalid at ``path`` (dict, text and router alike); return the error."""
    forms: list[dict[str, Any] | str] = [pattern]
    if isinstance(pattern, dict):
        forms.append(json.dumps(pattern))
    errors = []
    for form in forms:
        with pytest.raises(InvalidPatternError) as caught:
            compile_pattern(form, **options)
        errors.append(caught.value)
        with pytest.raises(InvalidPatternError):
            Router[str](**options).add(form, "t")
    for error in errors:
        assert error.path == path, f"{error} (wanted the error at {path})"
        assert problem in error.problem, f"{error} (wanted {problem!r} in it)"
    assert len({str(e) for e in errors}) == 1, "dict and text forms give different errors"
    return errors[0]


def accept(pattern: dict[str, Any] | str, **options: Any) -> Pattern:
    compiled = compile_pattern(pattern, **options)
    Router[str](**options).add(pattern, "t")
    return compiled


# -- R3.3 numbers compare by value; unrepresentable ones by text ------------------------------------------

R3_3_WIDE_INTEGERS: list[Case] = [
    # 2**60 is exactly a double, but the double's shortest decimal is another number: not representable.
    ('{"a": [1.152921504606847e18]}', {"a": 2**60}, False),
    ('{"a": [1152921504606846976]}', {"a": 2**60}, True),
    # 10**23 is representable (its double prints as 1e23) although the double is not exactly 10**23.
    ('{"a": [1e23]}', {"a": 10**23}, True),
    ('{"a": [100000000000000000000000]}', {"a": 1e23}, True),
    ('{"a": [1e20]}', {"a": 10**20}, True),
    ('{"a": [9007199254740992]}', {"a": 2**53}, True),
    ('{"a": [9007199254740992]}', {"a": 2**53 + 1}, False),
    ('{"a": [9007199254740994]}', {"a": 2**53 + 2}, True),
    ('{"a": [-9007199254740994]}', {"a": -(2**53) - 2}, True),
    ('{"a": [-1.152921504606847e18]}', {"a": -(2**60)}, False),
]


@pytest.mark.parametrize(("pattern", "event", "expected"), R3_3_WIDE_INTEGERS)
def test_r3_3_wide_integers_against_doubles(pattern: str, event: dict[str, Any], expected: bool) -> None:
    assert decide(pattern, event) is expected


@pytest.mark.parametrize(
    ("pattern", "raw", "expected"),
    [
        ('{"a": [1.152921504606847e18]}', '{"a": 1152921504606846976}', False),
        ('{"a": [1152921504606846976]}', '{"a": 1152921504606846976}', True),
        ('{"a": [1152921504606846976]}', '{"a": 1.152921504606846976e18}', False),
        ('{"a": [1e23]}', '{"a": 100000000000000000000000}', True),
        ('{"a": [12345678901234567891]}', '{"a": 12345678901234567891}', True),
        ('{"a": [12345678901234567891]}', '{"a": 12345678901234567891.0}', False),
    ],
)
def test_r3_3_wide_integers_in_raw_json(pattern: str, raw: str, expected: bool) -> None:
    assert decide_raw(pattern, raw) is expected


# -- R5 anything-but ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        '{"a": [{"anything-but": 1e400}]}',
        '{"a": [{"anything-but": [1e400]}]}',
        '{"a": [{"anything-but": [1, -1e400]}]}',
        '{"a": [{"anything-but": [0.30000000000000001]}]}',
        '{"a": [{"anything-but": 9007199254740993}]}',
        {"a": [{"anything-but": [10**30 + 1]}]},
    ],
)
def test_r5_1_anything_but_numbers_must_be_representable(pattern: dict[str, Any] | str) -> None:
    # Decision (README): event-ruler keeps anything-but numbers as doubles only and refuses the others
    # ("Cannot compare number"); only plain values compare unrepresentable numbers by text (R11 "not errors").
    refuse(pattern, "a", "not exactly representable")


@pytest.mark.parametrize(
    ("pattern", "raw", "expected"),
    [
        ('{"a": [{"anything-but": [0.3]}]}', '{"a": 0.30000000000000001}', True),
        ('{"a": [{"anything-but": [0.3]}]}', '{"a": 3e-1}', False),
        ('{"a": [{"anything-but": 300}]}', '{"a": 3.0E2}', False),
        ('{"a": [{"anything-but": [1e300]}]}', '{"a": 1E300}', False),
        ('{"a": [{"anything-but": 5}]}', '{"a": 9007199254740993}', True),
    ],
)
def test_r5_2_anything_but_numbers_exclude_by_value(pattern: str, raw: str, expected: bool) -> None:
    assert decide_raw(pattern, raw) is expected


# -- R1 the data model ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["[]", '[{"a": 1}]', '"a"', "1", "null", "true"])
def test_r1_1_only_json_objects_are_events(raw: str) -> None:
    pattern = compile_pattern({"a": [{"exists": False}]})
    assert pattern.matches_json(raw) is False
    router: Router[str] = Router()
    router.add(pattern, "hit")
    for _ in range(SPECIALISE_AFTER + 1):
        assert router.match_json(raw) == []
    assert pattern.matches_json("{}") is True


def test_r1_1_integers_of_any_width_are_json() -> None:
    # Thousands of digits: more than Python turns into text by default, and more than msgspec decodes.
    wide = "9" * 5000
    raw = f'{{"a": {wide}, "b": "x"}}'
    assert decide_raw({"b": ["x"], "a": [{"exists": True}]}, raw)
    assert not decide_raw({"a": [{"numeric": [">", 0]}]}, raw)
    assert decide_raw({"a": [{"anything-but": [1]}]}, raw)
    assert compile_pattern(f'{{"a": [{wide}]}}', max_size=10**5).matches_json(raw)
    assert not compile_pattern(f'{{"a": [{wide}0]}}', max_size=10**5).matches_json(raw)


R1_2_FLATTENING: list[Case] = [
    ({"a": ["x"]}, {"a": [[[[[["x"]]]]]]}, True),
    ({"a": ["x"]}, {"a": [[]] * 3 + [[["y"], ["x"]]]}, True),
    ({"a": {"b": ["x"]}}, {"a": [[[{"b": [["x"]]}]]]}, True),
    ({"a": ["x"]}, {"a": [{"x": "x"}]}, False),  # an object element gives a value to a.x, not to a
    ({"a": [{"exists": True}]}, {"a": [[], [[]], {}, [{}]]}, False),
    ({"a": [{"exists": False}]}, {"a": [[], [[]], {}, [{}]]}, True),
    ({"a": [None]}, {"a": [None]}, True),
    ({"a": [None]}, {"a": []}, False),
]


@pytest.mark.parametrize(("pattern", "event", "expected"), R1_2_FLATTENING)
def test_r1_2_arrays_flatten_to_values_of_their_path(pattern: Any, event: Any, expected: bool) -> None:
    assert decide(pattern, event) is expected


def test_r1_2_arrays_nested_deeper_than_the_fast_path_reads() -> None:
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    assert decide({"a": ["x"]}, {"a": deep})
    assert not decide({"a": ["y"]}, {"a": deep})


R1_3_DOTTED_PATHS: list[Case] = [
    ({"a.b": ["1"], "a": {"b": ["2"]}}, {"a": {"b": "2"}}, True),  # one path written twice: the last wins
    ({"a.b": ["1"], "a": {"b": ["2"]}}, {"a": {"b": "1"}}, False),
    ({"a": {"b": ["2"]}, "a.b": ["1"]}, {"a.b": "1"}, True),
    ({"a": {"b.c": ["1"]}}, {"a.b": {"c": "1"}}, True),
    ({"a": {"b": {"c": ["1"]}}}, {"a.b.c": "1"}, True),
    ({"a.b": ["1"]}, {"a": [{"b": "1"}]}, True),
    ({"a.b": ["1"]}, {"a.b": ["0", "1"]}, True),
    ({"a": {"b": ["1"]}}, {"a": {"b": "0"}, "a.b": "1"}, True),  # both spellings give values to one path
    ({"a": {"b": ["1"], "c": ["2"]}}, {"a.b": "1", "a": {"c": "2"}}, True),
    ({"a": {"": ["1"]}}, {"a.": "1"}, True),
    ({"": {"a": ["1"]}}, {".a": "1"}, True),
    ({"a": {"b": [{"exists": False}]}}, {"a.b": None}, False),
    ({"a": {"b": [{"exists": False}]}}, {"a.b": {}}, True),
]


@pytest.mark.parametrize(("pattern", "event", "expected"), R1_3_DOTTED_PATHS)
def test_r1_3_keys_are_joined_with_dots(pattern: Any, event: Any, expected: bool) -> None:
    assert decide(pattern, event) is expected


@pytest.mark.parametrize(
    ("pattern", "raw", "expected"),
    [
        ('{"a": ["\\u00e9"]}', '{"a": "\u00e9"}', True),
        ('{"a": ["\u00e9"]}', '{"a": "\\u00e9"}', True),
        ('{"a": ["\u00e9"]}', '{"a": "e\\u0301"}', False),
        ('{"a": ["\\ud83d\\ude00"]}', '{"a": "\U0001f600"}', True),
        ('{"a": ["a\\"b"]}', '{"a": "a\\u0022b"}', True),
        ('{"a": ["a\\/b"]}', '{"a": "a/b"}', True),
        ('{"a": ["\\u0000"]}', '{"a": "\\u0000"}', True),
        ('{"a": ["\\u0000"]}', '{"a": ""}', False),
        ('{"a": ["{\\"b\\": 1}"]}', '{"a": {"b": 1}}', False),
        ('{"a": {"b": [1]}}', '{"a": "{\\"b\\": 1}"}', False),
        ('{"a": ["A"]}', '{"a": "a"}', False),
        ('{"a": ["a"]}', '{"a": " a"}', False),
    ],
)
def test_r1_4_strings_compare_after_unescaping(pattern: str, raw: str, expected: bool) -> None:
    assert decide_raw(pattern, raw) is expected


# -- R2 pattern structure ------------------------------------------------------------------------------------


R2_CORE: list[Case] = [
    # AND over paths, OR over matchers, any value: every mix of the three.
    ({"a": ["1", {"prefix": "x"}], "b": [{"numeric": [">", 0]}]}, {"a": ["0", "xy"], "b": [-1, 1]}, True),
    ({"a": ["1", {"prefix": "x"}], "b": [{"numeric": [">", 0]}]}, {"a": ["0", "yx"], "b": [-1, 1]}, False),
    ({"a": ["1", {"prefix": "x"}], "b": [{"numeric": [">", 0]}]}, {"a": "1", "b": [-1, 0]}, False),
    ({"a": [{"anything-but": "x"}, "x"]}, {"a": "x"}, True),
    ({"a": [{"anything-but": "x"}]}, {}, False),
    ({"a": [{"anything-but": {"prefix": "x"}}]}, {"b": "y"}, False),
    ({"a": {"b": ["x"]}}, {"a": ["x"]}, False),  # the pattern expects an object, the event has scalars
    ({"a": ["x"]}, {"a": {"b": "x"}}, False),  # and the other way round
    ({"a": {"b": [{"anything-but": "x"}]}}, {"a": "y"}, False),
    ({"a": {"b": ["x"]}}, {"a": {"b": "x", "c": {"d": [1]}}, "z": None}, True),
]


@pytest.mark.parametrize(("pattern", "event", "expected"), R2_CORE)
def test_r2_3_and_of_paths_or_of_matchers_any_value(pattern: Any, event: Any, expected: bool) -> None:
    assert decide(pattern, event) is expected


@pytest.mark.parametrize(
    ("text", "event", "expected"),
    [
        ('{"a": ["1"], "a": ["2"]}', {"a": "2"}, True),
        ('{"a": ["1"], "a": ["2"]}', {"a": "1"}, False),
        ('{"a": [{"prefix": "x"}], "a": [{"exists": false}]}', {}, True),
        ('{"a": [{"prefix": "x"}], "a": [{"exists": false}]}', {"a": "xy"}, False),
        ('{"d": {"a": ["1"]}, "d": {"b": ["2"]}}', {"d": {"b": "2"}}, True),  # decision: objects too
        ('{"d": {"a": ["1"], "a": ["2"]}}', {"d": {"a": "2"}}, True),
    ],
)
def test_r2_5_duplicate_keys_the_last_one_wins(text: str, event: dict[str, Any], expected: bool) -> None:
    assert decide(text, event) is expected


@pytest.mark.parametrize(
    ("pattern", "event", "expected"),
    [
        ({"a": [{"exactly": "x"}]}, {"a": "x"}, True),
        ({"a": [{"exactly": "x"}]}, {"a": "X"}, False),
        ({"a": [{"exactly": ""}]}, {"a": ""}, True),
        ({"a": [{"exactly": "5"}]}, {"a": 5}, False),
        ({"a": [{"exactly": "10.0.0.1"}]}, {"a": "10.0.0.1"}, True),
        ({"a": [{"exactly": "::1"}]}, {"a": "0::1"}, False),  # decision: no IP reading
    ],
)
def test_r2_2_exactly_means_the_plain_string(pattern: Any, event: Any, expected: bool) -> None:
    assert decide(pattern, event) is expected


@pytest.mark.parametrize("argument", [5, None, True, ["x"], {"prefix": "x"}])
def test_r2_2_exactly_takes_a_string(argument: object) -> None:
    refuse({"a": [{"exactly": argument}]}, "a")


@pytest.mark.parametrize(
    "name", ["Prefix", "SUFFIX", "Numeric", "NUMERIC", "EXISTS", "Exists", "CIDR", "Anything-But", "Wildcard",
             "Equals-Ignore-Case", "exact", "contains", "regex", "not-wildcard", "$or", "", " prefix", "prefix "]
)  # fmt: skip
def test_r2_2_operator_names_are_case_sensitive_and_closed(name: str) -> None:
    refuse({"d": {"a": [{name: "x"}]}}, "d.a", "unrecognized match type")


@pytest.mark.parametrize(
    ("pattern", "quoted"),
    [
        ({"a": [{"exists": None}]}, "not null"),
        ({"a": [{"exists": "true"}]}, 'not "true"'),
        ({"a": [{"numeric": [">", True]}]}, "not true"),
        ('{"a": [{"prefix": 5.50}]}', "not 5.50"),
        ({"a": [{"anything-but": [{"x": 1}]}]}, 'not {"x": 1}'),
        ({"a": [{"numeric": {"x": [1]}}]}, 'not {"x": [1]}'),
    ],
)
def test_r11_errors_quote_the_pattern_as_json(pattern: dict[str, Any] | str, quoted: str) -> None:
    refuse(pattern, "a", quoted)


# -- R4.6 wildcard syntax and R6.6 its complexity ------------------------------------------------------------


@pytest.mark.parametrize(
    ("wildcard", "message"),
    [
        # Positions are event-ruler's: UTF-8 byte offsets in the pattern written between quotes.
        ("a\\b", "Invalid escape character at pos 2"),
        ("\\", "Invalid escape character at pos 1"),
        ("ab\\", "Invalid escape character at pos 3"),
        ("\\\\\\", "Invalid escape character at pos 3"),
        ("\u00e9\\x", "Invalid escape character at pos 3"),
        ("**", "Consecutive wildcard characters at pos 1"),
        ("a**", "Consecutive wildcard characters at pos 2"),
        ("\\***", "Consecutive wildcard characters at pos 3"),
        ("\\\\**", "Consecutive wildcard characters at pos 3"),
        ("\u00e9**", "Consecutive wildcard characters at pos 3"),
        ("a*b**", "Consecutive wildcard characters at pos 4"),
    ],
)
def test_r4_6_wildcard_syntax_errors(wildcard: str, message: str) -> None:
    refuse({"d": {"f": [{"wildcard": wildcard}]}}, "d.f", message)
    refuse({"d": {"f": [{"anything-but": {"wildcard": ["ok*", wildcard]}}]}}, "d.f", message)


R4_6_WILDCARDS: list[Case] = [
    ({"f": [{"wildcard": "*"}]}, {"f": ""}, True),
    ({"f": [{"wildcard": "*"}]}, {"f": None}, False),
    ({"f": [{"wildcard": "*"}]}, {"f": []}, False),
    ({"f": [{"wildcard": "a*"}]}, {"f": "a"}, True),
    ({"f": [{"wildcard": "*a"}]}, {"f": "a"}, True),
    ({"f": [{"wildcard": "ab*ba"}]}, {"f": "aba"}, False),  # the two literal ends may not overlap
    ({"f": [{"wildcard": "ab*ba"}]}, {"f": "abba"}, True),
    ({"f": [{"wildcard": "a*b*c"}]}, {"f": "abcbc"}, True),
    ({"f": [{"wildcard": "a*b*c"}]}, {"f": "acb"}, False),
    ({"f": [{"wildcard": "*a*"}]}, {"f": "A"}, False),
    ({"f": [{"wildcard": "\\*"}]}, {"f": "*"}, True),
    ({"f": [{"wildcard": "\\*"}]}, {"f": "x"}, False),
    ({"f": [{"wildcard": "\\\\*"}]}, {"f": "\\xyz"}, True),
    ({"f": [{"wildcard": "\\\\*"}]}, {"f": "xyz"}, False),
    ({"f": [{"wildcard": "*\\**"}]}, {"f": "a*b"}, True),
    ({"f": [{"wildcard": "*\\**"}]}, {"f": "ab"}, False),
    ({"f": [{"wildcard": "*\u00e9*"}]}, {"f": "caf\u00e9!"}, True),
    ({"f": [{"wildcard": "a\nb*"}]}, {"f": "a\nbc"}, True),
    ({"f": [{"wildcard": "a?c"}]}, {"f": "abc"}, False),
    ({"f": [{"wildcard": "a.c"}]}, {"f": "abc"}, False),
    ({"f": [{"wildcard": "[a]*"}]}, {"f": "[a]x"}, True),
    ({"f": [{"wildcard": "*.png"}]}, {"f": ["a.jpg", "b.png"]}, True),
    ({"f": [{"wildcard": "10.0.0.*"}]}, {"f": "10.0.0.1"}, True),
    ({"f": [{"wildcard": "*"}, {"exists": False}]}, {}, True),
]


@pytest.mark.parametrize(("pattern", "event", "expected"), R4_6_WILDCARDS)
def test_r4_6_wildcard_matching(pattern: Any, event: Any, expected: bool) -> None:
    assert decide(pattern, event) is expected


TOO_COMPLEX = "too complex"


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        ({"r": [{"wildcard": "*:*:*:*:*:event-bus/*"}]}, "r"),
        ({"r": [{"wildcard": f"*{letter}*"} for letter in "abcdef"]}, "r"),
        # Sub-rules that agree on every earlier path share event-ruler's automaton for the next path, so the
        # wildcards of $or branches on one path are scored together (7 + 7 states here).
        ({"$or": [{"r": [{"wildcard": "*:*:*:*"}]}, {"r": [{"wildcard": "*:*:*:event-bus/*"}]}]}, "$or[1].r"),
        ({"a": ["1"], "$or": [{"r": [{"wildcard": "*:*:*:*"}]}, {"r": [{"wildcard": "*:*:*:x*"}]}]}, "$or[1].r"),
        (
            {"d": {"$or": [{"r": [{"wildcard": "*:*:*:*"}]}, {"r": [{"wildcard": "*:*:*:y*"}]}, {"x": ["1"]}]}},
            "d.$or[1].r",
        ),
    ],
)
def test_r6_6_too_complex_wildcards_are_refused(pattern: dict[str, Any], path: str) -> None:
    refuse(pattern, path, TOO_COMPLEX)


@pytest.mark.parametrize(
    "pattern",
    [
        {"r": [{"wildcard": "arn:aws:events:us-east-1:*:event-bus/*"}]},
        {"r": [{"wildcard": "/Users/*/dir/dir/dir/dir/dir/doc.txt"}]},
        {"r": [{"wildcard": "*:*:*:*"}, {"wildcard": "*:*:*:*"}]},  # one pattern written twice scores once
        {"r": [{"wildcard": "*:*:*:*"}], "s": [{"wildcard": "*:*:*:event-bus/*"}]},  # other paths: other automata
        # Branches that differ on an earlier path reach different automata for r.
        {"$or": [{"a": ["1"], "r": [{"wildcard": "*:*:*:*"}]}, {"b": ["1"], "r": [{"wildcard": "*:*:*:x*"}]}]},
        # event-ruler scores only wildcard patterns, not the anything-but wildcard ones.
        {"r": [{"anything-but": {"wildcard": "*:*:*:*:*:event-bus/*"}}]},
    ],
)
def test_r6_6_wildcards_within_the_limit(pattern: dict[str, Any]) -> None:
    accept(pattern)
