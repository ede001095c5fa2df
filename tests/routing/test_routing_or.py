"""Spec §9: $or at any level, its grammar, and the override quirk."""

from __future__ import annotations

import pytest
from routing_helpers import Decide

from eventbus.routing import InvalidPatternError, compile_pattern


def test_r9_2_top_level_or(matches: Decide) -> None:
    pattern = {"$or": [{"a": ["1"]}, {"b": ["2"]}]}
    assert matches(pattern, {"a": "1"})
    assert matches(pattern, {"b": "2"})
    assert not matches(pattern, {"a": "2", "b": "1"})


def test_r9_2_branches_sit_at_the_level_of_the_or(matches: Decide) -> None:
    pattern = {"detail": {"$or": [{"c-count": [{"numeric": [">", 0, "<=", 5]}]}, {"x-limit": [301.8]}]}}
    assert matches(pattern, {"detail": {"c-count": 3}})
    assert matches(pattern, {"detail": {"x-limit": 301.8}})
    assert not matches(pattern, {"c-count": 3})
    assert not matches(pattern, {"detail": {"c-count": 6}})


def test_r9_2_siblings_are_anded_with_the_disjunction(matches: Decide) -> None:
    pattern = {"source": ["aws.cloudwatch"], "$or": [{"metricName": ["CPU"]}, {"namespace": ["AWS/EC2"]}]}
    assert matches(pattern, {"source": "aws.cloudwatch", "namespace": "AWS/EC2"})
    assert not matches(pattern, {"source": "aws.ec2", "namespace": "AWS/EC2"})
    assert not matches(pattern, {"source": "aws.cloudwatch"})


def test_r9_2_several_ors_are_anded(matches: Decide) -> None:
    pattern = {
        "$or": [{"a": ["1"]}, {"b": ["1"]}],
        "detail": {"$or": [{"c": ["1"]}, {"d": ["1"]}]},
    }
    assert matches(pattern, {"b": "1", "detail": {"c": "1"}})
    assert not matches(pattern, {"b": "1", "detail": {"e": "1"}})
    assert len(compile_pattern(pattern).subrules) == 4


def test_r9_2_nested_ors(matches: Decide) -> None:
    pattern = {
        "source": ["s"],
        "$or": [
            {"metricName": ["CPU"]},
            {"namespace": ["NS"], "$or": [{"metricId": [1234]}, {"spaceId": [1000]}]},
        ],
    }
    assert matches(pattern, {"source": "s", "metricName": "CPU"})
    assert matches(pattern, {"source": "s", "namespace": "NS", "spaceId": 1000})
    assert not matches(pattern, {"source": "s", "namespace": "NS"})


def test_r9_2_or_branches_with_nested_objects(matches: Decide) -> None:
    pattern = {"$or": [{"with": {"m": {"ns": ["EC2"]}}}, {"without": {"name": ["Default"]}}]}
    assert matches(pattern, {"with": {"m": {"ns": "EC2"}}})
    assert matches(pattern, {"without": {"name": "Default"}})
    assert not matches(pattern, {"with": {"m": {"ns": "S3"}}})


def test_r9_3_branch_replaces_an_outer_condition_on_the_same_path(matches: Decide) -> None:
    pattern = {"a": ["1"], "$or": [{"a": ["2"]}, {"b": ["3"]}]}
    assert matches(pattern, {"a": "2"})
    assert matches(pattern, {"a": "1", "b": "3"})
    assert not matches(pattern, {"a": "1"})


@pytest.mark.parametrize(
    "pattern",
    [
        {"$or": [{"a": ["1"]}]},
        {"$or": []},
        {"$or": {"a": ["1"]}},
        {"$or": "a"},
        {"$or": ["a", "b"]},
        {"$or": [{"a": ["1"]}, {}]},
        {"$or": [{"a": ["1"]}, [{"b": ["2"]}]]},
        {"$or": [{"a": ["1"]}, {"b": []}]},
        {"$or": [{"a": ["1"]}, {"b": "2"}]},
        {"x": {"$or": [{"a": ["1"]}]}},
    ],
)
def test_r9_1_invalid_or(pattern: dict[str, object]) -> None:
    with pytest.raises(InvalidPatternError):
        compile_pattern(pattern)


@pytest.mark.parametrize("word", ["prefix", "numeric", "cidr", "exists", "<=", "regex", "ip-address-in-range"])
def test_r9_1_reserved_words_inside_branches(word: str) -> None:
    with pytest.raises(InvalidPatternError, match="reserved"):
        compile_pattern({"$or": [{word: ["1"]}, {"b": ["2"]}]})
    with pytest.raises(InvalidPatternError, match="reserved"):
        compile_pattern({"$or": [{"a": {word: ["1"]}}, {"b": ["2"]}]})
    compile_pattern({word: ["1"]})


def test_r9_4_or_that_is_not_a_disjunction_is_refused() -> None:
    with pytest.raises(InvalidPatternError):
        compile_pattern({"source": ["aws.cloudwatch"], "$or": {"metricType": ["M"], "namespace": ["AWS/EC2"]}})
    with pytest.raises(InvalidPatternError):
        compile_pattern({"detail": {"$or": [{"numeric": [">", 0, "<=", 5]}, {"cidr": "10.0.0.0/8"}]}})
