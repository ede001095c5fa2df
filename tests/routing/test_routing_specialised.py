"""The generated fast path answers exactly what the general evaluator answers (R1-R10 through generated code).

Patterns compile to a specialised function, and routers to either an inline function (a few rules) or an index
dispatcher with generated checks (many rules). Each is compared with the general evaluator on drawn patterns and
events, including what the generated code must hand over to it: arrays, objects inside arrays, dotted keys,
unusual value types.
"""

from __future__ import annotations

import copy
import enum
import json
import math
import pickle
from collections import OrderedDict
from random import Random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from routing_strategies import (
    EVENT_VALUES,
    EXAMPLES,
    KEYS,
    MANY_RULES_SETTINGS,
    PATTERNS,
    SETTINGS,
    compile_all,
    witness,
)

from eventbus.routing import Pattern, Router, compile_pattern
from eventbus.routing.numbers import NumberLiteral
from eventbus.routing.pattern import SPECIALISE_AFTER

W1_RULE = {"type": ["order.paid"], "data": {"amount": [{"numeric": [">", 100]}]}}


class Tag(str):
    """A ``str`` subclass, as some event builders produce."""


class Level(enum.IntEnum):
    HIGH = 300


# Values the generated code reads by type: wide integers (exact doubles or not), infinities, subclasses...
ODD_LEAVES = st.sampled_from(
    [2**53 + 1, 2**60, -(2**63), 10**20, math.inf, -math.inf, math.nan, 1e300, Tag("x"), Level.HIGH, (1, 2)]
)
NUMBER_LITERALS = st.sampled_from([NumberLiteral("300"), NumberLiteral("0.30000000000000001"), NumberLiteral("-0")])
ODD_VALUES = st.one_of(
    EVENT_VALUES, ODD_LEAVES, NUMBER_LITERALS, st.lists(st.one_of(ODD_LEAVES, EVENT_VALUES), max_size=3)
)
ODD_EVENTS = st.dictionaries(
    st.sampled_from([*KEYS, "a.b", "b.c"]),
    st.one_of(ODD_VALUES, st.dictionaries(st.sampled_from([*KEYS, "b.c"]), ODD_VALUES, max_size=3)),
    max_size=4,
)


def _events(draw_events: list[Any], objects: list[dict[str, Any]], rnd: Random) -> list[Any]:
    return draw_events + [witness(obj, rnd) for obj in objects]


def _general(router: Router[Any], event: Any) -> list[Any]:
    return router._match_general(event)


@SETTINGS
@given(PATTERNS, st.lists(st.one_of(ODD_EVENTS, ODD_EVENTS.map(OrderedDict)), max_size=3), st.randoms())
def test_specialised_pattern_answers_what_the_general_evaluator_answers(
    obj: dict[str, Any], events: list[Any], rnd: Random
) -> None:
    patterns = compile_all([obj])
    if not patterns:
        return
    pattern = patterns[0]
    specialised = pattern._specialise()
    for event in _events(events, [obj, obj], rnd):
        assert specialised(event) == pattern._matches_general(event), event


@MANY_RULES_SETTINGS
@given(st.lists(PATTERNS, min_size=1, max_size=6), st.lists(ODD_EVENTS, max_size=3), st.randoms())
def test_both_generated_routers_answer_what_the_general_evaluator_answers(
    objects: list[dict[str, Any]], events: list[Any], rnd: Random
) -> None:
    router: Router[int] = Router()
    for number, pattern in enumerate(compile_all(objects)):
        router.add(pattern, number % 3)  # repeated targets: each must come once
    inline, _ = router._generate(inline=True)
    dispatcher, _ = router._generate(inline=False)
    for event in _events(events, objects, rnd):
        expected = _general(router, event)
        assert inline(event) == expected, event
        assert dispatcher(event) == expected, event


@settings(MANY_RULES_SETTINGS, max_examples=max(EXAMPLES // 4, 1))
@given(st.lists(PATTERNS, min_size=2, max_size=6), st.lists(ODD_EVENTS, max_size=2), st.data())
def test_generated_routers_follow_rules_coming_and_going(
    objects: list[dict[str, Any]], events: list[Any], data: st.DataObject
) -> None:
    rnd = data.draw(st.randoms())
    events = _events(events, objects, rnd)
    router: Router[int] = Router()
    ids = [router.add(pattern, number) for number, pattern in enumerate(compile_all(objects))]
    for rule_id in data.draw(st.permutations(ids)):
        router.remove(rule_id)
        for event in events:
            expected = _general(router, event)
            assert router._generate(inline=True)[0](event) == expected
            assert router._generate(inline=False)[0](event) == expected


def test_w1_rule_reads_two_paths_and_tests_them_inline() -> None:
    pattern = compile_pattern(W1_RULE)
    source = pattern.generated_source()
    assert source.count(".get(") == 3  # type, data, data.amount
    assert "raise FallbackError" in source  # a "data.amount" key next to "data" (R1.3)
    event = {"type": "order.paid", "data": {"amount": 120.5, "currency": "EUR"}}
    specialised = pattern._specialise()
    assert specialised(event)
    assert not specialised({**event, "type": "order.placed"})
    assert not specialised({**event, "data": {"amount": 100}})
    assert specialised({**event, "data": {"amount": 101}})


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"type": "order.paid", "data.amount": 150}, True),  # a dotted key is the same path (R1.3)
        ({"type": "order.paid", "data": {"amount": 50}, "data.amount": 150}, True),
        ({"type": ["x", "order.paid"], "data": {"amount": [1, [150.0]]}}, True),  # arrays are transparent (R1.2)
        ({"type": "order.paid", "data": [{"amount": 1}, {"amount": 150}]}, True),
        ({"type": "order.paid", "data": {"amount": True}}, False),  # a boolean is no number
        ({"type": "order.paid", "data": {"amount": math.inf}}, False),  # not a JSON number
        ({"type": "order.paid", "data": {"amount": 10**17}}, True),  # wide, but an exact double (R3.3)
        ({"type": "order.paid", "data": {"amount": 2**60}}, False),  # its shortest double is another number
        ({"type": "order.paid", "data": {"amount": NumberLiteral("1e3")}}, True),
        ({"type": Tag("order.paid"), "data": {"amount": 150}}, True),
        ({"type": "order.paid", "data": {"amount": Level.HIGH}}, True),
        ({"type": "order.paid", "data": "amount"}, False),
        ({"type": "order.paid"}, False),
        (OrderedDict(type="order.paid", data={"amount": 150}), True),
    ],
)
def test_w1_rule_on_events_the_generated_code_hands_over(event: Any, expected: bool) -> None:
    pattern = compile_pattern(W1_RULE)
    assert pattern._specialise()(event) is expected
    assert pattern._matches_general(event) is expected
    router: Router[str] = Router()
    router.add(pattern, "w1")
    for generated in (router._generate(inline=True)[0], router._generate(inline=False)[0]):
        assert generated(event) == (["w1"] if expected else [])


def test_non_objects_are_not_events() -> None:
    pattern = compile_pattern({"a": [{"exists": False}]})
    router: Router[str] = Router()
    router.add(pattern, "absent")
    for event in (None, [], "a", 1, [{"b": 1}]):
        assert pattern._specialise()(event) is False
        assert router._generate(inline=True)[0](event) == []
        assert router._generate(inline=False)[0](event) == []
    assert router._generate(inline=False)[0]({}) == ["absent"]


HOSTILE = ['"', "'", "\\", "\n", '"); import os; os.system("x"); ("', "{k0}", "__import__", "\u2028", "a.b"]


@pytest.mark.parametrize("text", HOSTILE)
def test_pattern_text_never_becomes_code(text: str) -> None:
    pattern = compile_pattern({text: [text, {"prefix": text}], "n": {text: [{"anything-but": [text]}]}})
    code = pattern.generated_source().split("\n\n# ")[0]  # the source, without its legend of bound names
    for line in code.splitlines():
        assert text not in line.strip()
    event = {text: text, "n": {text: "other"}}
    assert pattern._specialise()(event) is True
    router: Router[str] = Router()
    router.add(pattern, "hit")
    assert router._generate(inline=True)[0](event) == ["hit"]
    assert router._generate(inline=False)[0](event) == ["hit"]


def test_deep_patterns_compile_to_flat_code() -> None:
    depth = 150
    pattern_obj: dict[str, Any] = {"leaf": ["x"]}
    event: dict[str, Any] = {"leaf": "x"}
    for level in range(depth):
        pattern_obj, event = {f"k{level % 3}": pattern_obj}, {f"k{level % 3}": event}
    pattern = compile_pattern(pattern_obj, max_size=10_000)
    assert pattern._specialise()(event) is True
    assert pattern._specialise()({"k0": {}}) is False


def test_pattern_specialises_after_a_few_matches() -> None:
    pattern = compile_pattern(W1_RULE)
    event = {"type": "order.paid", "data": {"amount": 150}}
    for _ in range(SPECIALISE_AFTER - 1):
        assert pattern.matches(event)
    assert pattern._specialised is None
    assert pattern.matches(event)
    assert pattern._specialised is not None


def test_router_regenerates_after_each_change() -> None:
    router: Router[str] = Router()
    router.add({"type": ["a"]}, "a")
    event = {"type": "b"}
    for _ in range(SPECIALISE_AFTER):
        assert router.match(event) == []
    assert router._route is not None
    router.add({"type": ["b"]}, "b")
    assert router._route is None
    assert router.match(event) == ["b"]


def test_many_rules_use_the_dispatcher_and_few_rules_the_inline_function() -> None:
    router: Router[int] = Router()
    router.add(W1_RULE, 0)
    assert "found.append" in router.generated_source()
    for number in range(1, 40):
        router.add({"type": [f"type-{number}"], "data": {"amount": [{"numeric": [">", number]}]}}, number)
    source = router.generated_source()
    assert "found.update" in source
    assert router._generate()[0]({"type": "type-7", "data": {"amount": 8}}) == [7]


def test_generated_functions_of_one_shape_share_their_code() -> None:
    first, second = (
        compile_pattern(W1_RULE),
        compile_pattern({"type": ["x"], "data": {"amount": [{"numeric": [">", 5]}]}}),
    )
    assert first._specialise().__code__ is second._specialise().__code__
    assert first._specialise()({"type": "order.paid", "data": {"amount": 101}})
    assert not second._specialise()({"type": "order.paid", "data": {"amount": 101}})


def test_checks_of_one_shape_share_the_cells_of_their_keys_and_keep_their_own_values() -> None:
    from eventbus.routing.specialised import check_function

    def check(pattern: dict[str, Any]) -> Any:
        (sub_rule,) = compile_pattern(pattern).subrules
        return check_function(list(sub_rule))

    first = check({"data": {"customer": {"id": ["c-1"]}}})
    second = check({"data": {"customer": {"id": ["c-2"]}}})
    elsewhere = check({"meta": {"origin": {"id": ["c-1"]}}})  # the same shape on other keys
    assert first.__code__ is second.__code__ is elsewhere.__code__
    cells = dict(zip(first.__code__.co_freevars, first.__closure__ or (), strict=True))
    other_cells = dict(zip(second.__code__.co_freevars, second.__closure__ or (), strict=True))
    keys = [name for name in cells if name.startswith("k")]
    assert keys
    assert all(cells[name] is other_cells[name] for name in keys), "keys of one shape are bound once"
    assert cells["c0"] is not other_cells["c0"]
    event = {"data": {"customer": {"id": "c-1"}}, "meta": {"origin": {"id": "c-2"}}}
    assert (first(event), second(event), elsewhere(event)) == (True, False, False)


def test_router_answers_stay_right_as_json(tmp_path: Any) -> None:
    patterns: list[Pattern] = [compile_pattern(W1_RULE), compile_pattern({"data": {"amount": [{"exists": True}]}})]
    router: Router[int] = Router()
    for number, pattern in enumerate(patterns):
        router.add(pattern, number)
    raw = json.dumps({"type": "order.paid", "data": {"amount": 0.30000000000000001e3}})
    for _ in range(2 * SPECIALISE_AFTER):
        assert router.match_json(raw) == [0, 1]


def test_copies_and_pickles_generate_their_own_functions() -> None:
    pattern = compile_pattern(W1_RULE)
    pattern._specialise()
    router: Router[str] = Router()
    router.add(pattern, "w1")
    router._specialise()
    event = {"type": "order.paid", "data": {"amount": 150}}
    for copied in (pickle.loads(pickle.dumps(router)), copy.deepcopy(router)):  # noqa: S301 - our own bytes
        copied.add({"type": ["order.paid"]}, "paid")
        assert copied.match(event) == ["w1", "paid"]
        assert copied._specialise()(event) == ["w1", "paid"]
    assert router.match(event) == ["w1"]
    assert pickle.loads(pickle.dumps(pattern))._specialise()(event)  # noqa: S301 - our own bytes


def test_rules_on_very_many_paths_keep_the_general_walk() -> None:
    # Reading hundreds of paths one lookup each would cost more than walking the keys a small event has.
    router: Router[int] = Router()
    for number in range(300):
        router.add({"detail": {f"field{number}": ["x"]}}, number)
    assert "no generated function" in router.generated_source()
    assert router._specialise()({"detail": {"field7": "x", "other": 1}}) == [7]
    wide = compile_pattern({"detail": {f"field{number}": [{"exists": False}] for number in range(200)}}, max_size=9999)
    assert "no generated function" in wide.generated_source()
    assert wide._specialise()({"detail": {"other": 1}})
