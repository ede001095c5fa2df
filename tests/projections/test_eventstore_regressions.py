"""Regressions of the event store: saves whose relay finds another relay running, and failed saves at a snapshot
boundary."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from eventbus import Event
from eventbus.backends.sqlite import SQLiteLog
from eventbus.errors import BackendError
from eventbus.projections import Aggregate, EventStore
from eventbus.projections.eventstore import Append
from tests.postgres_server import fresh_database

RELAY_LOCK = "SELECT pg_advisory_xact_lock(hashtext('eventbus.eventstore.relay'))"


class Account(Aggregate):
    topic = "accounts"
    snapshot_every = 2

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.balance = 0

    def apply(self, event: Event) -> None:
        self.balance += event.data["amount"]

    def deposit(self, amount: int) -> list[Event]:
        return [self.event("bank.money.deposited", {"amount": amount})]


def published(log: SQLiteLog) -> int:
    return sum(state.end_offset for state in log.watermarks("accounts"))


def outbox_rows(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as db:
        row = db.execute("SELECT count(*) FROM event_outbox").fetchone()
        assert row is not None
        return int(row[0])


@pytest.mark.postgres
def test_a_save_whose_relay_finds_another_relay_running_still_publishes_its_events(
    postgres_url: str, tmp_path: Path
) -> None:
    import psycopg

    url = fresh_database(postgres_url)
    log = SQLiteLog(tmp_path / "events.db")
    log.create_topic("accounts", 1)
    store = EventStore(url, log)
    other = psycopg.connect(url)  # another worker's relay, mid-flight: it read the outbox before this save
    other.execute(RELAY_LOCK)
    account = store.load(Account, "acc-1")
    errors: list[BaseException] = []

    def save() -> None:
        try:
            store.save(account, account.deposit(10))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    saving = threading.Thread(target=save)
    saving.start()
    time.sleep(0.5)
    other.commit()  # the other relay finishes, having published only the rows it had read
    saving.join(30)
    assert not saving.is_alive()
    assert not errors, errors
    assert published(log) == 1, "the saved event reached the log without waiting for another save"
    assert outbox_rows(url) == 0
    assert store.load(Account, "acc-1").version == 1
    other.close()
    store.close()
    log.close()


@pytest.mark.postgres
def test_a_relay_stuck_longer_than_the_wait_fails_the_publish_loudly_and_relay_catches_up(
    postgres_url: str, tmp_path: Path
) -> None:
    import psycopg

    from eventbus.projections.eventstore_postgres import PostgresEvents

    url = fresh_database(postgres_url)
    log = SQLiteLog(tmp_path / "events.db")
    log.create_topic("accounts", 1)
    store = EventStore(url, log)
    assert isinstance(store._backend, PostgresEvents)
    store._backend.relay_wait_s = 0.2
    other = psycopg.connect(url)
    other.execute(RELAY_LOCK)
    account = store.load(Account, "acc-1")
    with pytest.raises(BackendError, match="not yet published"):
        store.save(account, account.deposit(10))
    assert (account.version, account.balance) == (1, 10), "the append itself stands"
    assert published(log) == 0
    other.commit()
    assert store.relay() == 1
    assert published(log) == 1
    assert outbox_rows(url) == 0
    other.close()
    store.close()
    log.close()


@pytest.mark.parametrize("kind", ["sqlite-outbox", "sqlite-shared"])
def test_a_failed_save_at_a_snapshot_boundary_leaves_the_aggregate_and_snapshots_right(
    kind: str, tmp_path: Path
) -> None:
    log = SQLiteLog(tmp_path / "events.db")
    log.create_topic("accounts", 1)
    url = f"sqlite:///{tmp_path}/streams.db" if kind == "sqlite-outbox" else f"sqlite:///{tmp_path}/events.db"
    store = EventStore(url, log)
    account = store.load(Account, "a")
    store.save(account, account.deposit(10))  # version 1

    backend = store._backend
    real_append = backend.append
    failures = [BackendError("database is locked")]

    def append_failing_once(append: Append) -> None:
        if failures:
            raise failures.pop()
        real_append(append)

    backend.append = append_failing_once  # type: ignore[method-assign]
    with pytest.raises(BackendError):
        store.save(account, account.deposit(5))  # crosses snapshot_every=2
    assert (account.version, account.balance) == (1, 10), "a failed save leaves the aggregate as it was"

    store.save(account, account.deposit(5))  # the retry
    assert (account.version, account.balance) == (2, 15)
    assert store._backend.snapshot("Account", "a") is not None
    loaded = store.load(Account, "a")
    assert (loaded.version, loaded.balance) == (2, 15), "the snapshot is the state after exactly the stored events"
    assert [e.data["amount"] for e in store.events(Account, "a")] == [10, 5]
    store.close()
    log.close()


def test_a_save_failing_on_a_real_sqlite_write_lock_at_a_snapshot_boundary(tmp_path: Path) -> None:
    import sqlite3

    log = SQLiteLog(tmp_path / "events.db")
    log.create_topic("accounts", 1)
    store = EventStore(f"sqlite:///{tmp_path}/streams.db", log)
    account = store.load(Account, "a")
    store.save(account, account.deposit(10))
    blocker = sqlite3.connect(tmp_path / "streams.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the store's write lock
    store._backend._db.execute("PRAGMA busy_timeout = 100")  # type: ignore[attr-defined]
    with pytest.raises(BackendError, match="locked"):
        store.save(account, account.deposit(5))
    blocker.execute("ROLLBACK")
    blocker.close()
    assert (account.version, account.balance) == (1, 10)
    store.save(account, account.deposit(5))
    loaded = store.load(Account, "a")
    assert (loaded.version, loaded.balance) == (2, 15)
    store.close()
    log.close()


class Ledger(Aggregate):
    topic = "ledgers"

    def apply(self, event: Event) -> None:
        pass


class TopicRefusingLog(SQLiteLog):
    """A log that refuses appends to some topics (an ACL, a topic deleted), and takes the others."""

    refused: frozenset[str] = frozenset()

    def append(self, topic: str, messages: object) -> list[tuple[int, int]]:  # type: ignore[override]
        if topic in self.refused:
            raise BackendError(f"{topic}: not allowed")
        return super().append(topic, messages)  # type: ignore[arg-type]


def _store_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite-outbox":
        return f"sqlite:///{tmp_path}/streams.db"
    return fresh_database(request.getfixturevalue("postgres_url"))


@pytest.mark.parametrize("kind", ["sqlite-outbox", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_relay_that_fails_part_way_never_publishes_the_part_before_again(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    log = TopicRefusingLog(tmp_path / "events.db")
    url = _store_url(kind, tmp_path, request)
    store = EventStore(url, log)
    account, ledger = store.load(Account, "a1"), store.load(Ledger, "l1")
    log.refused = frozenset({"accounts", "ledgers"})  # an outage: both saves stay in the outbox
    for aggregate, events in ((account, account.deposit(5)), (ledger, [ledger.event("ledger.opened", {})])):
        with pytest.raises(BackendError):
            store.save(aggregate, events)
    store.close()
    log.refused = frozenset({"ledgers"})  # accounts is back; ledgers is not
    for _ in range(3):
        EventStore(url, log).close()
    assert published(log) == 1, "the account's deposit went out once, however many relays failed after it"
    log.refused = frozenset()
    with EventStore(url, log) as reopened:
        assert reopened.relay() == 0
    assert published(log) == 1
    assert sum(state.end_offset for state in log.watermarks("ledgers")) == 1
    log.close()


@pytest.mark.postgres
def test_opening_a_store_does_not_wait_for_another_relay(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    from eventbus.projections.eventstore_postgres import PostgresEvents

    monkeypatch.setattr(PostgresEvents, "relay_wait_s", 5.0)
    url = fresh_database(postgres_url)
    log = SQLiteLog(tmp_path / "events.db")
    store = EventStore(url, log)
    account = store.load(Account, "a1")
    store.save(account, account.deposit(5))
    store.close()
    with psycopg.connect(url) as other:  # another process's relay, publishing to a slow log
        other.execute(RELAY_LOCK)
        for outbox in ("empty", "one row left"):
            if outbox == "one row left":
                other.execute(
                    "INSERT INTO event_outbox (topic, key, value, headers) VALUES ('accounts', NULL, '{}', NULL)"
                )
            started = time.monotonic()
            EventStore(url, log).close()
            assert time.monotonic() - started < 2.0, f"opening with {outbox} outbox waited for the other relay"
        other.rollback()
    assert not [r for r in caplog.records if "still waiting to be published" in r.getMessage()]
    log.close()


def test_a_store_whose_left_over_events_cannot_be_published_for_good_closes_what_it_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eventbus.errors import ConfigurationError
    from eventbus.projections import eventstore

    log = TopicRefusingLog(tmp_path / "events.db")
    url = f"sqlite:///{tmp_path}/streams.db"
    store = EventStore(url, log)
    account = store.load(Account, "a1")
    log.refused = frozenset({"accounts"})
    with pytest.raises(BackendError):
        store.save(account, account.deposit(5))
    store.close()
    opened: list[object] = []
    original = eventstore._open_backend

    def open_backend(url: str, log: object) -> object:
        opened.append(original(url, log))  # type: ignore[arg-type]
        return opened[-1]

    monkeypatch.setattr(eventstore, "_open_backend", open_backend)

    def refuse_for_good(topic: str, messages: object) -> list[tuple[int, int]]:
        raise ConfigurationError(f"{topic}: the producer is not authorised (an ACL)")

    monkeypatch.setattr(log, "append", refuse_for_good)
    with pytest.raises(ConfigurationError, match="not authorised"):
        EventStore(url, log)
    backend = opened[-1]
    with pytest.raises(Exception, match="closed"):
        backend._db.execute("SELECT 1")  # type: ignore[attr-defined]
    log.close()
