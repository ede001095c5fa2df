"""Prefix and suffix tables: the keys that start (or end) a string, found with one probe per distinct key length.

A table maps each key to the sub-rules filed under it: *plain* ones, whose anchor holds whenever the string has
the key as prefix (suffix), and *checked* ones (wildcards by their literal head or tail, ignore-case affixes by
their case-insensitive key), whose matcher must still accept the whole string. The same dict also holds every
*stem* (proper leading part of a key; trailing part, for suffixes), so probing the lengths in increasing order
stops at the first slice that is neither a key nor a stem: no longer key can match past it. Each probe is then a
single ``dict.get``, which the router's generated dispatcher inlines (see :mod:`eventbus.routing.dispatch`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

SubRuleId = int
Checked = tuple[Any, SubRuleId]  # (matcher, sub-rule)


class AffixEntry:
    """One key or stem: the sub-rules filed under it as a key, and how many longer keys it is a stem of."""

    __slots__ = ("checked", "plain", "stems")

    def __init__(self) -> None:
        self.plain: list[SubRuleId] = []
        self.checked: list[Checked] = []
        self.stems = 0

    def is_key(self) -> bool:
        return bool(self.plain or self.checked)


class AffixTable:
    """Keys probed as prefixes of a string (``from_end=False``) or as suffixes (``from_end=True``)."""

    __slots__ = ("_key_lengths", "entries", "from_end", "lengths")

    def __init__(self, *, from_end: bool) -> None:
        self.from_end = from_end
        self.entries: dict[str, AffixEntry] = {}
        # The distinct lengths of the keys, in increasing order, and how many keys have each.
        self.lengths: list[int] = []
        self._key_lengths: Counter[int] = Counter()

    def __bool__(self) -> bool:
        return bool(self.lengths)

    def add(self, key: str, sub_rule: SubRuleId, matcher: Any = None) -> None:
        """File ``sub_rule`` under ``key``; with a ``matcher``, as checked against the whole string."""
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = AffixEntry()
        if not entry.is_key():
            self._count_key(key, 1)
        if matcher is None:
            entry.plain.append(sub_rule)
        else:
            entry.checked.append((matcher, sub_rule))

    def remove(self, key: str, sub_rule: SubRuleId, matcher: Any = None) -> None:
        entry = self.entries[key]
        if matcher is None:
            entry.plain.remove(sub_rule)
        else:
            entry.checked.remove((matcher, sub_rule))
        if not entry.is_key():
            self._count_key(key, -1)
            if not entry.stems:
                del self.entries[key]

    def count(self, key: str) -> int:
        """How many sub-rules are filed under ``key``."""
        entry = self.entries.get(key)
        return len(entry.plain) + len(entry.checked) if entry is not None else 0

    def collect(self, key_text: str, out: set[SubRuleId], text: str | None = None) -> None:
        """Add the sub-rules of every key that starts (ends) ``key_text``; checked ones are tried on ``text``."""
        size = len(key_text)
        entries, from_end = self.entries, self.from_end
        for length in self.lengths:
            if length > size:
                break
            entry = entries.get(key_text[size - length :] if from_end else key_text[:length])
            if entry is None:
                break
            if entry.plain:
                out.update(entry.plain)
            if entry.checked:
                add_checked(entry.checked, key_text if text is None else text, out)

    def _count_key(self, key: str, change: int) -> None:
        """A key appears (``change=1``) or goes (``-1``): its length and stems are counted in or out."""
        lengths = self._key_lengths
        keys_of_this_length = lengths[len(key)] + change
        if keys_of_this_length:
            lengths[len(key)] = keys_of_this_length
        else:
            del lengths[len(key)]
        if keys_of_this_length == (1 if change > 0 else 0):  # a length appeared or went
            self.lengths = sorted(lengths)
        for size in range(1, len(key)):
            stem = key[-size:] if self.from_end else key[:size]
            entry = self.entries.get(stem)
            if entry is None:
                entry = self.entries[stem] = AffixEntry()
            entry.stems += change
            if not entry.stems and not entry.is_key():
                del self.entries[stem]


def add_checked(checked: list[Checked], text: str, out: set[SubRuleId]) -> None:
    """Add the sub-rules whose matcher accepts ``text``."""
    for matcher, sub_rule in checked:
        if matcher.matches(text):
            out.add(sub_rule)
