"""A function specialised for a few rules: read their paths, test their conditions inline (the fast path).

For a pattern, or a router holding a handful of rules, one generated function does all the work: it reads each
watched path once (:mod:`eventbus.routing.readers`) and evaluates every sub-rule as one ``and`` of inline
condition tests (:mod:`eventbus.routing.predicates`), with no index, no intermediate collections and no calls
for the common operators. Events the readers cannot read directly (an array on the way to a watched path, a
dotted key reaching one, an unusual value type) go to the general evaluator given, which also takes anything
that is not exactly a ``dict``.

Generated for a rule ``{"type": ["order.paid"], "data": {"amount": [{"numeric": [">", 100]}]}}``, the body
checks that the event has no ``"data.amount"`` key, reads ``type`` and ``data`` with ``event.get``, then
``amount`` from ``data``, and tests ``s0 == c0`` and ``c1 < s1 < c2`` (``generated_source()`` on a pattern or
router shows it all).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from eventbus.routing.codegen import FunctionSource
from eventbus.routing.conditions import Condition, SubRule
from eventbus.routing.predicates import condition_test, rank
from eventbus.routing.readers import emit_reads
from eventbus.routing.slots import HELPERS

# Past this many conditions in all, a generated function costs more to compile than it saves.
MAX_INLINE_CONDITIONS = 1024
# Generated code reads every watched path with a lookup; the general evaluator walks the keys an event has.
# Past this many paths, the walk is the cheaper one.
MAX_READ_PATHS = 128

Decide = Callable[[Any], Any]
# What a check binds that is the same for every rule of its shape: keys and key sets of the paths it reads, and
# limits. Functions of one shape share those cells (see `FunctionSource.build_sharing`).
SHARED_NAMES = frozenset({"k", "g", "l"})


def fits_inline(sub_rules: Sequence[SubRule]) -> bool:
    """Whether a function testing ``sub_rules`` inline is worth generating (see the limits above)."""
    if sum(len(sub_rule) for sub_rule in sub_rules) > MAX_INLINE_CONDITIONS:
        return False
    return len({c.path for sub_rule in sub_rules for c in sub_rule}) <= MAX_READ_PATHS


def _any_sub_rule(src: FunctionSource, sub_rules: Sequence[SubRule], slots: dict[str, str]) -> str:
    """One expression: whether any of ``sub_rules`` holds."""
    alternatives = []
    for sub_rule in sub_rules:
        ordered = sorted(sub_rule, key=rank)
        alternatives.append(" and ".join(condition_test(src, c, slots[c.path]) for c in ordered) or "True")
    if len(alternatives) == 1:
        return alternatives[0]
    return " or ".join(f"({alternative})" for alternative in alternatives)


def _open(src: FunctionSource, sub_rules: Sequence[SubRule], general: Decide) -> dict[str, str]:
    """Emit the entry checks and the reads; return path -> slot variable."""
    fall_back = src.bind(general, "general")
    with src.block("if type(event) is not dict:"):
        src.line(f"return {fall_back}(event)")
    paths = dict.fromkeys(c.path for sub_rule in sub_rules for c in sub_rule)
    with src.block("try:"):
        slots = emit_reads(src, paths, "event")
        if not paths:
            src.line("pass")
    with src.block("except FallbackError:"):
        src.line(f"return {fall_back}(event)")
    return slots


def pattern_function(sub_rules: Sequence[SubRule], general: Decide) -> tuple[Decide, FunctionSource]:
    """``event -> bool``: whether any sub-rule holds; ``general(event)`` decides what the fast path cannot."""
    src = FunctionSource("matches", "event")
    slots = _open(src, sub_rules, general)
    with src.block(f"if {_any_sub_rule(src, sub_rules, slots) if sub_rules else 'False'}:"):
        src.line("return True")
    src.line("return False")
    return src.build(HELPERS), src


def check_function(conditions: Sequence[Condition]) -> Decide:
    """``event -> bool`` for a dict event: whether all ``conditions`` hold; raises ``FallbackError`` as readers do.

    The router verifies its candidate sub-rules with these (the conditions left once the anchor held).
    """
    src = FunctionSource("check", "event")
    slots = emit_reads(src, dict.fromkeys(c.path for c in conditions), "event")
    ordered = sorted(conditions, key=rank)
    src.line(f"return {' and '.join(condition_test(src, c, slots[c.path]) for c in ordered) or 'True'}")
    return src.build_sharing(HELPERS, SHARED_NAMES)


def router_function(
    rules: Sequence[tuple[Any, Sequence[SubRule]]], general: Decide, unique: Callable[[list[Any]], list[Any]]
) -> tuple[Decide, FunctionSource]:
    """``event -> targets`` for ``(target, sub-rules)`` pairs in rule order; ``unique`` drops repeated targets."""
    src = FunctionSource("route", "event")
    slots = _open(src, [s for _, sub_rules in rules for s in sub_rules], general)
    src.line("found = []")
    for target, sub_rules in rules:
        with src.block(f"if {_any_sub_rule(src, sub_rules, slots)}:"):
            src.line(f"found.append({src.bind(target, 't')})")
    if len(rules) > 1 and not _distinct([target for target, _ in rules]):
        with src.block("if len(found) > 1:"):
            src.line(f"return {src.bind(unique, 'unique')}(found)")
    src.line("return found")
    return src.build(HELPERS), src


def _distinct(targets: list[Any]) -> bool:
    """Whether no two targets are equal, so matched targets never need deduplicating."""
    try:
        return all(not (a == b) for i, a in enumerate(targets) for b in targets[i + 1 :])  # noqa: SIM201
    except Exception:
        return False
