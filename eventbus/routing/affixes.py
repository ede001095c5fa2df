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
from typing import Any, Final

SubRuleId = int
Checked = tuple[Any, SubRuleId]  # (matcher, sub-rule)


class AffixEntry:
    """The sub-rules filed under one key."""

    __slots__ = ("checked", "plain")

    def __init__(self) -> None:
        self.plain: list[SubRuleId] = []
        self.checked: list[Checked] = []

    def __bool__(self) -> bool:
        return bool(self.plain or self.checked)


class _Stem:
    __slots__ = ()

    def __repr__(self) -> str:
        return "STEM"


# What the table holds for a string that is only a stem: probing goes on past it, nothing is filed under it.
STEM: Final[Any] = _Stem()


class AffixTable:
    """Keys probed as prefixes of a string (``from_end=False``) or as suffixes (``from_end=True``).

    ``entries`` maps each key to its :class:`AffixEntry` and each other stem to :data:`STEM`.
    """

    __slots__ = ("_key_lengths", "_stems", "checked", "entries", "from_end", "lengths", "plain")

    def __init__(self, *, from_end: bool) -> None:
        self.from_end = from_end
        self.entries: dict[str, AffixEntry | _Stem] = {}
        # The distinct lengths of the keys, in increasing order, and how many keys have each.
        self.lengths: list[int] = []
        self._key_lengths: Counter[int] = Counter()
        # How many keys each stem is a proper part of.
        self._stems: Counter[str] = Counter()
        # How many plain and checked sub-rules the table holds (the generated probe leaves out what is absent).
        self.plain = 0
        self.checked = 0

    def __bool__(self) -> bool:
        return bool(self.lengths)

    def add(self, key: str, sub_rule: SubRuleId, matcher: Any = None) -> None:
        """File ``sub_rule`` under ``key``; with a ``matcher``, as checked against the whole string."""
        entry = self.entries.get(key)
        if not isinstance(entry, AffixEntry):
            entry = self.entries[key] = AffixEntry()
            self._count_key(key, 1)
        if matcher is None:
            entry.plain.append(sub_rule)
            self.plain += 1
        else:
            entry.checked.append((matcher, sub_rule))
            self.checked += 1

    def remove(self, key: str, sub_rule: SubRuleId, matcher: Any = None) -> None:
        entry = self.entries[key]
        assert isinstance(entry, AffixEntry)
        if matcher is None:
            entry.plain.remove(sub_rule)
            self.plain -= 1
        else:
            entry.checked.remove((matcher, sub_rule))
            self.checked -= 1
        if not entry:
            self._count_key(key, -1)
            if key in self._stems:
                self.entries[key] = STEM
            else:
                del self.entries[key]

    def count(self, key: str) -> int:
        """How many sub-rules are filed under ``key``."""
        entry = self.entries.get(key)
        return len(entry.plain) + len(entry.checked) if isinstance(entry, AffixEntry) else 0

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
            if entry is STEM:
                continue
            assert isinstance(entry, AffixEntry)
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
            self._stems[stem] += change
            if self._stems[stem]:
                self.entries.setdefault(stem, STEM)
            else:
                del self._stems[stem]
                if self.entries[stem] is STEM:
                    del self.entries[stem]


def add_checked(checked: list[Checked], text: str, out: set[SubRuleId]) -> None:
    """Add the sub-rules whose matcher accepts ``text``."""
    for matcher, sub_rule in checked:
        if matcher.matches(text):
            out.add(sub_rule)
