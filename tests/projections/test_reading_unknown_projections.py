"""Reading a projection no worker has started (or a misspelt name) answers nothing and creates nothing, on every
store: a read never leaves an empty projection behind."""

from __future__ import annotations

from eventbus.projections import ProjectionReader
from eventbus.projections.store import ProjectionStore


def test_a_read_of_a_projection_never_started_is_empty_and_creates_nothing(store: ProjectionStore) -> None:
    reader = ProjectionReader(store, "balancse")
    assert (reader.get("acc-1").value, reader.get("acc-1").position) == (None, {})
    assert (reader.query({"owner": "ada"}).value, reader.query().position) == ([], {})
    assert reader.position() == {}
    assert reader.content_hash() == ProjectionReader(store, "other").content_hash()
    assert store.projections() == []
    assert store.find_version("balancse") is None


def test_a_read_of_a_started_projection_finds_its_current_version(store: ProjectionStore) -> None:
    store.current_version("balances")  # what a worker does first
    assert store.find_version("balances") == 1
    assert store.create_version("balances") == 2
    assert store.find_version("balances") == 1, "a rebuild's version is not current until it is swapped in"
    assert ProjectionReader(store, "balances").get("acc-1").value is None
