"""Field queries on a projection mean the same on every store: JSON equality of top-level scalars, types
included, and ``None`` for a field that is null or missing; what cannot be compared is refused, not a crash."""

from __future__ import annotations

import pytest

from eventbus.backends.base import TopicPartition
from eventbus.errors import ConfigurationError
from eventbus.projections import ProjectionReader
from eventbus.projections.store import Changes, ProjectionStore

ROWS = {
    "r1": '{"owner": "ada", "tags": ["a", "b"], "active": true, "n": 1, "note": null}',
    "r2": '{"owner": "bob", "tags": ["a"], "active": 1, "n": true, "price": 2.5}',
    "r3": '{"owner": "1", "n": 1.0, "price": 2.50}',
}


@pytest.fixture
def reader(store: ProjectionStore) -> ProjectionReader:
    tp = TopicPartition("t", 0)
    store.write("p", store.current_version("p"), Changes(ROWS, frozenset(), {tp: 1}, {tp: None}))
    return ProjectionReader(store, "p")


@pytest.mark.parametrize(
    ("equals", "keys"),
    [
        ({"owner": "ada"}, ["r1"]),
        ({"owner": "1"}, ["r3"]),
        ({"active": True}, ["r1"]),
        ({"active": 1}, ["r2"]),
        ({"n": 1}, ["r1", "r3"]),
        ({"n": True}, ["r2"]),
        ({"price": 2.5}, ["r2", "r3"]),
        ({"note": None}, ["r1", "r2", "r3"]),
        ({"price": None}, ["r1"]),
        ({"owner": "ada", "n": 1}, ["r1"]),
        ({"owner": None}, []),
    ],
)
def test_a_field_matches_the_same_json_value_and_type_on_every_store(
    reader: ProjectionReader, equals: dict[str, object], keys: list[str]
) -> None:
    assert [row["key"] for row in reader.query(equals).value] == keys


@pytest.mark.parametrize(
    ("equals", "says"),
    [
        ({"tags": ["a"]}, "not list"),
        ({"owner": {"a": 1}}, "not dict"),
        ({"n": float("nan")}, "not a JSON number"),
        ({"a.b": 1}, "use letters, digits and '_'"),
    ],
)
def test_what_a_query_cannot_compare_is_refused_by_name(
    reader: ProjectionReader, equals: dict[str, object], says: str
) -> None:
    with pytest.raises(ConfigurationError, match=says):
        reader.query(equals)
