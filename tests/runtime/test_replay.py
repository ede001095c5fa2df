"""Dead-letter replay and group position resets: library calls and the CLI."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventbus import App, Event, Retry
from eventbus import replay as replay_module
from eventbus.backends.base import Log, Message
from eventbus.backends.kafka.log import KafkaLog
from eventbus.backends.memory import MemoryLog
from eventbus.backends.sqlite import SQLiteLog
from eventbus.errors import ConfigurationError, PositionMovedError, TopicNotFoundError
from eventbus.projections import ProjectionReader, View
from eventbus.replay import (
    GroupBusyError,
    message_template,
    replay_dead_letters,
    reset_group,
    summarize_dead_letters,
)
from eventbus.runtime.dead_letter import PREFIX, REPLAY_TARGET, REPLAYED, replay_target, replayed_from
from eventbus.testing import TestBus
from tests.conftest import ALL_DRIVERS, PYTHON, REPO, open_log


@pytest.fixture(params=ALL_DRIVERS)
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Log]:
    """A fresh log of each driver; on Kafka, the module's broker emptied (cheaper than a broker per test)."""
    with open_log(request.param, request, tmp_path) as fresh:
        yield fresh


def url_of(log: Log) -> str:
    """The log's URL, for `eventbus` commands run in a subprocess."""
    if isinstance(log, SQLiteLog):
        return f"sqlite:///{log.path}"
    if isinstance(log, KafkaLog):
        return log.settings.url
    pytest.skip("a memory log lives in this process: a command in a subprocess cannot reach it")


def failing_app(broken: set[int]) -> tuple[App, list[int]]:
    app = App("orders-app")
    applied: list[int] = []

    @app.processor("orders", retry=Retry(max_attempts=1))
    def apply(event: Event) -> None:
        if event.data["n"] in broken:
            raise KeyError(f"no customer for order {event.data['n']}")
        applied.append(event.data["n"])

    return app, applied


def test_replay_brings_every_dead_letter_back_through_the_fixed_processor(log: Log) -> None:
    bus = TestBus(log=log)
    originals = [Event("order", {"n": n}, partitionkey=f"c{n}") for n in range(10)]
    bus.publish("orders", *originals)
    app, applied = failing_app({2, 5, 7})
    bus.run(app)
    assert applied == [0, 1, 3, 4, 6, 8, 9]

    report = replay_dead_letters(bus.log, "orders.dlq")
    assert report.replayed == 3
    assert report.by_topic == {"orders": 3}
    replayed = bus.events("orders")[10:]
    assert [e.id for e in replayed] == [originals[n].id for n in (2, 5, 7)], "the event ids are kept"
    for record, dead_offset in zip(bus.log.read("orders", 0, 10, 10).records(), range(3), strict=True):
        names = [name for name, _ in record.headers or ()]
        assert not any(n.startswith(PREFIX) for n in names if n not in (REPLAYED, REPLAY_TARGET)), "failures removed"
        assert replay_target(record.headers) == "failing_app.<locals>.apply", "for the processor that gave up"
        assert replayed_from(record.headers) == f"orders.dlq/0/{dead_offset}", "marked as replayed, and from where"

    fixed, applied_after = failing_app(set())
    bus.run(fixed)
    assert applied_after == [2, 5, 7]
    assert replay_dead_letters(bus.log, "orders.dlq").replayed == 0, "a second replay sends only what is new"


def test_replay_filter_dry_run_to_and_from_beginning(log: Log) -> None:
    bus = TestBus(log=log)
    bus.publish("orders", *(Event("order", {"n": n, "big": n >= 5}) for n in range(8)))
    app, _ = failing_app(set(range(8)))
    bus.run(app)
    dry = replay_dead_letters(bus.log, "orders.dlq", pattern={"data": {"big": [True]}}, dry_run=True)
    assert (dry.replayed, dry.filtered_out, dry.dry_run) == (3, 5, True)
    assert len(bus.events("orders")) == 8, "a dry run publishes nothing"
    done = replay_dead_letters(bus.log, "orders.dlq", pattern='{"data": {"big": [true]}}', to="orders.retry")
    assert done.by_topic == {"orders.retry": 3}
    assert [e.data["n"] for e in bus.events("orders.retry")] == [5, 6, 7]
    again = replay_dead_letters(bus.log, "orders.dlq", to="orders.retry", from_beginning=True)
    assert again.replayed == 8


def shop(store_url: str, *, charge_fails: set[int]) -> tuple[App, dict[str, list[int]]]:
    """Two processors and a projection on one topic; ``charge`` fails on the orders in ``charge_fails``."""
    app = App("shop")
    seen: dict[str, list[int]] = {"notify": [], "charge": []}

    @app.processor("orders")
    def notify(event: Event) -> None:
        seen["notify"].append(event.data["n"])

    @app.processor("orders", retry=Retry(max_attempts=1))
    def charge(event: Event) -> None:
        if event.data["n"] in charge_fails:
            raise ConnectionError("payment service down")
        seen["charge"].append(event.data["n"])

    orders = app.projection("orders_seen", topics="orders", store=store_url)

    @orders.on("order")
    def count(event: Event, view: View) -> None:
        key = str(event.data["n"])
        view[key] = {"times": (view.get(key) or {"times": 0})["times"] + 1}

    return app, seen


def test_a_replayed_dead_letter_goes_to_the_processor_that_gave_up_on_it_alone(log: Log, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/views.db"
    bus = TestBus(log=log)
    bus.publish("orders", *(Event("order", {"n": n}) for n in range(4)))
    failing, seen = shop(store, charge_fails={2})
    bus.run(failing)
    assert (seen["notify"], seen["charge"]) == ([0, 1, 2, 3], [0, 1, 3])

    assert replay_dead_letters(bus.log, "orders.dlq").replayed == 1
    fixed, seen = shop(store, charge_fails=set())
    bus.run(fixed)
    assert seen == {"notify": [], "charge": [2]}, "notify handled the original already"
    with ProjectionReader(store, "orders_seen") as reader:
        assert [(reader.get(str(n)).value or {}).get("times") for n in range(4)] == [1, 1, 1, 1], "folded once"

    everyone = replay_dead_letters(bus.log, "orders.dlq", from_beginning=True, all_processors=True)
    assert everyone.replayed == 1
    again, seen = shop(store, charge_fails=set())
    bus.run(again)
    assert seen == {"notify": [2], "charge": [2]}


def test_a_filtered_replay_leaves_what_it_left_out_for_later_and_never_sends_anything_twice(log: Log) -> None:
    bus = TestBus(log=log)
    bus.publish("orders", *(Event("order", {"n": n, "big": n % 2 == 0}) for n in range(8)))
    app, _ = failing_app(set(range(8)))
    bus.run(app)
    big = replay_dead_letters(bus.log, "orders.dlq", pattern={"data": {"big": [True]}}, to="orders.retry")
    assert (big.replayed, big.filtered_out) == (4, 4)
    again = replay_dead_letters(bus.log, "orders.dlq", pattern={"data": {"big": [True]}}, to="orders.retry")
    assert (again.replayed, again.already_replayed) == (0, 3), "the first big one is behind the position"
    rest = replay_dead_letters(bus.log, "orders.dlq", to="orders.retry")
    assert (rest.replayed, rest.filtered_out, rest.already_replayed) == (4, 0, 3)
    assert sorted(e.data["n"] for e in bus.events("orders.retry")) == list(range(8))
    assert replay_dead_letters(bus.log, "orders.dlq", to="orders.retry").replayed == 0


def test_a_replay_refuses_to_go_on_once_another_replay_of_the_same_topic_moved_its_position(
    log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = TestBus(log=log)
    bus.publish("orders", *(Event("order", {"n": n}) for n in range(6)))
    app, _ = failing_app(set(range(6)))
    bus.run(app)
    monkeypatch.setattr(replay_module, "REPLAY_BATCH", 2)
    second: list[int] = []

    def run_another_replay(done: int, total: int) -> None:
        if not second:
            second.append(replay_dead_letters(bus.log, "orders.dlq", to="orders.retry").replayed)

    with pytest.raises(PositionMovedError, match=r"orders.dlq.*another replay of it running"):
        replay_dead_letters(bus.log, "orders.dlq", to="orders.retry", progress=run_another_replay)
    assert second == [4]
    assert sorted(e.data["n"] for e in bus.events("orders.retry")) == list(range(6)), "each sent once"


def test_a_replay_step_that_fails_sends_nothing_of_its_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with SQLiteLog(tmp_path / "events.db") as log:
        bus = TestBus(log=log)
        bus.publish("orders", *(Event("order", {"n": n}) for n in range(3)))
        app, _ = failing_app({0, 1, 2})
        bus.run(app)
        log.create_topic("orders.retry")

        def crash(*args: object) -> None:
            raise OSError("disk gone")

        monkeypatch.setattr(log, "_write_offsets", crash)
        with pytest.raises(OSError, match="disk gone"):
            replay_dead_letters(log, "orders.dlq", to="orders.retry")
        monkeypatch.undo()
        assert bus.events("orders.retry") == [], "the sends went with the position that could not be written"
        assert replay_dead_letters(log, "orders.dlq", to="orders.retry").replayed == 3


def test_a_dead_letter_whose_topic_is_gone_stops_the_replay_before_anything_of_its_batch_is_sent() -> None:
    log = MemoryLog("replay-to-a-gone-topic")
    log.auto_create = False
    log.create_topic("orders")
    log.create_topic("orders.dlq")
    failed = ((f"{PREFIX}origin.topic", b"orders"),)
    gone = ((f"{PREFIX}origin.topic", b"payments"),)
    log.append("orders.dlq", [Message(b"{}", headers=failed), Message(b"{}", headers=gone)])
    with pytest.raises(ConfigurationError, match=r"orders.dlq\[0\]@1 came from topic 'payments'.*--to"):
        replay_dead_letters(log, "orders.dlq")
    assert log.watermarks("orders")[0].end_offset == 0
    with pytest.raises(TopicNotFoundError, match=r"orders\.typo"):
        replay_dead_letters(log, "orders.dlq", to="orders.typo")


def test_summaries_group_dead_letters_by_error(log: Log) -> None:
    bus = TestBus(log=log)
    bus.publish("orders", *(Event("order", {"n": n}) for n in range(6)))
    app, _ = failing_app({1, 3, 4})
    bus.run(app)
    groups = summarize_dead_letters(bus.log, "orders.dlq")
    assert [(g.error_class, g.message, g.count) for g in groups] == [("KeyError", "'no customer for order <n>'", 3)]
    assert groups[0].examples == [f"'no customer for order {n}'" for n in (1, 3, 4)]
    assert all(g.origin_topics == {"orders"} for g in groups)
    assert all(g.first_failure <= g.last_failure for g in groups)


def test_failure_messages_group_without_the_values_that_vary_per_event() -> None:
    assert message_template("no customer for order 42") == "no customer for order <n>"
    assert message_template("amount -3.5 below 0") == "amount <n> below <n>"
    assert message_template("event 0193e1a2-aaaa-7bbb-8ccc-0123456789ab seen") == "event <id> seen"
    assert message_template("digest 9f86d081884c7d65 wrong") == "digest <hex> wrong"
    assert message_template("payment declined") == "payment declined"
    assert message_template("deadbeefcafe is a word") == "deadbeefcafe is a word", "hex needs a digit"


def test_reset_group_by_offset_and_by_time_and_refused_while_it_runs(log: Log) -> None:
    log.create_topic("t", 2)
    # Recent times: a broker with retention deletes records stamped in 1970 at once.
    now_ms = int(time.time() * 1000)
    log.append("t", [Message(b"old", partition=p, timestamp_ms=now_ms - 60_000) for p in (0, 1)])
    log.append("t", [Message(b"new", partition=p, timestamp_ms=now_ms - 10_000) for p in (0, 1, 1)])
    assert reset_group(log, "g", "t", offset=1) == {0: 1, 1: 1}
    assert reset_group(log, "g", "t", offset=99) == {0: 2, 1: 3}
    assert reset_group(log, "g", "t", time_ms=now_ms - 30_000) == {0: 1, 1: 1}
    assert log.committed("g", "t") == {0: 1, 1: 1}
    member = log.consumer("g", ["t"])
    member.poll(1, 0.05)
    with pytest.raises(GroupBusyError, match="group 'g' has 1 live worker"):
        reset_group(log, "g", "t", offset=0)
    member.close()
    assert reset_group(log, "g", "t", offset=0) == {0: 0, 1: 0}


@pytest.mark.parametrize("driver", ["memory", "sqlite"])
def test_a_reset_by_time_finds_the_first_record_stamped_then_even_after_a_clock_stepped_back(
    driver: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with open_log(driver, request, tmp_path) as log:
        log.create_topic("t", 1)
        now_ms = int(time.time() * 1000)
        stamps = [now_ms - 40_000, now_ms - 20_000, now_ms - 30_000, now_ms - 10_000]  # the clock stepped back once
        log.append("t", [Message(b"x", partition=0, timestamp_ms=stamp) for stamp in stamps])
        assert reset_group(log, "g", "t", time_ms=now_ms - 25_000) == {0: 1}
        assert reset_group(log, "g", "t", time_ms=now_ms - 15_000) == {0: 3}
        assert reset_group(log, "g", "t", time_ms=now_ms) == {0: 4}


def eventbus(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "eventbus", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60, check=False
    )


def test_the_dlq_and_replay_commands(log: Log, subprocess_env: dict[str, str]) -> None:
    url = url_of(log)
    bus = TestBus(log=log)
    bus.publish("orders", *(Event("order", {"n": n}) for n in range(5)))
    app, _ = failing_app({0, 1, 2})
    bus.run(app)

    listed = eventbus("dlq", "list", "orders.dlq", "--broker", url, cwd=REPO, env=subprocess_env)
    assert listed.returncode == 0, listed.stderr
    assert "orders.dlq: 3 dead letter(s), 1 kind(s) of failure" in listed.stdout
    assert "3  KeyError: 'no customer for order <n>'" in listed.stdout
    assert "e.g. 'no customer for order 0'" in listed.stdout

    dry = eventbus("dlq", "replay", "orders.dlq", "--dry-run", "--broker", url, cwd=REPO, env=subprocess_env)
    assert "would replay 3 event(s): 3 to orders" in dry.stdout
    bad = eventbus("dlq", "replay", "orders.dlq", "--filter", "{nope", "--broker", url, cwd=REPO, env=subprocess_env)
    assert bad.returncode == 2
    assert "--filter: invalid pattern" in bad.stderr
    replayed = eventbus(
        "dlq",
        "replay",
        "orders.dlq",
        "--filter",
        json.dumps({"data": {"n": [1]}}),
        "--broker",
        url,
        cwd=REPO,
        env=subprocess_env,
    )
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1 event(s): 1 to orders; 2 left out by the filter" in replayed.stdout
    assert "reading orders.dlq: 3/3 dead letters (100%)" in replayed.stderr

    reset = eventbus(
        "replay", "orders", "--group", "orders-app", "--from", "earliest", "--broker", url, cwd=REPO, env=subprocess_env
    )
    assert reset.returncode == 0, reset.stderr
    assert "orders[0]: group orders-app now at offset 0" in reset.stdout
    at_time = eventbus(
        "replay",
        "orders",
        "--group",
        "orders-app",
        "--from",
        "2999-01-01T00:00:00Z",
        "--broker",
        url,
        cwd=REPO,
        env=subprocess_env,
    )
    assert "now at offset 6" in at_time.stdout
    naive = eventbus(
        "replay",
        "orders",
        "--group",
        "g",
        "--from",
        "2026-01-01T00:00:00",
        "--broker",
        url,
        cwd=REPO,
        env=subprocess_env,
    )
    assert naive.returncode == 2
    assert "give a time zone" in naive.stderr


def test_replay_is_refused_while_a_worker_of_the_group_runs(
    log: Log, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    url = url_of(log)
    (tmp_path / "idle_app.py").write_text(
        "from eventbus import App, Event\napp = App('idle')\n@app.processor('t')\ndef h(e: Event) -> None: ...\n"
    )
    worker = subprocess.Popen(
        [PYTHON, "-m", "eventbus", "run", "idle_app", "--broker", url],
        cwd=tmp_path,
        env=subprocess_env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not log.group_members("idle") and time.monotonic() < deadline:
            time.sleep(0.05)
        refused = eventbus(
            "replay", "t", "--group", "idle", "--from", "0", "--broker", url, cwd=tmp_path, env=subprocess_env
        )
        assert refused.returncode == 1
        assert "group 'idle' has 1 live worker(s)" in refused.stderr
        assert "stop them first" in refused.stderr
    finally:
        worker.terminate()
        worker.communicate(timeout=30)
