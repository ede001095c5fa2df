"""Number semantics of the pattern language (spec R3.3, R6.2, R6.3).

A number literal is *exactly representable* when the nearest binary64 double is finite and its shortest
round-trip decimal equals the literal numerically. Two numbers are equal when both are representable and their
doubles are equal, or when their literal texts are identical. Numeric ranges only ever see representable
numbers, compared as doubles.

Values reach this module as Python ``int`` (text `int_text`), ``float`` (text ``repr(f)``, representable by
construction when finite) or :class:`NumberLiteral` (a literal kept with its spelling, from pattern text or from
a raw event whose float would otherwise be rounded).
"""

from __future__ import annotations

import math
from collections.abc import Hashable

# Every integer of magnitude up to 2**53 is a double whose shortest decimal is the integer itself.
_EXACT_INT_LIMIT = 2**53
# An integer with more bits than this is past the largest finite double (about 1.8e308).
_MAX_DOUBLE_BITS = 1024
# A decimal of at most this many significant digits (and no exponent) always survives the round trip.
_SAFE_DIGITS = 15


class NumberLiteral:
    """A JSON number kept as written, so that equality can fall back to its text (R3.3)."""

    __slots__ = ("double", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.double = representable_double(text)

    def __repr__(self) -> str:
        return f"NumberLiteral({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NumberLiteral) and other.text == self.text

    def __hash__(self) -> int:
        return hash(("NumberLiteral", self.text))


def _text_key(text: str) -> tuple[str, str]:
    # A tagged tuple never equals a float key, so texts and values can share one dict.
    return ("#", text)


def _has_few_digits(text: str) -> bool:
    # Counting every digit, leading zeros included, also bounds the magnitude away from underflow.
    if "e" in text or "E" in text:
        return False
    return sum(ch.isdigit() for ch in text) <= _SAFE_DIGITS


def representable_double(text: str) -> float | None:
    """The double of a JSON number literal if it is exactly representable, else ``None``."""
    try:
        value = float(text)
    except (ValueError, OverflowError):
        return None
    if not math.isfinite(value):
        return None
    if _has_few_digits(text):
        return value
    from decimal import Decimal, InvalidOperation

    try:
        exact = Decimal(text)
    except InvalidOperation:
        return None
    return value if Decimal(repr(value)) == exact else None


def int_double(value: int) -> float | None:
    """The double of an integer if the integer is exactly representable, else ``None``."""
    if -_EXACT_INT_LIMIT <= value <= _EXACT_INT_LIMIT:
        return float(value)
    if value.bit_length() > _MAX_DOUBLE_BITS:
        return None  # past the largest double: not representable, and too long for a quick str()
    return representable_double(str(value))


def int_text(value: int) -> str:
    """An integer's decimal text, whatever its length: `str` refuses more than 4,300 digits (Python's guard
    against slow conversions), which a pattern or event built in Python may hold (R11: numbers of any magnitude)."""
    try:
        return str(value)
    except ValueError:
        from decimal import Decimal

        return str(Decimal(value))


def shortened(text: str, limit: int = 40) -> str:
    """A number's text for a message: whole when short, else its start and how long it is."""
    return text if len(text) <= limit else f"{text[:20]}... ({len(text)} characters)"


def number_key(value: object) -> Hashable:
    """A dict key under which two numbers collide exactly when R3.3 calls them equal."""
    if isinstance(value, float):
        return value if math.isfinite(value) else _text_key(repr(value))
    if isinstance(value, NumberLiteral):
        return value.double if value.double is not None else _text_key(value.text)
    if isinstance(value, int):
        double = int_double(value)
        return double if double is not None else _text_key(int_text(value))
    raise TypeError(f"not a number: {value!r}")


def numeric_double(value: object) -> float | None:
    """The double a numeric range compares, or ``None`` for anything that never satisfies one (R6.3)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int_double(value)
    if isinstance(value, NumberLiteral):
        return value.double
    return None


def is_number(value: object) -> bool:
    """True for JSON numbers (``bool`` is not one, although Python makes it an ``int``)."""
    return isinstance(value, int | float | NumberLiteral) and not isinstance(value, bool)
