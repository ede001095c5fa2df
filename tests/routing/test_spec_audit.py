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
IGNORE_CASE = "equals-ignore-case"


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


# -- R1 the data model --------------------------------------------------------------------------------------------


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


# -- R2 pattern structure and core semantics ----------------------------------------------------------------------


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


# -- R3 plain values, null, numbers, IP-shaped strings ------------------------------------------------------------


R3_PLAIN: list[Case] = [
    ({"a": [""]}, {"a": ""}, True),
    ({"a": [""]}, {"a": None}, False),
    ({"a": [""]}, {"a": []}, False),
    ({"a": [""]}, {"a": [""]}, True),
    ({"a": [None]}, {"a": "null"}, False),
    ({"a": [None]}, {"a": {}}, False),
    ({"a": [None]}, {"a": [None, 1]}, True),
    ({"a": [None]}, {"a": {"b": None}}, False),
    ({"a": [True]}, {"a": "true"}, False),
    ({"a": [True]}, {"a": 1}, False),
    ({"a": [True]}, {"a": 1.0}, False),
    ({"a": [False]}, {"a": 0}, False),
    ({"a": [False]}, {"a": ""}, False),
    ({"a": [False]}, {"a": None}, False),
    ({"a": [1]}, {"a": True}, False),
    ({"a": [0]}, {"a": False}, False),
    ({"a": ["true"]}, {"a": True}, False),
    ({"a": ["null"]}, {"a": None}, False),
    ({"a": ["5"]}, {"a": 5}, False),
    ({"a": [5]}, {"a": "5"}, False),
    ({"a": ["x", 5, True, None]}, {"a": None}, True),
    ({"a": ["x", 5, True, None]}, {"a": 5.0}, True),
    ({"a": ["x", 5, True, None]}, {"a": False}, False),
]


@pytest.mark.parametrize(("pattern", "event", "expected"), R3_PLAIN)
def test_r3_1_r3_2_plain_values_match_only_their_own_type(pattern: Any, event: Any, expected: bool) -> None:
    assert decide(pattern, event) is expected


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


R3_3_SPELLINGS = [
    ("300", "300.0", True),
    ("300", "3.0e2", True),
    ("300", "3E2", True),
    ("300", "3e+2", True),
    ("300", "30000e-2", True),
    ("0", "-0", True),
    ("0", "-0.0", True),
    ("-0", "0e10", True),
    ("0.5", "5e-1", True),
    ("0.5", "0.50000", True),
    ("-1", "-1.0", True),
    ("1", "1.0000000000000001", False),  # not representable: compared by text only
    ("1.0000000000000001", "1.0000000000000001", True),
    ("1.0000000000000001", "1.00000000000000010", False),
    ("9007199254740993", "9007199254740992", False),
    ("9007199254740992", "9007199254740993", False),
    ("9007199254740993", "9007199254740993", True),
    ("12345678901234567891", "12345678901234567891", True),
    ("12345678901234567891", "12345678901234567890", False),
    ("1e400", "1e400", True),
    ("1e400", "1E400", False),
    ("1e400", "1e+400", False),
    ("-1e400", "-1e400", True),
    ("1e-400", "0", False),
    ("5e-324", "4.9406564584124654e-324", False),  # the exact double's decimal is not its shortest one
    ("5e-324", "5e-324", True),
    ("1.7976931348623157e308", "1.7976931348623157E+308", True),
    ("0.1", "0.1000000000000000055511151231257827", False),
    ("100", "100.000000000000000000001", False),
]


@pytest.mark.parametrize(("pattern_number", "event_number", "expected"), R3_3_SPELLINGS)
def test_r3_3_numbers_equal_by_value_when_representable(pattern_number: str, event_number: str, expected: bool) -> None:
    assert decide_raw(f'{{"a": [{pattern_number}]}}', f'{{"a": {event_number}}}') is expected
    assert decide_raw(f'{{"a": [{pattern_number}]}}', f'{{"a": ["x", {event_number}]}}') is expected
    # Equality is symmetric.
    assert decide_raw(f'{{"a": [{event_number}]}}', f'{{"a": {pattern_number}}}') is expected


@pytest.mark.parametrize("number", ["0", "300", "1e400", "9007199254740993", "0.30000000000000001", "-2.5"])
def test_r3_3_a_number_never_equals_a_string_boolean_or_null(number: str) -> None:
    for other in (f'"{number}"', "true", "false", "null", "[]", "{}"):
        assert not decide_raw(f'{{"a": [{number}]}}', f'{{"a": {other}}}'), other
    assert not decide_raw(f'{{"a": ["{number}"]}}', f'{{"a": {number}}}')


R3_4_IP_STRINGS: list[tuple[str, str, bool]] = [
    ("::1", "0:0:0:0:0:0:0:1", True),
    ("::1", "0000:0000:0000:0000:0000:0000:0000:0001", True),
    ("::1", "::0001", True),
    ("0:0::1", "::1", True),
    ("::", "0:0:0:0:0:0:0:0", True),
    ("2001:DB8::FF", "2001:db8:0:0:0:0:0:ff", True),
    ("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0", True),
    ("::1", "::2", False),
    ("::1", "::1 ", False),
    ("::1", "[::1]", False),
    ("10.0.0.1", "10.0.0.1", True),
    ("10.0.0.1", "10.0.0.2", False),
    ("10.0.0.1", "010.0.0.1", False),  # decision: leading zeros make no address
    ("10.0.0.1", "10.0.0.01", False),
    ("010.0.0.1", "010.0.0.1", True),  # identical spellings match in any reading
    ("010.0.0.1", "10.0.0.1", False),
    ("1.2.3.256", "1.2.3.256", True),
    ("1.2.3.256", "1.2.4.0", False),
    ("10.0.0.1", "::ffff:10.0.0.1", False),
    ("10.0.0.1", "::ffff:a00:1", False),  # decision: IPv6 spelling, IPv6 family
    ("::ffff:a00:1", "10.0.0.1", False),
    ("0.0.0.0", "::", False),
    ("1::2::3", "1::2::3", True),
    ("1::2::3", "1:0:2::3", False),
    ("abc:def", "ABC:DEF", False),  # not an address (too few groups): a plain string
    ("a:b:c:d:e:f:1:2", "A:B:C:D:E:F:1:2", True),
    ("dead::beef", "DEAD:0::BEEF", True),
]


@pytest.mark.parametrize(("pattern_ip", "event_ip", "expected"), R3_4_IP_STRINGS)
def test_r3_4_ip_shaped_strings_match_the_address(pattern_ip: str, event_ip: str, expected: bool) -> None:
    assert decide({"ip": [pattern_ip]}, {"ip": event_ip}) is expected
    assert decide({"ip": ["other", pattern_ip]}, {"ip": ["x", event_ip]}) is expected


def test_r3_4_only_plain_strings_read_addresses() -> None:
    # anything-but, prefix and exactly compare the text as written.
    assert decide({"ip": [{"anything-but": "::1"}]}, {"ip": "0::1"})
    assert decide({"ip": [{"anything-but": ["::1"]}]}, {"ip": "0::1"})
    assert not decide({"ip": [{"anything-but": "::1"}]}, {"ip": "::1"})
    assert not decide({"ip": [{"prefix": "::1"}]}, {"ip": "0::1"})
    assert not decide({"ip": [{"equals-ignore-case": "::a"}]}, {"ip": "0::A"})
    assert not decide({"ip": ["10.0.0.1"]}, {"ip": 10})


# -- R4 string operators ------------------------------------------------------------------------------------------


R4_AFFIXES: list[Case] = [
    ({"a": [{"prefix": "ab"}]}, {"a": "ab"}, True),
    ({"a": [{"prefix": "ab"}]}, {"a": "a"}, False),
    ({"a": [{"prefix": "ab"}]}, {"a": "Ab"}, False),
    ({"a": [{"prefix": "ab"}]}, {"a": ["x", "abc"]}, True),
    ({"a": [{"prefix": ""}]}, {"a": ""}, True),
    ({"a": [{"prefix": ""}]}, {"a": None}, False),
    ({"a": [{"prefix": ""}]}, {"a": []}, False),
    ({"a": [{"prefix": ""}]}, {}, False),
    ({"a": [{"prefix": "1"}]}, {"a": 10}, False),
    ({"a": [{"prefix": "t"}]}, {"a": True}, False),
    ({"a": [{"prefix": "n"}]}, {"a": None}, False),
    ({"a": [{"prefix": "\U0001f600"}]}, {"a": "\U0001f600x"}, True),
    ({"a": [{"prefix": "\u00e9"}]}, {"a": "e\u0301"}, False),
    ({"a": [{"suffix": "ab"}]}, {"a": "ab"}, True),
    ({"a": [{"suffix": "ab"}]}, {"a": "b"}, False),
    ({"a": [{"suffix": "ab"}]}, {"a": "xAB"}, False),
    ({"a": [{"suffix": ""}]}, {"a": ""}, True),
    ({"a": [{"suffix": ""}]}, {"a": 0}, False),
    ({"a": [{"suffix": "0"}]}, {"a": 10}, False),
    ({"a": [{"prefix": "a"}, {"suffix": "z"}]}, {"a": "xyz"}, True),
    ({"a": [{"prefix": "a"}, {"suffix": "z"}]}, {"a": "xyq"}, False),
]


@pytest.mark.parametrize(("pattern", "event", "expected"), R4_AFFIXES)
def test_r4_1_r4_3_prefix_and_suffix(pattern: Any, event: Any, expected: bool) -> None:
    assert decide(pattern, event) is expected


@pytest.mark.parametrize("operator", ["prefix", "suffix"])
@pytest.mark.parametrize(
    "argument",
    [5, None, True, ["x"], [], {}, {IGNORE_CASE: 5}, {IGNORE_CASE: None}, {IGNORE_CASE: ["x"]},
     {IGNORE_CASE: "x", "other": "y"}, {"EQUALS-IGNORE-CASE": "x"}, {"prefix": "x"}, {"suffix": "x"},
     {"exactly": "x"}, {IGNORE_CASE: {IGNORE_CASE: "x"}}],
)  # fmt: skip
def test_r4_1_r4_2_prefix_and_suffix_arguments(operator: str, argument: object) -> None:
    refuse({"d": {"a": [{operator: argument}]}}, "d.a", operator)


R4_IGNORE_CASE_AFFIXES: list[Case] = [
    ({"n": [{"prefix": {IGNORE_CASE: ""}}]}, {"n": ""}, True),
    ({"n": [{"prefix": {IGNORE_CASE: ""}}]}, {"n": 5}, False),
    ({"n": [{"suffix": {IGNORE_CASE: ""}}]}, {"n": "x"}, True),
    ({"n": [{"prefix": {IGNORE_CASE: "ab"}}]}, {"n": "A"}, False),
    ({"n": [{"prefix": {IGNORE_CASE: "ab"}}]}, {"n": "xAB"}, False),
    ({"n": [{"suffix": {IGNORE_CASE: "ab"}}]}, {"n": "ABx"}, False),
    ({"n": [{"suffix": {IGNORE_CASE: "ab"}}]}, {"n": ["q", "xAb"]}, True),
    ({"n": [{"prefix": {IGNORE_CASE: "stra\u00df"}}]}, {"n": "STRASSE"}, True),
    ({"n": [{"prefix": {IGNORE_CASE: "strass"}}]}, {"n": "stra\u00dfe"}, False),
    ({"n": [{IGNORE_CASE: "x"}]}, {"n": ["X"]}, True),
    ({"n": [{IGNORE_CASE: "true"}]}, {"n": True}, False),
    ({"n": [{IGNORE_CASE: "null"}]}, {"n": None}, False),
    ({"n": [{IGNORE_CASE: "5"}]}, {"n": 5}, False),
]


@pytest.mark.parametrize(("pattern", "event", "expected"), R4_IGNORE_CASE_AFFIXES)
def test_r4_2_r4_4_r4_5_ignore_case_forms(pattern: Any, event: Any, expected: bool) -> None:
    assert decide(pattern, event) is expected


# (pattern text, event text, whether equals-ignore-case accepts it), per event-ruler's rule: each UTF-16 unit of
# the pattern, lowered or uppered alone with full mappings, characters beyond the BMP only as themselves.
R4_5_CASE_RULE: list[tuple[str, str, bool]] = [
    ("alice", "ALICE", True),
    ("ALICE", "aLiCe", True),
    ("\u00c9T\u00c9", "\u00e9t\u00e9", True),
    ("\u03b1\u03b2\u03b3", "\u0391\u0392\u0393", True),
    ("\u043f\u0440\u0438\u0432\u0435\u0442", "\u041f\u0420\u0418\u0412\u0415\u0422", True),
    ("STRASSE", "stra\u00dfe", False),
    ("\u00df", "SS", True),
    ("\u00df", "\u00df", True),
    ("\u00df", "ss", False),
    ("SS", "\u00df", False),
    ("\u01c5", "\u01c5", False),  # title case matches neither its lower nor its upper case
    ("\u01c5", "\u01c6", True),
    ("\u01c5", "\u01c4", True),
    ("k", "\u212a", False),  # the Kelvin sign lowers to k, but k does not upper to it
    ("\u212a", "k", True),
    ("\u212a", "K", False),
    ("\u0130", "i\u0307", True),
    ("\u0130", "i", False),
    ("i", "\u0130", False),
    ("\u0131", "I", True),
    ("I", "\u0131", False),
    ("\u03c2", "\u03a3", True),
    ("\u03a3", "\u03c2", False),
    ("\ufb01", "FI", True),
    ("\u0149", "\u02bcN", True),
    ("\u00b5", "\u039c", True),
    ("\u00b5", "\u03bc", False),
    ("\u017f", "S", True),
    ("\u017f", "s", False),
    ("\u00e9", "e\u0301", False),
    ("a\U0001f600", "A\U0001f600", True),
    ("a\U0001f600", "A??", False),
    ("\U00010400", "\U00010428", False),  # Deseret: has case, but beyond the BMP it matches only itself
    ("\U00010428", "\U00010428", True),
    ("", "", True),
    ("a", "", False),
    ("ab", "a", False),
    ("1-_", "1-_", True),
]


@pytest.mark.parametrize(("text", "event", "expected"), R4_5_CASE_RULE)
def test_r4_5_equals_ignore_case_rule(text: str, event: str, expected: bool) -> None:
    assert decide({"n": [{IGNORE_CASE: text}]}, {"n": event}) is expected
    assert decide({"n": [{"prefix": {IGNORE_CASE: text}}]}, {"n": event + "z\u00df"}) is expected
    assert decide({"n": [{"suffix": {IGNORE_CASE: text}}]}, {"n": "\u00dfz" + event}) is expected
    assert decide({"n": [{"anything-but": {IGNORE_CASE: text}}]}, {"n": event}) is not expected
    assert decide({"n": [{"anything-but": {IGNORE_CASE: ["zz", text]}}]}, {"n": ["zz", event]}) is not expected


@pytest.mark.parametrize("argument", [5, None, True, [], ["x"], {}, {"prefix": "x"}])
def test_r4_5_equals_ignore_case_takes_a_string(argument: object) -> None:
    refuse({"n": [{IGNORE_CASE: argument}]}, "n", IGNORE_CASE)


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


@pytest.mark.parametrize("argument", [5, None, True, [], ["x*"], {}, {"wildcard": "x"}])
def test_r4_6_wildcard_takes_a_string(argument: object) -> None:
    refuse({"n": [{"wildcard": argument}]}, "n", "wildcard")


def test_r4_ignore_case_in_a_router_of_many_rules() -> None:
    # With many rules the router files ignore-case matchers in hash tables keyed by case: the rule must hold.
    router: Router[str] = Router()
    for text, _, _ in R4_5_CASE_RULE:
        router.add({"n": [{IGNORE_CASE: text}]}, f"eq:{text}")
        router.add({"n": [{"prefix": {IGNORE_CASE: text}}]}, f"prefix:{text}")
        router.add({"n": [{"suffix": {IGNORE_CASE: text}}]}, f"suffix:{text}")
    for text, event, expected in R4_5_CASE_RULE:
        for generated in (router._generate(inline=False)[0], router._match_general):
            targets = generated({"n": event})
            assert (f"eq:{text}" in targets) is expected, (text, event)
            assert (f"prefix:{text}" in targets) is expected, (text, event)
            assert (f"suffix:{text}" in targets) is expected, (text, event)


# -- R5 anything-but ----------------------------------------------------------------------------------------------


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


R5_ANYTHING_BUT: list[Case] = [
    ({"a": [{"anything-but": "x"}]}, {"a": None}, True),
    ({"a": [{"anything-but": "x"}]}, {"a": [None]}, True),
    ({"a": [{"anything-but": "x"}]}, {"a": False}, True),
    ({"a": [{"anything-but": "x"}]}, {"a": ["x", "x"]}, False),
    ({"a": [{"anything-but": "x"}]}, {"a": ["x", 0]}, True),
    ({"a": [{"anything-but": "x"}]}, {"a": [[], {}]}, False),
    ({"a": [{"anything-but": "x"}]}, {"a": [{"b": "y"}]}, False),
    ({"a": [{"anything-but": "x"}]}, {"a": "X"}, True),
    ({"a": [{"anything-but": ""}]}, {"a": ""}, False),
    ({"a": [{"anything-but": ""}]}, {"a": " "}, True),
    ({"a": [{"anything-but": 5}]}, {"a": "5"}, True),
    ({"a": [{"anything-but": 5}]}, {"a": 5.0}, False),
    ({"a": [{"anything-but": 5}]}, {"a": True}, True),
    ({"a": [{"anything-but": 1}]}, {"a": True}, True),
    ({"a": [{"anything-but": 0}]}, {"a": False}, True),
    ({"a": [{"anything-but": 0}]}, {"a": -0.0}, False),
    ({"a": [{"anything-but": [5, 6]}]}, {"a": [5, 6.0]}, False),
    ({"a": [{"anything-but": [5, 6]}]}, {"a": [5, 6, 7]}, True),
    ({"a": [{"anything-but": ["a", "b"]}]}, {"a": ["b", "a"]}, False),
    ({"a": [{"anything-but": ["a", "b"]}]}, {"a": 1}, True),
    ({"a": [{"anything-but": {"prefix": "us-"}}]}, {"a": "us-"}, False),
    ({"a": [{"anything-but": {"prefix": "us-"}}]}, {"a": "us"}, True),
    ({"a": [{"anything-but": {"prefix": "us-"}}]}, {"a": "US-east"}, True),
    ({"a": [{"anything-but": {"prefix": ["us-", "eu-"]}}]}, {"a": ["us-1", "eu-1"]}, False),
    ({"a": [{"anything-but": {"prefix": ["us-", "eu-"]}}]}, {"a": ["us-1", "ap-1"]}, True),
    ({"a": [{"anything-but": {"suffix": ".png"}}]}, {"a": ".png"}, False),
    ({"a": [{"anything-but": {"suffix": ".png"}}]}, {"a": "x.PNG"}, True),
    ({"a": [{"anything-but": {"suffix": ".png"}}]}, {"a": 5}, True),
    ({"a": [{"anything-but": {IGNORE_CASE: "abc"}}]}, {"a": "aBc"}, False),
    ({"a": [{"anything-but": {IGNORE_CASE: "abc"}}]}, {"a": "abcd"}, True),
    ({"a": [{"anything-but": {IGNORE_CASE: ""}}]}, {"a": ""}, False),
    ({"a": [{"anything-but": {IGNORE_CASE: ""}}]}, {"a": "a"}, True),
    ({"a": [{"anything-but": {IGNORE_CASE: "null"}}]}, {"a": None}, True),
    ({"a": [{"anything-but": {"wildcard": "*"}}]}, {"a": ""}, False),
    ({"a": [{"anything-but": {"wildcard": "*"}}]}, {"a": None}, True),
    ({"a": [{"anything-but": {"wildcard": ""}}]}, {"a": ""}, False),
    ({"a": [{"anything-but": {"wildcard": ""}}]}, {"a": "*"}, True),
    ({"a": [{"anything-but": {"wildcard": "\\*"}}]}, {"a": "*"}, False),
    ({"a": [{"anything-but": {"wildcard": "\\*"}}]}, {"a": "x"}, True),
    ({"a": [{"anything-but": {"wildcard": ["*.png", "*.jpg"]}}]}, {"a": ["a.png", "b.jpg"]}, False),
    ({"a": [{"anything-but": {"wildcard": ["*.png", "*.jpg"]}}]}, {"a": ["a.png", "b.gif"]}, True),
    ({"a": [{"anything-but": {"prefix": "x"}}, "xa"]}, {"a": "xa"}, True),
    ({"a": [{"anything-but": {"prefix": "x"}}, {"exists": False}]}, {}, True),
    ({"a": [{"anything-but": {"prefix": "x"}}, {"exists": False}]}, {"a": "xy"}, False),
    ({"a": [{"anything-but": "x"}, {"anything-but": "y"}]}, {"a": "x"}, True),
]


@pytest.mark.parametrize(("pattern", "event", "expected"), R5_ANYTHING_BUT)
def test_r5_2_anything_but_semantics(pattern: Any, event: Any, expected: bool) -> None:
    assert decide(pattern, event) is expected


ANYTHING_BUT_INVALID = [
    None, True, False, {}, [], ["a", 1], [1, "a"], [None], [True], [[1]], [{"prefix": "a"}], [1, None],
    {"prefix": "a", "suffix": "b"}, {"prefix": ""}, {"suffix": ""}, {"prefix": ["a", ""]}, {"suffix": [""]},
    {"prefix": []}, {"suffix": []}, {"wildcard": []}, {IGNORE_CASE: []}, {"prefix": 5}, {"suffix": [5]},
    {"wildcard": 5}, {"wildcard": None}, {IGNORE_CASE: 5}, {IGNORE_CASE: [None]}, {IGNORE_CASE: [1]},
    {"prefix": {IGNORE_CASE: "x"}}, {"suffix": {IGNORE_CASE: "x"}}, {"wildcard": {IGNORE_CASE: "x"}},
    {IGNORE_CASE: {"prefix": "x"}}, {"numeric": [">", 1]}, {"exists": True}, {"cidr": "10.0.0.0/8"},
    {"anything-but": "x"}, {"exactly": "x"}, {"Prefix": "x"}, {"prefix": ["a", 1]}, {"prefix": [["a"]]},
]  # fmt: skip


@pytest.mark.parametrize("argument", ANYTHING_BUT_INVALID)
def test_r5_3_invalid_anything_but(argument: object) -> None:
    refuse({"d": {"$or": [{"a": [{"anything-but": argument}]}, {"b": ["1"]}]}}, "d.$or[0].a")


def test_r5_3_anything_but_with_a_second_key_is_refused() -> None:
    refuse({"a": [{"anything-but": "x", "prefix": "y"}]}, "a")


# -- R6 numeric, and the wildcard complexity limit ----------------------------------------------------------------


R6_RANGES: list[tuple[list[Any], list[Any], list[Any]]] = [
    # (numeric argument, values inside, values outside)
    (["=", 0], [0, -0.0, 0.0], [5e-324, -5e-324, "0", False, None]),
    (["=", 2**53], [2**53, 9007199254740992.0], [2**53 + 1, 2**53 - 1]),
    ([">=", 0], [-0.0, 0, 1e308], [-5e-324, "1"]),
    (["<", 0], [-5e-324, -1e308], [-0.0, 0]),
    ([">", 0.1], [0.10000000000000002], [0.1]),
    (["<=", 0.3], [0.3, 0.29999999999999993], [0.1 + 0.2]),
    ([">", -1, "<", 1], [-0.0, 0.999999], [-1, 1, True]),
    ([">=", -1, "<=", 1], [-1, 1, -1.0], [1.0000000000000002]),
    ([">", 0, "<=", 5], [5, 5.0, 1e-300], [0, 5.000000000000001]),
    ([">=", 1e20, "<=", 1e23], [10**20, 1e21, 10**23], [10**20 - 1, 1.0000000000000001e23 * 1.01]),
    ([">", 2**53 - 1], [2**53, 2**53 + 2, 1e300], [2**53 + 1, 2**60]),  # unrepresentable events never qualify
    (["<", 1e308], [-1e308, 0], [1.7976931348623157e308]),
    ([">", -5e9, "<", 5e9], [-4999999999.999999, 0], [-5e9, 5e9]),
]


@pytest.mark.parametrize(("numeric", "inside", "outside"), R6_RANGES)
def test_r6_1_r6_4_numeric_ranges_compare_doubles(numeric: list[Any], inside: list[Any], outside: list[Any]) -> None:
    pattern = {"n": [{"numeric": numeric}]}
    for value in inside:
        assert decide(pattern, {"n": value}), value
        assert decide(pattern, {"n": ["x", value]}), value
    for value in outside:
        assert not decide(pattern, {"n": value}), value


NUMERIC_INVALID = [
    [], [">"], ["="], ["=", 5, 6], ["=", 5, "<", 6], ["<", 5, ">", 1], ["<=", 5, "<", 6], [">", 0, ">", 5],
    [">=", 0, ">=", 5], [">", 0, "=", 5], [">", 0, "<"], [">", 0, "<", 5, "<", 6], [">", 0, "<", 5, 6],
    [">", 5, "<", 5], [">=", 5, "<=", 5], [">", 5, "<", 5.0], [">", 6, "<", 5], [">", 0, "<", -0.0],
    ["!=", 5], ["==", 5], ["=<", 5], ["> ", 5], ["GT", 5], [5, ">"], [5], [None, 5], [["="], 5],
    ["=", "5"], ["=", True], ["=", None], ["=", [5]], ["=", {"n": 5}], [">", 0, "<", "5"], [">", 0, 5, "<"],
    [">", 0, "<", None], "5", 5, None, True, {"=": 5}, {">": 0, "<": 5},
]  # fmt: skip


@pytest.mark.parametrize("argument", NUMERIC_INVALID)
def test_r6_1_invalid_numeric(argument: object) -> None:
    refuse({"d": {"n": [5, {"numeric": argument}]}}, "d.n")


@pytest.mark.parametrize(
    "operand",
    ["1e400", "-1e400", "1e-400", "0.30000000000000001", "9007199254740993", "1.7976931348623159e308",
     "4.9406564584124654e-324", "12345678901234567891", "100000000000000000000000.5"],
)  # fmt: skip
def test_r6_2_unrepresentable_operands_anywhere_in_the_range(operand: str) -> None:
    for argument in (f'["=", {operand}]', f'[">", {operand}]', f'["<=", {operand}]', f'[">", -1e308, "<", {operand}]'):
        refuse(f'{{"n": [{{"numeric": {argument}}}]}}', "n", "not exactly representable")
    refuse({"n": [{"numeric": [">", 10**30 + 1]}]}, "n", "not exactly representable")


@pytest.mark.parametrize(
    "argument",
    ['["=", 1e23]', '[">", 5e-324]', '["<", 1.7976931348623157e308]', '[">=", -0]', '["=", 100000000000000000000000]',
     '[">", 0.1, "<", 0.10000000000000002]', '[">", -1e308, "<=", 1e308]'],
)  # fmt: skip
def test_r6_2_representable_operands_in_any_spelling(argument: str) -> None:
    accept(f'{{"n": [{{"numeric": {argument}}}]}}')


@pytest.mark.parametrize(
    ("pattern", "raw", "expected"),
    [
        ('{"n": [{"numeric": ["=", 3.018e2]}]}', '{"n": 301.8}', True),
        ('{"n": [{"numeric": ["=", 301.8]}]}', '{"n": 3.018E+2}', True),
        ('{"n": [{"numeric": [">=", 1E6]}]}', '{"n": 1000000}', True),
        ('{"n": [{"numeric": [">", -1, "<", 1]}]}', '{"n": -0.0}', True),
        ('{"n": [{"numeric": [">", 0]}]}', '{"n": 0.30000000000000001}', False),  # numeric-046
        ('{"n": [{"numeric": [">", 0]}]}', '{"n": 9007199254740993}', False),
        ('{"n": [{"numeric": [">", 0]}]}', '{"n": 1e400}', False),
        ('{"n": [{"numeric": ["<", 0]}]}', '{"n": -1e400}', False),
        ('{"n": [{"numeric": [">", 0]}]}', '{"n": [1e400, 1]}', True),
        ('{"n": [{"numeric": [">", 0]}]}', '{"n": "5"}', False),
        ('{"n": [{"numeric": ["=", 5]}]}', '{"n": 5.000000000000000000001}', False),
        ('{"n": [{"numeric": ["=", 100]}]}', '{"n": 1e2}', True),
        ('{"n": [{"numeric": ["=", 0]}]}', '{"n": -0}', True),
        ('{"n": [{"numeric": ["<", 0]}, {"numeric": [">", 10]}]}', '{"n": [0, 5, 10]}', False),
        ('{"n": [{"numeric": ["<", 0]}, {"numeric": [">", 10]}]}', '{"n": [0, 11]}', True),
    ],
)
def test_r6_3_r6_4_numeric_on_raw_events(pattern: str, raw: str, expected: bool) -> None:
    assert decide_raw(pattern, raw) is expected


TOO_COMPLEX = "Rule is too complex - try using fewer wildcard characters"


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


# -- R7 exists ----------------------------------------------------------------------------------------------------


R7_EXISTS: list[tuple[Any, bool]] = [
    # (event value at "a", or MISSING for no key; whether exists:true holds - exists:false holds otherwise)
    (None, True),
    ("", True),
    (False, True),
    (0, True),
    ([None], True),
    ([[], [0]], True),
    ([], False),
    ({}, False),
    ([[]], False),
    ([{}], False),
    ({"b": 1}, False),
    ([{"b": 1}], False),
    ({"b": []}, False),
]


@pytest.mark.parametrize(("value", "present"), R7_EXISTS)
def test_r7_1_r7_2_exists_means_a_leaf_value(value: Any, present: bool) -> None:
    assert decide({"a": [{"exists": True}]}, {"a": value}) is present
    assert decide({"a": [{"exists": False}]}, {"a": value}) is not present
    assert decide({"d": {"a": [{"exists": True}]}}, {"d": [{"a": value}]}) is present
    assert decide({"d": {"a": [{"exists": False}]}}, {"d": [{"a": value}]}) is not present


@pytest.mark.parametrize("argument", ["true", "false", 1, 0, None, [], [True], {}, {"x": True}])
def test_r7_1_exists_takes_a_json_boolean(argument: object) -> None:
    refuse({"a": {"b": [{"exists": argument}]}}, "a.b", "exists")


def test_r7_1_exists_object_takes_no_other_key() -> None:
    refuse({"a": [{"exists": True, "prefix": "x"}]}, "a")


R7_NESTED: list[Case] = [
    ({"a": {"b": [{"exists": False}]}}, {}, True),
    ({"a": {"b": [{"exists": False}]}}, {"a": None}, True),
    ({"a": {"b": [{"exists": False}]}}, {"a": [1, 2]}, True),
    ({"a": {"b": [{"exists": False}]}}, {"a": {"c": {"b": 1}}}, True),
    ({"a": {"b": [{"exists": True}]}}, {"a": {"c": {"b": 1}}}, False),
    ({"a": {"b": [{"exists": True}]}}, {"a": [{"c": 1}, {"b": None}]}, True),
    ({"a": {"b": [{"exists": False}]}}, {"a": [{"c": 1}, {"b": None}]}, False),
    ({"a": {"b": [{"exists": False}]}}, {"a": [{"c": 1}, {"b": []}]}, True),
    ({"a": [{"exists": True}, {"exists": False}]}, {}, True),
    ({"a": [{"exists": True}, {"exists": False}]}, {"a": 1}, True),
    ({"a": [{"exists": False}, "x"]}, {"a": "y"}, False),
    ({"a": [{"exists": False}, {"numeric": [">", 1]}]}, {"a": [0, 2]}, True),
    ({"a": [{"exists": False}], "b": [{"exists": False}]}, {"c": 1}, True),
    ({"a": [{"exists": False}], "b": [{"exists": False}]}, {"b": 1}, False),
    ({"a": [{"exists": False}], "b": ["1"]}, {"b": "1"}, True),
    ({"a.b": [{"exists": True}]}, {"a": {"b": None}}, True),
    ({"a": {"b": [{"exists": False}]}}, {"a.b": 0}, False),
    ({"a": {"b": [{"exists": False}]}}, {"a.b": {}}, True),
    # A path that is both a leaf and the parent of another: its objects give it no value, its leaves do.
    ({"a": [{"exists": False}], "a.b": [1]}, {"a": {"b": 1}}, True),
    ({"a": [{"exists": False}], "a.b": [1]}, {"a": [{"b": 1}]}, True),
    ({"a": [{"exists": False}], "a.b": [1]}, {"a": ["x", {"b": 1}]}, False),
    ({"a": ["x"], "a.b": [1]}, {"a": [{"b": 1}, "x"]}, True),
    ({"a": ["x"], "a.b": [1]}, {"a": {"b": 1}}, False),
]


@pytest.mark.parametrize(("pattern", "event", "expected"), R7_NESTED)
def test_r7_2_r7_3_exists_in_nested_shapes(pattern: Any, event: Any, expected: bool) -> None:
    assert decide(pattern, event) is expected


# -- R8 cidr ------------------------------------------------------------------------------------------------------


CIDR_INVALID: list[tuple[Any, str]] = [
    ("10.0.0.0", "one '/'"),
    ("10.0.0.0/8/8", "one '/'"),
    ("10.0.0.0/8/", "one '/'"),
    ("10.0.0.0//8", "one '/'"),
    ("", "one '/'"),
    ("10.0.0.0/", "integer"),
    ("10.0.0.0/x", "integer"),
    ("10.0.0.0/ 8", "integer"),
    ("10.0.0.0/8 ", "integer"),
    ("10.0.0.0/8.0", "integer"),
    ("10.0.0.0/0x8", "integer"),
    ("10.0.0.0/-1", "negative"),
    ("/8", "Nonstandard IP address"),
    (" 10.0.0.0/8", "Nonstandard IP address"),
    ("10.0.0/8", "Nonstandard IP address"),
    ("10.0.0.0.0/8", "Nonstandard IP address"),
    ("10.0.0.256/8", "Nonstandard IP address"),
    ("010.0.0.0/8", "Nonstandard IP address"),
    ("a.b.c.d/8", "Nonstandard IP address"),
    ("::g/64", "Nonstandard IP address"),
    ("1::2::3/64", "Nonstandard IP address"),
    ("::ffff:1.2.3.4/96", "Nonstandard IP address"),
    ("fe80::1%eth0/64", "Nonstandard IP address"),
    ("[::1]/64", "Nonstandard IP address"),
    ("10.0.0.0/32", "< 32"),
    ("10.0.0.0/33", "< 32"),
    ("10.0.0.0/2147483647", "< 32"),
    ("10.0.0.0/2147483648", "integer"),  # past Java's int, as event-ruler reads it
    ("10.0.0.0/-2147483649", "integer"),
    ("::/128", "< 128"),
    ("::/129", "< 128"),
    (5, "string"),
    (None, "string"),
    (["10.0.0.0/8"], "string"),
]


@pytest.mark.parametrize(("cidr", "problem"), CIDR_INVALID)
def test_r8_1_invalid_cidr(cidr: Any, problem: str) -> None:
    refuse({"d": {"ip": [{"cidr": cidr}]}}, "d.ip", problem)


R8_MEMBERSHIP: list[tuple[str, list[str], list[Any]]] = [
    ("10.0.0.0/8", ["10.0.0.0", "10.255.255.255"], ["11.0.0.0", "9.255.255.255", "010.0.0.1", "10.0.0.01"]),
    ("10.0.0.77/24", ["10.0.0.0", "10.0.0.1", "10.0.0.255"], ["10.0.1.0"]),  # host bits are ignored
    ("0.0.0.0/0", ["0.0.0.0", "255.255.255.255"], ["::", "256.0.0.0", "1.2.3"]),
    ("192.168.1.1/31", ["192.168.1.0", "192.168.1.1"], ["192.168.1.2", "192.168.0.255"]),
    ("10.0.0.0/+8", ["10.1.2.3"], []),
    ("10.0.0.0/08", ["10.1.2.3"], ["11.0.0.0"]),
    ("10.0.0.0/-0", ["99.1.2.3"], []),
    ("2001:db8::/127", ["2001:db8::", "2001:db8::1", "2001:DB8:0:0:0:0:0:1"], ["2001:db8::2"]),
    ("2001:DB8::/32", ["2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2001:0db8::"], ["2001:db9::", "10.0.0.1"]),
    ("::/0", ["::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::ffff:a00:1"], ["0.0.0.0", "::ffff:10.0.0.1"]),
    ("::ffff:0:0/96", ["::ffff:a00:1"], ["10.0.0.1", "::ffff:10.0.0.1"]),
    ("10.0.0.0/8", [], [10, None, True, "10.0.0.1 ", " 10.0.0.1", "10.0.0.1/32", "host", "", "::ffff:a00:1"]),
]


@pytest.mark.parametrize(("cidr", "inside", "outside"), R8_MEMBERSHIP)
def test_r8_2_cidr_membership(cidr: str, inside: list[str], outside: list[Any]) -> None:
    pattern = {"ip": [{"cidr": cidr}]}
    for value in inside:
        assert decide(pattern, {"ip": value}), value
        assert decide(pattern, {"ip": ["x", value]}), value
    for value in outside:
        assert not decide(pattern, {"ip": value}), value


def test_r8_2_several_blocks_in_a_router() -> None:
    router: Router[str] = Router()
    blocks = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.2/31", "::/0", "2001:db8::/64", "0.0.0.0/0"]
    for block in blocks:
        router.add({"ip": [{"cidr": block}]}, block)
    router.add({"ip": ["10.1.2.3"]}, "exact")
    expected = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.2/31", "0.0.0.0/0", "exact"]
    for generated in (router._generate(inline=False)[0], router._generate(inline=True)[0], router._match_general):
        assert generated({"ip": "10.1.2.3"}) == expected
        assert generated({"ip": "2001:db8::1"}) == ["::/0", "2001:db8::/64"]
        assert generated({"ip": "010.1.2.3"}) == []


# -- R9 $or -------------------------------------------------------------------------------------------------------


OR_INVALID: list[tuple[Any, str, str]] = [
    ({"$or": [{"a": ["1"]}]}, "$or", "at least 2"),
    ({"$or": []}, "$or", "at least 2"),
    ({"$or": {"a": ["1"]}}, "$or", "array"),
    ({"$or": "a"}, "$or", "array"),
    ({"$or": None}, "$or", "array"),
    ({"$or": ["a", "b"]}, "$or[0]", "object"),
    ({"$or": [{"a": ["1"]}, None]}, "$or[1]", "object"),
    ({"$or": [{"a": ["1"]}, [{"b": ["1"]}]]}, "$or[1]", "object"),
    ({"$or": [{"a": ["1"]}, {}]}, "$or[1]", "empty objects"),
    ({"$or": [{"a": ["1"]}, {"b": ["1"]}, {}]}, "$or[2]", "empty objects"),
    ({"$or": [{"a": ["1"]}, {"b": {}}]}, "$or[1].b", "empty objects"),
    ({"$or": [{"a": ["1"]}, {"b": []}]}, "$or[1].b", "empty arrays"),
    ({"$or": [{"a": ["1"]}, {"b": "1"}]}, "$or[1].b", "object or an array"),
    ({"$or": [{"a": ["1"]}, {"b": [["1"]]}]}, "$or[1].b", "array"),
    ({"$or": [{"a": ["1"]}, {"$or": [{"c": ["1"]}]}]}, "$or[1].$or", "at least 2"),
    ({"x": {"$or": [{"a": ["1"]}]}}, "x.$or", "at least 2"),
    ({"$or": [{"a": ["1"]}, {"b": ["1"]}], "x": {"$or": [{"c": ["1"]}]}}, "x.$or", "at least 2"),
    ({"$or": [{"a": ["1"]}, {"b": {"c": {"prefix": ["x"]}}}]}, "$or[1].b.c.prefix", "reserved"),
    ({"$or": [{"a": ["1"]}, {"b": {"$or": [{"x": ["1"]}, {"<": ["1"]}]}}]}, "$or[1].b.$or[1].<", "reserved"),
    ({"x": {"$or": [{"exists": [True]}, {"e": ["1"]}]}}, "x.$or[0].exists", "reserved"),
    ({"$or": [{"a": [{"prefix": 1}]}, {"b": ["1"]}]}, "$or[0].a", "prefix"),
    ({"$or": [{"a": ["1"]}, {"b": [{"wildcard": "a**"}]}]}, "$or[1].b", "Consecutive"),
]


@pytest.mark.parametrize(("pattern", "path", "problem"), OR_INVALID)
def test_r9_1_invalid_or(pattern: dict[str, Any], path: str, problem: str) -> None:
    refuse(pattern, path, problem)


RESERVED_WORDS = [
    "exactly", "equals-ignore-case", "prefix", "suffix", "anything-but", "exists", "wildcard", "numeric", "cidr",
    "=", "<", "<=", ">", ">=", "regex", "not-wildcard", "not-equals-ignore-case", "date-after", "date-on-or-after",
    "date-before", "date-on-or-before", "in-date-range", "ip-address-in-range", "ip-address-not-in-range",
]  # fmt: skip


@pytest.mark.parametrize("word", RESERVED_WORDS)
def test_r9_1_every_reserved_word_is_refused_inside_branches(word: str) -> None:
    refuse({"$or": [{"a": ["1"]}, {word: ["1"]}]}, f"$or[1].{word}", "reserved")
    refuse({"$or": [{"a": ["1"]}, {"b": {word: {"c": ["1"]}}}]}, f"$or[1].b.{word}", "reserved")
    accept({word: ["1"], "$or": [{"a": ["1"]}, {"b": ["1"]}]})
    for near in (word.upper(), f"{word}-x", f" {word}"):
        if near not in RESERVED_WORDS:
            accept({"$or": [{"a": ["1"]}, {near: ["1"]}]})


R9_OR: list[Case] = [
    ({"$or": [{"a": ["1"]}, {"a": ["2"]}]}, {"a": "2"}, True),
    ({"$or": [{"a": ["1"]}, {"a": ["2"]}]}, {"a": "3"}, False),
    ({"$or": [{"a": ["1"]}, {"b": ["2"]}], "c": ["3"]}, {"b": "2", "c": "3"}, True),
    ({"$or": [{"a": ["1"]}, {"b": ["2"]}], "c": ["3"]}, {"b": "2"}, False),
    ({"$or": [{"a": [{"exists": False}]}, {"a": ["2"]}]}, {}, True),
    ({"$or": [{"a": [{"exists": False}]}, {"b": [{"exists": False}]}]}, {"a": 1, "b": 1}, False),
    ({"$or": [{"a": [{"exists": False}]}, {"b": [{"exists": False}]}]}, {"a": 1}, True),
    ({"x": {"$or": [{"$or": [{"a": ["1"]}, {"b": ["1"]}]}, {"c": ["1"]}]}}, {"x": {"b": "1"}}, True),
    ({"x": {"$or": [{"y": {"$or": [{"a": ["1"]}, {"b": ["1"]}]}}, {"c": ["1"]}]}}, {"x": {"y": {"b": "1"}}}, True),
    ({"x": {"$or": [{"y": {"$or": [{"a": ["1"]}, {"b": ["1"]}]}}, {"c": ["1"]}]}}, {"x": {"b": "1"}}, False),
    ({"x": {"$or": [{"a": ["1"]}, {"b": ["1"]}]}}, {"a": "1"}, False),  # branches sit at the level of the $or
    ({"x": {"$or": [{"a": ["1"]}, {"b": ["1"]}]}}, {"x.a": "1"}, True),
    ({"$or": [{"x": {"a": ["1"]}}, {"x": {"b": ["1"]}}]}, {"x": [{"a": "0"}, {"b": "1"}]}, True),
    (
        {"$or": [{"a": ["1"]}, {"b": ["1"]}], "x": {"$or": [{"c": ["1"]}, {"d": ["1"]}]}},
        {"b": "1", "x": {"c": "0", "d": "1"}},
        True,
    ),
    (
        {"$or": [{"a": ["1"]}, {"b": ["1"]}], "x": {"$or": [{"c": ["1"]}, {"d": ["1"]}]}},
        {"b": "1", "x": {"c": "0"}},
        False,
    ),
    # Field names that are operator words are fine outside $or branches.
    ({"prefix": ["1"], "numeric": {"exists": [True]}}, {"prefix": "1", "numeric": {"exists": True}}, True),
]


@pytest.mark.parametrize(("pattern", "event", "expected"), R9_OR)
def test_r9_2_or_semantics(pattern: Any, event: Any, expected: bool) -> None:
    assert decide(pattern, event) is expected


@pytest.mark.parametrize(
    ("text", "event", "expected"),
    [
        # R9.3: a branch replaces an earlier condition on its path in its expanded rule (or-021).
        ('{"a": ["1"], "$or": [{"a": ["2"]}, {"b": ["3"]}]}', {"a": "2"}, True),
        ('{"a": ["1"], "$or": [{"a": ["2"]}, {"b": ["3"]}]}', {"a": "1"}, False),
        ('{"a": ["1"], "$or": [{"a": ["2"]}, {"b": ["3"]}]}', {"a": "1", "b": "3"}, True),
        # Decision: members are read in order, as event-ruler does, so a path written after the $or replaces
        # the branch's condition in every expanded rule: {a:1} OR {a:1, b:3}.
        ('{"$or": [{"a": ["2"]}, {"b": ["3"]}], "a": ["1"]}', {"a": "1"}, True),
        ('{"$or": [{"a": ["2"]}, {"b": ["3"]}], "a": ["1"]}', {"a": "2"}, False),
        ('{"d": {"a": ["1"]}, "$or": [{"d": {"a": ["2"]}}, {"b": ["3"]}]}', {"d": {"a": "2"}}, True),
    ],
)
def test_r9_3_later_members_replace_earlier_conditions(text: str, event: dict[str, Any], expected: bool) -> None:
    assert decide(text, event) is expected


def test_r9_expansion_limit() -> None:
    # Nested $or members multiply: 2**12 = 4096 sub-rules are accepted, 2**13 are refused.
    def nested(levels: int) -> dict[str, Any]:
        return {f"k{level}": {"$or": [{"a": ["1"]}, {"b": ["1"]}]} for level in range(levels)}

    assert len(compile_pattern(nested(12), max_size=10**6).subrules) == 4096
    refuse(nested(13), "k12.$or", "4096", max_size=10**6)


# -- R10 array-consistent matching --------------------------------------------------------------------------------


EMPLOYEES = {"employees": [{"first": "Anna", "last": "Smith"}, {"first": "Peter", "last": "Jones"}]}

R10_CONSISTENCY: list[Case] = [
    ({"employees": {"first": ["Anna"], "last": [{"prefix": "J"}]}}, EMPLOYEES, False),
    ({"employees": {"first": ["Anna"], "last": [{"prefix": "S"}]}}, EMPLOYEES, True),
    ({"employees": {"first": [{"anything-but": "Peter"}], "last": ["Jones"]}}, EMPLOYEES, False),
    ({"employees": {"first": [{"anything-but": "Anna"}], "last": ["Jones"]}}, EMPLOYEES, True),
    ({"employees": {"first": [{"equals-ignore-case": "anna"}], "last": [{"suffix": "s"}]}}, EMPLOYEES, False),
    ({"employees": {"first": [{"wildcard": "A*"}], "last": [{"wildcard": "*th"}]}}, EMPLOYEES, True),
    ({"employees": {"first": ["Anna", "Peter"], "last": ["Jones"]}}, EMPLOYEES, True),
    ({"employees": {"first": ["Anna"], "last": [{"exists": False}]}}, EMPLOYEES, False),
    ({"employees": {"first": ["Anna"], "middle": [{"exists": False}]}}, EMPLOYEES, True),
    ({"employees": {"first": ["Anna"]}, "x": ["1"]}, {**EMPLOYEES, "x": "1"}, True),
    (
        {"$or": [{"employees": {"first": ["Anna"], "last": ["Jones"]}}, {"employees": {"first": ["Peter"]}}]},
        EMPLOYEES,
        True,
    ),
    ({"$or": [{"employees": {"first": ["Anna"], "last": ["Jones"]}}, {"x": ["y"]}]}, EMPLOYEES, False),
    ({"a": {"b": {"c": [1], "d": [4]}}}, {"a": [{"b": {"c": 1, "d": 2}}, {"b": {"c": 3, "d": 4}}]}, False),
    ({"a": {"b": {"c": [3], "d": [4]}}}, {"a": [{"b": {"c": 1, "d": 2}}, {"b": {"c": 3, "d": 4}}]}, True),
    # Leaf elements add no membership: values of a primitive array inside an element stay with that element.
    ({"a": {"b": [2], "c": ["x"]}}, {"a": [{"b": [1, 2], "c": "x"}, {"b": [3], "c": "y"}]}, True),
    ({"a": {"b": [3], "c": ["x"]}}, {"a": [{"b": [1, 2], "c": "x"}, {"b": [3], "c": "y"}]}, False),
    ({"a": {"b": [1], "c": [2]}}, {"a": [[{"b": 1}, {"c": 2}], [{"b": 3, "c": 4}]]}, False),
    ({"a": {"b": [3], "c": [4]}}, {"a": [[{"b": 1}, {"c": 2}], [{"b": 3, "c": 4}]]}, True),
    ({"o": {"n": [{"numeric": [">", 10]}], "s": ["a"]}}, {"o": [{"n": 5, "s": "a"}, {"n": 50, "s": "b"}]}, False),
    ({"o": {"n": [{"numeric": [">", 10]}], "s": ["b"]}}, {"o": [{"n": 5, "s": "a"}, {"n": 50, "s": "b"}]}, True),
    ({"o": {"ip": [{"cidr": "10.0.0.0/8"}], "s": ["a"]}}, {"o": [{"ip": "10.0.0.1", "s": "b"}, {"s": "a"}]}, False),
    # Dotted keys: a value under "a.b" sits in no array; a value inside the array of "a" does.
    ({"a": {"b": [1], "c": [2]}}, {"a.b": 1, "a": [{"c": 2}]}, True),
    ({"a": {"b": [1], "c": [2]}}, {"a": [{"b": 1}, {"c": 2}]}, False),
    # Values in different arrays are always consistent.
    ({"x": {"a": [2]}, "y": {"b": [3]}}, {"x": [{"a": 1}, {"a": 2}], "y": [{"b": 3}, {"b": 4}]}, True),
]


@pytest.mark.parametrize(("pattern", "event", "expected"), R10_CONSISTENCY)
def test_r10_1_values_must_come_from_one_element(pattern: Any, event: Any, expected: bool) -> None:
    assert decide(pattern, event) is expected


@pytest.mark.parametrize(
    ("pattern", "event", "expected"),
    [
        # x.a sorts before x.b: the absence of x.b is judged among values consistent with the picked x.a.
        ({"x": {"a": [1], "b": [{"exists": False}]}}, {"x": [{"a": 1, "b": 2}, {"a": 1}]}, True),
        # x.b sorts before x.z: the absence of x.b is judged before any element is picked (array-017/018).
        ({"x": {"z": [1], "b": [{"exists": False}]}}, {"x": [{"z": 1, "b": 2}, {"z": 1}]}, False),
        ({"x": {"B": [{"exists": False}], "a": [1]}}, {"x": [{"a": 1, "B": 2}, {"a": 1}]}, False),  # "B" < "a"
        # The order is of whole dotted names ("x.a-b" < "x.a.c", as "-" < "."), not of key segments...
        (
            {"x": {"a": {"c": [1]}, "a-b": [{"exists": False}]}},
            {"x": [{"a": {"c": 1}, "a-b": 2}, {"a": {"c": 1}}]},
            False,
        ),
        # ...compared by UTF-16 unit as Java does: a character beyond the BMP sorts before U+FF01.
        (
            {"x": {"\uff01": [1], "\U0001f600": [{"exists": False}]}},
            {"x": [{"\uff01": 1, "\U0001f600": 2}, {"\uff01": 1}]},
            False,
        ),
        (
            {"x": {"\U0001f600": [1], "\uff01": [{"exists": False}]}},
            {"x": [{"\U0001f600": 1, "\uff01": 2}, {"\U0001f600": 1}]},
            True,
        ),
        ({"x": {"a": [1], "b": [{"exists": False}]}}, {"x": [{"a": 1, "b": 2}]}, False),
        ({"x": {"a": [1], "b": [{"exists": False}, 2]}}, {"x": [{"a": 1, "b": 3}, {"a": 0, "b": 2}]}, False),
        ({"x": {"a": [1], "b": [{"exists": False}, 2]}}, {"x": [{"a": 1, "b": 3}, {"a": 1}]}, True),
    ],
)
def test_r10_2_exists_false_is_judged_in_path_order(pattern: Any, event: Any, expected: bool) -> None:
    assert decide(pattern, event) is expected


def test_r10_consistency_in_a_router_of_many_rules() -> None:
    router: Router[str] = Router()
    for first in ("Anna", "Peter", "Zoe"):
        for last in ("Smith", "Jones", "Brown"):
            router.add({"employees": {"first": [first], "last": [last]}}, f"{first} {last}")
    router.add({"employees": {"first": [{"exists": True}]}}, "anyone")
    expected = ["Anna Smith", "Peter Jones", "anyone"]
    for generated in (router._generate(inline=False)[0], router._generate(inline=True)[0], router._match_general):
        assert generated(EMPLOYEES) == expected
    assert router.match_json(json.dumps(EMPLOYEES)) == expected


# -- R11 the invalid-pattern checklist ----------------------------------------------------------------------------


def _sized(length: int) -> dict[str, Any]:
    pattern = {"a": ["x" * (length - len('{"a":[""]}'))]}
    assert len(json.dumps(pattern, separators=(",", ":"))) == length
    return pattern


def test_r11_13_size_limit_boundaries() -> None:
    accept(_sized(2048))
    refuse(_sized(2049), "(root)", "2048")
    accept(_sized(4096), max_size=4096)
    refuse(_sized(4097), "(root)", "4096", max_size=4096)
    # Counted on the pattern written as compact JSON: whitespace in the text does not count, escapes do.
    accept(json.dumps(_sized(2048), indent=4))
    accept({"a": ["\u00e9" * 2038]})  # characters, not UTF-8 bytes
    refuse({"a": ["\n" * 1020]}, "(root)", "2048")  # each written as \n: 2050 characters
    refuse({"a": [{"numeric": [">", 1]}] * 200}, "(root)", "2048")


def test_r11_13_size_limit_applies_before_anything_else() -> None:
    refuse({"a": [{"numeric": "bad"}], "b": ["x" * 3000]}, "(root)", "2048")


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


R11_INVALID: list[tuple[Any, str, str]] = [
    # 1. not an object, or not JSON
    ("[]", "(root)", "object"),
    ('"a"', "(root)", "object"),
    ("null", "(root)", "object"),
    ("{", "(root)", "JSON"),
    ('{"a": ["x"]} x', "(root)", "JSON"),
    ('{"a": [1,]}', "(root)", "JSON"),
    ('{"a": [Infinity]}', "(root)", "JSON"),
    ('{"a": [-NaN]}', "(root)", "JSON"),
    ('{"a": [01]}', "(root)", "JSON"),
    ('{"a": [.5]}', "(root)", "JSON"),
    ('{"a": [+1]}', "(root)", "JSON"),
    ('{"a": ["x"]}{"b": ["y"]}', "(root)", "JSON"),
    # 2. empty objects at any level
    ({}, "(root)", "empty objects"),
    ({"a": {}}, "a", "empty objects"),
    ({"a": {"b": {"c": {}}}}, "a.b.c", "empty objects"),
    # 3. scalar members
    ({"source": "aws.ec2"}, "source", "object or an array"),
    ({"a": {"n": 5}}, "a.n", "object or an array"),
    ({"a": {"n": None}}, "a.n", "object or an array"),
    ({"a": {"n": False}}, "a.n", "object or an array"),
    # 4. empty matcher arrays
    ({"a": []}, "a", "empty arrays"),
    ({"a": {"b": []}}, "a.b", "empty arrays"),
    # 5. arrays inside matcher arrays
    ({"a": [["x"]]}, "a", "array"),
    ({"a": ["x", []]}, "a", "array"),
    # 6. matcher objects: empty, several keys, unknown or mis-cased operators
    ({"a": [{}]}, "a", "operator"),
    ({"a": [{"prefix": "a", "suffix": "b"}]}, "a", "exactly one operator"),
    ({"a": [{"numeric": [">", 1], "exists": True}]}, "a", "exactly one operator"),
    ({"a": [{"contains": "x"}]}, "a", "unrecognized"),
    ({"a": [{"Prefix": "x"}]}, "a", "unrecognized"),
    # 7. operator value types
    ({"a": [{"cidr": 10}]}, "a", "cidr"),
    ({"a": [{"numeric": 5}]}, "a", "numeric"),
    ({"a": [{"exists": 1}]}, "a", "exists"),
]


@pytest.mark.parametrize(("pattern", "path", "problem"), R11_INVALID)
def test_r11_invalid_patterns(pattern: Any, path: str, problem: str) -> None:
    refuse(pattern, path, problem)


@pytest.mark.parametrize(
    "pattern",
    [
        {"a": [{"prefix": ""}]},
        {"a": [{"suffix": ""}]},
        {"a": [""]},
        {"a": [None]},
        {"a": ["x", "x", 1, 1.0]},
        {"a": ["x", 5, True, None, False]},
        {"a": [{"exists": True}, {"exists": False}, "x", {"numeric": [">", 1]}, {"anything-but": "y"}]},
        '{"a": [1e400, -1e400, 0.30000000000000001, 9007199254740993, 123456789012345678901234567890]}',
        {"a": [10**400]},
        {"a": [{"wildcard": ""}], "b": [{"equals-ignore-case": ""}], "c": [{"anything-but": ""}]},
        {"a": {"b": {"c": {"d": {"e": {"f": ["deep"]}}}}}},
        {"": [""]},
        {"a.b": {"c.d": ["x"]}},
        {"$or": [{"a": ["1"]}, {"b": ["1"]}]},
    ],
)
def test_r11_not_errors(pattern: Any) -> None:
    accept(pattern)


# -- R12 the lambda profile ---------------------------------------------------------------------------------------


LAMBDA_REFUSED = [
    {"wildcard": "a*"},
    {"wildcard": "abc"},
    {"cidr": "10.0.0.0/8"},
    {"exactly": "a"},
    {"anything-but": {"prefix": "a"}},
    {"anything-but": {"suffix": "a"}},
    {"anything-but": {IGNORE_CASE: "a"}},
    {"anything-but": {"wildcard": "a*"}},
    {"anything-but": {"prefix": ["a", "b"]}},
]


@pytest.mark.parametrize("matcher", LAMBDA_REFUSED)
def test_r12_lambda_profile_refuses_what_pipes_and_lambda_do_not_offer(matcher: dict[str, Any]) -> None:
    pattern = {"x": {"$or": [{"a": ["1"]}, {"b": {"c": ["1", matcher]}}]}}
    accept(pattern)
    accept(pattern, profile="eventbridge")
    refuse(pattern, "x.$or[1].b.c", "Lambda", profile="lambda")


@pytest.mark.parametrize(
    "matcher",
    ["x", "", None, True, 5, 1e300, {"prefix": "a"}, {"prefix": ""}, {"prefix": {IGNORE_CASE: "a"}}, {"suffix": "a"},
     {"suffix": {IGNORE_CASE: "a"}}, {IGNORE_CASE: "a"}, {"anything-but": "a"}, {"anything-but": ["a", "b"]},
     {"anything-but": 5}, {"anything-but": [1, 2]}, {"numeric": ["=", 5]}, {"numeric": [">", 0, "<=", 5]},
     {"exists": True}, {"exists": False}],
)  # fmt: skip
def test_r12_lambda_profile_accepts_the_common_operators(matcher: object) -> None:
    compiled = accept({"a": [matcher], "$or": [{"b": ["1"]}, {"c": ["2"]}]}, profile="lambda")
    assert compiled.matches({"a": matcher, "b": "1"}) in (True, False)


def test_r12_lambda_profile_still_validates_everything_else() -> None:
    refuse({"a": [{"prefix": 5}]}, "a", "prefix", profile="lambda")
    refuse({"a": [{"numeric": [">", 5, "<", 5]}]}, "a", "bottom", profile="lambda")
    refuse(_sized(4097), "(root)", "4096", profile="lambda")  # Lambda's Filter.Pattern limit (R11 item 13)
    refuse({"$or": [{"a": ["1"]}]}, "$or", "at least 2", profile="lambda")


def test_r12_lambda_profile_matches_like_eventbridge() -> None:
    pattern = {"a": [{"anything-but": ["x"]}], "n": [{"numeric": [">", 0]}], "p": [{"prefix": "o"}]}
    lam = compile_pattern(pattern, profile="lambda")
    default = compile_pattern(pattern)
    for event in ({"a": "y", "n": 1, "p": "ok"}, {"a": "x", "n": 1, "p": "ok"}, {"a": "y", "n": 0, "p": "ok"}):
        assert lam.matches(event) is default.matches(event) is decide(lam, event)
