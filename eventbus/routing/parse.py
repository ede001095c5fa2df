"""JSON parsing that keeps number spellings where the pattern language needs them (spec R3.3).

Patterns: every number literal becomes a :class:`NumberLiteral`, so a plain value compares by text when it is not
exactly representable and numeric operands can be checked for representability (R6.2).

Events: orjson is used whenever the raw text cannot hold a number that orjson would round (a float literal with
an exponent or with many digits, or an integer wider than 64 bits); otherwise the standard parser runs with a
hook that keeps such numbers as :class:`NumberLiteral`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from eventbus.routing.numbers import NumberLiteral, representable_double


def _character_classes() -> bytes:
    # Each byte of the raw event is mapped to its class, so that plain substring searches (fast, in C) can look
    # for number shapes: 1 digit or dot, e exponent letter, + sign, s a byte that can precede a value,
    # space whitespace, 0 anything else.
    table = bytearray(b"0" * 256)
    for classes, members in ((b"1", b"0123456789."), (b"e", b"eE"), (b"+", b"+-"), (b"s", b":,["), (b" ", b" \t\r\n")):
        for member in members:
            table[member] = classes[0]
    return bytes(table)


_CLASSES = _character_classes()
# A run of 17+ digits/dots is a number of 16+ significant digits (or a string holding one).
_LONG_NUMBER = b"1" * 17
# A digit run with an exponent letter where a JSON value can start: after a value-starting byte (searched for by
# the regex engine's fast scan for a literal first byte), or at the very start of the text.
_EXPONENT_AFTER_VALUE_START = re.compile(rb"s *\+*1+e")
_EXPONENT_AT_START = re.compile(rb" *\+*1+e")


def _may_hold_unrepresentable_number(raw: bytes) -> bool:
    """True when orjson might round a number literal of ``raw``: one with an exponent or many digits.

    False positives (such text inside a string) only send the event to the slower parser.
    """
    classes = raw.translate(_CLASSES)
    return (
        _LONG_NUMBER in classes
        or _EXPONENT_AFTER_VALUE_START.search(classes) is not None
        or _EXPONENT_AT_START.match(classes) is not None
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _event_float(text: str) -> float | NumberLiteral:
    double = representable_double(text)
    return double if double is not None else NumberLiteral(text)


def loads_pattern(text: str | bytes) -> Any:
    """Parse pattern JSON; numbers come back as :class:`NumberLiteral`. Raises ``ValueError``."""
    return json.loads(text, parse_int=NumberLiteral, parse_float=NumberLiteral, parse_constant=_reject_constant)


def loads_event(raw: bytes | bytearray | memoryview | str) -> Any:
    """Parse event JSON; a float that is not exactly representable comes back as a :class:`NumberLiteral`."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if not _may_hold_unrepresentable_number(data):
        return orjson.loads(data)
    return json.loads(data, parse_float=_event_float, parse_constant=_reject_constant)
