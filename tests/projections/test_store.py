"""The projection store contract, run unchanged on SQLite and PostgreSQL."""

from __future__ import annotations

import orjson
import pytest

from eventbus.backends.base import TopicPartition
from eventbus.errors import BackendError, ConfigurationError
from eventbus.projections.store import Changes, ProjectionStore, VersionChangedError, open_store

TP0 = TopicPartition("accounts", 0)
TP1 = TopicPartition("accounts", 1)


def doc(**fields: object) -> str:
    return orjson.dumps(fields).decode()


def test_a_new_projection_starts_at_version_1_with_no_checkpoints(store: ProjectionStore) -> None:
    assert store.current_version("balances") == 1
    assert store.checkpoints("balances", 1) == {}
    assert store.projections() == ["balances"]


def test_rows_and_checkpoints_are_written_together(store: ProjectionStore) -> None:
    v = store.current_version("balances")
    store.write("balances", v, Changes({"a": doc(balance=1), "b": doc(balance=2)}, frozenset(), {TP0: 5}))
    store.write("balances", v, Changes({"a": doc(balance=10)}, frozenset({"b"}), {TP0: 7, TP1: 3}))
    assert store.checkpoints("balances", v) == {TP0: 7, TP1: 3}
    fetched = store.fetch("balances", v, ["a", "b", "missing"])
    assert {k: orjson.loads(t) for k, t in fetched.items()} == {"a": {"balance": 10}}
    assert [k for k, _ in store.rows("balances", v)] == ["a"]


KEYS_AND_DOCS = {
    "plain": doc(n=1),
    "ключ-🔑": doc(text='naïve ☃ \\u0000 "quoted" \\ back'),
    "": doc(empty=""),
    "spaces and 'quotes'": "[1, 2.5, null, true]",
    "a string doc": '"just text"',
    "a number doc": "12345678901234567890",
}


def test_rows_come_back_exactly_as_written_whatever_their_keys_and_documents(store: ProjectionStore) -> None:
    written = dict(KEYS_AND_DOCS)
    if store.url.startswith("sqlite"):  # PostgreSQL text holds no NUL character, in keys or in jsonb
        written["nul\x00inside"] = doc(text="a\x00b")
    v = store.current_version("balances")
    store.write("balances", v, Changes(written, frozenset(), {TP0: 1}))
    fetched = store.fetch("balances", v, list(written))
    assert set(fetched) == set(written)
    assert {k: orjson.loads(t) for k, t in fetched.items()} == {k: orjson.loads(t) for k, t in written.items()}
    big = {f"k{n:05d}": doc(n=n) for n in range(5_000)}
    store.write("balances", v, Changes(big, frozenset(), {TP0: 2}))
    assert len(list(store.rows("balances", v))) == len(written) + 5_000
    assert orjson.loads(store.fetch("balances", v, ["k04321"])["k04321"]) == {"n": 4321}


def test_a_failed_write_leaves_neither_rows_nor_checkpoint(store: ProjectionStore) -> None:
    v = store.current_version("balances")
    store.write("balances", v, Changes({"a": doc(n=1)}, frozenset(), {TP0: 1}))
    with pytest.raises(BackendError):
        store.write("balances", v, Changes({"b": doc(n=2), "c": "{not json"}, frozenset(), {TP0: 9}))
    assert store.checkpoints("balances", v) == {TP0: 1}
    assert list(store.fetch("balances", v, ["b"])) == []


def test_queries_match_top_level_fields_in_key_order(store: ProjectionStore) -> None:
    v = store.current_version("accounts")
    rows = {
        "acc-3": doc(owner="ada", status="open", balance=30, vip=True),
        "acc-1": doc(owner="ada", status="closed", balance=0, vip=False),
        "acc-2": doc(owner="bob", status="open", balance=5, vip=False),
    }
    store.write("accounts", v, Changes(rows, frozenset(), {TP0: 3}))
    assert [k for k, _ in store.query("accounts", v, {"owner": "ada"}, 100)] == ["acc-1", "acc-3"]
    assert [k for k, _ in store.query("accounts", v, {"owner": "ada", "status": "open"}, 100)] == ["acc-3"]
    assert [k for k, _ in store.query("accounts", v, {"balance": 5}, 100)] == ["acc-2"]
    assert [k for k, _ in store.query("accounts", v, {"vip": True}, 100)] == ["acc-3"]
    assert [k for k, _ in store.query("accounts", v, {}, 2)] == ["acc-1", "acc-2"]
    assert store.query("accounts", v, {"owner": "nobody"}, 100) == []


def test_blue_green_versions_swap_in_one_step_and_fence_the_old_version(store: ProjectionStore) -> None:
    live = store.current_version("balances")
    store.write("balances", live, Changes({"a": doc(n=1)}, frozenset(), {TP0: 1}))
    fresh = store.create_version("balances")
    assert fresh == live + 1
    store.write("balances", fresh, Changes({"a": doc(n=2)}, frozenset(), {TP0: 1}))
    assert store.current_version("balances") == live, "a rebuild does not change what readers see"
    store.make_current("balances", fresh)
    assert store.current_version("balances") == fresh
    assert orjson.loads(store.fetch("balances", fresh, ["a"])["a"]) == {"n": 2}
    with pytest.raises(VersionChangedError, match="version 1 was replaced by version 2"):
        store.write("balances", live, Changes({"a": doc(n=3)}, frozenset(), {TP0: 2}))


def test_bad_store_urls_are_named() -> None:
    with pytest.raises(ConfigurationError, match="unknown store URL scheme"):
        open_store("mysql://localhost/x")
    with pytest.raises(ConfigurationError, match=r"sqlite:///projections\.db"):
        open_store("sqlite://host/x.db")


def test_bad_projection_names_are_refused(store: ProjectionStore) -> None:
    with pytest.raises(ConfigurationError, match="projection name 'Bad-Name'"):
        store.current_version("Bad-Name")
