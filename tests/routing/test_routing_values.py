"""Spec §1-§3: the data model, pattern structure and core semantics, plain values and numbers."""

from __future__ import annotations

import pytest
from routing_helpers import Decide

from eventbus.routing import InvalidPatternError, Router, compile_pattern

# -- R1 data model ----------------------------------------------------------------------------------------


def test_r1_1_only_objects_are_events(matches: Decide) -> None:
    pattern = compile_pattern({"a": [{"exists": False}]})
    assert matches(pattern, {})
    for not_an_event in ([], "a", 1, None, [{"a": 1}]):
        assert pattern.matches(not_an_event) is False  # type: ignore[arg-type]


def test_r1_2_arrays_are_transparent(matches: Decide) -> None:
    assert matches({"a": [2]}, {"a": [[1, 2], [3]]})
    assert matches({"a": [3]}, {"a": [[1, 2], [3]]})
    assert matches({"a": {"b": ["x"]}}, {"a": [{"b": "y"}, {"b": "x"}]})
    assert matches({"a": {"b": ["x"]}}, {"a": [[{"b": "x"}]]})


def test_r1_2_empty_containers_give_no_value(matches: Decide) -> None:
    assert not matches({"a": [{"exists": True}]}, {"a": []})
    assert not matches({"a": [{"exists": True}]}, {"a": {}})
    assert not matches({"a": [{"exists": True}]}, {"a": [[], {}]})
    assert matches({"a": [{"exists": False}]}, {"a": [[], {}]})


def test_r1_3_dotted_event_key_is_the_same_field(matches: Decide) -> None:
    assert matches({"a": {"b": [1]}}, {"a.b": 1})
    assert matches({"a": {"b": {"c": ["x"]}}}, {"a": {"b.c": "x"}})
    assert matches({"a": {"b": {"c": ["x"]}}}, {"a.b": {"c": "x"}})


def test_r1_3_dotted_pattern_key_is_the_same_field(matches: Decide) -> None:
    assert matches({"a.b": [1]}, {"a": {"b": 1}})
    assert matches({"a.b": [1]}, {"a.b": 1})
    assert not matches({"a.b": [1]}, {"a": {"c": 1}})


def test_r1_4_strings_compare_code_point_by_code_point(matches: Decide) -> None:
    precomposed, decomposed = "\u00e9", "e\u0301"
    assert matches({"a": [precomposed]}, {"a": precomposed})
    assert not matches({"a": [precomposed]}, {"a": decomposed})
    assert not matches({"a": ["x"]}, {"a": " x"})
    assert not matches({"a": ["x"]}, {"a": "X"})
    assert matches({"a": ["\U0001f600"]}, {"a": "\U0001f600"})


def test_r1_4_json_inside_a_string_is_just_a_string(matches: Decide) -> None:
    assert not matches({"body": {"a": [1]}}, {"body": '{"a": 1}'})
    assert matches({"body": ['{"a": 1}']}, {"body": '{"a": 1}'})


# -- R2 structure and core semantics ----------------------------------------------------------------------


def test_r2_3_every_path_must_match(matches: Decide) -> None:
    pattern = {"a": ["1"], "b": ["2"]}
    assert matches(pattern, {"a": "1", "b": "2"})
    assert not matches(pattern, {"a": "1", "b": "3"})
    assert not matches(pattern, {"a": "1"})


def test_r2_3_any_matcher_of_a_path_may_match(matches: Decide) -> None:
    pattern = {"a": ["1", {"prefix": "x"}, 7]}
    assert matches(pattern, {"a": "1"})
    assert matches(pattern, {"a": "xyz"})
    assert matches(pattern, {"a": 7.0})
    assert not matches(pattern, {"a": "2"})


def test_r2_3_any_value_of_the_field_may_match(matches: Decide) -> None:
    assert matches({"a": ["x"]}, {"a": ["y", "x"]})
    assert not matches({"a": ["x"]}, {"a": ["y", "z"]})


def test_r2_3_missing_field_fails_every_value_matcher(matches: Decide) -> None:
    for matcher in (["x"], [{"prefix": ""}], [{"anything-but": "x"}], [{"numeric": [">", 0]}], [{"exists": True}]):
        assert not matches({"a": matcher}, {"b": "x"})


def test_r2_4_unmentioned_fields_are_ignored(matches: Decide) -> None:
    assert matches({"a": ["x"]}, {"a": "x", "b": {"c": [1, 2]}, "d": None})


def test_r2_4_nesting_must_match(matches: Decide) -> None:
    assert not matches({"a": {"b": ["x"]}}, {"a": "x"})
    assert not matches({"a": ["x"]}, {"a": {"b": "x"}})
    assert not matches({"a": [{"exists": True}]}, {"a": {"b": "x"}})


def test_r2_5_duplicate_keys_last_one_wins(matches: Decide) -> None:
    text = '{"detail": {"location": [{"prefix": "us-"}], "location": [{"anything-but": "us-east"}]}}'
    assert matches(text, {"detail": {"location": "eu-west"}})
    assert not matches(text, {"detail": {"location": "us-east"}})


# -- R3 plain values --------------------------------------------------------------------------------------


def test_r3_1_plain_string_equality(matches: Decide) -> None:
    assert matches({"a": ["x"]}, {"a": "x"})
    assert not matches({"a": ["x"]}, {"a": "xx"})
    assert matches({"a": [""]}, {"a": ""})
    assert not matches({"a": [""]}, {"a": " "})
    assert not matches({"a": [""]}, {})


def test_r3_2_literals_match_only_themselves(matches: Decide) -> None:
    assert matches({"a": [None]}, {"a": None})
    others: list[object] = ["", "null", [], {}, 0, False]
    for other in others:
        assert not matches({"a": [None]}, {"a": other})
    assert not matches({"a": [None]}, {})
    assert matches({"a": [True]}, {"a": True})
    for not_true in ("true", 1, 1.0, None):
        assert not matches({"a": [True]}, {"a": not_true})
    assert matches({"a": [False]}, {"a": False})
    assert not matches({"a": [False]}, {"a": 0})


def test_r3_2_strings_never_equal_numbers(matches: Decide) -> None:
    assert not matches({"a": ["5"]}, {"a": 5})
    assert not matches({"a": [5]}, {"a": "5"})
    assert not matches({"a": [1]}, {"a": True})


def test_r3_3_numbers_compare_by_value(matches: Decide) -> None:
    assert matches({"a": [300]}, {"a": 300.0})
    assert matches('{"a": [3.0e2]}', {"a": 300})
    assert matches('{"a": [3E2]}', {"a": 300})
    assert matches('{"a": [0]}', {"a": -0.0})
    assert matches('{"a": [-0]}', {"a": 0})
    assert matches('{"a": [5e-1]}', {"a": 0.5})


def test_r3_3_numbers_compare_by_value_in_raw_json() -> None:
    pattern = compile_pattern('{"a": [300]}')
    for raw in ('{"a": 300.0}', '{"a": 3.0e2}', '{"a": 3E2}', '{"a": 300}'):
        assert pattern.matches_json(raw), raw


def test_r3_3_unrepresentable_numbers_compare_by_text() -> None:
    assert not compile_pattern('{"a": [9007199254740993]}').matches({"a": 9007199254740992})
    assert compile_pattern('{"a": [9007199254740993]}').matches({"a": 9007199254740993})
    assert not compile_pattern('{"a": [9007199254740992]}').matches({"a": 9007199254740993})
    twenty = "12345678901234567891"
    assert compile_pattern(f'{{"a": [{twenty}]}}').matches({"a": int(twenty)})
    assert not compile_pattern(f'{{"a": [{twenty}]}}').matches({"a": int(twenty) + 1})


def test_r3_3_unrepresentable_numbers_in_raw_json_keep_their_text() -> None:
    pattern = compile_pattern('{"a": [0.30000000000000001]}')
    assert pattern.matches_json('{"a": 0.30000000000000001}')
    assert not pattern.matches_json('{"a": 0.3}')
    assert not compile_pattern('{"a": [0.3]}').matches_json('{"a": 0.30000000000000001}')
    assert compile_pattern('{"a": [1e400]}').matches_json('{"a": 1e400}')
    assert not compile_pattern('{"a": [1e400]}').matches_json('{"a": 1.0e400}')


def test_r3_3_representability_is_by_shortest_round_trip() -> None:
    # 1e23 is the shortest spelling of its double; 99999999999999991611392 is that double's exact value.
    assert compile_pattern('{"a": [1e23]}').matches({"a": 1e23})
    assert compile_pattern('{"a": [100000000000000000000000]}').matches_json('{"a": 1e23}')
    assert not compile_pattern('{"a": [99999999999999991611392]}').matches_json('{"a": 1e23}')


def test_r3_3_number_never_equals_string_boolean_or_null(matches: Decide) -> None:
    for other in ("0", False, None, True):
        assert not matches({"a": [0]}, {"a": other})


def test_r3_4_ip_shaped_string_matches_other_spellings(matches: Decide) -> None:
    assert matches({"ip": ["::1"]}, {"ip": "0:0:0:0:0:0:0:1"})
    assert matches({"ip": ["0:0:0:0:0:0:0:1"]}, {"ip": "::1"})
    assert matches({"ip": ["2001:db8::ff"]}, {"ip": "2001:DB8:0::00FF"})
    assert matches({"ip": ["10.0.0.1"]}, {"ip": "10.0.0.1"})
    assert not matches({"ip": ["10.0.0.1"]}, {"ip": "10.0.0.2"})


def test_r3_4_identical_spellings_match_in_any_reading(matches: Decide) -> None:
    for text in ("10.0.0.1", "1.2.3.256", "010.0.0.1", "::1", "1::2::3", "dead:beef"):
        assert matches({"ip": [text]}, {"ip": text})


@pytest.mark.parametrize("text", ["1.2.3.256", "010.0.0.1", "1.2.3"])
def test_r3_4_non_addresses_stay_plain_strings(matches: Decide, text: str) -> None:
    assert not matches({"ip": [text]}, {"ip": text + " "})
    assert not matches({"ip": [text]}, {"ip": "1.2.3.0"})


def test_r11_integers_longer_than_pythons_str_limit_are_numbers_like_any_other() -> None:
    # Python's str() refuses integers of more than 4,300 digits; a pattern or event built in Python may hold one.
    huge = 10**5000
    pattern = compile_pattern({"a": [huge]}, max_size=10**6)
    assert pattern.matches({"a": huge})
    assert not pattern.matches({"a": huge + 1})
    assert compile_pattern('{"a": [1' + "0" * 5000 + "]}", max_size=10**6).matches({"a": huge})
    assert not compile_pattern({"a": [1]}).matches({"a": huge})
    assert not compile_pattern({"a": [{"numeric": [">", 0]}]}).matches({"a": -huge})
    router: Router[str] = Router(max_size=10**6)
    router.add({"a": [huge]}, "huge")
    router.add({"a": [{"anything-but": [1]}]}, "not one")
    assert sorted(router.match({"a": huge})) == ["huge", "not one"]
    with pytest.raises(InvalidPatternError, match=r"a: numeric operand 1000.*\(5001 characters\) is not exactly"):
        compile_pattern({"a": [{"numeric": [">", huge]}]}, max_size=10**6)
    with pytest.raises(InvalidPatternError, match="over the limit of 2048"):
        compile_pattern({"a": [huge]})
