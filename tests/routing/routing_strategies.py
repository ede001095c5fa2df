"""Hypothesis strategies shared by the routing property tests: patterns and events that meet often.

Patterns and events are drawn from small pools of keys and values so that they meet often: nested objects,
arrays of objects (array consistency), dotted keys, every operator, ``$or`` and ``exists: false``.
:func:`witness` builds an event meant to satisfy a drawn pattern.
"""

from __future__ import annotations

import os
from random import Random
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from eventbus.routing import InvalidPatternError, Pattern, compile_pattern

KEYS = ["a", "b", "c"]
STRINGS = ["", "x", "xy", "X", "yx", "10.0.0.1", "10.0.0.9", "::1", "0:0::1", "img.png", "ß", "SS"]
NUMBERS: list[int | float] = [0, 1, 5, 300, -1, 0.5, 300.0, -0.0, 2.5e10]
LEAVES = st.one_of(st.sampled_from(STRINGS), st.sampled_from(NUMBERS), st.sampled_from([True, False, None]))

EVENT_VALUES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from([*KEYS, "a.b"]), inner, max_size=3),
    ),
    max_leaves=6,
)
EVENTS = st.dictionaries(st.sampled_from([*KEYS, "a.b"]), EVENT_VALUES, max_size=4)

STRING_OPERATORS = st.one_of(
    st.builds(lambda s: {"prefix": s}, st.sampled_from(STRINGS)),
    st.builds(lambda s: {"suffix": s}, st.sampled_from(STRINGS)),
    st.builds(lambda s: {"equals-ignore-case": s}, st.sampled_from(STRINGS)),
    st.builds(lambda s: {"prefix": {"equals-ignore-case": s}}, st.sampled_from(STRINGS)),
    st.builds(lambda s: {"suffix": {"equals-ignore-case": s}}, st.sampled_from(STRINGS)),
    st.builds(lambda s: {"wildcard": s}, st.sampled_from(["*", "x*", "*y", "x*y", "*.png", "", "x"])),
    st.builds(lambda s: {"cidr": s}, st.sampled_from(["10.0.0.0/24", "10.0.0.8/29", "::/64"])),
)
ANYTHING_BUT = st.one_of(
    st.builds(lambda s: {"anything-but": s}, st.sampled_from(STRINGS)),
    st.builds(lambda n: {"anything-but": n}, st.sampled_from(NUMBERS)),
    st.builds(lambda s: {"anything-but": s}, st.lists(st.sampled_from(STRINGS), min_size=1, max_size=3)),
    st.builds(lambda s: {"anything-but": {"prefix": s}}, st.sampled_from(["x", "1", "i"])),
    st.builds(lambda s: {"anything-but": {"suffix": s}}, st.sampled_from(["y", ".png"])),
    st.builds(lambda s: {"anything-but": {"equals-ignore-case": s}}, st.sampled_from(STRINGS)),
    st.builds(lambda s: {"anything-but": {"wildcard": s}}, st.sampled_from(["*", "x*", ""])),
)
NUMERIC = st.sampled_from(
    [["=", 5], ["<", 1], ["<=", 0], [">", 0], [">=", 300], [">", -1, "<", 1], [">=", 0.5, "<=", 300]]
).map(lambda n: {"numeric": n})
MATCHERS = st.one_of(
    LEAVES,
    STRING_OPERATORS,
    ANYTHING_BUT,
    NUMERIC,
    st.sampled_from([{"exists": True}, {"exists": False}]),
)
LEAF_ARRAYS = st.lists(MATCHERS, min_size=1, max_size=3)


def _pattern_objects(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    member = LEAF_ARRAYS if depth == 0 else st.one_of(LEAF_ARRAYS, _pattern_objects(depth - 1))
    plain = st.dictionaries(st.sampled_from([*KEYS, "a.b"]), member, min_size=1, max_size=3)
    if depth == 0:
        return plain
    branches = st.lists(_pattern_objects(depth - 1), min_size=2, max_size=3)
    with_or = st.tuples(plain, branches).map(lambda pair: {**pair[0], "$or": pair[1]})
    return st.one_of(plain, with_or)


PATTERNS = _pattern_objects(2)
# EVENTBUS_PROPERTY_EXAMPLES raises the number of examples for a longer hunt than the suite's default.
EXAMPLES = int(os.environ.get("EVENTBUS_PROPERTY_EXAMPLES", "120"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Drawing lists of nested patterns is what costs time here; fewer examples keep the suite fast.
MANY_RULES_SETTINGS = settings(SETTINGS, max_examples=max(EXAMPLES // 2, 1))
_ABSENT = object()


_SATISFYING: dict[str, Any] = {
    "prefix": lambda arg, rnd: arg.replace("*", "q") + "z",
    "suffix": lambda arg, rnd: "z" + arg,
    "wildcard": lambda arg, rnd: arg.replace("*", "q"),
    "equals-ignore-case": lambda arg, rnd: arg.swapcase(),
    "cidr": lambda arg, rnd: "::5" if arg.startswith("::") else arg.split("/")[0].replace(".8", ".9"),
    "numeric": lambda arg, rnd: float(arg[1]) + (0 if arg[0] in ("=", ">=", "<=") else rnd.choice([-0.5, 0.5])),
    "exists": lambda arg, rnd: rnd.choice(STRINGS) if arg else _ABSENT,
    "anything-but": lambda arg, rnd: rnd.choice(["zz", 42]),
}


def _satisfying(matcher: Any, rnd: Random) -> Any:
    """A value that (most likely) satisfies ``matcher``, so that drawn events often match drawn patterns."""
    if not isinstance(matcher, dict):
        return matcher
    ((operator, argument),) = matcher.items()
    if isinstance(argument, dict) and operator != "anything-but":
        ((_, text),) = argument.items()
        return text.upper() + "z" if operator == "prefix" else "z" + text.swapcase()
    return _SATISFYING[operator](argument, rnd)


def witness(obj: dict[str, Any], rnd: Random) -> dict[str, Any]:
    """An event built to satisfy ``obj``, with arrays and distractors mixed in at random."""
    event: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "$or":
            part = witness(rnd.choice(value), rnd)
        elif isinstance(value, dict):
            part = {key: witness(value, rnd)}
        else:
            leaf = _satisfying(rnd.choice(value), rnd)
            part = {} if leaf is _ABSENT else {key: leaf}
        for name, item in part.items():
            if rnd.random() < 0.3:
                distractor = {"c": 1} if isinstance(item, dict) else rnd.choice(STRINGS)
                event[name] = [item, distractor]
            else:
                event[name] = item
    return event


def compile_all(objects: list[dict[str, Any]]) -> list[Pattern]:
    compiled = []
    for obj in objects:
        try:
            compiled.append(compile_pattern(obj))
        except InvalidPatternError:
            continue  # a drawn pattern may be invalid (a reserved word in an $or branch, say)
    return compiled
