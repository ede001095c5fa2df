"""Dead letters as an SQS user looks at them: after a redrive, which are still waiting?"""

from __future__ import annotations

import subprocess
from pathlib import Path

from eventbus import App, Event, Retry
from eventbus.backends.sqlite import SQLiteLog
from eventbus.testing import TestBus
from tests.conftest import PYTHON


def eventbus(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "eventbus", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60, check=False
    )


def test_dlq_list_says_how_many_dead_letters_no_replay_has_sent_back_yet(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    app = App("payments")

    @app.processor("payments", retry=Retry(max_attempts=1), dead_letter_topic="payments.failed")
    def charge(event: Event) -> None:
        raise ConnectionError(f"gateway refused order {event.data['order_id']}")

    path = tmp_path / "events.db"
    with SQLiteLog(path) as log:
        bus = TestBus(log=log)
        bus.publish_data("payments", "payment.requested", [{"order_id": f"o-{i}"} for i in range(3)])
        bus.run(app)
    broker = f"sqlite:///{path}"
    listed = eventbus("dlq", "list", "payments.failed", "--broker", broker, cwd=tmp_path, env=subprocess_env)
    assert "payments.failed: 3 dead letter(s), 1 kind(s) of failure" in listed.stdout, listed.stdout
    replayed = eventbus(
        "dlq", "replay", "payments.failed", "--broker", broker, "--filter", '{"data": {"order_id": ["o-1"]}}',
        cwd=tmp_path, env=subprocess_env,
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr
    listed = eventbus("dlq", "list", "payments.failed", "--broker", broker, cwd=tmp_path, env=subprocess_env)
    assert "payments.failed: 3 dead letter(s), 2 not replayed yet, 1 kind(s) of failure" in listed.stdout
    assert "(1 replayed already)" in listed.stdout
    eventbus("dlq", "replay", "payments.failed", "--broker", broker, cwd=tmp_path, env=subprocess_env)
    listed = eventbus("dlq", "list", "payments.failed", "--broker", broker, cwd=tmp_path, env=subprocess_env)
    assert "payments.failed: 3 dead letter(s), 0 not replayed yet, 1 kind(s) of failure" in listed.stdout
