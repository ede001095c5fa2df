"""Validation and compilation of the elements of a leaf array (spec §3-§8, checklist items 5-11, §12).

``plain_matcher`` reads plain values; :class:`OperatorCompiler` reads ``{"operator": argument}`` objects and
applies the ``lambda`` profile, which refuses what Lambda and Pipes filtering do not offer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from eventbus.routing.errors import InvalidPatternError, shown
from eventbus.routing.ip import parse_cidr, parse_ip
from eventbus.routing.matchers import (
    AnythingButIgnoreCase,
    AnythingButNumbers,
    AnythingButPrefix,
    AnythingButStrings,
    AnythingButSuffix,
    AnythingButWildcard,
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
from eventbus.routing.numbers import NumberLiteral, int_double, int_text, number_key, shortened
from eventbus.routing.wildcard import MAX_COMPLEXITY, Wildcard, WildcardSyntaxError, complexity

NUMERIC_OPERATORS = frozenset({"=", "<", "<=", ">", ">="})
LOWER_BOUND_OPERATORS = frozenset({">", ">="})
UPPER_BOUND_OPERATORS = frozenset({"<", "<="})
ANYTHING_BUT_OPERATORS = ("prefix", "suffix", "equals-ignore-case", "wildcard")
IGNORE_CASE = "equals-ignore-case"

# Operators (or operator forms) that Lambda event-source filtering and EventBridge Pipes do not accept.
LAMBDA_REFUSED = frozenset({"wildcard", "cidr", "exactly", "anything-but object"})


def _json_number(value: Any) -> bool:
    return isinstance(value, int | float | NumberLiteral) and not isinstance(value, bool)


def plain_matcher(value: Any, where: str) -> Matcher:
    """A plain string, number, ``true``, ``false`` or ``null`` in a leaf array (R3)."""
    if isinstance(value, str):
        address = parse_ip(value)
        if address is not None:
            return EqualsIp(value, *address)
        return EqualsString(value)
    if value is None or isinstance(value, bool):
        return EqualsLiteral(value)
    if _json_number(value):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidPatternError(where, f"{value!r} is not a JSON number")
        return EqualsNumber(number_key(value))
    raise InvalidPatternError(where, f"a match value cannot be a {type(value).__name__}")


class OperatorCompiler:
    """Reads operator objects under one profile (``None``/``"eventbridge"`` or ``"lambda"``)."""

    def __init__(self, profile: str | None) -> None:
        self.profile = profile
        self._readers: dict[str, Callable[[Any, str], Matcher | None]] = {
            "prefix": self._prefix,
            "suffix": self._suffix,
            IGNORE_CASE: self._equals_ignore_case,
            "wildcard": self._wildcard,
            "anything-but": self._anything_but,
            "numeric": self._numeric,
            "exists": self._exists,
            "cidr": self._cidr,
            "exactly": self._exactly,
        }

    def read(self, element: dict[Any, Any], where: str) -> Matcher | None:
        """The matcher for one operator object; ``None`` stands for ``{"exists": false}``."""
        if not element:
            raise InvalidPatternError(where, "a match object needs an operator, such as prefix or numeric")
        if len(element) > 1:
            names = ", ".join(str(k) for k in element)
            raise InvalidPatternError(where, f"a match object takes exactly one operator, got {names}")
        ((name, argument),) = element.items()
        reader = self._readers.get(name) if isinstance(name, str) else None
        if reader is None:
            raise InvalidPatternError(
                where, f"unrecognized match type {shown(name)} (operator names are case-sensitive)"
            )
        self._check_profile(name, where)
        return reader(argument, where)

    def check_wildcard_complexity(self, matchers: Sequence[Matcher], where: str) -> None:
        # The same wildcard written twice is one pattern in event-ruler's automaton, and scores once.
        unique = {m.wildcard.source: m.wildcard for m in matchers if isinstance(m, WildcardMatcher)}
        if unique and complexity(list(unique.values())) > MAX_COMPLEXITY:
            # EventBridge's own words, which users search for.
            raise InvalidPatternError(
                where,
                "Rule is too complex - try using fewer wildcard characters or fewer repeating character sequences "
                "after a wildcard character",
            )

    def _check_profile(self, operator: str, where: str) -> None:
        if self.profile == "lambda" and operator in LAMBDA_REFUSED:
            raise InvalidPatternError(where, f"{operator} is not supported by Lambda/Pipes event filtering")

    @staticmethod
    def _string(argument: Any, operator: str, where: str) -> str:
        if not isinstance(argument, str):
            raise InvalidPatternError(where, f"{operator} needs a string, not {shown(argument)}")
        return argument

    def _ignore_case_argument(self, argument: Any, operator: str, where: str) -> str | None:
        """The string of ``{"equals-ignore-case": "s"}`` as a prefix/suffix argument, else ``None``."""
        if not isinstance(argument, dict):
            return None
        if len(argument) != 1 or IGNORE_CASE not in argument:
            raise InvalidPatternError(
                where, f'{operator} takes a string or {{"{IGNORE_CASE}": "<string>"}} and nothing else'
            )
        return self._string(argument[IGNORE_CASE], f"{operator} {IGNORE_CASE}", where)

    def _prefix(self, argument: Any, where: str) -> Matcher:
        folded = self._ignore_case_argument(argument, "prefix", where)
        if folded is not None:
            return IgnoreCase(folded, "start")
        return Prefix(self._string(argument, "prefix", where))

    def _suffix(self, argument: Any, where: str) -> Matcher:
        folded = self._ignore_case_argument(argument, "suffix", where)
        if folded is not None:
            return IgnoreCase(folded, "end")
        return Suffix(self._string(argument, "suffix", where))

    def _equals_ignore_case(self, argument: Any, where: str) -> Matcher:
        return IgnoreCase(self._string(argument, IGNORE_CASE, where), "full")

    def _exactly(self, argument: Any, where: str) -> Matcher:
        return EqualsString(self._string(argument, "exactly", where))

    @staticmethod
    def _parse_wildcard(text: str, where: str) -> Wildcard:
        try:
            return Wildcard(text)
        except WildcardSyntaxError as exc:
            raise InvalidPatternError(where, f"wildcard {shown(text)}: {exc}") from None

    def _wildcard(self, argument: Any, where: str) -> Matcher:
        return WildcardMatcher(self._parse_wildcard(self._string(argument, "wildcard", where), where))

    def _exists(self, argument: Any, where: str) -> Matcher | None:
        if not isinstance(argument, bool):
            raise InvalidPatternError(where, f"exists must be true or false, not {shown(argument)}")
        return Exists() if argument else None

    def _cidr(self, argument: Any, where: str) -> Matcher:
        text = self._string(argument, "cidr", where)
        try:
            family_bits, network, prefix_bits = parse_cidr(text)
        except ValueError as exc:
            raise InvalidPatternError(where, f"cidr {shown(text)}: {exc}") from None
        return Cidr(family_bits, network, prefix_bits)

    def _numeric(self, argument: Any, where: str) -> Matcher:
        return read_numeric(argument, where)

    def _anything_but(self, argument: Any, where: str) -> Matcher:
        if isinstance(argument, str):
            return AnythingButStrings([argument])
        if _json_number(argument):
            return AnythingButNumbers([_anything_but_number_key(argument, where)])
        if isinstance(argument, list):
            return _anything_but_list(argument, where)
        if isinstance(argument, dict):
            self._check_profile("anything-but object", where)
            return self._anything_but_object(argument, where)
        raise InvalidPatternError(
            where,
            "anything-but takes a string, a number, a non-empty array of strings or of numbers, or an object "
            "with prefix, suffix, equals-ignore-case or wildcard",
        )

    def _anything_but_object(self, argument: dict[Any, Any], where: str) -> Matcher:
        if not argument:
            raise InvalidPatternError(where, "an anything-but object needs an operator")
        if len(argument) > 1:
            raise InvalidPatternError(where, "an anything-but object takes exactly one operator")
        ((operator, value),) = argument.items()
        if operator not in ANYTHING_BUT_OPERATORS:
            raise InvalidPatternError(where, f"unsupported anything-but operator {shown(operator)}")
        texts = _anything_but_strings(operator, value, where)
        if operator == "prefix":
            return AnythingButPrefix(texts)
        if operator == "suffix":
            return AnythingButSuffix(texts)
        if operator == IGNORE_CASE:
            return AnythingButIgnoreCase(texts)
        return AnythingButWildcard(self._parse_wildcard(text, where) for text in texts)


def _anything_but_number_key(value: Any, where: str) -> Hashable:
    # event-ruler files anything-but numbers by their double alone and refuses numbers without an exact one
    # ("Cannot compare number"); only plain values fall back to comparing the literal text (R3.3, R11).
    return _representable_double(value, "anything-but number", where)


def _anything_but_list(values: list[Any], where: str) -> Matcher:
    for value in values:
        if not isinstance(value, str) and not _json_number(value):
            raise InvalidPatternError(where, f"an anything-but list holds only strings or numbers, not {shown(value)}")
    strings = [v for v in values if isinstance(v, str)]
    if not values or (strings and len(strings) != len(values)):
        raise InvalidPatternError(where, "an anything-but list must be non-empty and hold only strings or only numbers")
    if strings:
        return AnythingButStrings(strings)
    return AnythingButNumbers(_anything_but_number_key(v, where) for v in values)


def _anything_but_strings(operator: str, value: Any, where: str) -> list[str]:
    texts = value if isinstance(value, list) else [value]
    if not texts:
        raise InvalidPatternError(where, f"anything-but {operator} needs a string or a non-empty array of strings")
    for text in texts:
        if not isinstance(text, str):
            raise InvalidPatternError(where, f"anything-but {operator} values must be strings, not {shown(text)}")
        if not text and operator in ("prefix", "suffix"):
            raise InvalidPatternError(where, f"anything-but {operator} must not be empty")
    return texts


def read_numeric(argument: Any, where: str) -> NumericRange:
    """``[op, n]`` or ``[>|>=, n1, <|<=, n2]`` with ``n1 < n2`` (R6.1, R6.2)."""
    if not isinstance(argument, list):
        raise InvalidPatternError(where, f'numeric takes an array such as [">", 0, "<=", 5], not {shown(argument)}')
    if not argument:
        raise InvalidPatternError(where, "numeric array is empty")
    operator = argument[0]
    if not isinstance(operator, str) or operator not in NUMERIC_OPERATORS:
        raise InvalidPatternError(where, f"unrecognized numeric operator {shown(operator)}")
    if len(argument) < 2:
        raise InvalidPatternError(where, f"numeric operator {operator} needs a number after it")
    first = _numeric_operand(argument[1], operator, where)
    if operator == "=" or operator in UPPER_BOUND_OPERATORS:
        if len(argument) != 2:
            raise InvalidPatternError(
                where, f"numeric operator {operator} takes one number; a range starts with > or >="
            )
        if operator == "=":
            return NumericRange(first, True, first, True)
        return NumericRange(-math.inf, False, first, operator == "<=")
    if len(argument) == 2:
        return NumericRange(first, operator == ">=", math.inf, False)
    upper = argument[2]
    if not isinstance(upper, str) or upper not in UPPER_BOUND_OPERATORS:
        raise InvalidPatternError(where, f"bad numeric range operator {shown(upper)}: the upper bound takes < or <=")
    if len(argument) != 4:
        raise InvalidPatternError(where, "a numeric range is [>|>=, number, <|<=, number]")
    second = _numeric_operand(argument[3], upper, where)
    if not first < second:
        raise InvalidPatternError(where, "numeric range bottom must be less than top")
    return NumericRange(first, operator == ">=", second, upper == "<=")


def _numeric_operand(value: Any, operator: str, where: str) -> float:
    if not _json_number(value):
        raise InvalidPatternError(where, f"the value after {operator} must be a number, not {shown(value)}")
    return _representable_double(value, "numeric operand", where)


def _representable_double(value: Any, what: str, where: str) -> float:
    """The double of a JSON number that is exactly representable (R6.2); anything else is refused."""
    if isinstance(value, NumberLiteral):
        double = value.double
        text = value.text
    elif isinstance(value, float):
        double = value if math.isfinite(value) else None
        text = repr(value)
    else:
        double = int_double(value)
        text = int_text(value)
    if double is None:
        raise InvalidPatternError(where, f"{what} {shortened(text)} is not exactly representable as a double")
    return double
