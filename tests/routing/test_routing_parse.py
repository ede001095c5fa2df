"""R3.3 at the parsing boundary: raw JSON keeps the spelling of every number a double would round."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventbus.routing.numbers import NumberLiteral, representable_double
from eventbus.routing.parse import loads_event, loads_pattern

DIGITS = st.text("0123456789", min_size=1, max_size=22)
EXPONENTS = st.builds(
    lambda letter, sign, digits: f"{letter}{sign}{digits}",
    st.sampled_from("eE"),
    st.sampled_from(["", "+", "-"]),
    st.text("0123456789", min_size=1, max_size=3),
)
LITERALS = st.builds(
    lambda sign, whole, fraction, exponent: f"{sign}{int(whole)}{fraction}{exponent}",
    st.sampled_from(["", "-"]),
    DIGITS,
    st.one_of(st.just(""), DIGITS.map(lambda d: "." + d)),
    st.one_of(st.just(""), EXPONENTS),
)


def _is_float_literal(text: str) -> bool:
    return any(mark in text for mark in ".eE")


@settings(max_examples=400, deadline=None)
@given(LITERALS, st.sampled_from(['{{"n": {}}}', '{{"n": [1, {}]}}', '{{"n":\n  {} }}']))
def test_r3_3_raw_numbers_come_back_exact_or_spelled(literal: str, template: str) -> None:
    event = loads_event(template.format(literal).encode())
    value = event["n"][-1] if isinstance(event["n"], list) else event["n"]
    double = representable_double(literal)
    if not _is_float_literal(literal):
        # Integers come back as exact Python ints, whose text str(i) is the literal's.
        assert type(value) is int
        assert value == int(literal)
    elif double is None:
        assert isinstance(value, NumberLiteral)
        assert value.text == literal
    else:
        assert type(value) is float
        assert value == double


def test_r3_3_representability_examples() -> None:
    assert representable_double("300") == 300.0
    assert representable_double("3.0e2") == 300.0
    assert representable_double("0.30000000000000001") is None
    assert representable_double("1e400") is None
    assert representable_double("1e-400") is None
    assert representable_double("9007199254740993") is None
    assert representable_double("1e23") == 1e23
    assert representable_double("99999999999999991611392") is None
    for text in ("0.1", "123.456", "-0", "-0.0", "5e-1", "1E6"):
        assert representable_double(text) == float(Decimal(text))


def test_strings_that_look_like_numbers_do_not_change_the_parse() -> None:
    raw = b'{"id": "3e4f-1e10", "x": "a:1e5", "n": 0.5}'
    assert loads_event(raw) == {"id": "3e4f-1e10", "x": "a:1e5", "n": 0.5}
    assert loads_event(raw.decode()) == loads_event(raw)


def test_pattern_numbers_keep_their_text() -> None:
    parsed = loads_pattern('{"a": [1.50, 2, 3e0]}')
    assert [n.text for n in parsed["a"]] == ["1.50", "2", "3e0"]


def test_events_that_are_not_json_raise_value_errors() -> None:
    for raw in (b"[" * 5000 + b"]" * 5000, b'{"a": 1,}', b'{"a": NaN}', b"\xff", b'{"a": 1} x'):
        with pytest.raises(ValueError, match=r"."):
            loads_event(raw)


def test_integers_of_any_width_come_back_exact() -> None:
    assert loads_event(b'{"n": 123456789012345678901234567890}') == {"n": 123456789012345678901234567890}
    assert loads_event(b'{"n": -18446744073709551617}') == {"n": -18446744073709551617}
