"""Property tests: the router answers exactly what each compiled pattern answers on its own.

The strategies (see ``routing_strategies``) draw patterns and events from small pools of keys and values so that
they meet often: nested objects, arrays of objects (array consistency), dotted keys, every operator, ``$or`` and
``exists: false``.
"""

from __future__ import annotations

import json
from random import Random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from routing_strategies import EVENTS, MANY_RULES_SETTINGS, PATTERNS, SETTINGS, compile_all, witness

from eventbus.routing import InvalidPatternError, Router, compile_pattern


@MANY_RULES_SETTINGS
@given(st.lists(PATTERNS, min_size=1, max_size=8), st.lists(EVENTS, max_size=3), st.randoms())
def test_router_answers_what_each_pattern_answers(
    objects: list[dict[str, Any]], events: list[Any], rnd: Random
) -> None:
    patterns = compile_all(objects)
    events = events + [witness(obj, rnd) for obj in objects]
    router: Router[int] = Router()
    for number, pattern in enumerate(patterns):
        router.add(pattern, number)
    for event in events:
        expected = [n for n, p in enumerate(patterns) if p.matches(event)]
        assert router.match(event) == expected
        assert router.match_json(json.dumps(event)) == expected


@MANY_RULES_SETTINGS
@given(st.lists(PATTERNS, min_size=2, max_size=6), st.lists(EVENTS, max_size=2), st.data())
def test_adding_then_removing_a_rule_changes_nothing(
    objects: list[dict[str, Any]], events: list[Any], data: st.DataObject
) -> None:
    rnd = data.draw(st.randoms())
    events = events + [witness(obj, rnd) for obj in objects]
    patterns = compile_all(objects)
    router: Router[int] = Router()
    for number, pattern in enumerate(patterns):
        router.add(pattern, number)
    before = [router.match(event) for event in events]
    extra = data.draw(PATTERNS)
    try:
        extra_id = router.add(extra, -1)
    except InvalidPatternError:
        return
    router.remove(extra_id)
    assert [router.match(event) for event in events] == before
    if patterns:
        removed = data.draw(st.integers(0, len(patterns) - 1))
        router.remove(removed)
        expected = [[n for n in answer if n != removed] for answer in before]
        assert [router.match(event) for event in events] == expected


@SETTINGS
@given(PATTERNS, EVENTS, st.randoms())
def test_text_and_dict_patterns_agree(obj: dict[str, Any], event: Any, rnd: Random) -> None:
    if rnd.random() < 0.5:
        event = witness(obj, rnd)
    try:
        from_dict = compile_pattern(obj)
    except InvalidPatternError:
        return
    from_text = compile_pattern(json.dumps(obj))
    assert from_dict.matches(event) == from_text.matches(event)
    assert from_dict.matches_json(json.dumps(event)) == from_dict.matches(event)


@SETTINGS
@given(PATTERNS, EVENTS, st.randoms())
def test_router_with_one_rule_is_the_pattern(obj: dict[str, Any], event: Any, rnd: Random) -> None:
    if rnd.random() < 0.7:
        event = witness(obj, rnd)
    try:
        pattern = compile_pattern(obj)
    except InvalidPatternError:
        return
    router: Router[str] = Router()
    router.add(pattern, "only")
    assert (router.match(event) == ["only"]) == pattern.matches(event)
