"""Numeric ranges indexed for stabbing: which of many ranges contain a number (spec R6)."""

from __future__ import annotations

import bisect
import math

from eventbus.routing.matchers import NumericRange

SubRuleId = int


class RangeTree:
    """Numeric ranges answering "which ranges contain x" in O(log n + answers), rebuilt lazily after changes."""

    __slots__ = ("_entries", "_nodes", "_points", "_size")

    def __init__(self) -> None:
        self._entries: list[tuple[NumericRange, SubRuleId]] = []
        self._points: list[float] = []
        self._nodes: dict[int, list[SubRuleId]] | None = None
        self._size = 1

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, numeric: NumericRange, sub_rule: SubRuleId) -> None:
        self._entries.append((numeric, sub_rule))
        self._nodes = None

    def remove(self, numeric: NumericRange, sub_rule: SubRuleId) -> None:
        self._entries.remove((numeric, sub_rule))
        self._nodes = None

    def stab(self, number: float, out: set[SubRuleId]) -> None:
        nodes = self._nodes if self._nodes is not None else self._build()
        points = self._points
        index = bisect.bisect_left(points, number)
        # Regions alternate: 2i is the open gap below points[i], 2i+1 is points[i] itself.
        region = 2 * index + 1 if index < len(points) and points[index] == number else 2 * index
        node = region + self._size
        while node:
            bucket = nodes.get(node)
            if bucket is not None:
                out.update(bucket)
            node >>= 1

    def _build(self) -> dict[int, list[SubRuleId]]:
        bounds = {r.low for r, _ in self._entries} | {r.high for r, _ in self._entries}
        self._points = sorted(b for b in bounds if math.isfinite(b))
        regions = 2 * len(self._points) + 1
        self._size = 1 << (regions - 1).bit_length()
        nodes: dict[int, list[SubRuleId]] = {}
        for numeric, sub_rule in self._entries:
            first, last = self._region_span(numeric)
            # Standard bottom-up segment-tree cover of [first, last] with O(log n) nodes.
            left, right = first + self._size, last + self._size + 1
            while left < right:
                if left & 1:
                    nodes.setdefault(left, []).append(sub_rule)
                    left += 1
                if right & 1:
                    right -= 1
                    nodes.setdefault(right, []).append(sub_rule)
                left >>= 1
                right >>= 1
        self._nodes = nodes
        return nodes

    def _region_span(self, numeric: NumericRange) -> tuple[int, int]:
        points = self._points
        if numeric.low == -math.inf:
            first = 0
        else:
            at = bisect.bisect_left(points, numeric.low)
            first = 2 * at + 1 if numeric.low_inclusive else 2 * at + 2
        if numeric.high == math.inf:
            last = 2 * len(points)
        else:
            at = bisect.bisect_left(points, numeric.high)
            last = 2 * at + 1 if numeric.high_inclusive else 2 * at
        return first, last
