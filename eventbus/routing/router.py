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

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from eventbus.routing.anchoring import PathStatistics, choose_anchor
from eventbus.routing.conditions import SubRule
from eventbus.routing.evaluate import BoundCondition, holds, holds_consistently
from eventbus.routing.fields import PathTrie, collect, collect_tracked
from eventbus.routing.index import ValueIndex
from eventbus.routing.pattern import SPECIALISE_AFTER, Pattern, compile_pattern, load_event

if TYPE_CHECKING:
    from eventbus.routing.codegen import FunctionSource

T = TypeVar("T")
_FIRST_REVIEW = 4
# The per-event costs that choose between testing rules inline and dispatching (see _inline_is_cheaper).
_PATH_READ = 3
_SUB_RULE_TEST = 2
_DISPATCH_OVERHEAD = 9
_MAX_INLINE_SUB_RULES = 32


def _rule_id(hit: tuple[int, Any, Any]) -> int:
    return int(hit[0])


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

    def __init__(self, *, max_size: int | None = None, profile: str | None = None) -> None:
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
        # The function generated for the current rules (see _specialise); None after a change, until the router
        # has matched a few events: generating costs as much as a few hundred matches.
        self._route: Callable[[Any], list[T]] | None = None
        self._calls = 0
        # Per sub-rule, for the dispatcher: (rule id, generated check of its ``rest``, target); made when first
        # needed, dropped when its anchor changes.
        self._checks: dict[int, tuple[int, Callable[[dict[str, Any]], bool], T]] = {}

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
        self._changed()
        return rule_id

    def remove(self, rule_id: int) -> None:
        """Remove a rule by the id :meth:`add` returned. Raises ``KeyError`` for an unknown id."""
        rule = self._rules.pop(rule_id, None)
        if rule is None:
            raise KeyError(f"no rule with id {rule_id} in this router")
        for sub_rule_id in rule.sub_rules:
            self._unfile(sub_rule_id)
        self._changed()

    def match(self, event: Mapping[str, Any]) -> list[T]:
        """The targets of every rule matching a parsed JSON event, each once, in the order rules were added."""
        route = self._route
        if route is not None:
            return route(event)
        self._calls += 1
        if self._calls >= SPECIALISE_AFTER:
            return self._specialise()(event)
        return self._match_general(event)

    def __getstate__(self) -> dict[str, Any]:
        # Generated functions are not picklable, and they read this router's own tables: copies make their own.
        return {**self.__dict__, "_route": None, "_calls": 0, "_checks": {}}

    def generated_source(self) -> str:
        """The source of the function generated for the current rules, with what its names stand for (debugging)."""
        source = self._generate()[1]
        return source.describe() if source is not None else "# no generated function: the general evaluator runs"

    # -- the generated function -----------------------------------------------------------------------------

    def _changed(self) -> None:
        self._route = None
        self._calls = 0

    def _specialise(self) -> Callable[[Any], list[T]]:
        """Generate the function :meth:`match` runs until the rules change, and return it."""
        if self._route is None:
            self._route = self._generate()[0]
        return self._route

    def _generate(self, *, inline: bool | None = None) -> tuple[Callable[[Any], list[T]], FunctionSource | None]:
        """The function for the current rules: every rule tested inline (a few rules), or the index dispatcher
        (``None`` as source when neither is worth generating and the general evaluator runs).

        ``inline`` forces one or the other (tests compare both with the general evaluator).
        """
        from eventbus.routing.specialised import MAX_READ_PATHS, fits_inline, router_function

        rules = [(rule.target, rule.pattern.subrules) for rule in self._rules.values()]
        if inline is None:
            inline = self._inline_is_cheaper() and fits_inline([s for _, subs in rules for s in subs])
        if inline:
            return router_function(rules, self._match_general, self._unique)
        from eventbus.routing.dispatch import dispatcher_function

        paths = {path_id: path for path, path_id in self._paths.items()}
        indexes = {paths[path_id]: index for path_id, index in self._indexes.items()}
        absent = {paths[path_id]: tuple(anchored) for path_id, anchored in self._absent_anchors.items()}
        if len(indexes.keys() | absent.keys()) > MAX_READ_PATHS:
            return self._match_general, None
        return dispatcher_function(indexes, absent, self._match_general, self._checks, self._make_check, self._hits)

    def _inline_is_cheaper(self) -> bool:
        """Whether testing every rule inline costs less per event than the dispatcher.

        Inline, every watched path is read and every sub-rule tested; the dispatcher reads only the anchor
        paths but has a fixed cost (the candidate set, the checks). Costs in units of about a path read, as
        measured (instructions per event) on W1's rules and the routing benchmark's.
        """
        anchor_paths = len(self._indexes.keys() | self._absent_anchors.keys())
        inline = _PATH_READ * len(self._paths) + _SUB_RULE_TEST * len(self._sub_rules)
        dispatch = _DISPATCH_OVERHEAD + _PATH_READ * anchor_paths
        return len(self._sub_rules) <= _MAX_INLINE_SUB_RULES and inline <= dispatch

    def _make_check(self, sub_rule_id: int) -> tuple[int, Callable[[dict[str, Any]], bool], T]:
        """Generate the check of a sub-rule's remaining conditions (once, when it is first a candidate)."""
        from eventbus.routing.specialised import check_function

        sub_rule = self._sub_rules[sub_rule_id]
        check = check_function([condition for _, condition in sub_rule.rest])
        entry = self._checks[sub_rule_id] = (sub_rule.rule_id, check, self._rules[sub_rule.rule_id].target)
        return entry

    def _hits(self, hits: list[tuple[int, Any, T]]) -> list[T]:
        """The targets of several matched sub-rules: in rule order, each once."""
        return self._unique([target for _, _, target in sorted(hits, key=_rule_id)])

    def _match_general(self, event: Any) -> list[T]:
        """What :meth:`match` answers, by walking the event along every watched path."""
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
        return self.match(load_event(raw))

    def _targets(self, matched: set[int]) -> list[T]:
        rules = self._rules
        if len(matched) == 1:
            return [rules[next(iter(matched))].target]
        return self._unique([rules[rule_id].target for rule_id in sorted(matched)])

    @staticmethod
    def _unique(found: list[T]) -> list[T]:
        """``found`` without repeated targets, first occurrences kept."""
        targets: list[T] = []
        seen: set[Any] = set()
        for target in found:
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
        self._checks.pop(sub_rule_id, None)
        for condition in sub_rule.conditions:
            self._statistics.remove(condition)
            self._paths.release(condition[1].path)

    def _attach(self, sub_rule_id: int, anchor: BoundCondition) -> None:
        sub_rule = self._sub_rules[sub_rule_id]
        sub_rule.anchor = anchor
        sub_rule.rest = tuple(b for b in sub_rule.conditions if b is not anchor)
        self._checks.pop(sub_rule_id, None)
        path_id, condition = anchor
        if condition.matchers:
            # An anchor with no matchers (exists: false alone) needs no index, only the absent anchors below; an
            # empty index would be dropped by the next detach of another sub-rule on the path.
            index = self._indexes.get(path_id)
            if index is None:
                index = self._indexes[path_id] = ValueIndex()
            for matcher in condition.matchers:
                index.add(matcher, sub_rule_id)
        if condition.allows_absence:
            self._absent_anchors.setdefault(path_id, []).append(sub_rule_id)

    def _detach(self, sub_rule_id: int) -> None:
        path_id, condition = self._sub_rules[sub_rule_id].anchor
        if condition.matchers:
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
