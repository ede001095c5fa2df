"""Per-path value index: from one event value to the sub-rules whose anchor condition it satisfies.

Each sub-rule in a router is filed under one *anchor* condition (the one expected to bring it up least often,
see :mod:`eventbus.routing.anchoring`); the index of the anchor's path maps values to those sub-rules.

Lookups cost a few hash probes per value whatever the number of rules: exact strings, numbers and literals by
hash; prefixes and suffixes by one probe per distinct length (stopping once no longer key can match); CIDR
blocks by one probe per distinct prefix length; case-insensitive and wildcard patterns by a hash of their
case-folded text or literal head/tail, then checked; numeric ranges through a segment tree. Only matchers that
accept most values (``anything-but``, ``exists``, wildcards with no literal end) are tried one by one.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any

from eventbus.routing import casefold
from eventbus.routing.ip import network_of, parse_ip
from eventbus.routing.matchers import (
    Cidr,
    EqualsIp,
    EqualsLiteral,
    EqualsNumber,
    EqualsString,
    Exists,
    IgnoreCase,
    Matcher,
    NumericRange,
    Prefix,
    Suffix,
    WildcardMatcher,
)
from eventbus.routing.numbers import NumberLiteral, number_key, numeric_double
from eventbus.routing.wildcard import Wildcard

SubRuleId = int
Checked = tuple[Matcher, SubRuleId]


def _file(table: dict[Any, list[Any]], key: Hashable, item: Any) -> None:
    table.setdefault(key, []).append(item)


def _unfile(table: dict[Any, list[Any]], key: Hashable, item: Any) -> None:
    bucket = table[key]
    bucket.remove(item)
    if not bucket:
        del table[key]


class _ByLength:
    """Strings grouped by length, probed with one slice per distinct length (prefixes or suffixes).

    ``stems`` counts the proper leading parts (trailing parts, for suffixes) of every key: once a slice of the
    probed text is neither a key nor a stem, no longer key can match and probing stops.
    """

    __slots__ = ("from_end", "lengths", "stems", "tables")

    def __init__(self, *, from_end: bool) -> None:
        self.from_end = from_end
        self.tables: dict[int, dict[str, list[Any]]] = {}
        self.lengths: list[int] = []
        self.stems: Counter[str] = Counter()

    def _parts(self, text: str) -> list[str]:
        return [text[-size:] if self.from_end else text[:size] for size in range(1, len(text))]

    def add(self, text: str, item: Any) -> None:
        table = self.tables.get(len(text))
        if table is None:
            table = self.tables[len(text)] = {}
            self.lengths = sorted(self.tables)
        if text not in table:
            self.stems.update(self._parts(text))
        _file(table, text, item)

    def remove(self, text: str, item: Any) -> None:
        table = self.tables[len(text)]
        _unfile(table, text, item)
        if text not in table:
            stems = self.stems
            for part in self._parts(text):
                stems[part] -= 1
                if not stems[part]:
                    del stems[part]
        if not table:
            del self.tables[len(text)]
            self.lengths = sorted(self.tables)

    def count(self, text: str) -> int:
        return len(self.tables.get(len(text), {}).get(text, ()))

    def buckets(self, text: str) -> list[list[Any]]:
        """The buckets of every key that is a prefix (or suffix) of ``text``."""
        size = len(text)
        tables, stems, from_end = self.tables, self.stems, self.from_end
        found = []
        for length in self.lengths:
            if length > size:
                break
            part = text[size - length :] if from_end else text[:length]
            bucket = tables[length].get(part)
            if bucket is not None:
                found.append(bucket)
            if part not in stems:
                break
        return found


class _RangeTree:
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


class ValueIndex:
    """The anchors filed under one path."""

    def __init__(self) -> None:
        self.size = 0
        self.strings: dict[str, list[SubRuleId]] = {}
        self.numbers: dict[Hashable, list[SubRuleId]] = {}
        self.literals: dict[str, list[SubRuleId]] = {}
        self.addresses: dict[tuple[int, int], dict[int, list[SubRuleId]]] = {}
        self.prefixes = _ByLength(from_end=False)
        self.suffixes = _ByLength(from_end=True)
        self.folded: dict[str, list[Checked]] = {}
        self.folded_prefixes = _ByLength(from_end=False)
        self.folded_suffixes = _ByLength(from_end=True)
        self.wildcard_heads = _ByLength(from_end=False)
        self.wildcard_tails = _ByLength(from_end=True)
        self.ranges = _RangeTree()
        self.any_value: list[SubRuleId] = []
        self.scanned: list[Checked] = []
        # The non-empty prefix/suffix tables, each with: are its buckets (matcher, sub-rule) pairs to check,
        # and is it keyed by the case-insensitive key of the text rather than the text itself?
        self._affix_tables: tuple[tuple[_ByLength, bool, bool], ...] = ()

    # -- filing -------------------------------------------------------------------------------------------

    def add(self, matcher: Matcher, sub_rule: SubRuleId) -> None:
        self._change(matcher, sub_rule, _file, add=True)
        self.size += 1

    def remove(self, matcher: Matcher, sub_rule: SubRuleId) -> None:
        self._change(matcher, sub_rule, _unfile, add=False)
        self.size -= 1

    def fanout(self, matcher: Matcher) -> int:
        """How many anchors already sit in the bucket this matcher would join (to spread anchors out)."""
        if isinstance(matcher, EqualsString | EqualsNumber | EqualsLiteral):
            table, key = self._exact_bucket(matcher)
            return len(table.get(key, ()))
        if isinstance(matcher, EqualsIp):
            return len(self.addresses.get((matcher.family_bits,) * 2, {}).get(matcher.address, ()))
        if isinstance(matcher, Cidr):
            table = self.addresses.get((matcher.family_bits, matcher.prefix_bits), {})
            return len(table.get(matcher.network, ()))
        if isinstance(matcher, Prefix | Suffix):
            return (self.prefixes if isinstance(matcher, Prefix) else self.suffixes).count(matcher.text)
        return self._fanout_checked(matcher)

    def _exact_bucket(
        self, matcher: EqualsString | EqualsNumber | EqualsLiteral
    ) -> tuple[dict[Any, list[SubRuleId]], Hashable]:
        if isinstance(matcher, EqualsString):
            return self.strings, matcher.text
        if isinstance(matcher, EqualsNumber):
            return self.numbers, matcher.key
        return self.literals, _literal_key(matcher.literal)

    def _fanout_checked(self, matcher: Matcher) -> int:
        if isinstance(matcher, NumericRange):
            return len(self.ranges)
        if isinstance(matcher, Exists):
            return len(self.any_value)
        if isinstance(matcher, IgnoreCase) and casefold.indexable(matcher.text):
            key = casefold.index_key(matcher.text)
            if matcher.anchor == "full":
                return len(self.folded.get(key, ()))
            return (self.folded_prefixes if matcher.anchor == "start" else self.folded_suffixes).count(key)
        if isinstance(matcher, WildcardMatcher):
            return self._fanout_wildcard(matcher.wildcard)
        return len(self.scanned)

    def _fanout_wildcard(self, wildcard: Wildcard) -> int:
        if wildcard.whole is not None:
            return len(self.strings.get(wildcard.whole, ()))
        if wildcard.head:
            return self.wildcard_heads.count(wildcard.head)
        return self.wildcard_tails.count(wildcard.tail)

    def _change(
        self,
        matcher: Matcher,
        sub_rule: SubRuleId,
        edit: Callable[[dict[Any, list[Any]], Hashable, Any], None],
        *,
        add: bool,
    ) -> None:
        checked = (matcher, sub_rule)
        if isinstance(matcher, EqualsString | EqualsNumber | EqualsLiteral):
            edit(*self._exact_bucket(matcher), sub_rule)
        elif isinstance(matcher, EqualsIp):
            self._change_address(matcher.family_bits, matcher.family_bits, matcher.address, sub_rule, add=add)
        elif isinstance(matcher, Cidr):
            self._change_address(matcher.family_bits, matcher.prefix_bits, matcher.network, sub_rule, add=add)
        elif isinstance(matcher, NumericRange):
            (self.ranges.add if add else self.ranges.remove)(matcher, sub_rule)
        elif isinstance(matcher, Exists):
            (self.any_value.append if add else self.any_value.remove)(sub_rule)
        elif not self._change_keyed(matcher, checked, edit, add=add):
            # Matchers that accept most values, or that no key can narrow down, are tried one by one.
            (self.scanned.append if add else self.scanned.remove)(checked)
        self._affix_tables = self._active_affix_tables()

    def _change_keyed(
        self,
        matcher: Matcher,
        checked: Checked,
        edit: Callable[[dict[Any, list[Any]], Hashable, Any], None],
        *,
        add: bool,
    ) -> bool:
        """File string matchers that a key narrows down; False when this one must be scanned."""
        if isinstance(matcher, Prefix | Suffix) and matcher.text:
            table = self.prefixes if isinstance(matcher, Prefix) else self.suffixes
            (table.add if add else table.remove)(matcher.text, checked[1])
            return True
        if isinstance(matcher, IgnoreCase):
            return self._change_folded(matcher, checked, edit, add=add)
        if isinstance(matcher, WildcardMatcher):
            return self._change_wildcard(matcher, checked, edit, add=add)
        return False

    def _change_address(self, family: int, prefix_bits: int, network: int, sub_rule: SubRuleId, *, add: bool) -> None:
        table = self.addresses.setdefault((family, prefix_bits), {})
        if add:
            _file(table, network, sub_rule)
        else:
            _unfile(table, network, sub_rule)
            if not table:
                del self.addresses[(family, prefix_bits)]

    def _change_folded(
        self,
        matcher: IgnoreCase,
        checked: Checked,
        edit: Callable[[dict[Any, list[Any]], Hashable, Any], None],
        *,
        add: bool,
    ) -> bool:
        text = matcher.text
        if not casefold.indexable(text):
            return False
        key = casefold.index_key(text)
        if matcher.anchor == "full":
            edit(self.folded, key, checked)
            return True
        if not text or not casefold.same_length(text):
            return False
        table = self.folded_prefixes if matcher.anchor == "start" else self.folded_suffixes
        (table.add if add else table.remove)(key, checked)
        return True

    def _change_wildcard(
        self,
        matcher: WildcardMatcher,
        checked: Checked,
        edit: Callable[[dict[Any, list[Any]], Hashable, Any], None],
        *,
        add: bool,
    ) -> bool:
        wildcard = matcher.wildcard
        if wildcard.whole is not None:
            edit(self.strings, wildcard.whole, checked[1])
            return True
        table, key = (self.wildcard_heads, wildcard.head) if wildcard.head else (self.wildcard_tails, wildcard.tail)
        if not key:
            return False
        (table.add if add else table.remove)(key, checked)
        return True

    def _active_affix_tables(self) -> tuple[tuple[_ByLength, bool, bool], ...]:
        tables = (
            (self.prefixes, False, False),
            (self.suffixes, False, False),
            (self.wildcard_heads, True, False),
            (self.wildcard_tails, True, False),
            (self.folded_prefixes, True, True),
            (self.folded_suffixes, True, True),
        )
        return tuple(entry for entry in tables if entry[0].tables)

    # -- looking up ---------------------------------------------------------------------------------------

    def collect(self, values: list[Any], out: set[SubRuleId]) -> None:
        """Add to ``out`` every sub-rule whose anchor one of ``values`` satisfies."""
        strings = self.strings
        for value in values:
            if isinstance(value, str):
                hit = strings.get(value)
                if hit is not None:
                    out.update(hit)
                if self._affix_tables:
                    self._probe_affixes(value, out)
                if self.folded:
                    self._probe_folded(value, out)
                if self.addresses:
                    self._probe_address(value, out)
            elif value is None or value is True or value is False:
                hit = self.literals.get(_literal_key(value))
                if hit is not None:
                    out.update(hit)
            elif isinstance(value, int | float | NumberLiteral):
                self._probe_number(value, out)
            for matcher, sub_rule in self.scanned:
                if matcher.matches(value):
                    out.add(sub_rule)
        if self.any_value and values:
            out.update(self.any_value)

    def _probe_number(self, value: int | float | NumberLiteral, out: set[SubRuleId]) -> None:
        if self.numbers:
            hit = self.numbers.get(number_key(value))
            if hit is not None:
                out.update(hit)
        if self.ranges:
            number = numeric_double(value)
            if number is not None:
                self.ranges.stab(number, out)

    def _probe_affixes(self, text: str, out: set[SubRuleId]) -> None:
        folded_key = None
        for table, checked, folded in self._affix_tables:
            key = text
            if folded:
                folded_key = folded_key or casefold.index_key(text)
                key = folded_key
            for bucket in table.buckets(key):
                if not checked:
                    out.update(bucket)
                    continue
                for matcher, sub_rule in bucket:
                    if matcher.matches(text):
                        out.add(sub_rule)

    def _probe_address(self, text: str, out: set[SubRuleId]) -> None:
        parsed = parse_ip(text)
        if parsed is None:
            return
        family, address = parsed
        for (table_family, prefix_bits), table in self.addresses.items():
            if table_family == family:
                hit = table.get(network_of(address, family, prefix_bits))
                if hit is not None:
                    out.update(hit)

    def _probe_folded(self, text: str, out: set[SubRuleId]) -> None:
        for matcher, sub_rule in self.folded.get(casefold.index_key(text), ()):
            if matcher.matches(text):
                out.add(sub_rule)


_BUCKET_KEYS: dict[type[Matcher], Callable[[Any], Hashable]] = {
    EqualsString: lambda m: ("=", m.text),
    EqualsNumber: lambda m: ("#", m.key),
    EqualsLiteral: lambda m: ("literal", _literal_key(m.literal)),
    EqualsIp: lambda m: ("ip", m.family_bits, m.address),
    Cidr: lambda m: ("cidr", m.family_bits, m.prefix_bits, m.network),
    Prefix: lambda m: ("prefix", m.text),
    Suffix: lambda m: ("suffix", m.text),
    IgnoreCase: lambda m: ("ignore-case", m.anchor, m.text),
    WildcardMatcher: lambda m: ("wildcard", m.wildcard.source),
    NumericRange: lambda m: ("numeric", m.low, m.low_inclusive, m.high, m.high_inclusive),
}


def bucket_key(matcher: Matcher) -> Hashable:
    """What a matcher keys on, so that two matchers naming the same value or argument compare equal."""
    key_of = _BUCKET_KEYS.get(type(matcher))
    return key_of(matcher) if key_of is not None else (type(matcher).__name__,)


def _literal_key(literal: object) -> str:
    # Keyed by name: True == 1 in Python, and a literal must never meet a number.
    return "null" if literal is None else "true" if literal is True else "false"
