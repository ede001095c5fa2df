"""Pattern validation and compilation into sub-rules (spec §2, §9, §11, §12).

Every check of the §11 checklist happens here, at compile time, and each failure is an
:class:`InvalidPatternError` naming the place in the pattern. Members are read in order and a leaf path that is
written again replaces the earlier conditions on it (R2.5, R9.3); each ``$or`` forks the sub-rules built so far,
one copy per branch (R9.2).
"""

from __future__ import annotations

from typing import Any

from eventbus.routing.conditions import Condition, SubRule, path_order_key
from eventbus.routing.errors import InvalidPatternError, shown
from eventbus.routing.matchers import Matcher, WildcardMatcher
from eventbus.routing.numbers import NumberLiteral, int_text
from eventbus.routing.operators import OperatorCompiler, plain_matcher

OR_KEY = "$or"
# Keys that would read as operators inside an $or branch, so event-ruler refuses them as field names there.
RESERVED_IN_OR = frozenset(
    {
        "exactly",
        "equals-ignore-case",
        "prefix",
        "suffix",
        "anything-but",
        "exists",
        "wildcard",
        "numeric",
        "cidr",
        "=",
        "<",
        "<=",
        ">",
        ">=",
        "regex",
        "not-wildcard",
        "not-equals-ignore-case",
        "date-after",
        "date-on-or-after",
        "date-before",
        "date-on-or-before",
        "in-date-range",
        "ip-address-in-range",
        "ip-address-not-in-range",
    }
)
# Nested $or members multiply into sub-rules; past this many the pattern is refused rather than expanded.
MAX_SUB_RULES = 4096

PROFILES = (None, "eventbridge", "lambda")

PartialRule = dict[str, Condition]


def compile_subrules(pattern: Any, *, profile: str | None = None) -> tuple[SubRule, ...]:
    """Validate a parsed pattern and return its sub-rules. Raises :class:`InvalidPatternError`."""
    if profile not in PROFILES:
        raise ValueError(f"unknown pattern profile {profile!r}; use one of {PROFILES}")
    if not isinstance(pattern, dict):
        raise InvalidPatternError("", f"a pattern must be a JSON object, not {_json_type(pattern)}")
    compiler = _PatternCompiler(OperatorCompiler(profile))
    rules: list[PartialRule] = []
    compiler.read_object(pattern, "", "", rules, in_or=False)
    sub_rules = tuple(_ordered(rule) for rule in rules)
    compiler.check_wildcard_complexity(sub_rules)
    return sub_rules


def _ordered(rule: PartialRule) -> SubRule:
    return tuple(sorted(rule.values(), key=lambda c: path_order_key(c.path)))


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


_JSON_TYPE_NAMES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "a boolean"),
    (str, "a string"),
    ((int, float, NumberLiteral), "a number"),
    (list, "an array"),
    (dict, "an object"),
)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    for kind, name in _JSON_TYPE_NAMES:
        if isinstance(value, kind):
            return name
    return f"a {type(value).__name__}"


class _PatternCompiler:
    def __init__(self, operators: OperatorCompiler) -> None:
        self.operators = operators
        # Where in the pattern each leaf array with wildcards was read, in reading order (for complexity errors).
        self.wildcard_leaves: dict[int, str] = {}

    def check_wildcard_complexity(self, sub_rules: tuple[SubRule, ...]) -> None:
        """Refuse wildcards that together are too complex (R6.6), as EventBridge scores them.

        event-ruler keeps one automaton per path for each state its rule walk can reach, and sub-rules that
        agree on every earlier path (in path order) reach the same state: their wildcards on the next path share
        one automaton and are scored together, as in ``{"$or": [{"r": [w1]}, {"r": [w2]}]}``.
        """
        groups: dict[tuple[tuple[int, ...], str], dict[int, Condition]] = {}
        for sub_rule in sub_rules:
            for position, condition in enumerate(sub_rule):
                if id(condition) in self.wildcard_leaves:
                    earlier = tuple(id(c) for c in sub_rule[:position])
                    groups.setdefault((earlier, condition.path), {})[id(condition)] = condition
        order = {key: number for number, key in enumerate(self.wildcard_leaves)}
        for group in groups.values():
            if len(group) < 2:
                continue  # a leaf array alone was scored when it was read
            # In reading order, so that the error names the leaf array that tipped the score over.
            matchers: list[Matcher] = []
            for condition in sorted(group.values(), key=lambda c: order[id(c)]):
                matchers.extend(condition.matchers)
                self.operators.check_wildcard_complexity(matchers, self.wildcard_leaves[id(condition)])

    def read_object(
        self, obj: dict[Any, Any], prefix: str, where: str, rules: list[PartialRule], *, in_or: bool
    ) -> None:
        """Read one pattern object whose members sit at ``prefix`` (a dotted path ending in ``.``, or empty)."""
        if not obj:
            raise InvalidPatternError(where, "empty objects are not allowed")
        for key, value in obj.items():
            if not isinstance(key, str):
                raise InvalidPatternError(where, f"keys must be strings, not {shown(key)}")
            here = _join(where, key)
            if key == OR_KEY:
                self.read_or(value, prefix, here, rules)
            elif in_or and key in RESERVED_IN_OR:
                raise InvalidPatternError(here, f'"{key}" is a reserved word and cannot be a field name in $or')
            elif isinstance(value, dict):
                self.read_object(value, f"{prefix}{key}.", here, rules, in_or=in_or)
            elif isinstance(value, list):
                condition = self.read_leaf(prefix + key, value, here)
                if not rules:
                    rules.append({})
                for rule in rules:
                    rule[condition.path] = condition
            else:
                raise InvalidPatternError(
                    here, f'"{key}" must be an object or an array of match values, not {_json_type(value)}'
                )

    def read_or(self, branches: Any, prefix: str, where: str, rules: list[PartialRule]) -> None:
        if not isinstance(branches, list):
            raise InvalidPatternError(where, f"$or must be an array of objects, not {_json_type(branches)}")
        before = [dict(rule) for rule in rules]
        expanded: list[PartialRule] = []
        for index, branch in enumerate(branches):
            branch_where = f"{where}[{index}]"
            if not isinstance(branch, dict):
                raise InvalidPatternError(branch_where, f"each $or branch must be an object, not {_json_type(branch)}")
            branch_rules = [dict(rule) for rule in before] or [{}]
            self.read_object(branch, prefix, branch_where, branch_rules, in_or=True)
            expanded.extend(branch_rules)
            if len(expanded) > MAX_SUB_RULES:
                raise InvalidPatternError(where, f"the $or members expand to more than {MAX_SUB_RULES} alternatives")
        if len(branches) < 2:
            raise InvalidPatternError(where, f"$or needs at least 2 objects, got {len(branches)}")
        rules[:] = expanded

    def read_leaf(self, path: str, elements: list[Any], where: str) -> Condition:
        if not elements:
            raise InvalidPatternError(where, "empty arrays are not allowed")
        matchers: list[Matcher] = []
        allows_absence = False
        for element in elements:
            if isinstance(element, dict):
                matcher = self.operators.read(element, where)
                if matcher is None:
                    allows_absence = True
                else:
                    matchers.append(matcher)
            elif isinstance(element, list):
                raise InvalidPatternError(
                    where,
                    "a match value must be a string, number, true, false, null or an operator object, not an array",
                )
            else:
                matchers.append(plain_matcher(element, where))
        self.operators.check_wildcard_complexity(matchers, where)
        condition = Condition(path, matchers, allows_absence)
        if any(isinstance(m, WildcardMatcher) for m in matchers):
            self.wildcard_leaves[id(condition)] = where
        return condition


def compact_length(value: Any) -> int:
    """Characters of the pattern written as compact JSON (number literals as spelled)."""
    if isinstance(value, dict):
        members = sum(_string_length(str(k)) + 1 + compact_length(v) for k, v in value.items())
        return 2 + members + max(len(value) - 1, 0)
    if isinstance(value, list):
        return 2 + sum(compact_length(v) for v in value) + max(len(value) - 1, 0)
    return _scalar_length(value)


def _scalar_length(value: Any) -> int:
    if isinstance(value, str):
        return _string_length(value)
    if isinstance(value, NumberLiteral):
        text = value.text
    elif value is None or isinstance(value, bool):
        text = "null" if value is None else str(value).lower()
    else:
        text = repr(value) if isinstance(value, float) else int_text(value)
    return len(text)


def _string_length(text: str) -> int:
    import json

    return len(json.dumps(text, ensure_ascii=False))
