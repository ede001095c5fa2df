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
