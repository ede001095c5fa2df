"""Spec §7 (exists) and §8 (cidr)."""

from __future__ import annotations

import pytest
from routing_helpers import Decide

from eventbus.routing import InvalidPatternError, compile_pattern

# -- R7 exists --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", False, 0, "x", [1], [None]])
def test_r7_1_exists_true_for_any_leaf(matches: Decide, value: object) -> None:
    assert matches({"a": [{"exists": True}]}, {"a": value})
    assert not matches({"a": [{"exists": False}]}, {"a": value})


def test_r7_1_exists_false_when_absent(matches: Decide) -> None:
    assert matches({"a": [{"exists": False}]}, {"b": 1})
    assert not matches({"a": [{"exists": True}]}, {"b": 1})


@pytest.mark.parametrize("argument", ["true", 1, 0, None, [], {}])
def test_r7_1_exists_takes_a_boolean(argument: object) -> None:
    with pytest.raises(InvalidPatternError):
        compile_pattern({"a": [{"exists": argument}]})
    with pytest.raises(InvalidPatternError):
        compile_pattern({"a": [{"exists": True, "prefix": "x"}]})


@pytest.mark.parametrize("value", [{"c1": 100}, [], {}, [[]], [{}], {"x": []}])
def test_r7_2_containers_do_not_exist(matches: Decide, value: object) -> None:
    assert matches({"c-count": [{"exists": False}]}, {"c-count": value})
    assert not matches({"c-count": [{"exists": True}]}, {"c-count": value})


def test_r7_2_missing_parent_means_absent(matches: Decide) -> None:
    assert matches({"a": {"b": [{"exists": False}]}}, {})
    assert matches({"a": {"b": [{"exists": False}]}}, {"a": "scalar"})


def test_r7_3_exists_shares_a_leaf_array(matches: Decide) -> None:
    absent_or_x = {"a": [{"exists": False}, "x"]}
    assert matches(absent_or_x, {})
    assert matches(absent_or_x, {"a": "x"})
    assert not matches(absent_or_x, {"a": "y"})
    absent_or_not_a = {"a": [{"anything-but": ["a"]}, {"exists": False}]}
    assert matches(absent_or_not_a, {})
    assert matches(absent_or_not_a, {"a": "b"})
    assert not matches(absent_or_not_a, {"a": "a"})


def test_r7_3_exists_in_arrays_of_objects(matches: Decide) -> None:
    assert matches({"x": {"a": [{"exists": True}]}}, {"x": [{"b": 1}, {"a": 1}]})
    assert not matches({"x": {"a": [{"exists": False}]}}, {"x": [{"b": 1}, {"a": 1}]})


# -- R8 cidr ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cidr", "inside", "outside"),
    [
        ("10.0.0.0/24", ["10.0.0.0", "10.0.0.255", "10.0.0.77"], ["10.0.1.0", "9.255.255.255"]),
        ("10.0.0.77/24", ["10.0.0.1"], ["10.0.1.1"]),
        ("0.0.0.0/0", ["1.2.3.4", "255.255.255.255"], ["::1"]),
        ("192.168.1.1/31", ["192.168.1.0", "192.168.1.1"], ["192.168.1.2"]),
        ("2001:db8::/32", ["2001:db8::1", "2001:DB8:0000::ffff", "2001:0db8:ffff::"], ["2001:db9::", "10.0.0.1"]),
        ("::/0", ["::", "ffff::1"], ["1.1.1.1"]),
    ],
)
def test_r8_2_cidr_membership(matches: Decide, cidr: str, inside: list[str], outside: list[str]) -> None:
    pattern = {"ip": [{"cidr": cidr}]}
    for address in inside:
        assert matches(pattern, {"ip": address}), address
    for address in outside:
        assert not matches(pattern, {"ip": address}), address


@pytest.mark.parametrize("value", [123, "10.0.0.1 ", " 10.0.0.1", "10.0.0", "10.0.0.01", "host", None, True])
def test_r8_2_only_address_strings_match(matches: Decide, value: object) -> None:
    assert not matches({"ip": [{"cidr": "10.0.0.0/8"}]}, {"ip": value})


def test_r8_2_ipv4_mapped_ipv6_with_dotted_tail_is_not_recognised(matches: Decide) -> None:
    assert not matches({"ip": [{"cidr": "::ffff:0:0/96"}]}, {"ip": "::ffff:10.1.2.3"})
    assert matches({"ip": [{"cidr": "::ffff:0:0/96"}]}, {"ip": "::ffff:a01:203"})


@pytest.mark.parametrize(
    "cidr",
    [
        "10.0.0.0",
        "10.0.0.0/8/8",
        "10.0.0.0/x",
        "10.0.0.0/-1",
        "10.0.0.0/",
        "/8",
        "10.0.0/8",
        "10.0.0.256/8",
        "a.b.c.d/8",
        "::g/64",
        "::ffff:1.2.3.4/96",
        "10.0.0.0/32",
        "10.0.0.0/33",
        "::/128",
        "::/129",
    ],
)
def test_r8_1_invalid_cidr(cidr: str) -> None:
    with pytest.raises(InvalidPatternError):
        compile_pattern({"ip": [{"cidr": cidr}]})


@pytest.mark.parametrize("argument", [10, None, ["10.0.0.0/8"], {"x": 1}])
def test_r8_1_cidr_takes_a_string(argument: object) -> None:
    with pytest.raises(InvalidPatternError):
        compile_pattern({"ip": [{"cidr": argument}]})
