"""Deciding one sub-rule against the values read from an event (spec R2.3, R7, R10).

Without objects inside arrays every value is consistent with every other, and a sub-rule holds when each
condition holds on its own. Otherwise event-ruler's array-consistent search applies: walk the conditions in path
order, pick for each a satisfying value consistent with the values picked so far, and let an ``exists: false``
condition pass when no value of its path is consistent with those picks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventbus.routing.conditions import Condition
from eventbus.routing.fields import Found, Membership, Tracked

# A condition bound to the id its path has in some path trie.
BoundCondition = tuple[int, Condition]
Chosen = dict[int, int]


def holds(conditions: Sequence[BoundCondition], found: Found) -> bool:
    """The sub-rule on an event whose values are all mutually consistent."""
    for path_id, condition in conditions:
        values = found.get(path_id)
        if values is None:
            if not condition.allows_absence:
                return False
        elif not condition.any_value_matches(values):
            return False
    return True


def holds_consistently(conditions: Sequence[BoundCondition], tracked: Tracked) -> bool:
    """The sub-rule under array-consistent matching (R10.1, R10.2)."""
    return _Search(conditions, tracked).run(0, {})


def _consistent(chosen: Chosen, membership: Membership) -> bool:
    return all(chosen.get(array_id, index) == index for array_id, index in membership)


class _Search:
    def __init__(self, conditions: Sequence[BoundCondition], tracked: Tracked) -> None:
        self.conditions = conditions
        self.tracked = tracked
        # (condition index, picks so far) states already shown to lead nowhere.
        self.dead_ends: set[tuple[int, frozenset[tuple[int, int]]]] = set()

    def run(self, position: int, chosen: Chosen) -> bool:
        if position == len(self.conditions):
            return True
        state = (position, frozenset(chosen.items()))
        if state in self.dead_ends:
            return False
        path_id, condition = self.conditions[position]
        entries: list[tuple[Any, Membership]] = self.tracked.get(path_id, [])
        absent = condition.allows_absence and not any(_consistent(chosen, m) for _, m in entries)
        if absent and self.run(position + 1, chosen):
            return True
        tried: set[Membership] = set()
        for value, membership in entries:
            if membership in tried or not _consistent(chosen, membership):
                continue
            if condition.value_matches(value):
                tried.add(membership)
                following = {**chosen, **dict(membership)} if membership else chosen
                if self.run(position + 1, following):
                    return True
        self.dead_ends.add(state)
        return False
