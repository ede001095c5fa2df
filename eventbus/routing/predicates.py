"""Generated tests of conditions on slots: a Python expression per condition (spec R2.3, R3-R8).

A slot (see :mod:`eventbus.routing.slots`) is ``MISSING``, one scalar of an exact JSON type, or a list of them.
The common matchers become inline expressions for the scalar case (``s0 == c1``, ``c2 < s0 < c3``...), exact
for every exact JSON type; a list goes to the condition's own ``any_value_matches``; other matchers are called.
Each expression is written so that ``MISSING`` satisfies no matcher.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from eventbus.routing.codegen import FunctionSource
from eventbus.routing.conditions import Condition
from eventbus.routing.matchers import (
    AnythingBut,
    AnythingButStrings,
    Cidr,
    EqualsIp,
    EqualsLiteral,
    EqualsNumber,
    Exists,
    Matcher,
    NumericRange,
    Prefix,
    Suffix,
)

# Integers up to this magnitude are their own double, so comparing them as Python ints is comparing doubles.
_EXACT_INT_LIMIT = 2**53


def condition_test(src: FunctionSource, condition: Condition, slot: str) -> str:
    """A boolean expression: whether ``condition`` holds on the slot variable ``slot``."""
    if not condition.matchers:
        return f"{slot} is MISSING"
    if all(type(m) is Exists for m in condition.matchers):
        # Any value at all, whether one or many.
        return "True" if condition.allows_absence else f"{slot} is not MISSING"
    alternatives = []
    if condition.exact_strings:
        alternatives.append(_exact_strings(src, condition, slot))
    alternatives.extend(_matcher_test(src, m, slot) for m in condition.other_matchers)
    scalar = " or ".join(alternatives)
    many = src.bind(condition.any_value_matches, "a")
    test = f"(({scalar}) if type({slot}) is not list else {many}({slot}))"
    return f"({slot} is MISSING or {test})" if condition.allows_absence else test


def rank(condition: Condition) -> int:
    """Where a condition goes in its sub-rule's ``and``: tests that are cheap and rarely pass come first."""
    if condition.allows_absence or not condition.matchers:
        return _LAST
    return max((_matcher_rank(m) for m in condition.other_matchers), default=0)


def _matcher_rank(matcher: Matcher) -> int:
    return _BROAD if isinstance(matcher, AnythingBut) else _RANKS.get(type(matcher), _CALLED)


def _exact_strings(src: FunctionSource, condition: Condition, slot: str) -> str:
    if len(condition.exact_strings) == 1:
        (text,) = condition.exact_strings
        return f"{slot} == {src.bind(text, 'c')}"
    # Only a string equals a string, and every exact scalar (and MISSING) is hashable.
    return f"{slot} in {src.bind(condition.exact_strings, 'c')}"


_InlineTest = Callable[[FunctionSource, Matcher, str], str | None]


def _matcher_test(src: FunctionSource, matcher: Matcher, slot: str) -> str:
    inline = _INLINE.get(type(matcher))
    if inline is not None:
        text = inline(src, matcher, slot)
        if text is not None:
            return text
    call = src.bind(matcher.matches, "m", note=type(matcher).__name__)
    if isinstance(matcher, AnythingBut):
        return f"({slot} is not MISSING and {call}({slot}))"  # a missing field never matches (R2.3)
    return f"{call}({slot})"


def _equals_number(src: FunctionSource, matcher: Matcher, slot: str) -> str | None:
    assert isinstance(matcher, EqualsNumber)
    key = matcher.key
    if type(key) is not float:
        return None  # compared by its text (R3.3): left to the matcher
    if not -_EXACT_INT_LIMIT <= key <= _EXACT_INT_LIMIT:
        # An int this wide may equal the double exactly and still be unrepresentable (2**60 against
        # 1.152921504606847e18), or be representable by a double that differs from it (10**23 against 1e23):
        # only the matcher's R3.3 key decides.
        return None
    # Within 2**53 an int equals the double exactly when its own double does, and bool is the one int that is
    # no number.
    return f"({slot} == {src.bind(key, 'c')} and type({slot}) is not bool)"


def _equals_literal(src: FunctionSource, matcher: Matcher, slot: str) -> str:
    assert isinstance(matcher, EqualsLiteral)
    return f"{slot} is {src.bind(matcher.literal, 'c')}"


def _prefix(src: FunctionSource, matcher: Matcher, slot: str) -> str:
    assert isinstance(matcher, Prefix)
    return f"(type({slot}) is str and {slot}.startswith({src.bind(matcher.text, 'c')}))"


def _suffix(src: FunctionSource, matcher: Matcher, slot: str) -> str:
    assert isinstance(matcher, Suffix)
    return f"(type({slot}) is str and {slot}.endswith({src.bind(matcher.text, 'c')}))"


def _numeric(src: FunctionSource, matcher: Matcher, slot: str) -> str:
    assert isinstance(matcher, NumericRange)
    # Strict comparisons with an infinite bound also keep infinities out; NaN fails every comparison (R6.3).
    low_op = "<=" if matcher.low_inclusive and math.isfinite(matcher.low) else "<"
    high_op = "<=" if matcher.high_inclusive and math.isfinite(matcher.high) else "<"
    low, high = src.bind(matcher.low, "c"), src.bind(matcher.high, "c")
    inside = f"{low} {low_op} {slot} {high_op} {high}"
    limit, negative_limit = src.bind(_EXACT_INT_LIMIT, "l"), src.bind(-_EXACT_INT_LIMIT, "l")
    # Wider integers may or may not be exact doubles: the matcher decides those.
    exact_int = f"({inside} if {negative_limit} <= {slot} <= {limit} else {src.bind(matcher.matches, 'm')}({slot}))"
    return f"(({inside}) if type({slot}) is float else (type({slot}) is int and {exact_int}))"


def _exists(src: FunctionSource, matcher: Matcher, slot: str) -> str:
    return f"{slot} is not MISSING"


def _anything_but_strings(src: FunctionSource, matcher: Matcher, slot: str) -> str:
    assert isinstance(matcher, AnythingButStrings)
    # Only an equal string is excluded; any other present value, of any type, is not (R5.2).
    return f"({slot} is not MISSING and {slot} not in {src.bind(matcher.texts, 'c')})"


# Rank by matcher: inline equality, other inline tests, called matchers, IP parsing, what most values pass.
_CALLED = 2
_BROAD = 4
_LAST = 5
_RANKS: dict[type[Matcher], int] = {
    EqualsNumber: 0,
    EqualsLiteral: 0,
    Prefix: 1,
    Suffix: 1,
    NumericRange: 1,
    EqualsIp: 3,
    Cidr: 3,
    Exists: _BROAD,
}

_INLINE: dict[type[Matcher], _InlineTest] = {
    EqualsNumber: _equals_number,
    EqualsLiteral: _equals_literal,
    Prefix: _prefix,
    Suffix: _suffix,
    NumericRange: _numeric,
    Exists: _exists,
    AnythingButStrings: _anything_but_strings,
}
