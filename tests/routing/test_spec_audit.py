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
