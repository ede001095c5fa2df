"""Spec §11: the invalid-pattern checklist, and error messages that name the place and the problem."""

from __future__ import annotations

import json
from typing import Any

import pytest

from eventbus.routing import InvalidPatternError, compile_pattern


@pytest.mark.parametrize("pattern", ['["a"]', "5", '"x"', "null", "{", '{"a": [1],}', "{'a': [1]}", '{"a": [NaN]}'])
def test_r11_1_not_an_object_or_not_json(pattern: str) -> None:
    with pytest.raises(InvalidPatternError) as caught:
        compile_pattern(pattern)
    assert caught.value.path == "(root)"


@pytest.mark.parametrize("pattern", [[], "a", 5, None])
def test_r11_1_dict_api_refuses_non_objects(pattern: Any) -> None:
    with pytest.raises(InvalidPatternError):
        compile_pattern(pattern)


@pytest.mark.parametrize(
    ("pattern", "path"),
    [({}, "(root)"), ({"a": {}}, "a"), ({"a": {"b": {}}}, "a.b"), ({"$or": [{"a": [1]}, {}]}, "$or[1]")],
)
def test_r11_2_empty_objects(pattern: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidPatternError, match="empty objects") as caught:
        compile_pattern(pattern)
    assert caught.value.path == path


@pytest.mark.parametrize("value", ["aws.ec2", 5, True, None])
def test_r11_3_scalar_members(value: object) -> None:
    with pytest.raises(InvalidPatternError, match="must be an object or an array") as caught:
        compile_pattern({"detail": {"source": value}})
    assert caught.value.path == "detail.source"


def test_r11_4_empty_matcher_arrays() -> None:
    with pytest.raises(InvalidPatternError, match="empty arrays"):
        compile_pattern({"a": []})
    with pytest.raises(InvalidPatternError, match="empty arrays"):
        compile_pattern({"$or": [{"a": [1]}, {"b": []}]})


def test_r11_5_arrays_inside_matcher_arrays() -> None:
    with pytest.raises(InvalidPatternError, match="not an array"):
        compile_pattern({"a": [["x"]]})
    with pytest.raises(InvalidPatternError):
        compile_pattern({"a": ["x", []]})


@pytest.mark.parametrize(
    "matcher",
    [{}, {"prefix": "a", "suffix": "b"}, {"contains": "a"}, {"regex": "a"}, {"Prefix": "a"}, {"NUMERIC": [">", 1]},
     {"EXISTS": True}, {"anything_but": "x"}],
)  # fmt: skip
def test_r11_6_bad_matcher_objects(matcher: dict[str, Any]) -> None:
    with pytest.raises(InvalidPatternError):
        compile_pattern({"a": [matcher]})


@pytest.mark.parametrize(
    "matcher",
    [{"prefix": 1}, {"suffix": None}, {"equals-ignore-case": ["a"]}, {"wildcard": 1}, {"cidr": 1},
     {"numeric": 5}, {"exists": "true"}, {"prefix": {"suffix": "a"}}, {"suffix": {"equals-ignore-case": 1}}],
)  # fmt: skip
def test_r11_7_operator_value_types(matcher: dict[str, Any]) -> None:
    with pytest.raises(InvalidPatternError):
        compile_pattern({"a": [matcher]})


def test_r11_not_errors() -> None:
    for pattern in (
        {"a": [{"prefix": ""}]},
        {"a": [{"suffix": ""}]},
        {"a": [""]},
        {"a": [None]},
        {"a": ["x", "x"]},
        {"a": ["x", 5, True, None]},
        {"a": [{"exists": True}, "x", {"numeric": [">", 1]}]},
        {"a": [123456789012345678901234567890]},
    ):
        compile_pattern(pattern)
    compile_pattern('{"a": [1e400, 0.30000000000000001, 9007199254740993]}')


def test_errors_name_the_path_and_the_problem() -> None:
    with pytest.raises(InvalidPatternError) as caught:
        compile_pattern({"detail": {"$or": [{"a": ["1"]}, {"b": [{"numeric": ["<", "x"]}]}]}})
    assert caught.value.path == "detail.$or[1].b"
    assert str(caught.value).startswith("detail.$or[1].b: ")
    assert "number" in caught.value.problem


def test_errors_are_value_errors_and_pickle() -> None:
    import pickle

    error = InvalidPatternError("a.b", "problem")
    assert isinstance(error, ValueError)
    again = pickle.loads(pickle.dumps(error))  # noqa: S301 - round trip of our own object
    assert (again.path, again.problem, str(again)) == ("a.b", "problem", "a.b: problem")


def test_errors_from_text_and_dict_agree() -> None:
    bad = {"x": {"y": [{"anything-but": [1, "a"]}]}}
    with pytest.raises(InvalidPatternError) as from_dict:
        compile_pattern(bad)
    with pytest.raises(InvalidPatternError) as from_text:
        compile_pattern(json.dumps(bad))
    assert str(from_dict.value) == str(from_text.value)


def test_deeply_nested_patterns_are_refused_cleanly() -> None:
    text = '{"a":' * 5000 + '["x"]' + "}" * 5000
    with pytest.raises(InvalidPatternError, match=r"nested too deeply|limit"):
        compile_pattern(text, max_size=10**6)
    nested: dict[str, Any] = {"a": ["x"]}
    for _ in range(5000):
        nested = {"a": nested}
    with pytest.raises(InvalidPatternError, match="nested too deeply"):
        compile_pattern(nested, max_size=10**6)
