"""The `eventbus` command: every subcommand, its output and its exit codes, in real subprocesses."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from eventbus.backends.sqlite import SQLiteLog
from tests.conftest import PYTHON, REPO

APP_MODULE = """
from eventbus import App, Event

app = App("echo")

@app.processor("in", to="out")
def echo(event: Event) -> Event:
    return Event("echoed", event.data)
"""


def eventbus(
    *args: str, cwd: Path, env: dict[str, str], stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "eventbus", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "echo_app.py").write_text(APP_MODULE)
    return tmp_path


def test_publish_run_consume_round_trip_on_the_default_embedded_log(
    project: Path, subprocess_env: dict[str, str]
) -> None:
    lines = "\n".join(json.dumps({"type": "greeting", "data": {"n": i}}) for i in range(5))
    published = eventbus("publish", "in", cwd=project, env=subprocess_env, stdin=lines)
    assert published.returncode == 0, published.stderr
    assert "published 5 event(s) to in" in published.stderr
    assert (project / "eventbus.db").exists()

    ran = eventbus("run", "echo_app", "--until-idle", cwd=project, env=subprocess_env)
    assert ran.returncode == 0, ran.stderr

    consumed = eventbus("consume", "out", "--from-beginning", "--until-end", cwd=project, env=subprocess_env)
    assert consumed.returncode == 0, consumed.stderr
    events = [json.loads(line) for line in consumed.stdout.splitlines()]
    assert [e["data"]["n"] for e in events] == list(range(5))
    assert {e["type"] for e in events} == {"echoed"}
    assert all(e["source"] == "/echo" for e in events)


def test_a_bad_line_is_reported_by_number_and_the_good_lines_are_published(
    project: Path, subprocess_env: dict[str, str]
) -> None:
    lines = "\n".join(
        [
            json.dumps({"type": "ok", "data": 1}),
            "{broken",
            json.dumps({"data": "no type"}),
            "",
            json.dumps({"type": "ok", "data": 2}),
            json.dumps([1, 2]),
        ]
    )
    result = eventbus("publish", "in", cwd=project, env=subprocess_env, stdin=lines)
    assert result.returncode == 1
    assert "line 2: not valid JSON" in result.stderr
    assert "line 3: type: required attribute is missing" in result.stderr
    assert "line 6: expected a JSON object" in result.stderr
    assert "published 2 event(s) to in; 3 line(s) rejected" in result.stderr
    log = SQLiteLog(project / "eventbus.db")
    assert len(log.read("in", 0, 0, 100)) == 2


def test_publish_with_a_type_treats_lines_as_data_keyed_by_a_field(
    project: Path, subprocess_env: dict[str, str]
) -> None:
    eventbus("topics", "create", "orders", "--partitions", "4", cwd=project, env=subprocess_env)
    lines = "\n".join(json.dumps({"order_id": f"o-{i % 3}", "n": i}) for i in range(30))
    result = eventbus(
        "publish",
        "orders",
        "--type",
        "order.placed",
        "--key-field",
        "order_id",
        cwd=project,
        env=subprocess_env,
        stdin=lines,
    )
    assert result.returncode == 0, result.stderr
    consumed = eventbus("consume", "orders", "--from-beginning", "--until-end", cwd=project, env=subprocess_env)
    by_key: dict[str, list[int]] = {}
    for line in consumed.stdout.splitlines():
        event = json.loads(line)
        assert event["type"] == "order.placed"
        by_key.setdefault(event["partitionkey"], []).append(event["data"]["n"])
    assert by_key == {f"o-{k}": list(range(k, 30, 3)) for k in range(3)}


def test_consume_max_stops_after_n(project: Path, subprocess_env: dict[str, str]) -> None:
    eventbus("publish", "in", "--type", "x", cwd=project, env=subprocess_env, stdin="1\n2\n3\n")
    result = eventbus("consume", "in", "--from-beginning", "--max", "2", cwd=project, env=subprocess_env)
    assert result.returncode == 0
    assert [json.loads(line)["data"] for line in result.stdout.splitlines()] == [1, 2]


def test_topics_create_list_and_describe_with_group_lag(project: Path, subprocess_env: dict[str, str]) -> None:
    created = eventbus("topics", "create", "in", "--partitions", "3", cwd=project, env=subprocess_env)
    assert created.returncode == 0, created.stderr
    assert "in: 3 partitions" in created.stdout
    again = eventbus("topics", "create", "in", "--partitions", "3", cwd=project, env=subprocess_env)
    assert again.returncode == 2
    assert "topic 'in' already exists" in again.stderr
    eventbus("publish", "in", "--type", "x", cwd=project, env=subprocess_env, stdin="1\n2\n3\n4\n")
    eventbus("run", "echo_app", "--until-idle", cwd=project, env=subprocess_env)
    eventbus("publish", "in", "--type", "x", cwd=project, env=subprocess_env, stdin="5\n")

    listed = eventbus("topics", cwd=project, env=subprocess_env)
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["in", "out"]

    described = eventbus("topics", "describe", "in", cwd=project, env=subprocess_env)
    assert described.returncode == 0, described.stderr
    assert "topic in: 3 partitions, 5 records" in described.stdout
    assert "group echo: lag 1" in described.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "no_such_module"], "cannot find module 'no_such_module'"),
        (["run", "empty_module"], "module 'empty_module' defines no eventbus App"),
        (["run", "echo_app:missing"], "module 'echo_app' has no attribute 'missing'"),
        (["run", "broken_module"], "importing 'broken_module' failed: NameError"),
        (["run", "bad name!"], "is not MODULE[:ATTR]"),
        (["run", "echo_app", "--broker", "redis://localhost"], "unknown broker URL scheme redis:"),
        (["consume", "t", "--broker", "sqlite:///missing-dir/x.db"], "directory missing-dir does not exist"),
        (["consume", "ghost"], "topic 'ghost' does not exist"),
        (["topics", "create", "t", "--partitions", "0"], "--partitions must be at least 1"),
        (["run", "echo_app", "--workers", "0"], "--workers must be at least 1"),
        (["publish", "t", "--key-field", "id"], "--key-field needs --type"),
    ],
)
def test_user_mistakes_are_one_line_errors_with_exit_code_2(
    project: Path, subprocess_env: dict[str, str], args: list[str], message: str
) -> None:
    (project / "empty_module.py").write_text("x = 1\n")
    (project / "broken_module.py").write_text("from eventbus import App\napp = App('b')\nundefined_name\n")
    result = eventbus(*args, cwd=project, env=subprocess_env)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("eventbus: error")]
    assert len(error_lines) == 1


def test_an_import_failure_names_the_file_and_line(project: Path, subprocess_env: dict[str, str]) -> None:
    (project / "broken_module.py").write_text("from eventbus import App\napp = App('b')\nundefined_name\n")
    result = eventbus("run", "broken_module", cwd=project, env=subprocess_env)
    assert "(at broken_module.py:3)" in result.stderr


def test_usage_errors_exit_2(project: Path, subprocess_env: dict[str, str]) -> None:
    result = eventbus("frobnicate", cwd=project, env=subprocess_env)
    assert result.returncode == 2
    assert "invalid choice: 'frobnicate'" in result.stderr


def test_a_processor_that_stops_on_failure_exits_1_with_the_processor_and_coordinates(
    project: Path, subprocess_env: dict[str, str]
) -> None:
    (project / "failing.py").write_text(
        "from eventbus import App, Event\napp = App('f')\n"
        "@app.processor('in', on_failure='stop')\ndef fail(event: Event) -> None:\n    raise ValueError('bad data')\n"
    )
    eventbus("publish", "in", "--type", "x", cwd=project, env=subprocess_env, stdin="1\n")
    result = eventbus("run", "failing", "--until-idle", cwd=project, env=subprocess_env)
    assert result.returncode == 1
    assert "processor 'fail' failed on in[0]@0: ValueError: bad data" in result.stderr
    assert SQLiteLog(project / "eventbus.db").committed("f", "in") == {}


def test_a_failing_processor_dead_letters_after_its_attempts_and_goes_on(
    project: Path, subprocess_env: dict[str, str]
) -> None:
    (project / "failing.py").write_text(
        "from eventbus import App, Event, Retry\napp = App('f')\n"
        "@app.processor('in', retry=Retry(max_attempts=2, initial_delay_ms=1))\n"
        "def fail(event: Event) -> None:\n    if event.data == 2:\n        raise ValueError('bad data')\n"
    )
    eventbus("publish", "in", "--type", "x", cwd=project, env=subprocess_env, stdin="1\n2\n3\n")
    result = eventbus("run", "failing", "--until-idle", cwd=project, env=subprocess_env)
    assert result.returncode == 0, result.stderr
    assert "dead-lettered in[0]@1 to in.dlq (ValueError: bad data after 2 attempt(s), attempts exhausted)" in (
        result.stderr
    )
    log = SQLiteLog(project / "eventbus.db")
    assert log.committed("f", "in") == {0: 3}
    (dead,) = log.read("in.dlq", 0, 0, 10).records()
    headers = dict(dead.headers or ())
    assert headers["eventbus.error.class"] == b"ValueError"
    assert headers["eventbus.attempts"] == b"2"
    assert json.loads(dead.value or b"")["data"] == 2


def test_sigterm_drains_commits_and_exits_0(project: Path, subprocess_env: dict[str, str]) -> None:
    eventbus("publish", "in", "--type", "x", cwd=project, env=subprocess_env, stdin="1\n2\n")
    worker = subprocess.Popen(
        [PYTHON, "-m", "eventbus", "run", "echo_app"],
        cwd=project,
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = SQLiteLog(project / "eventbus.db")
    deadline = time.monotonic() + 30
    while log.committed("echo", "in") != {0: 2} and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert "worker stopped: 2 events in, 2 out" in stderr
    # It left the group on the way out, so the next worker takes the partitions at once.
    assert log._db.execute("SELECT COUNT(*) FROM group_members").fetchone()[0] == 0


def test_several_workers_share_the_partitions_of_one_group(project: Path, subprocess_env: dict[str, str]) -> None:
    eventbus("topics", "create", "in", "--partitions", "4", cwd=project, env=subprocess_env)
    lines = "\n".join(str(i) for i in range(400))
    eventbus("publish", "in", "--type", "n", cwd=project, env=subprocess_env, stdin=lines)
    result = eventbus("run", "echo_app", "--workers", "2", "--until-idle", cwd=project, env=subprocess_env)
    assert result.returncode == 0, result.stderr
    log = SQLiteLog(project / "eventbus.db")
    assert log.committed("echo", "in") == {p.partition: p.end_offset for p in log.watermarks("in")}
    outputs = [json.loads(v)["data"] for p in range(1) for v in log.read("out", p, 0, 10_000).values]
    assert sorted(outputs) == list(range(400))


def test_the_readme_example_module_imports(subprocess_env: dict[str, str]) -> None:
    result = subprocess.run(
        [PYTHON, "-c", "from eventbus.loader import load_app; print(len(load_app('processors.shop').processors))"],
        cwd=REPO,
        env=subprocess_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "6"


SLOW_APP_MODULE = """
import time

from eventbus import App, Event

app = App("slow")


@app.processor("in", to="out")
def slow_echo(event: Event) -> Event:
    time.sleep(0.005)  # long enough that every worker has joined before the work runs out
    return Event("echoed", event.data)
"""


def test_every_worker_of_several_takes_a_share_and_nothing_is_lost(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    (tmp_path / "slow_app.py").write_text(SLOW_APP_MODULE)
    eventbus("topics", "create", "in", "--partitions", "3", cwd=tmp_path, env=subprocess_env)
    lines = "\n".join(json.dumps({"type": "n", "subject": f"k{i}", "data": i}) for i in range(600))
    assert eventbus("publish", "in", cwd=tmp_path, env=subprocess_env, stdin=lines).returncode == 0
    # Small rounds: a worker that holds every partition when the others join gives them up at its next poll.
    result = eventbus(
        "run",
        "slow_app",
        "--workers",
        "3",
        "--until-idle",
        "--max-poll-records",
        "10",
        cwd=tmp_path,
        env=subprocess_env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    shares = [int(n) for n in re.findall(r"worker stopped: (\d+) events in", result.stderr)]
    assert len(shares) == 3, result.stderr
    assert all(share > 0 for share in shares), f"a worker processed nothing: {shares}"
    log = SQLiteLog(tmp_path / "eventbus.db")
    assert log.committed("slow", "in") == {p.partition: p.end_offset for p in log.watermarks("in")}
    outputs = {
        json.loads(v)["data"] for p in log.watermarks("out") for v in log.read("out", p.partition, 0, 10_000).values
    }
    assert outputs == set(range(600))
    log.close()
