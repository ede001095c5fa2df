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

from collections.abc import Callable, Hashable
from typing import Any

from eventbus.routing import casefold
from eventbus.routing.affixes import AffixTable
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
from eventbus.routing.ranges import RangeTree
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


class ValueIndex:
    """The anchors filed under one path."""

    def __init__(self) -> None:
        self.size = 0
        self.strings: dict[str, list[SubRuleId]] = {}
        self.numbers: dict[Hashable, list[SubRuleId]] = {}
        self.literals: dict[str, list[SubRuleId]] = {}
        self.addresses: dict[tuple[int, int], dict[int, list[SubRuleId]]] = {}
        # Prefixes and wildcards by their literal head; suffixes and wildcards with no head by their literal tail.
        self.prefixes = AffixTable(from_end=False)
        self.suffixes = AffixTable(from_end=True)
        # Ignore-case matchers by the case-insensitive key of their text (see casefold.index_key).
        self.folded: dict[str, list[Checked]] = {}
        self.folded_prefixes = AffixTable(from_end=False)
        self.folded_suffixes = AffixTable(from_end=True)
        self.ranges = RangeTree()
        self.any_value: list[SubRuleId] = []
        self.scanned: list[Checked] = []

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
            return self.prefixes.count(wildcard.head)
        return self.suffixes.count(wildcard.tail)

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
        (table.add if add else table.remove)(key, checked[1], matcher)
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
        table, key = (self.prefixes, wildcard.head) if wildcard.head else (self.suffixes, wildcard.tail)
        if not key:
            return False
        (table.add if add else table.remove)(key, checked[1], matcher)
        return True

    # -- looking up ---------------------------------------------------------------------------------------

    def collect(self, values: list[Any], out: set[SubRuleId]) -> None:
        """Add to ``out`` every sub-rule whose anchor one of ``values`` satisfies."""
        strings = self.strings
        for value in values:
            if isinstance(value, str):
                hit = strings.get(value)
                if hit is not None:
                    out.update(hit)
                if self.prefixes:
                    self.prefixes.collect(value, out)
                if self.suffixes:
                    self.suffixes.collect(value, out)
                if self.has_other_text_tables:
                    self.probe_other_text(value, out)
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

    @property
    def has_other_text_tables(self) -> bool:
        """Whether a string can hit something besides exact strings, prefixes and suffixes."""
        return bool(self.folded or self.folded_prefixes or self.folded_suffixes or self.addresses)

    @property
    def checks_every_value(self) -> bool:
        """Whether some anchors are tried on every value (``exists``, or matchers no key narrows down)."""
        return bool(self.scanned or self.any_value)

    def probe_other_text(self, text: str, out: set[SubRuleId]) -> None:
        """What a string hits in the ignore-case and address tables."""
        if self.folded or self.folded_prefixes or self.folded_suffixes:
            key = casefold.index_key(text)
            for matcher, sub_rule in self.folded.get(key, ()):
                if matcher.matches(text):
                    out.add(sub_rule)
            if self.folded_prefixes:
                self.folded_prefixes.collect(key, out, text)
            if self.folded_suffixes:
                self.folded_suffixes.collect(key, out, text)
        if self.addresses:
            self._probe_address(text, out)

    def _probe_number(self, value: int | float | NumberLiteral, out: set[SubRuleId]) -> None:
        if self.numbers:
            hit = self.numbers.get(number_key(value))
            if hit is not None:
                out.update(hit)
        if self.ranges:
            number = numeric_double(value)
            if number is not None:
                self.ranges.stab(number, out)

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
