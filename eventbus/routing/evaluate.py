"""Deciding one sub-rule against the values read from an event (spec R2.3, R7, R10).

Without objects inside arrays every value is consistent with every other, and a sub-rule holds when each
condition holds on its own. Otherwise event-ruler's array-consistent search applies: walk the conditions in path
order, pick for each a satisfying value consistent with the values picked so far, and let an ``exists: false``
condition pass when no value of its path is consistent with those picks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

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


class _MembershipTrie:
    """Distinct memberships, nested by array and element, to list those consistent with some picks quickly."""

    __slots__ = ("arrays", "membership")

    def __init__(self) -> None:
        self.membership: Membership | None = None
        self.arrays: dict[int, dict[int, _MembershipTrie]] = {}

    def insert(self, membership: Membership) -> None:
        node = self
        for array_id, index in membership:
            node = node.arrays.setdefault(array_id, {}).setdefault(index, _MembershipTrie())
        node.membership = membership

    def consistent_with(self, chosen: Chosen) -> Iterator[Membership]:
        if self.membership is not None:
            yield self.membership
        for array_id, elements in self.arrays.items():
            pinned = chosen.get(array_id)
            if pinned is None:
                for child in elements.values():
                    yield from child.consistent_with(chosen)
            else:
                element = elements.get(pinned)
                if element is not None:
                    yield from element.consistent_with(chosen)


class _Search:
    """Depth-first search over the conditions in path order, as event-ruler's array-consistent finder walks."""

    def __init__(self, conditions: Sequence[BoundCondition], tracked: Tracked) -> None:
        self.allows_absence = [condition.allows_absence for _, condition in conditions]
        # Per condition: where its values sit, and where its satisfying values sit.
        self.present: list[_MembershipTrie] = []
        self.satisfying: list[_MembershipTrie] = []
        for path_id, condition in conditions:
            present, satisfying = _MembershipTrie(), _MembershipTrie()
            for value, membership in tracked.get(path_id, ()):
                present.insert(membership)
                if condition.value_matches(value):
                    satisfying.insert(membership)
            self.present.append(present)
            self.satisfying.append(satisfying)
        # (condition position, picks so far) states already shown to lead nowhere.
        self.dead_ends: set[tuple[int, frozenset[tuple[int, int]]]] = set()

    def run(self, position: int, chosen: Chosen) -> bool:
        if position == len(self.present):
            return True
        state = (position, frozenset(chosen.items()))
        if state in self.dead_ends:
            return False
        if self.allows_absence[position]:
            absent = next(self.present[position].consistent_with(chosen), None) is None
            if absent and self.run(position + 1, chosen):
                return True
        for membership in self.satisfying[position].consistent_with(chosen):
            following = {**chosen, **dict(membership)} if membership else chosen
            if self.run(position + 1, following):
                return True
        self.dead_ends.add(state)
        return False
