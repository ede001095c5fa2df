"""Idempotent processors and events held in doubt: a person's replay from the dead-letter topic runs them."""

from __future__ import annotations

from pathlib import Path

from eventbus import App, Event, Idempotency
from eventbus.backends.sqlite import SQLiteLog
from eventbus.replay import replay_dead_letters
from eventbus.runtime.idempotency import FileIdempotencyStore
from eventbus.testing import TestBus


def test_an_event_held_in_doubt_runs_once_it_is_replayed_from_the_dead_letter_topic(tmp_path: Path) -> None:
    log = SQLiteLog(tmp_path / "log.db")
    bus = TestBus(log=log)
    app = App("payments")
    charged: list[str] = []

    @app.processor("charges", idempotency=Idempotency())
    def charge(event: Event) -> None:
        charged.append(event.id)

    name = charge.__qualname__
    doubtful = Event("charge", {}, id="c-1", source="/shop")
    # A worker began charging c-1 and died before it finished: its journal says begun, never done.
    keys = tmp_path / "keys"
    dead = FileIdempotencyStore(keys, retention_s=3600)
    dead.begin(dead.keys.hash(name, "/shop\x1fc-1"))
    dead.close()

    bus.publish("charges", doubtful, Event("charge", {}, id="c-2", source="/shop"))
    bus.run(app, idempotency_store=str(keys))
    assert charged == ["c-2"], "the event in doubt is not charged again on its own"
    [(letter, failure)] = bus.dead_letters("charges.dlq")
    assert letter is not None
    assert letter.id == "c-1"
    assert failure["error.class"].endswith("InDoubtError")

    assert replay_dead_letters(log, "charges.dlq").replayed == 1
    bus.run(app, idempotency_store=str(keys))
    assert charged == ["c-2", "c-1"], "a person replayed it: it runs"
    assert len(bus.dead_letters("charges.dlq")) == 1

    bus.publish("charges", doubtful)  # delivered once more, without a replay: it is done now, so skipped
    bus.run(app, idempotency_store=str(keys))
    assert charged == ["c-2", "c-1"]
    assert len(bus.dead_letters("charges.dlq")) == 1
    log.close()
