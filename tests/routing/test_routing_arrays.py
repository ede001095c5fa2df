"""Spec §10: array-consistent matching."""

from __future__ import annotations

from typing import Any

from routing_helpers import Decide

EMPLOYEES: dict[str, Any] = {
    "employees": [{"first": "Anna", "last": "Smith"}, {"first": "Peter", "last": "Jones"}],
}


def test_r10_1_values_must_come_from_the_same_element(matches: Decide) -> None:
    assert matches({"employees": {"first": ["Anna"], "last": ["Smith"]}}, EMPLOYEES)
    assert matches({"employees": {"first": ["Peter"], "last": ["Jones"]}}, EMPLOYEES)
    assert not matches({"employees": {"first": ["Anna"], "last": ["Jones"]}}, EMPLOYEES)


def test_r10_1_consistency_applies_to_every_value_matcher(matches: Decide) -> None:
    event = {"d": [{"a": 1}, {"b": 2}]}
    assert not matches({"d": {"a": [{"exists": True}], "b": [{"exists": True}]}}, event)
    assert not matches({"d": {"a": [{"numeric": [">", 0]}], "b": [{"anything-but": 5}]}}, event)
    both = {"d": [{"a": 1}, {"b": 2}, {"a": 3, "b": 4}]}
    assert matches({"d": {"a": [{"exists": True}], "b": [{"exists": True}]}}, both)


def test_r10_1_values_in_different_arrays_are_consistent(matches: Decide) -> None:
    event = {"x": [{"a": 1}, {"a": 2}], "y": [{"b": 3}, {"b": 4}]}
    assert matches({"x": {"a": [2]}, "y": {"b": [3]}}, event)


def test_r10_1_values_in_the_same_object_element_are_consistent(matches: Decide) -> None:
    event = {"x": [{"a": {"p": 1, "q": 2}}, {"a": {"p": 3, "q": 4}}]}
    assert matches({"x": {"a": {"p": [1], "q": [2]}}}, event)
    assert not matches({"x": {"a": {"p": [1], "q": [4]}}}, event)


def test_r10_1_leaf_elements_add_no_membership(matches: Decide) -> None:
    event = {"x": [{"a": 1}, 5, {"b": 2}]}
    assert not matches({"x": {"a": [1], "b": [2]}}, event)
    assert matches({"x": [5], "y": [{"exists": False}]}, event)
    assert matches({"tags": ["t"], "d": {"a": [1]}}, {"tags": ["t", "u"], "d": [{"a": 1}]})


def test_r10_1_nested_arrays(matches: Decide) -> None:
    event = {"x": [[{"a": 1, "b": 2}], [{"a": 3, "b": 4}]]}
    assert matches({"x": {"a": [1], "b": [2]}}, event)
    assert not matches({"x": {"a": [1], "b": [4]}}, event)
    inner = {"x": [{"y": [{"a": 1, "b": 2}, {"a": 3, "b": 4}], "c": 5}, {"y": [{"a": 1}], "c": 6}]}
    assert matches({"x": {"y": {"a": [1], "b": [2]}, "c": [5]}}, inner)
    assert not matches({"x": {"y": {"a": [3], "b": [4]}, "c": [6]}}, inner)
    assert matches({"x": {"y": {"a": [1]}, "c": [6]}}, inner)


def test_r10_1_primitive_arrays_are_unaffected(matches: Decide) -> None:
    assert matches({"a": [1], "b": [2]}, {"a": [0, 1], "b": [2, 3]})


def test_r10_2_exists_false_sees_only_consistent_values(matches: Decide) -> None:
    event = {"x": [{"a": 1, "b": 2}, {"a": 1}]}
    assert matches({"x": {"a": [1], "b": [{"exists": False}]}}, event)


def test_r10_2_exists_false_is_checked_in_path_order(matches: Decide) -> None:
    # x.b sorts before x.z, so the absence check runs before any element is picked and sees x.b = 2.
    event = {"x": [{"z": 1, "b": 2}, {"z": 1}]}
    assert not matches({"x": {"z": [1], "b": [{"exists": False}]}}, event)


def test_r10_2_exists_false_across_elements(matches: Decide) -> None:
    assert not matches({"d": {"a": [{"exists": False}]}}, {"d": [{"a": 1}, {"b": 2}]})
    assert matches({"d": {"a": [1], "c": [{"exists": False}]}}, {"d": [{"a": 1}, {"c": 2}]})
    assert matches({"d": {"a": [{"exists": False}, 1], "b": [{"exists": False}]}}, {"d": [{"a": 1}, {"b": 2}]})


def test_r10_3_large_split_arrays_stay_fast(matches: Decide) -> None:
    elements: list[dict[str, int]] = [{"a": i} for i in range(1500)] + [{"b": i} for i in range(1500)]
    assert not matches({"d": {"a": [{"exists": True}], "b": [{"exists": True}]}}, {"d": elements})
    elements.append({"a": 1, "b": 2})
    assert matches({"d": {"a": [{"exists": True}], "b": [{"exists": True}]}}, {"d": elements})
