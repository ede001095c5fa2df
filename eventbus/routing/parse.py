"""JSON parsing that keeps number spellings where the pattern language needs them (spec R3.3).

Patterns: every number literal becomes a :class:`NumberLiteral`, so a plain value compares by text when it is not
exactly representable and numeric operands can be checked for representability (R6.2).

Events: msgspec's decoder hands every float literal, as written, to a hook: a short one without an exponent is
always an exact double; anything else is checked and, when not exactly representable, kept as a
:class:`NumberLiteral`. Integers of any width come back as exact Python ints.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from eventbus.routing.numbers import NumberLiteral, representable_double

# A float literal of at most this many characters and no exponent has a dot, so at most 15 significant digits:
# the nearest double always gives it back.
_SHORT_FLOAT = 16


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _event_float(text: str) -> float | NumberLiteral:
    if len(text) <= _SHORT_FLOAT and "e" not in text and "E" not in text:
        return float(text)
    double = representable_double(text)
    return double if double is not None else NumberLiteral(text)


_EVENT_DECODER = msgspec.json.Decoder(float_hook=_event_float)
# Python refuses to turn integers of more digits than this into text (sys.get_int_max_str_digits), which number
# keys need, and msgspec refuses to decode them: such integers are kept as written.
_MAX_INT_DIGITS = 4000


def _event_int(text: str) -> int | NumberLiteral:
    return int(text) if len(text) <= _MAX_INT_DIGITS else NumberLiteral(text)


def _loads_event_slowly(data: bytes | bytearray | memoryview) -> Any:
    """The event parse for what msgspec refuses although it is JSON (integers of thousands of digits)."""
    text = bytes(data).decode("utf-8")
    return json.loads(text, parse_int=_event_int, parse_float=_event_float, parse_constant=_reject_constant)


def loads_pattern(text: str | bytes) -> Any:
    """Parse pattern JSON; numbers come back as :class:`NumberLiteral`. Raises ``ValueError``."""
    return json.loads(text, parse_int=NumberLiteral, parse_float=NumberLiteral, parse_constant=_reject_constant)


def loads_event(raw: bytes | bytearray | memoryview | str) -> Any:
    """Parse event JSON; a float that is not exactly representable comes back as a :class:`NumberLiteral`.

    Raises ``ValueError`` for anything that is not JSON.
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    try:
        return _EVENT_DECODER.decode(data)
    except msgspec.ValidationError:
        # Raised for valid JSON only (the plain decoder checks no types): an integer too wide for msgspec.
        return _loads_event_slowly(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
