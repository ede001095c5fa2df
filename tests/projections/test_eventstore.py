"""The event store on every backend: streams, optimistic concurrency, snapshots, atomic publishing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventbus import Event
from eventbus.backends.base import Log
from eventbus.backends.memory import MemoryLog
from eventbus.backends.sqlite import SQLiteLog
from eventbus.codecs import decode_record
from eventbus.errors import BackendError
from eventbus.projections import Aggregate, ConcurrencyError, EventStore
from tests.postgres_server import fresh_database

BACKENDS = ["memory", "sqlite-shared", "sqlite-outbox", pytest.param("postgres", marks=pytest.mark.postgres)]


class Counter(Aggregate):
    topic = "counters"
    snapshot_every = 10

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.total = 0
        self.applied = 0

    def apply(self, event: Event) -> None:
        self.total += event.data["by"]
        self.applied += 1
        Counter.apply_calls += 1

    apply_calls = 0

    def add(self, by: int) -> list[Event]:
        return [self.event("counter.added", {"by": by, "total": self.total + by})]


@pytest.fixture(params=BACKENDS)
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[EventStore, Log]]:
    kind = request.param
    log: Log
    if kind == "memory":
        log = MemoryLog(f"es-{id(request)}")
        url = "memory://"
    elif kind == "sqlite-shared":
        log = SQLiteLog(tmp_path / "events.db")
        url = f"sqlite:///{tmp_path}/events.db"
    elif kind == "sqlite-outbox":
        log = SQLiteLog(tmp_path / "events.db")
        url = f"sqlite:///{tmp_path}/streams.db"
    else:
        log = SQLiteLog(tmp_path / "events.db")
        url = fresh_database(request.getfixturevalue("postgres_url"))
    store = EventStore(url, log, source="/tests")
    yield store, log
    store.close()
    log.close()


def published(log: Log, topic: str = "counters") -> list[Event]:
    found = []
    for state in log.watermarks(topic):
        batch = log.read(topic, state.partition, 0, 100_000)
        found.extend(Event.wrap(decode_record(v, h)) for v, h in zip(batch.values, batch.headers, strict=True))
    return found


def test_saved_events_rebuild_the_aggregate_and_are_published_to_its_topic(setup: tuple[EventStore, Log]) -> None:
    store, log = setup
    counter = store.load(Counter, "c1")
    assert counter.version == 0
    store.save(counter, counter.add(5))
    store.save(counter, counter.add(7) + counter.add(1))
    assert (counter.version, counter.total) == (3, 13)
    again = store.load(Counter, "c1")
    assert (again.version, again.total, again.applied) == (3, 13, 3)
    events = published(log)
    assert [e.data["by"] for e in events] == [5, 7, 1]
    assert all(e.subject == "c1" and e.partitionkey == "c1" and e.source == "/tests" for e in events)
    assert [e.id for e in store.events(Counter, "c1")] == [e.id for e in events]


def test_a_stale_writer_gets_a_concurrency_error_and_nothing_is_published(setup: tuple[EventStore, Log]) -> None:
    store, log = setup
    first = store.load(Counter, "c1")
    second = store.load(Counter, "c1")
    store.save(first, first.add(1))
    with pytest.raises(ConcurrencyError, match=r"stream Counter/c1 is at version 1, not 0"):
        store.save(second, second.add(100))
    assert [e.data["by"] for e in published(log)] == [1]
    assert store.load(Counter, "c1").total == 1


def test_snapshots_shorten_loading_without_changing_the_state(setup: tuple[EventStore, Log]) -> None:
    store, _ = setup
    counter = store.load(Counter, "c1")
    for n in range(25):
        store.save(counter, counter.add(n))
    Counter.apply_calls = 0
    loaded = store.load(Counter, "c1")
    assert (loaded.version, loaded.total, loaded.applied) == (25, sum(range(25)), 25)
    assert Counter.apply_calls == 5, "loaded from the snapshot at version 20, then 5 events"


def test_two_writers_racing_on_one_aggregate_exactly_one_wins_each_round(setup: tuple[EventStore, Log]) -> None:
    store, _ = setup
    rounds = 40
    wins: list[list[str]] = [[] for _ in range(rounds)]
    barrier = threading.Barrier(2)

    def writer(name: str, amount: int) -> None:
        for n in range(rounds):
            counter = store.load(Counter, "race")
            barrier.wait()
            try:
                store.save(counter, counter.add(amount))
                wins[n].append(name)
            except ConcurrencyError:
                pass
            barrier.wait()

    threads = [threading.Thread(target=writer, args=(name, amount)) for name, amount in (("a", 1), ("b", 1000))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(len(w) == 1 for w in wins), "exactly one writer wins each round"
    final = store.load(Counter, "race")
    replayed = sum(e.data["by"] for e in store.events(Counter, "race"))
    assert final.version == rounds
    assert final.total == replayed == sum(1 if w == ["a"] else 1000 for w in wins)


class FlakyLog(SQLiteLog):
    """A log that refuses appends while ``down`` is set (a broker outage, seen from the relay)."""

    down = False

    def append(self, topic: str, messages: object) -> list[tuple[int, int]]:  # type: ignore[override]
        if self.down:
            raise BackendError("the log is unreachable")
        return super().append(topic, messages)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["sqlite-outbox", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_outbox_publishes_later_what_the_log_refused_in_order(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    log = FlakyLog(tmp_path / "events.db")
    url = (
        f"sqlite:///{tmp_path}/streams.db"
        if kind == "sqlite-outbox"
        else fresh_database(request.getfixturevalue("postgres_url"))
    )
    store = EventStore(url, log)
    counter = store.load(Counter, "c1")
    store.save(counter, counter.add(1))
    log.down = True
    with pytest.raises(BackendError):
        store.save(counter, counter.add(2))  # appended to the stream; publishing failed
    assert store.load(Counter, "c1").version == 2, "the append itself stands"
    with pytest.raises(BackendError):
        store.relay()
    log.down = False
    store.save(counter, counter.add(3))  # publishing the outbox in order, older events first
    assert [e.data["by"] for e in published(log)] == [1, 2, 3]
    assert store.relay() == 0
    store.close()


def _outbox_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite-outbox":
        return f"sqlite:///{tmp_path}/streams.db"
    return fresh_database(request.getfixturevalue("postgres_url"))


@pytest.mark.parametrize("kind", ["sqlite-outbox", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_store_opened_again_publishes_what_the_outbox_held_without_waiting_for_a_save(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    log = FlakyLog(tmp_path / "events.db")
    url = _outbox_url(kind, tmp_path, request)
    store = EventStore(url, log)
    counter = store.load(Counter, "c1")
    store.save(counter, counter.add(1))
    log.down = True
    with pytest.raises(BackendError):
        store.save(counter, counter.add(2))  # saved; the log refused it
    store.close()  # the process ends before anything saves again
    reopened_while_down = EventStore(url, log)  # the log still refuses: opening works all the same
    reopened_while_down.close()
    assert [e.data["by"] for e in published(log)] == [1]
    log.down = False
    EventStore(url, log).close()
    assert [e.data["by"] for e in published(log)] == [1, 2]


@pytest.mark.parametrize("kind", ["sqlite-outbox", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_save_publishes_all_its_events_when_the_outbox_holds_more_than_a_relay_batch(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eventbus.projections import eventstore

    monkeypatch.setattr(eventstore, "RELAY_BATCH", 3)
    log = FlakyLog(tmp_path / "events.db")
    store = EventStore(_outbox_url(kind, tmp_path, request), log)
    counter = store.load(Counter, "c1")
    log.down = True
    with pytest.raises(BackendError):
        store.save(counter, [counter.add(n)[0] for n in range(1, 6)])  # five left in the outbox
    log.down = False
    store.save(counter, [counter.add(n)[0] for n in range(6, 8)])
    assert [e.data["by"] for e in published(log)] == [1, 2, 3, 4, 5, 6, 7]
    assert store.relay() == 0
    store.close()


@pytest.mark.postgres
def test_the_relay_never_deletes_a_row_it_did_not_publish(postgres_url: str) -> None:
    import psycopg

    url = fresh_database(postgres_url)
    log = MemoryLog("pg-relay-race")
    store = EventStore(url, log)
    slow = psycopg.connect(url)  # another worker's save, still inside its transaction
    slow.execute("INSERT INTO event_streams VALUES ('Counter', 'slow', 1, 'e-slow', '{}')")
    slow.execute(
        "INSERT INTO event_outbox (topic, key, value, headers) VALUES ('counters', NULL, '{\"id\":\"e-slow\"}', NULL)"
    )
    original_append = log.append

    def append(topic: str, messages: object) -> list[tuple[int, int]]:
        slow.commit()  # the slow save commits while the relay publishes what it read
        return original_append(topic, messages)  # type: ignore[arg-type]

    log.append = append  # type: ignore[method-assign]
    fast = Counter("fast")
    store.save(fast, fast.add(1))
    log.append = original_append  # type: ignore[method-assign]
    store.relay()
    values = [v for s in log.watermarks("counters") for v in log.read("counters", s.partition, 0, 100).values]
    assert any(v is not None and b"e-slow" in v for v in values), "the late save was published, not deleted"
    store.close()
    slow.close()
