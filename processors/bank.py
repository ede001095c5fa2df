"""A bank: accounts as event-sourced aggregates (CQRS write side) and a balance projection (read side).

    account-commands ──handle_command──► Account aggregate ──save──► accounts ──fold──► balances (projection)
                                               │ (rejected)
                                               └──────────────► account-rejections

Commands are events too (``bank.open``, ``bank.deposit``, ``bank.withdraw``) keyed by account. The aggregate
decides: a withdrawal that would overdraw the account is rejected. Saved events are published to ``accounts`` in the
same transaction as the append, and the ``balances`` projection folds them into one row per account, readable by
key or by owner — over HTTP with ``eventbus run processors.bank --http 8080``:

    curl localhost:8080/projections/balances/acc-1
    curl 'localhost:8080/projections/balances?owner=ada'
"""

from __future__ import annotations

from typing import Any

from eventbus import App, Event, Idempotency
from eventbus.projections import Aggregate, CommandRejectedError, ConcurrencyError, View

app = App("bank")
app.topic("account-commands", partitions=3)
app.topic("accounts", partitions=3)

OPENED = "bank.account.opened"
DEPOSITED = "bank.money.deposited"
WITHDRAWN = "bank.money.withdrawn"


class Account(Aggregate):
    topic = "accounts"
    snapshot_every = 50

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.owner: str | None = None
        self.balance = 0

    def apply(self, event: Event) -> None:
        data = event.data
        if event.type == OPENED:
            self.owner = data["owner"]
        elif event.type == DEPOSITED:
            self.balance += data["amount"]
        elif event.type == WITHDRAWN:
            self.balance -= data["amount"]

    # -- commands: check the rules, return what happened -------------------------------------------------------

    def open(self, owner: str) -> list[Event]:
        if self.owner is not None:
            raise CommandRejectedError(f"account {self.id} is already open")
        return [self.event(OPENED, {"account": self.id, "owner": owner})]

    def deposit(self, amount: int) -> list[Event]:
        self._require_open()
        _require_positive(amount)
        return [self.event(DEPOSITED, {"account": self.id, "amount": amount, "balance": self.balance + amount})]

    def withdraw(self, amount: int) -> list[Event]:
        self._require_open()
        _require_positive(amount)
        if amount > self.balance:
            raise CommandRejectedError(f"account {self.id} has {self.balance}, cannot withdraw {amount}")
        return [self.event(WITHDRAWN, {"account": self.id, "amount": amount, "balance": self.balance - amount})]

    def _require_open(self) -> None:
        if self.owner is None:
            raise CommandRejectedError(f"account {self.id} is not open")


def _require_positive(amount: Any) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise CommandRejectedError(f"amount must be a positive whole number of cents, got {amount!r}")


# Idempotency: a command delivered twice (after a crash between saving its events and committing it) is not
# decided twice.
@app.processor(
    "account-commands",
    types=["bank.open", "bank.deposit", "bank.withdraw"],
    to="account-rejections",
    idempotency=Idempotency(),
)
def handle_command(command: Event) -> Event | None:
    store = app.event_store()
    data = command.data
    lost: ConcurrencyError | None = None
    for _ in range(3):  # another writer saved the same account first: load it again and decide again
        account = store.load(Account, data["account"])
        try:
            if command.type == "bank.open":
                events = account.open(data["owner"])
            elif command.type == "bank.deposit":
                events = account.deposit(data["amount"])
            else:
                events = account.withdraw(data["amount"])
        except CommandRejectedError as rejected:
            return Event("bank.command.rejected", {"command": command.id, "reason": str(rejected)})
        try:
            store.save(account, events)
        except ConcurrencyError as exc:
            lost = exc
            continue
        return None
    assert lost is not None
    raise lost


balances = app.projection("balances", topics="accounts")


@balances.on(OPENED)
def account_opened(event: Event, view: View) -> None:
    view[event.data["account"]] = {"owner": event.data["owner"], "balance": 0}


@balances.on(DEPOSITED, WITHDRAWN)
def balance_changed(event: Event, view: View) -> None:
    row = view[event.data["account"]]
    row["balance"] = event.data["balance"]
    view[event.data["account"]] = row
