"""User mistakes on the command line: each gets a one-line error naming the culprit and the usage exit code (2),
never a traceback from deep inside, and nothing already accepted is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventbus.cli.supervisor import Supervisor
from eventbus.errors import TopicNotFoundError
from tests.conftest import PYTHON

FAILING_APP = """
from eventbus import App, Event

app = App("failing")


@app.processor("orders")
def boom(event: Event) -> None:
    raise ValueError(f"bad order {event.data['n']}")
"""

ECHO_APP = """
from eventbus import App, Event

app = App("echo")


@app.processor("in", to="out")
def echo(event: Event) -> Event:
    return Event("echoed", event.data)
"""

SCHEMA = '{"type": "record", "name": "R", "namespace": "n", "fields": [{"name": "a", "type": "int"}]}'


def eventbus(*args: str, cwd: Path, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "eventbus", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )


def refused(result: subprocess.CompletedProcess[str], *culprits: str) -> str:
    """The error of a command that exited 2 with a one-line error naming each of ``culprits``."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    for culprit in culprits:
        assert culprit in result.stderr, (culprit, result.stderr)
    return result.stderr


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "echo_app.py").write_text(ECHO_APP)
    (tmp_path / "failing.py").write_text(FAILING_APP)
    return tmp_path


@pytest.fixture
def dead_letters(project: Path, subprocess_env: dict[str, str]) -> Path:
    """A project whose log holds three orders, each dead-lettered to orders.dlq."""
    lines = "\n".join(json.dumps({"n": n}) for n in range(3))
    assert (
        eventbus("publish", "orders", "--type", "order", cwd=project, env=subprocess_env, stdin=lines).returncode == 0
    )
    ran = eventbus("run", "failing", "--until-idle", cwd=project, env=subprocess_env)
    assert ran.returncode == 0, ran.stderr
    return project


# 1. --workers: a cap, and a stop signal that stops the starting of workers.


def test_workers_over_the_cap_are_refused(project: Path, subprocess_env: dict[str, str]) -> None:
    result = eventbus("run", "echo_app", "--workers", "1000000", cwd=project, env=subprocess_env)
    refused(result, "--workers 1000000", "at most 256")


class _RecordingSupervisor(Supervisor):
    """Sends itself SIGTERM once the third worker is started, and keeps every worker it started."""

    def __init__(self, commands: list[list[str]]) -> None:
        super().__init__(commands)
        self.started: list[subprocess.Popen[bytes]] = []

    def _start(self, index: int) -> None:
        super()._start(index)
        self.started.append(self._children[index])
        if len(self.started) == 3:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.fixture
def sigterm_restored() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.usefixtures("sigterm_restored")
def test_a_stop_signal_while_workers_start_starts_no_more_and_stops_those_started() -> None:
    supervisor = _RecordingSupervisor([["sleep", "20"]] * 50)
    signal.signal(signal.SIGTERM, supervisor.forward)
    began = time.monotonic()
    try:
        supervisor.run()
    finally:
        for child in supervisor.started:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert len(supervisor.started) <= 4, f"{len(supervisor.started)} workers started after the stop signal"
    assert all(child.returncode is not None for child in supervisor.started)
    assert time.monotonic() - began < 10, "the workers started were not stopped"


# 2. Topic names.


def test_reserved_topic_names_are_called_reserved(project: Path, subprocess_env: dict[str, str]) -> None:
    for name in (".", ".."):
        refused(eventbus("topics", "create", name, cwd=project, env=subprocess_env), f"topic name {name!r} is reserved")


def test_publishing_to_an_invalid_topic_name_is_refused(project: Path, subprocess_env: dict[str, str]) -> None:
    result = eventbus("publish", "bad topic", "--type", "t", cwd=project, env=subprocess_env, stdin="{}\n")
    refused(result, "'bad topic'")
    result = eventbus("publish", "", "--type", "t", cwd=project, env=subprocess_env, stdin='{"x": 1}\n')
    refused(result, "topic name must be a non-empty string")


def test_replaying_dead_letters_to_an_invalid_topic_is_refused(
    dead_letters: Path, subprocess_env: dict[str, str]
) -> None:
    for dry_run in ([], ["--dry-run"]):
        result = eventbus(
            "dlq", "replay", "orders.dlq", "--to", "bad topic", *dry_run, cwd=dead_letters, env=subprocess_env
        )
        refused(result, "--to", "'bad topic'")


def test_replay_dead_letters_checks_the_to_topic(tmp_path: Path) -> None:
    from eventbus.backends.sqlite import SQLiteLog
    from eventbus.errors import ConfigurationError
    from eventbus.replay import replay_dead_letters

    log = SQLiteLog(tmp_path / "log.db")
    try:
        log.create_topic("orders.dlq", 1)
        with pytest.raises(ConfigurationError, match="bad topic"):
            replay_dead_letters(log, "orders.dlq", to="bad topic", dry_run=True)
    finally:
        log.close()


def test_dead_letters_are_not_replayed_into_their_own_topic(dead_letters: Path, subprocess_env: dict[str, str]) -> None:
    for to in ("orders.dlq", "orders.dlq.replayed"):
        result = eventbus("dlq", "replay", "orders.dlq", "--to", to, cwd=dead_letters, env=subprocess_env)
        refused(result, f"--to {to}", "the dead-letter topic being replayed")
    listed = eventbus("dlq", "list", "orders.dlq", cwd=dead_letters, env=subprocess_env)
    assert "orders.dlq: 3 dead letter(s)" in listed.stdout
    assert "without eventbus failure headers" not in listed.stdout, listed.stdout


def test_the_missing_topic_hint_is_a_command_that_works() -> None:
    assert "`eventbus topics create orders`" in str(TopicNotFoundError("orders"))
    assert "`eventbus topics create -- -x`" in str(TopicNotFoundError("-x"))
    invalid = str(TopicNotFoundError("bad topic"))
    assert "topics create" not in invalid
    assert "'bad topic'" in invalid


# 3. Pattern files.


def test_a_deeply_nested_pattern_file_is_reported_by_name(project: Path, subprocess_env: dict[str, str]) -> None:
    (project / "d.pat").write_text("[" * 1000 + "]" * 1000)
    refused(eventbus("rules", "check", "d.pat", cwd=project, env=subprocess_env), "d.pat", "nested too deeply")
    refused(eventbus("rules", "test", "d.pat", "{}", cwd=project, env=subprocess_env), "d.pat", "nested too deeply")


def test_a_non_positive_max_size_is_refused(project: Path, subprocess_env: dict[str, str]) -> None:
    (project / "ok.pat").write_text('{"type": ["order"]}')
    for size in ("0", "-1"):
        result = eventbus("rules", "check", "--max-size", size, "ok.pat", cwd=project, env=subprocess_env)
        refused(result, "--max-size")


def test_a_number_is_not_a_pattern_and_is_called_a_number(project: Path, subprocess_env: dict[str, str]) -> None:
    (project / "n.pat").write_text("42")
    result = eventbus("rules", "check", "n.pat", cwd=project, env=subprocess_env)
    assert result.returncode == 1, result
    assert "n.pat: (root): a pattern must be a JSON object, not a number" in result.stdout
    assert "NumberLiteral" not in result.stdout + result.stderr


def test_dlq_replay_filter_takes_a_pattern_file(dead_letters: Path, subprocess_env: dict[str, str]) -> None:
    (dead_letters / "good.pat").write_text('{"type": ["order"]}')
    (dead_letters / "none.pat").write_text('{"type": ["other"]}')
    (dead_letters / "bad.pat").write_text('{"type": "order"}')
    result = eventbus(
        "dlq", "replay", "orders.dlq", "--filter", "good.pat", "--dry-run", cwd=dead_letters, env=subprocess_env
    )
    assert result.returncode == 0, result.stderr
    assert "would replay 3 event(s)" in result.stdout
    result = eventbus(
        "dlq", "replay", "orders.dlq", "--filter", "none.pat", "--dry-run", cwd=dead_letters, env=subprocess_env
    )
    assert result.returncode == 0, result.stderr
    assert "would replay 0 event(s)" in result.stdout
    result = eventbus("dlq", "replay", "orders.dlq", "--filter", "bad.pat", cwd=dead_letters, env=subprocess_env)
    refused(result, "--filter bad.pat", "invalid pattern")
    (dead_letters / "patterns").mkdir()
    for argument, problem in (("missing.pat", "no such file"), ("patterns", "is a directory")):
        result = eventbus("dlq", "replay", "orders.dlq", "--filter", argument, cwd=dead_letters, env=subprocess_env)
        assert "not valid JSON" not in refused(result, f"--filter {argument}: {problem}")


# 4. schema codegen -o.


def test_codegen_output_in_a_missing_directory_or_a_directory_is_refused(
    project: Path, subprocess_env: dict[str, str]
) -> None:
    (project / "sch").mkdir()
    (project / "sch" / "r.avsc").write_text(SCHEMA)
    missing = project / "nonexistent" / "dir" / "x.py"
    refused(eventbus("schema", "codegen", "sch", "-o", str(missing), cwd=project, env=subprocess_env), str(missing))
    refused(eventbus("schema", "codegen", "sch", "-o", "sch", cwd=project, env=subprocess_env), "-o sch", "directory")
    written = eventbus("schema", "codegen", "sch", "-o", "events.py", cwd=project, env=subprocess_env)
    assert written.returncode == 0, written.stderr
    assert "class R" in (project / "events.py").read_text()


# 5. --http ports.


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_an_http_port_out_of_range_is_refused(port: str, project: Path, subprocess_env: dict[str, str]) -> None:
    refused(eventbus("run", "echo_app", "--http", port, cwd=project, env=subprocess_env), f"--http {port}")


# 6. Syntax errors in the user's module.


def test_a_syntax_error_names_the_users_file_and_line(project: Path, subprocess_env: dict[str, str]) -> None:
    (project / "syn.py").write_text("from eventbus import App\napp = App('x')\ndef f(:\n    pass\n")
    error = refused(eventbus("run", "syn", cwd=project, env=subprocess_env), "syn.py, line 3", "def f(:")
    assert "loader.py" not in error


# 7. dlq list on a topic that holds no dead letters.


def test_dlq_list_of_a_topic_that_is_not_a_dead_letter_topic(
    dead_letters: Path, subprocess_env: dict[str, str]
) -> None:
    result = eventbus("dlq", "list", "orders", cwd=dead_letters, env=subprocess_env)
    refused(result, "orders is not a dead-letter topic", "3 record(s)", "orders.dlq")
    assert "?" not in result.stdout
    listed = eventbus("dlq", "list", "orders.dlq", cwd=dead_letters, env=subprocess_env)
    assert listed.returncode == 0, listed.stderr
    assert "orders.dlq: 3 dead letter(s), 1 kind(s) of failure" in listed.stdout


# 8. Options that exclude each other.


def test_a_name_and_its_alternative_together_are_called_exclusive(
    project: Path, subprocess_env: dict[str, str]
) -> None:
    refused(eventbus("topics", "create", "orders", "--app", "echo_app", cwd=project, env=subprocess_env), "not both")
    refused(eventbus("schema", "show", "n.R", "--id", "1", cwd=project, env=subprocess_env), "not both")


# 9. Group names.


@pytest.mark.parametrize("group", ["", " ", " x", "x ", "a\tb\x07"])
def test_empty_or_spaced_group_names_are_refused(group: str, project: Path, subprocess_env: dict[str, str]) -> None:
    refused(eventbus("run", "echo_app", "--group", group, "--until-idle", cwd=project, env=subprocess_env), "--group")
    assert eventbus("topics", "create", "in", cwd=project, env=subprocess_env).returncode == 0
    result = eventbus("replay", "in", "--group", group, "--from", "earliest", cwd=project, env=subprocess_env)
    refused(result, "--group")


# 10. Partition counts.


def test_absurd_partition_counts_are_refused(project: Path, subprocess_env: dict[str, str]) -> None:
    result = eventbus("topics", "create", "x", "--partitions", "100000000", cwd=project, env=subprocess_env)
    refused(result, "--partitions 100000000")
    listed = eventbus("topics", "list", cwd=project, env=subprocess_env)
    assert "x " not in listed.stdout


# 11. Import errors inside the user's module.


def test_a_missing_import_inside_the_users_module_is_not_called_the_module_missing(
    project: Path, subprocess_env: dict[str, str]
) -> None:
    (project / "orders_app.py").write_text("import orders\n")
    error = refused(eventbus("run", "orders_app", cwd=project, env=subprocess_env), "No module named 'orders'")
    assert "cannot find module" not in error
    assert "orders_app.py:1" in error
    refused(eventbus("run", "orders_ap", cwd=project, env=subprocess_env), "cannot find module 'orders_ap'")


def test_an_error_raised_in_a_library_the_user_called_names_the_users_line(
    project: Path, subprocess_env: dict[str, str]
) -> None:
    (project / "bad_json.py").write_text('import json\n\njson.loads("{")\n')
    error = refused(eventbus("run", "bad_json", cwd=project, env=subprocess_env), "JSONDecodeError", "bad_json.py:3")
    assert "decoder.py" not in error


# 12. Stopping a worker whose processor is slow: the first signal drains what was read, the second stops at once.

SLOW_APP = """
import os
import time

from eventbus import App, Event

app = App("slow")


@app.processor("orders")
def slow(event: Event) -> None:
    if os.path.exists("slow"):  # removed by the test before it runs the app again
        time.sleep(0.5)
"""


def _start_slow_worker(project: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    (project / "slow_app.py").write_text(SLOW_APP)
    (project / "slow").touch()
    lines = "\n".join(json.dumps({"n": n}) for n in range(40))
    assert eventbus("publish", "orders", "--type", "t", cwd=project, env=env, stdin=lines).returncode == 0
    worker = subprocess.Popen(
        [PYTHON, "-m", "eventbus", "run", "slow_app", *args],
        cwd=project,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.5)  # started, and in the middle of its first round of slow calls
    return worker


def test_a_second_signal_stops_a_slow_worker_at_once_and_nothing_is_lost(
    project: Path, subprocess_env: dict[str, str]
) -> None:
    worker = _start_slow_worker(project, subprocess_env)
    worker.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert worker.poll() is None, "the first signal drains the round: 40 events of 0.5 s"
    stopped_at = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=30)
    assert time.monotonic() - stopped_at < 5, "the second signal stops at once, in the middle of a processor call"
    assert worker.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert "stopped at once (SIGTERM): events read but not committed will be delivered again" in stderr

    (project / "slow").unlink()
    rerun = eventbus("run", "slow_app", "--until-idle", cwd=project, env=subprocess_env)
    assert rerun.returncode == 0, rerun.stderr
    assert "40 events in" in rerun.stderr, "none was committed, so all 40 come again"


def test_the_first_signal_drains_what_was_read_and_commits_it(project: Path, subprocess_env: dict[str, str]) -> None:
    worker = _start_slow_worker(project, subprocess_env, "--max-poll-records", "10")
    worker.send_signal(signal.SIGINT)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert "worker stopped: 10 events in" in stderr, stderr
    (project / "slow").unlink()
    rerun = eventbus("run", "slow_app", "--until-idle", cwd=project, env=subprocess_env)
    assert "30 events in" in rerun.stderr, rerun.stderr


# 13. Numbers past what the log or the registry can hold, and digits that are not ASCII.


def test_numbers_out_of_range_are_refused_by_name(project: Path, subprocess_env: dict[str, str]) -> None:
    huge = "99999999999999999999"
    refused(
        eventbus("run", "echo_app", "--until-idle", "--max-poll-records", huge, cwd=project, env=subprocess_env),
        "--max-poll-records must be 1 to 1,000,000",
    )
    for interval in ("nan", "inf"):
        result = eventbus("run", "echo_app", "--commit-interval-ms", interval, cwd=project, env=subprocess_env)
        refused(result, "--commit-interval-ms")
    refused(eventbus("schema", "show", "--id", huge, cwd=project, env=subprocess_env), f"--id {huge}")
    assert eventbus("topics", "create", "in", cwd=project, env=subprocess_env).returncode == 0
    for start in (huge, "²", "\u0661"):  # an Arabic-Indic one, which int() reads as 1
        result = eventbus("replay", "in", "--group", "g", "--from", start, cwd=project, env=subprocess_env)
        refused(result, "--from", start)


# 14. Output to a full disk.


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_output_to_a_full_disk_is_reported_in_one_line(project: Path, subprocess_env: dict[str, str]) -> None:
    lines = "\n".join(json.dumps({"n": n, "pad": "x" * 200}) for n in range(200))
    assert eventbus("publish", "in", "--type", "t", cwd=project, env=subprocess_env, stdin=lines).returncode == 0
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [PYTHON, "-m", "eventbus", "consume", "in", "--from-beginning", "--until-end"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=project,
            env=subprocess_env,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == "eventbus: failed: cannot write: No space left on device", result.stderr


# 15. An empty registry URL is not the log's own registry.


def test_an_empty_registry_url_is_refused_not_read_as_the_embedded_one(
    project: Path, subprocess_env: dict[str, str]
) -> None:
    refused(eventbus("schema", "list", "--registry", "", cwd=project, env=subprocess_env), "--registry is empty")
    empty = {**subprocess_env, "EVENTBUS_SCHEMA_REGISTRY": ""}
    refused(eventbus("schema", "list", cwd=project, env=empty), "EVENTBUS_SCHEMA_REGISTRY is empty")
    unset = {k: v for k, v in subprocess_env.items() if k != "EVENTBUS_SCHEMA_REGISTRY"}
    assert eventbus("schema", "list", cwd=project, env=unset).returncode == 0


def test_an_app_beside_the_eventbus_package_is_still_the_users_code(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    # As in a checkout of eventbus itself, or an app vendoring it: the package's parent directory is the app's.
    from tests.conftest import REPO

    (tmp_path / "eventbus").symlink_to(REPO / "eventbus")
    (tmp_path / "beside.py").write_text('import json\n\njson.loads("{")\n')
    env = {**subprocess_env, "PYTHONPATH": str(tmp_path)}
    refused(eventbus("run", "beside", cwd=tmp_path, env=env), "JSONDecodeError", "beside.py:3")
