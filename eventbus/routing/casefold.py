"""Case-insensitive comparison with event-ruler's rule (spec R4.5).

For each character ``c`` of the pattern, the event must have, at that place, either ``c`` lowered or ``c``
uppered (each taken alone, with full mappings: ``ß`` uppers to ``SS``). There is no case folding beyond that, so
``STRASSE`` does not accept ``straße``. Characters outside the Basic Multilingual Plane are taken as case-less and
match only themselves.

Matching runs on a regular expression built from those alternatives. :func:`index_key` gives a key for hash
lookups: when a pattern is :func:`indexable`, every string it accepts has the same key as the pattern.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_BMP_LIMIT = 0xFFFF


def alternatives(char: str) -> tuple[str, ...]:
    """The spellings the event may use where the pattern has ``char``, longest first."""
    if ord(char) > _BMP_LIMIT:
        return (char,)
    spellings = {char.lower(), char.upper()}
    return tuple(sorted(spellings, key=lambda s: (-len(s), s)))


def regex_source(pattern: str) -> str:
    """A regular expression (without anchors) matching what ``pattern`` accepts ignoring case."""
    parts = []
    for char in pattern:
        spellings = alternatives(char)
        if len(spellings) == 1:
            parts.append(re.escape(spellings[0]))
        else:
            parts.append("(?:" + "|".join(re.escape(s) for s in spellings) + ")")
    return "".join(parts)


def compile_any(patterns: Iterable[str], *, anchor: str) -> re.Pattern[str]:
    """One compiled regex accepting any of ``patterns``; ``anchor`` is ``full``, ``start`` or ``end``."""
    body = "|".join(f"(?:{regex_source(p)})" for p in patterns)
    if anchor == "end":
        return re.compile(f"(?:{body})\\Z", re.DOTALL)
    return re.compile(f"(?:{body})", re.DOTALL)


def index_key(text: str) -> str:
    """The hash key of a string for case-insensitive lookups (see :func:`indexable`)."""
    return text.upper()


def indexable(pattern: str) -> bool:
    """True when every string the pattern accepts has the pattern's :func:`index_key`.

    That holds when, for each character, uppering either accepted spelling gives the character's own
    upper case. A handful of characters (``İ``, the Kelvin sign, ...) break it; such patterns are matched by
    scanning instead of by lookup.
    """
    for char in pattern:
        if ord(char) > _BMP_LIMIT:
            continue
        upper = char.upper()
        if char.lower().upper() != upper or upper.upper() != upper:
            return False
    return True


def same_length(pattern: str) -> bool:
    """True when every accepted string has the pattern's length, so prefixes can be sliced by length."""
    return all(len(s) == 1 for char in pattern for s in alternatives(char))
