"""Two rebuilds of one projection overlapping: the one that started first must not swap the projection back to its
older version when it finishes last (that deleted the newer version's checkpoints and the live worker then folded
every event a second time on top of the rows)."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

import orjson
import pytest

from eventbus import App, Event, Retry
from eventbus.backends.base import Message, TopicPartition
from eventbus.backends.sqlite import SQLiteLog
from eventbus.projections import ProjectionReader, View
from eventbus.projections import rebuild as rebuild_module
from eventbus.projections.rebuild import RebuildFailedError, rebuild
from eventbus.projections.store import Changes, ProjectionStore, StaleVersionError
from eventbus.testing import TestBus
from tests.conftest import PYTHON

TP0 = TopicPartition("accounts", 0)


def bank_app(store_url: str) -> App:
    app = App("bank")
    balances = app.projection("balances", topics="accounts", store=store_url)

    @balances.on("dep")
    def deposited(event: Event, view: View) -> None:
        row = view.get(event.data["a"], {"balance": 0})
        row["balance"] += event.data["n"]
        view[event.data["a"]] = row

    return app


def deposits(count: int, amount: int = 10) -> list[Event]:
    return [Event("dep", {"a": "acc-1", "n": amount}, partitionkey="acc-1") for _ in range(count)]


@pytest.mark.parametrize("refused_at", ["swap", "write"])
def test_an_older_rebuild_finishing_last_is_refused_and_the_newer_version_stays_current(
    store_url: str, refused_at: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if refused_at == "write":
        # Rebuild A still has batches to write after B swapped in: its next write is refused.
        monkeypatch.setattr(rebuild_module, "READ_BATCH", 2)
    bus = TestBus()
    app = bank_app(store_url)
    projection = app.projections["balances"]
    bus.publish("accounts", *deposits(5))
    bus.run(app)

    versions: dict[str, int] = {}

    def run_b() -> None:
        versions["b"] = rebuild(projection, bus.log)

    def a_progress(done: int, total: int) -> None:
        # Rebuild A has created its version and written a batch; rebuild B starts after it and finishes first.
        if "b" not in versions:
            thread = threading.Thread(target=run_b)
            thread.start()
            thread.join()

    with pytest.raises(StaleVersionError, match=r"projection 'balances': version 2 .*version 3 is current"):
        rebuild(projection, bus.log, progress=a_progress)
    assert versions["b"] == 3

    with ProjectionReader(store_url, "balances") as reader:
        assert reader.store.current_version("balances") == 3
        assert reader.store.checkpoints("balances", 3) == {TP0: 5}, "B's checkpoints survive A's refused swap"
        assert reader.get("acc-1").value == {"balance": 50}
    bus.publish("accounts", *deposits(2, amount=1))
    bus.run(app)  # the live worker goes on from version 3's checkpoints, folding only the new events
    with ProjectionReader(store_url, "balances") as reader:
        assert reader.store.current_version("balances") == 3
        assert reader.get("acc-1").value == {"balance": 52}
    # A later rebuild still works, and cleans up behind the refused one.
    assert rebuild(projection, bus.log) == 4
    with ProjectionReader(store_url, "balances") as reader:
        assert reader.get("acc-1").value == {"balance": 52}


def test_a_swap_to_an_older_or_the_current_version_is_refused_and_changes_nothing(store: ProjectionStore) -> None:
    live = store.current_version("balances")
    older = store.create_version("balances")
    newer = store.create_version("balances")
    for version, n in ((live, 1), (older, 2), (newer, 3)):
        store.write("balances", version, Changes({"a": orjson.dumps({"n": n}).decode()}, frozenset(), {TP0: n}))
    store.make_current("balances", newer)

    with pytest.raises(StaleVersionError, match=r"projection 'balances': version 2 .*version 3 is current"):
        store.make_current("balances", older)
    with pytest.raises(StaleVersionError, match=r"projection 'balances': version 3 .*already current"):
        store.make_current("balances", newer)
    assert store.current_version("balances") == newer
    assert store.checkpoints("balances", newer) == {TP0: 3}
    assert orjson.loads(store.fetch("balances", newer, ["a"])["a"]) == {"n": 3}


def current_state(store_url: str) -> tuple[int, object]:
    """The projection's current version and its row ``x``."""
    with ProjectionReader(store_url, "balances") as reader:
        return reader.store.current_version("balances"), reader.get("x").value


def test_a_rebuild_does_not_dead_letter_again_what_the_live_projection_did(tmp_path: Path) -> None:
    log = SQLiteLog(tmp_path / "events.db")
    app = App("bank")
    store = f"sqlite:///{tmp_path}/p.db"
    retry = Retry(max_attempts=2, initial_delay_ms=1)
    balances = app.projection("balances", topics="accounts", store=store, retry=retry)
    refused: set[int] = {-1}

    @balances.on("dep")
    def dep(event: Event, view: View) -> None:
        if event.data["n"] in refused:
            raise ValueError("negative")
        view[event.data["a"]] = event.data

    def dead_letters() -> int:
        return sum(s.end_offset for s in log.watermarks("accounts.dlq"))

    bus = TestBus(log=log)
    bus.publish("accounts", Event("dep", {"a": "x", "n": 1}), Event("dep", {"a": "y", "n": -1}))
    log.append("accounts", [Message(b"not json")])
    bus.run(app)
    assert dead_letters() == 2, "the failing event and the undecodable record"
    rebuild(balances, log)
    rebuild(balances, log)
    assert dead_letters() == 2, "the rebuilds passed over what is dead-lettered already"

    refused.add(1)  # a handler change that makes another event fail: the rebuild stops, the live version stays
    current = current_state(store)
    with pytest.raises(RebuildFailedError, match=r"handler .*dep failed on accounts\[0\]@0 .*ValueError: negative"):
        rebuild(balances, log)
    assert current_state(store) == current, "still the version (and rows) of before"
    assert dead_letters() == 2
    rebuild(balances, log, dead_letter_failures=True)  # asked for: dead-lettered as the live projection does
    assert dead_letters() == 3
    refused.clear()  # fixed: the rebuild folds what the live projection had dead-lettered
    rebuild(balances, log)
    with ProjectionReader(store, "balances") as reader:
        assert (reader.get("y").value or {}).get("n") == -1
    log.close()


BROKEN_APP = """
from eventbus import App, Event

app = App("shop")
totals = app.projection("totals", topics="orders")


@totals.on("order")
def count(event: Event, view) -> None:
    view[event.data["k"]] = {"n": event.data["count"]}  # the events say "n": this handler breaks on every one
"""


def test_the_rebuild_command_keeps_the_current_version_when_the_handler_breaks(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    (tmp_path / "broken.py").write_text(BROKEN_APP)
    env = {**subprocess_env, "PYTHONPATH": f"{tmp_path}:{subprocess_env['PYTHONPATH']}"}
    env["EVENTBUS_STORE"] = f"sqlite:///{tmp_path}/views.db"
    with SQLiteLog(tmp_path / "events.db") as log:
        TestBus(log=log).publish("orders", Event("order", {"k": "a", "n": 1}))
    command = [PYTHON, "-m", "eventbus", "projections", "rebuild", "totals", "--app", "broken"]
    command += ["--broker", f"sqlite:///{tmp_path}/events.db"]

    stopped = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False)
    assert stopped.returncode == 1, stopped.stderr
    assert "handler count failed on orders[0]@0 after 3 attempt(s): KeyError: 'count'" in stopped.stderr
    assert "stays current" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    with SQLiteLog(tmp_path / "events.db") as log:
        assert "orders.dlq" not in [t.name for t in log.list_topics()], "nothing dead-lettered"

    asked = subprocess.run(
        [*command, "--dead-letter"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False
    )
    assert asked.returncode == 0, asked.stderr
    assert "is now current" in asked.stdout


def test_a_swap_drops_the_versions_of_rebuilds_that_never_became_current(store: ProjectionStore) -> None:
    tp = TopicPartition("accounts", 0)
    first = store.current_version("balances")
    abandoned = store.create_version("balances")  # a rebuild that failed: its rows were never current
    store.write("balances", abandoned, Changes({"x": "{}"}, frozenset(), {tp: 1}, {tp: None}))
    newest = store.create_version("balances")
    store.make_current("balances", newest)
    assert store.checkpoints("balances", abandoned) == {}
    with pytest.raises(Exception, match=r"(?i)(no such table|does not exist)"):
        list(store.rows("balances", abandoned))
    assert list(store.rows("balances", first)) == [], "the version just replaced stays one swap longer"


SLOW_APP = """
import time

from eventbus import App, Event

app = App("shop")
totals = app.projection("totals", topics="orders")


@totals.on("order")
def count(event: Event, view) -> None:
    time.sleep(0.001)
    view[event.data["k"]] = {"n": event.data["n"]}
"""


def test_an_interrupted_rebuild_says_the_current_version_is_unchanged(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    (tmp_path / "slow.py").write_text(SLOW_APP)
    env = {**subprocess_env, "PYTHONPATH": f"{tmp_path}:{subprocess_env['PYTHONPATH']}"}
    env["EVENTBUS_STORE"] = f"sqlite:///{tmp_path}/views.db"
    with SQLiteLog(tmp_path / "events.db") as log:
        TestBus(log=log).publish("orders", *(Event("order", {"k": f"k{n}", "n": n}) for n in range(8000)))
    command = [PYTHON, "-m", "eventbus", "projections", "rebuild", "totals", "--app", "slow"]
    rebuilding = subprocess.Popen(
        [*command, "--broker", f"sqlite:///{tmp_path}/events.db"],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert rebuilding.stderr is not None
    assert rebuilding.stderr.readline().startswith("rebuilding totals:"), "under way"
    rebuilding.send_signal(signal.SIGINT)
    said = rebuilding.stderr.read()
    rebuilding.stderr.close()
    assert rebuilding.wait(timeout=30) == 130
    assert "interrupted; the current version is unchanged" in said
    assert "8000/8000" not in said, "stopped between batches, not at the end of the log"
    assert "Traceback" not in said
    with ProjectionReader(f"sqlite:///{tmp_path}/views.db", "totals") as reader:
        assert reader.store.current_version("totals") == 1
