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

# A number token with an exponent, or a run of 17+ digits/dots (16+ significant digits): either may not survive
# orjson's conversion to float. Matches inside strings only cost a slower parse, never a wrong answer.
_RISKY_NUMBER_BYTES = re.compile(rb"[:,\[]\s*-?[0-9.]+[eE]|[0-9.]{17,}")
_RISKY_NUMBER_TEXT = re.compile(r"[:,\[]\s*-?[0-9.]+[eE]|[0-9.]{17,}")


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
    if isinstance(raw, str):
        risky = _RISKY_NUMBER_TEXT.search(raw) is not None
    else:
        raw = bytes(raw)
        risky = _RISKY_NUMBER_BYTES.search(raw) is not None
    if not risky:
        return orjson.loads(raw)
    return json.loads(raw, parse_float=_event_float, parse_constant=_reject_constant)
