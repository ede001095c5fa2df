"""``eventbus projections status`` says what is there, and looking changes nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from eventbus.cli import main
from eventbus.projections.store import open_store

APP = """
from eventbus import App, Event

app = App("shop")
totals = app.projection("totals", topics="orders")


@totals.on("order")
def count(event: Event, view) -> None:
    view["all"] = {"n": 1}
"""


def test_status_of_a_projection_not_started_on_a_topic_not_made_says_so_and_makes_neither(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "status_app.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "status_app", raising=False)
    store = f"sqlite:///{tmp_path}/views.db"
    monkeypatch.setenv("EVENTBUS_STORE", store)

    code = main(["projections", "status", "--app", "status_app", "--broker", f"sqlite:///{tmp_path}/events.db"])

    assert code == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        f"projection totals: not started (nothing folded yet), lag 0, store {store}",
        "  orders  not in the log (yet)",
    ]
    with open_store(store) as opened:
        assert opened.projections() == [], "looking made no version of it"
