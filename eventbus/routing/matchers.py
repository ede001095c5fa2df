"""Value matchers: the compiled elements of a leaf array (spec §3-§8).

Each matcher answers ``matches(value)`` for one leaf value of the event: a ``str``, ``int``, ``float``,
:class:`NumberLiteral`, ``True``, ``False`` or ``None``. ``breadth()`` guesses how many values a matcher
accepts, relative to an exact value (1.0); the router files a rule under the condition it expects to
trigger least often.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from re import Pattern as Regex

from eventbus.routing import casefold
from eventbus.routing.ip import network_of, parse_ip
from eventbus.routing.numbers import is_number, number_key, numeric_double
from eventbus.routing.wildcard import Wildcard

# Breadth guesses, relative to an exact value. They only steer which condition a rule is filed under.
EXACT = 1.0
EQUAL_NUMBER = 2.0
RANGE = 16.0
BROAD = 64.0
NEGATIVE = 256.0


def affix_breadth(literal_length: int) -> float:
    """A prefix, suffix or wildcard with this many literal characters to key on: longer is rarer."""
    return 1.0 + 4.0 / literal_length if literal_length else BROAD


class Matcher:
    """One element of a leaf array."""

    __slots__ = ()

    def breadth(self) -> float:
        return BROAD

    def matches(self, value: object) -> bool:
        raise NotImplementedError


class EqualsString(Matcher):
    """A plain string: only an identical string (R3.1)."""

    __slots__ = ("text",)

    def breadth(self) -> float:
        return EXACT

    def __init__(self, text: str) -> None:
        self.text = text

    def matches(self, value: object) -> bool:
        return value == self.text and isinstance(value, str)


class EqualsIp(Matcher):
    """A plain string shaped like an IP address: that address, however it is spelled (R3.4)."""

    __slots__ = ("address", "family_bits", "text")

    def breadth(self) -> float:
        return EXACT

    def __init__(self, text: str, family_bits: int, address: int) -> None:
        self.text = text
        self.family_bits = family_bits
        self.address = address

    def matches(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        return value == self.text or parse_ip(value) == (self.family_bits, self.address)


class EqualsNumber(Matcher):
    """A plain number: any number equal to it under R3.3."""

    __slots__ = ("key",)

    def breadth(self) -> float:
        return EXACT

    def __init__(self, key: Hashable) -> None:
        self.key = key

    def matches(self, value: object) -> bool:
        return is_number(value) and number_key(value) == self.key


class EqualsLiteral(Matcher):
    """``true``, ``false`` or ``null``: only the identical literal (R3.2)."""

    __slots__ = ("literal",)

    def breadth(self) -> float:
        return EXACT

    def __init__(self, literal: bool | None) -> None:
        self.literal = literal

    def matches(self, value: object) -> bool:
        return value is self.literal


class Prefix(Matcher):
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def breadth(self) -> float:
        return affix_breadth(len(self.text))

    def matches(self, value: object) -> bool:
        return isinstance(value, str) and value.startswith(self.text)


class Suffix(Matcher):
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def breadth(self) -> float:
        return affix_breadth(len(self.text))

    def matches(self, value: object) -> bool:
        return isinstance(value, str) and value.endswith(self.text)


class IgnoreCase(Matcher):
    """``equals-ignore-case`` and the ignore-case forms of ``prefix``/``suffix`` (R4.2, R4.4, R4.5)."""

    __slots__ = ("anchor", "regex", "text")

    def __init__(self, text: str, anchor: str) -> None:
        self.text = text
        self.anchor = anchor
        self.regex: Regex[str] = casefold.compile_any([text], anchor=anchor)

    def breadth(self) -> float:
        return EXACT if self.anchor == "full" else affix_breadth(len(self.text))

    def matches(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        if self.anchor == "full":
            return self.regex.fullmatch(value) is not None
        if self.anchor == "start":
            return self.regex.match(value) is not None
        return self.regex.search(value) is not None


class WildcardMatcher(Matcher):
    __slots__ = ("wildcard",)

    def __init__(self, wildcard: Wildcard) -> None:
        self.wildcard = wildcard

    def breadth(self) -> float:
        wildcard = self.wildcard
        return EXACT if wildcard.whole is not None else affix_breadth(len(wildcard.head or wildcard.tail))

    def matches(self, value: object) -> bool:
        return isinstance(value, str) and self.wildcard.matches(value)


class NumericRange(Matcher):
    """``numeric``: a JSON number, exactly representable, inside the range compared as doubles (R6)."""

    __slots__ = ("high", "high_inclusive", "low", "low_inclusive")

    def breadth(self) -> float:
        return EQUAL_NUMBER if self.low == self.high else RANGE

    def __init__(self, low: float, low_inclusive: bool, high: float, high_inclusive: bool) -> None:
        self.low = low
        self.low_inclusive = low_inclusive
        self.high = high
        self.high_inclusive = high_inclusive

    def contains(self, number: float) -> bool:
        if number < self.low or (number == self.low and not self.low_inclusive):
            return False
        return number < self.high or (number == self.high and self.high_inclusive)

    def matches(self, value: object) -> bool:
        number = numeric_double(value)
        return number is not None and self.contains(number)


class Cidr(Matcher):
    """``cidr``: a string that is an IP address of the block's family, inside the block (R8.2)."""

    __slots__ = ("family_bits", "network", "prefix_bits")

    def breadth(self) -> float:
        return affix_breadth(self.prefix_bits // 4)

    def __init__(self, family_bits: int, network: int, prefix_bits: int) -> None:
        self.family_bits = family_bits
        self.network = network
        self.prefix_bits = prefix_bits

    def matches(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        parsed = parse_ip(value)
        if parsed is None or parsed[0] != self.family_bits:
            return False
        return network_of(parsed[1], self.family_bits, self.prefix_bits) == self.network


class Exists(Matcher):
    """``{"exists": true}``: any leaf value at all (R7.1)."""

    __slots__ = ()

    def matches(self, value: object) -> bool:
        return True


class AnythingBut(Matcher):
    """``anything-but``: satisfied by a value that is not excluded; other types are never excluded (R5.2)."""

    __slots__ = ()

    def breadth(self) -> float:
        return NEGATIVE

    def excludes(self, value: object) -> bool:
        raise NotImplementedError

    def matches(self, value: object) -> bool:
        return not self.excludes(value)


class AnythingButStrings(AnythingBut):
    __slots__ = ("texts",)

    def __init__(self, texts: Iterable[str]) -> None:
        self.texts = frozenset(texts)

    def excludes(self, value: object) -> bool:
        return isinstance(value, str) and value in self.texts


class AnythingButNumbers(AnythingBut):
    __slots__ = ("keys",)

    def __init__(self, keys: Iterable[Hashable]) -> None:
        self.keys = frozenset(keys)

    def excludes(self, value: object) -> bool:
        return is_number(value) and number_key(value) in self.keys


class AnythingButPrefix(AnythingBut):
    __slots__ = ("texts",)

    def __init__(self, texts: Iterable[str]) -> None:
        self.texts = tuple(texts)

    def excludes(self, value: object) -> bool:
        return isinstance(value, str) and value.startswith(self.texts)


class AnythingButSuffix(AnythingBut):
    __slots__ = ("texts",)

    def __init__(self, texts: Iterable[str]) -> None:
        self.texts = tuple(texts)

    def excludes(self, value: object) -> bool:
        return isinstance(value, str) and value.endswith(self.texts)


class AnythingButIgnoreCase(AnythingBut):
    __slots__ = ("regex", "texts")

    def __init__(self, texts: Iterable[str]) -> None:
        self.texts = tuple(texts)
        self.regex: Regex[str] = casefold.compile_any(self.texts, anchor="full")

    def excludes(self, value: object) -> bool:
        return isinstance(value, str) and self.regex.fullmatch(value) is not None


class AnythingButWildcard(AnythingBut):
    __slots__ = ("wildcards",)

    def __init__(self, wildcards: Iterable[Wildcard]) -> None:
        self.wildcards = tuple(wildcards)

    def excludes(self, value: object) -> bool:
        return isinstance(value, str) and any(w.matches(value) for w in self.wildcards)
