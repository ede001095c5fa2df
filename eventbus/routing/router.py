"""The router: many (pattern, target) rules, one pass per event, cost independent of the number of rules.

Each rule's pattern is split into sub-rules (one per ``$or`` combination). Every sub-rule is filed under one
*anchor*: its most selective condition that only a value can satisfy, indexed by path and value
(:mod:`eventbus.routing.index`). Matching an event then:

1. reads the values of the watched paths out of the event (only those paths are walked);
2. looks each value up in its path's index, which yields the sub-rules whose anchor it satisfies;
3. adds the sub-rules anchored on an ``exists: false`` path the event lacks (a sub-rule with no other anchor);
4. checks each such candidate's remaining conditions, with array consistency when the event has objects
   inside arrays (R10);
5. returns the targets of the matched rules, each once, in the order the rules were added.

The work is proportional to the event's size and to the number of candidates, which a selective anchor keeps
to the rules that are about to match.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from eventbus.routing.anchoring import PathStatistics, choose_anchor
from eventbus.routing.conditions import SubRule
from eventbus.routing.evaluate import BoundCondition, holds, holds_consistently
from eventbus.routing.fields import PathTrie, collect, collect_tracked
from eventbus.routing.index import ValueIndex
from eventbus.routing.pattern import DEFAULT_MAX_SIZE, Pattern, compile_pattern

T = TypeVar("T")
_FIRST_REVIEW = 4


@dataclass(slots=True)
class _Rule(Generic[T]):
    target: T
    pattern: Pattern
    sub_rules: tuple[int, ...]


@dataclass(slots=True)
class _SubRule:
    rule_id: int
    conditions: tuple[BoundCondition, ...]
    anchor: BoundCondition
    # The conditions left to check once the anchor is known to hold (simple events only).
    rest: tuple[BoundCondition, ...]


class Router(Generic[T]):
    """Routes events to the targets of the rules whose patterns match them.

    ``max_size`` and ``profile`` apply to patterns given as dicts or text (see :func:`compile_pattern`).
    """

    def __init__(self, *, max_size: int = DEFAULT_MAX_SIZE, profile: str | None = None) -> None:
        self.max_size = max_size
        self.profile = profile
        self._rules: dict[int, _Rule[T]] = {}
        self._sub_rules: dict[int, _SubRule] = {}
        self._paths = PathTrie()
        self._indexes: dict[int, ValueIndex] = {}
        # Path id -> sub-rules anchored on that path being absent (sub-rules made only of exists:false paths).
        self._absent_anchors: dict[int, list[int]] = {}
        self._statistics = PathStatistics()
        self._next_rule_id = 0
        self._next_sub_rule_id = 0
        # Anchors chosen while few rules were known are reviewed whenever the number of sub-rules doubles.
        self._next_review = _FIRST_REVIEW

    def __len__(self) -> int:
        return len(self._rules)

    def __iter__(self) -> Iterator[tuple[int, Pattern, T]]:
        """The rules as ``(rule_id, pattern, target)``, in the order they were added."""
        for rule_id, rule in self._rules.items():
            yield rule_id, rule.pattern, rule.target

    def add(self, pattern: Mapping[str, Any] | str | Pattern, target: T) -> int:
        """Add a rule and return its id. Raises :class:`InvalidPatternError` for an invalid pattern."""
        if not isinstance(pattern, Pattern):
            pattern = compile_pattern(pattern, max_size=self.max_size, profile=self.profile)
        rule_id = self._next_rule_id
        self._next_rule_id += 1
        sub_rule_ids = tuple(self._file(rule_id, sub_rule) for sub_rule in pattern.subrules)
        self._rules[rule_id] = _Rule(target, pattern, sub_rule_ids)
        return rule_id

    def remove(self, rule_id: int) -> None:
        """Remove a rule by the id :meth:`add` returned. Raises ``KeyError`` for an unknown id."""
        rule = self._rules.pop(rule_id, None)
        if rule is None:
            raise KeyError(f"no rule with id {rule_id} in this router")
        for sub_rule_id in rule.sub_rules:
            self._unfile(sub_rule_id)

    def match(self, event: Mapping[str, Any]) -> list[T]:
        """The targets of every rule matching a parsed JSON event, each once, in the order rules were added."""
        if not isinstance(event, dict):
            return []
        root = self._paths.root
        found, nested = collect(event, root)
        candidates: set[int] = set()
        indexes = self._indexes
        for path_id, values in found.items():
            index = indexes.get(path_id)
            if index is not None:
                index.collect(values, candidates)
        for path_id, anchored in self._absent_anchors.items():
            if path_id not in found:
                candidates.update(anchored)
        if not candidates:
            return []
        sub_rules = self._sub_rules
        matched: set[int] = set()
        if nested:
            tracked = collect_tracked(event, root)
            for sub_rule_id in candidates:
                sub_rule = sub_rules[sub_rule_id]
                if sub_rule.rule_id not in matched and holds_consistently(sub_rule.conditions, tracked):
                    matched.add(sub_rule.rule_id)
        else:
            for sub_rule_id in candidates:
                sub_rule = sub_rules[sub_rule_id]
                if sub_rule.rule_id not in matched and holds(sub_rule.rest, found):
                    matched.add(sub_rule.rule_id)
        return self._targets(matched)

    def match_json(self, raw: bytes | bytearray | memoryview | str) -> list[T]:
        """:meth:`match` on raw JSON, numbers compared with their spelling (R3.3)."""
        from eventbus.routing.parse import loads_event

        return self.match(loads_event(raw))

    def _targets(self, matched: set[int]) -> list[T]:
        rules = self._rules
        if len(matched) == 1:
            return [rules[next(iter(matched))].target]
        targets: list[T] = []
        seen: set[Any] = set()
        for rule_id in sorted(matched):
            target = rules[rule_id].target
            try:
                if target in seen:
                    continue
                seen.add(target)
            except TypeError:  # an unhashable target: fall back to equality
                if target in targets:
                    continue
            targets.append(target)
        return targets

    # -- filing sub-rules ---------------------------------------------------------------------------------

    def _file(self, rule_id: int, sub_rule: SubRule) -> int:
        sub_rule_id = self._next_sub_rule_id
        self._next_sub_rule_id += 1
        bound = tuple((self._paths.acquire(c.path), c) for c in sub_rule)
        for condition in bound:
            self._statistics.add(condition)
        anchor = choose_anchor(bound, self._indexes, self._statistics)
        self._sub_rules[sub_rule_id] = _SubRule(rule_id, bound, anchor, ())
        self._attach(sub_rule_id, anchor)
        if len(self._sub_rules) >= self._next_review:
            self._review_anchors()
        return sub_rule_id

    def _unfile(self, sub_rule_id: int) -> None:
        sub_rule = self._sub_rules[sub_rule_id]
        self._detach(sub_rule_id)
        del self._sub_rules[sub_rule_id]
        for condition in sub_rule.conditions:
            self._statistics.remove(condition)
            self._paths.release(condition[1].path)

    def _attach(self, sub_rule_id: int, anchor: BoundCondition) -> None:
        sub_rule = self._sub_rules[sub_rule_id]
        sub_rule.anchor = anchor
        sub_rule.rest = tuple(b for b in sub_rule.conditions if b is not anchor)
        path_id, condition = anchor
        index = self._indexes.get(path_id)
        if index is None:
            index = self._indexes[path_id] = ValueIndex()
        for matcher in condition.matchers:
            index.add(matcher, sub_rule_id)
        if condition.allows_absence:
            self._absent_anchors.setdefault(path_id, []).append(sub_rule_id)

    def _detach(self, sub_rule_id: int) -> None:
        path_id, condition = self._sub_rules[sub_rule_id].anchor
        index = self._indexes[path_id]
        for matcher in condition.matchers:
            index.remove(matcher, sub_rule_id)
        if index.size == 0:
            del self._indexes[path_id]
        if condition.allows_absence:
            anchored = self._absent_anchors[path_id]
            anchored.remove(sub_rule_id)
            if not anchored:
                del self._absent_anchors[path_id]

    def _review_anchors(self) -> None:
        """Choose every anchor again with what is known now; done each time the router doubles in size."""
        self._next_review = 2 * len(self._sub_rules)
        for sub_rule_id, sub_rule in self._sub_rules.items():
            self._detach(sub_rule_id)
            self._attach(sub_rule_id, choose_anchor(sub_rule.conditions, self._indexes, self._statistics))
