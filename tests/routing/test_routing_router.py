"""The Router: targets in rule order, each once; adding and removing rules at run time."""

from __future__ import annotations

from typing import Any

import pytest

from eventbus.routing import InvalidPatternError, Router, compile_pattern

EVENT = {"source": "shop", "type": "order.created", "data": {"total": 120, "country": "DE"}}


def test_targets_come_in_the_order_rules_were_added() -> None:
    router: Router[str] = Router()
    router.add({"data": {"total": [{"numeric": [">", 100]}]}}, "big")
    router.add({"source": ["shop"]}, "shop")
    router.add({"type": [{"prefix": "order."}]}, "orders")
    router.add({"source": ["other"]}, "other")
    assert router.match(EVENT) == ["big", "shop", "orders"]


def test_each_target_once() -> None:
    router: Router[str] = Router()
    router.add({"source": ["shop"]}, "a")
    router.add({"type": ["order.created"]}, "b")
    router.add({"data": {"country": ["DE"]}}, "a")
    router.add({"$or": [{"source": ["shop"]}, {"type": ["order.created"]}]}, "c")
    assert router.match(EVENT) == ["a", "b", "c"]


def test_unhashable_targets() -> None:
    router: Router[list[str]] = Router()
    router.add({"source": ["shop"]}, ["x"])
    router.add({"type": ["order.created"]}, ["x"])
    router.add({"type": ["order.created"]}, ["y"])
    assert router.match(EVENT) == [["x"], ["y"]]


def test_add_returns_ids_and_remove_takes_them() -> None:
    router: Router[str] = Router()
    first = router.add({"source": ["shop"]}, "a")
    second = router.add({"source": ["shop"]}, "b")
    assert first != second
    assert len(router) == 2
    router.remove(first)
    assert len(router) == 1
    assert router.match(EVENT) == ["b"]
    router.remove(second)
    assert router.match(EVENT) == []
    with pytest.raises(KeyError):
        router.remove(second)


def test_removing_restores_the_answers_of_every_kind_of_anchor() -> None:
    patterns: list[dict[str, Any]] = [
        {"source": ["shop"]},
        {"data": {"total": [120]}},
        {"data": {"total": [{"numeric": [">=", 100, "<", 200]}]}},
        {"type": [{"prefix": "order"}]},
        {"type": [{"suffix": "created"}]},
        {"type": [{"equals-ignore-case": "ORDER.CREATED"}]},
        {"type": [{"wildcard": "order.*"}]},
        {"data": {"country": [{"anything-but": "FR"}]}},
        {"data": {"missing": [{"exists": False}]}},
        {"data": {"country": [{"exists": True}]}},
        {"ip": [{"cidr": "10.0.0.0/8"}]},
    ]
    router: Router[int] = Router()
    baseline = router.add({"source": ["shop"]}, -1)
    ids = [router.add(p, n) for n, p in enumerate(patterns)]
    event = {**EVENT, "ip": "10.1.2.3"}
    assert router.match(event) == [-1, *range(len(patterns))]
    for rule_id in ids:
        router.remove(rule_id)
    assert router.match(event) == [-1]
    router.remove(baseline)
    assert router.match(event) == []
    assert router._indexes == {}
    assert len(router._paths) == 0


def test_add_accepts_compiled_patterns_and_text() -> None:
    router: Router[str] = Router()
    router.add(compile_pattern({"source": ["shop"]}), "compiled")
    router.add('{"data": {"total": [120.0]}}', "text")
    assert router.match(EVENT) == ["compiled", "text"]


def test_invalid_patterns_are_refused_and_leave_no_trace() -> None:
    router: Router[str] = Router()
    with pytest.raises(InvalidPatternError):
        router.add({"source": []}, "x")
    assert len(router) == 0
    assert router.match(EVENT) == []


def test_non_objects_match_nothing() -> None:
    router: Router[str] = Router()
    router.add({"a": [{"exists": False}]}, "absent")
    assert router.match({}) == ["absent"]
    assert router.match([]) == []  # type: ignore[arg-type]
    assert router.match_json("[1, 2]") == []


def test_match_json_keeps_number_spellings() -> None:
    router: Router[str] = Router()
    router.add('{"n": [0.30000000000000001]}', "precise")
    router.add('{"n": [0.3]}', "rounded")
    assert router.match_json(b'{"n": 0.30000000000000001}') == ["precise"]
    assert router.match_json(b'{"n": 0.3}') == ["rounded"]
    with pytest.raises(ValueError, match=r"\w"):
        router.match_json(b"{not json")


def test_rules_sharing_paths_and_values() -> None:
    router: Router[int] = Router()
    for n in range(50):
        router.add({"source": ["shop"], "data": {"total": [n]}}, n)
    assert router.match(EVENT) == []
    assert router.match({**EVENT, "data": {"total": 7}}) == [7]


def test_many_rules_visit_only_the_candidates() -> None:
    router: Router[int] = Router()
    for n in range(5000):
        router.add({"source": [f"service-{n}"], "data": {"total": [{"numeric": [">", 0]}]}}, n)
    candidates: set[int] = set()
    found = {router._paths.id_of("source"): ["service-42"]}
    for path_id, values in found.items():
        assert path_id is not None
        router._indexes[path_id].collect(values, candidates)
    assert len(candidates) == 1
    assert router.match({"source": "service-42", "data": {"total": 3}}) == [42]


def test_iterating_a_router_lists_its_rules() -> None:
    router: Router[str] = Router()
    router.add({"source": ["shop"]}, "a")
    router.add({"source": ["x"]}, "b")
    assert [target for _, _, target in router] == ["a", "b"]


def test_thousands_of_rules_come_and_go_quickly() -> None:
    import time

    router: Router[int] = Router()
    started = time.perf_counter()
    ids = [
        router.add({"s": [{"prefix": f"k{n:05d}x"}], "t": [{"suffix": f"y{n:04d}"}], "n": [{"numeric": [">", n]}]}, n)
        for n in range(3000)
    ]
    assert router.match({"s": "k00042xyz", "t": "ay0042", "n": 100}) == [42]
    for rule_id in ids:
        router.remove(rule_id)
    assert len(router) == 0
    assert time.perf_counter() - started < 20


def test_a_rule_anchored_on_an_absent_field_survives_anchor_reviews_and_removal() -> None:
    # Found by the add-then-remove property test: a sub-rule anchored on `exists: false` alone has no matchers to
    # index; the empty index made for it was dropped when another rule left the path, and removing it then failed.
    patterns = [
        {"a": [""]},
        {"b": ["", {"anything-but": [""]}], "a": {"b": [{"anything-but": ""}]}},
        {"a.b": [""], "$or": [{"a.b": [{"exists": False}]}, {"a": [""], "b": ["x"]}]},
    ]
    events: list[dict[str, Any]] = [{"a": ""}, {"a": "", "b": "x"}, {"b": ""}, {"a": {"b": "x"}, "b": ""}, {}]
    router: Router[int] = Router()
    ids = [router.add(pattern, n) for n, pattern in enumerate(patterns)]
    for event in events:
        expected = [n for n, pattern in enumerate(patterns) if compile_pattern(pattern).matches(event)]
        assert router.match(event) == expected, event
    assert any(router.match(event) for event in events), "the events exercise the rules"
    for rule_id in ids:
        router.remove(rule_id)
    assert len(router) == 0
    assert all(router.match(event) == [] for event in events)
