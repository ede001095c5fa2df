"""Choosing the condition a sub-rule is filed under in the router (its *anchor*).

An event brings up every sub-rule whose anchor it satisfies, and each one brought up costs a check, so a good
anchor is one few events satisfy. Without knowing the traffic, the guess is: an event's value at a path is one
of the values the rules name there, equally likely, so a matcher on a path where rules name ``D`` distinct
values triggers for about ``breadth / D`` of the events, times the number of sub-rules sharing its bucket.
Choices made while few rules are known are revisited as the router grows (see ``Router``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping

from eventbus.routing.conditions import Condition
from eventbus.routing.evaluate import BoundCondition
from eventbus.routing.index import ValueIndex, bucket_key
from eventbus.routing.matchers import RANGE


class PathStatistics:
    """How many distinct values (or operator arguments) the rules name at each path."""

    def __init__(self) -> None:
        self._named: dict[int, Counter[Hashable]] = {}

    def add(self, bound: BoundCondition) -> None:
        path_id, condition = bound
        keys = _value_keys(condition)
        if keys:
            named = self._named.setdefault(path_id, Counter())
            for key in keys:
                named[key] += 1

    def remove(self, bound: BoundCondition) -> None:
        path_id, condition = bound
        keys = _value_keys(condition)
        if not keys:
            return
        named = self._named[path_id]
        for key in keys:
            named[key] -= 1
            if named[key] == 0:
                del named[key]
        if not named:
            del self._named[path_id]

    def distinct(self, path_id: int) -> int:
        return max(len(self._named.get(path_id, ())), 1)


def _value_keys(condition: Condition) -> list[Hashable]:
    # Only matchers that pick out particular values tell how varied a path's values are; exists or
    # anything-but say nothing about it.
    return [bucket_key(m) for m in condition.matchers if m.breadth() < RANGE]


def expected_triggers(bound: BoundCondition, index: ValueIndex | None, statistics: PathStatistics) -> float:
    """Roughly how often an event would bring the sub-rule up if it were filed under ``bound``."""
    path_id, condition = bound
    shared = 0.0
    for matcher in condition.matchers:
        sharing = index.fanout(matcher) if index is not None else 0
        shared += (1 + sharing) * matcher.breadth()
    return shared / statistics.distinct(path_id)


def choose_anchor(
    bound: tuple[BoundCondition, ...], indexes: Mapping[int, ValueIndex], statistics: PathStatistics
) -> BoundCondition:
    """The condition to file a sub-rule under.

    Only a condition that needs a value can anchor by value. A sub-rule made only of ``exists: false``
    conditions is anchored on its first condition in path order: that one is evaluated before any array
    element is picked, so "absent" there simply means "no value at all".
    """
    needing_value = [b for b in bound if not b[1].allows_absence]
    if not needing_value:
        return bound[0]
    return min(needing_value, key=lambda b: expected_triggers(b, indexes.get(b[0]), statistics))
