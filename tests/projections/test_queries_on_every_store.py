"""Queries answer alike on every store for rows whose documents are not objects, and for any ``limit``."""

from __future__ import annotations

import pytest

from eventbus.backends.base import TopicPartition
from eventbus.projections import ProjectionReader
from eventbus.projections.store import Changes, ProjectionStore

# A projection may keep bare values by key (a counter, a list of ids) beside its objects.
ROWS = {
    "array": "[1, null, 3]",
    "counter": "42",
    "flag": "true",
    "null": "null",
    "object": '{"f": 1}',
    "objects": '[{"f": 1}]',
    "text": '"just text"',
}
EVERY_KEY = sorted(ROWS)


@pytest.fixture
def reader(store: ProjectionStore) -> ProjectionReader:
    tp = TopicPartition("t", 0)
    store.write("p", store.current_version("p"), Changes(ROWS, frozenset(), {tp: 1}, {tp: None}))
    return ProjectionReader(store, "p")


@pytest.mark.parametrize(
    ("equals", "keys"),
    [
        ({}, EVERY_KEY),
        ({"f": None}, [k for k in EVERY_KEY if k != "object"]),
        ({"g": None}, EVERY_KEY),
        ({"f": 1}, ["object"]),
        ({"1": None}, EVERY_KEY),
    ],
)
def test_rows_that_are_not_objects_are_listed_and_have_no_fields_on_every_store(
    reader: ProjectionReader, equals: dict[str, object], keys: list[str]
) -> None:
    assert [row["key"] for row in reader.query(equals).value] == keys


def test_a_limit_below_zero_is_refused_on_every_store(reader: ProjectionReader) -> None:
    assert [row["key"] for row in reader.query({}, limit=2).value] == EVERY_KEY[:2]
    assert reader.query({}, limit=0).value == []
    for limit in (-1, True, 1.5):
        with pytest.raises(ValueError, match="limit"):
            reader.query({}, limit=limit)  # type: ignore[arg-type]
