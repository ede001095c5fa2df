"""Observability as an operator sees it: real ``eventbus run`` workers on an embedded log, scraped over HTTP.

Each test starts workers as subprocesses (``--http 0``: the port they chose is read from their log), publishes,
and reads ``/metrics`` as Prometheus would, with prometheus_client's own parser.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from eventbus import Event
from eventbus.backends.sqlite import SQLiteLog
from eventbus.publisher import Publisher
from tests.conftest import PYTHON, REPO

WAIT_S = 20.0
T = TypeVar("T")
COUNTING = "tests.observability_apps.counting"
BREAKER = "tests.observability_apps.breaker"


@dataclass
class Running:
    """An ``eventbus run`` process (a worker, or the supervisor of several) and what it has logged so far."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def port(self) -> int:
        found = wait_for(lambda: next((m for line in self.lines if (m := _SERVING.search(line))), None), self)
        return int(found.group(1))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    @property
    def log_text(self) -> str:
        return "".join(self.lines)


_SERVING = re.compile(r"serving HTTP on [0-9.]+:(\d+)")


def wait_for(found: Callable[[], T | None], running: Running | None = None, timeout_s: float = WAIT_S) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = found()
        if value:
            return value
        if running is not None and running.process.poll() is not None:
            raise AssertionError(f"eventbus run exited with {running.process.returncode}:\n{running.log_text}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s" + (f":\n{running.log_text}" if running else ""))
        time.sleep(0.05)


@contextlib.contextmanager
def eventbus_run(app: str, url: str, env: dict[str, str], *options: str, cwd: Path = REPO) -> Iterator[Running]:
    process = subprocess.Popen(
        [PYTHON, "-m", "eventbus", "run", app, "--broker", url, "--http", "0", *options],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = Running(process)
    reader = threading.Thread(target=running._read, daemon=True)
    reader.start()
    try:
        yield running
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            running.stop()
        reader.join(timeout=5)
        if process.stderr is not None:
            process.stderr.close()


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``/metrics``, parsed: samples by name, then by their labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def families(port: int) -> dict[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return {f.name: f.type for f in text_string_to_metric_families(response.read().decode())}


def value(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str) -> float | None:
    return samples.get(name, {}).get(tuple(sorted(labels.items())))


def publish_numbers(url: str, topic: str, numbers: range, partitions: int) -> None:
    log = SQLiteLog(url.removeprefix("sqlite:///"))
    try:
        log.create_topic(topic, partitions, exist_ok=True)
        with Publisher(log) as publisher:
            publisher.publish_many(
                topic, [Event("obs.number", {"n": n}, extensions={"partitionkey": f"k{n}"}) for n in numbers]
            )
    finally:
        log.close()


def topic_size(url: str, topic: str) -> int:
    log = SQLiteLog(url.removeprefix("sqlite:///"))
    try:
        return sum(state.end_offset - state.start_offset for state in log.watermarks(topic))
    except Exception:
        return 0
    finally:
        log.close()


def owners(path: Path, group: str) -> frozenset[str]:
    """The members of ``group`` that own partitions now."""
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
        rows = db.execute("SELECT DISTINCT member_id FROM group_owners WHERE group_name = ?", (group,)).fetchall()
        return frozenset(row[0] for row in rows)


def two_owners(path: Path, group: str) -> frozenset[str] | None:
    found = owners(path, group)
    return found if len(found) == 2 else None


def counting_totals(port: int) -> tuple[float, float, float]:
    """(copied, done by every_third_fails, dead-lettered by it), as /metrics says."""
    samples = scrape(port)
    processed = "eventbus_events_processed_total"
    return (
        value(samples, processed, processor="copy") or 0.0,
        value(samples, processed, processor="every_third_fails") or 0.0,
        value(
            samples,
            "eventbus_events_dead_lettered_total",
            processor="every_third_fails",
            topic="obs-in",
            reason="attempts exhausted",
        )
        or 0.0,
    )


def expected_totals(numbers: range) -> tuple[float, float, float]:
    failing = sum(1 for n in numbers if n % 3 == 0)
    return float(len(numbers)), float(len(numbers) - failing), float(failing)


# -- one worker --------------------------------------------------------------------------------------------------


def test_one_worker_counts_what_it_did_and_shows_its_paused_partitions_gauge_from_the_start(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    numbers = range(1, 31)
    publish_numbers(url, "obs-in", numbers, partitions=3)
    with eventbus_run(COUNTING, url, subprocess_env) as worker:
        port = worker.port()
        wait_for(lambda: counting_totals(port) == expected_totals(numbers), worker)
        samples = scrape(port)
        # A gauge without labels is there, at 0, before anything is ever paused: an alert on it, or a dashboard
        # panel, sees 0 rather than no data.
        assert value(samples, "eventbus_paused_partitions") == 0.0
        kinds = families(port)
        assert kinds["eventbus_events_processed"] == "counter"
        assert kinds["eventbus_events_dead_lettered"] == "counter"
        assert kinds["eventbus_paused_partitions"] == "gauge"
        assert value(samples, "eventbus_failed_attempts_total", processor="every_third_fails", error="ValueError") == 20
        assert value(samples, "eventbus_retries_total", processor="every_third_fails") == 10
    assert worker.process.returncode == 0, worker.log_text
    assert topic_size(url, "obs-in.dlq") == expected_totals(numbers)[2]


def test_a_breaker_that_starts_closed_has_made_no_transition(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    publish_numbers(url, "obs-calls", range(3), partitions=1)
    with eventbus_run(BREAKER, url, subprocess_env) as worker:
        port = worker.port()
        wait_for(lambda: value(scrape(port), "eventbus_circuit_breaker_state", breaker="obs-gateway") == 2, worker)
        samples = scrape(port)
        transitions = samples.get("eventbus_circuit_breaker_transitions_total", {})
        # Closed -> open, once: not a transition "to closed" for the breaker being created.
        assert transitions == {(("breaker", "obs-gateway"), ("to", "open")): 1.0}
        assert value(samples, "eventbus_paused_partitions") == 1.0
    assert worker.process.returncode == 0, worker.log_text


# -- several worker processes ------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def _worker_without_http(supervisor: int) -> int | None:
    for child in _children(supervisor):
        with contextlib.suppress(OSError):
            if b"--http" not in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
    return None


def test_the_metrics_endpoint_of_workers_2_counts_the_events_of_both_workers(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    numbers = range(1, 121)
    publish_numbers(url, "obs-in", range(0), partitions=4)
    with eventbus_run(COUNTING, url, subprocess_env, "--workers", "2") as supervisor:
        port = supervisor.port()
        # Both workers own partitions before anything is published: each of them processes some of the events.
        wait_for(lambda: len(owners(tmp_path / "events.db", "obs-counting")) == 2, supervisor)
        publish_numbers(url, "obs-in", numbers, partitions=4)
        wait_for(lambda: topic_size(url, "obs-in.dlq") == expected_totals(numbers)[2], supervisor)
        # The one endpoint adds up both processes (the other one's values are at most a second old).
        wait_for(lambda: counting_totals(port) == expected_totals(numbers), supervisor)
        assert len(re.findall(r"serving HTTP", supervisor.log_text)) == 1
    assert supervisor.process.returncode == 0, supervisor.log_text


def test_counts_of_a_worker_that_was_killed_and_started_again_stay_in_the_totals(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    first, then = range(1, 121), range(121, 181)
    publish_numbers(url, "obs-in", range(0), partitions=4)
    with eventbus_run(COUNTING, url, subprocess_env, "--workers", "2") as supervisor:
        port = supervisor.port()
        before = wait_for(lambda: two_owners(tmp_path / "events.db", "obs-counting"), supervisor)
        publish_numbers(url, "obs-in", first, partitions=4)
        wait_for(lambda: counting_totals(port) == expected_totals(first), supervisor)

        victim = wait_for(lambda: _worker_without_http(supervisor.process.pid), supervisor)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: "starting it again" in supervisor.log_text, supervisor)
        # Counters never go down (Prometheus would read a drop as a reset, and rate() would jump).
        assert counting_totals(port) == expected_totals(first)

        # The worker started again owns partitions before more is published, so it counts some of them too.
        wait_for(lambda: two_owners(tmp_path / "events.db", "obs-counting") not in (None, before), supervisor)
        publish_numbers(url, "obs-in", then, partitions=4)
        both = range(1, 181)
        wait_for(lambda: topic_size(url, "obs-in.dlq") == expected_totals(both)[2], supervisor)
        wait_for(lambda: counting_totals(port) == expected_totals(both), supervisor)
    assert supervisor.process.returncode == 0, supervisor.log_text


def test_the_directory_workers_share_their_metrics_in_is_gone_once_they_stop(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    publish_numbers(url, "obs-in", range(1, 4), partitions=2)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**subprocess_env, "TMPDIR": str(scratch)}
    with eventbus_run(COUNTING, url, env, "--workers", "2") as supervisor:
        port = supervisor.port()
        wait_for(lambda: counting_totals(port) == expected_totals(range(1, 4)), supervisor)
        assert [p.name for p in scratch.iterdir() if p.name.startswith("eventbus-metrics-")]
    assert supervisor.process.returncode == 0, supervisor.log_text
    assert not [p.name for p in scratch.iterdir() if p.name.startswith("eventbus-metrics-")]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_line_naming_it(tmp_path: Path, subprocess_env: dict[str, str], workers: str) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        url = f"sqlite:///{tmp_path}/events.db"
        publish_numbers(url, "obs-in", range(0), partitions=1)
        result = subprocess.run(
            [PYTHON, "-m", "eventbus", "run", COUNTING, "--broker", url, "--http", str(port), "--workers", workers],
            cwd=REPO,
            env=subprocess_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("eventbus: error:")]
    assert len(errors) == 1, result.stderr
    assert f"--http {port}" in errors[0]
    assert "address already in use" in errors[0]


# -- while processors are busy -----------------------------------------------------------------------------------


def get(port: int, path: str, timeout_s: float = 5.0) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout_s) as response:
        assert response.status == 200
        return bytes(response.read())


def test_healthz_and_metrics_answer_while_a_sync_processor_is_busy_and_show_the_lag_it_leaves(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    gate = tmp_path / "gate"
    lag = "eventbus_consumer_lag"
    publish_numbers(url, "obs-gated", range(5), partitions=1)
    with eventbus_run("tests.observability_apps.gated", url, {**subprocess_env, "OBS_GATE": str(gate)}) as worker:
        try:
            port = worker.port()
            wait_for(gate.with_suffix(".waiting").exists, worker)
            # The processor holds the worker's thread: a probe still gets its answer, not a timeout.
            assert orjson_loads(get(port, "/healthz"))["status"] == "ok"
            samples = scrape(port)
            assert value(samples, lag, group="obs-gated", topic="obs-gated", partition="0") == 5
        finally:
            gate.touch()
        wait_for(lambda: value(scrape(port), "eventbus_events_processed_total", processor="wait_at_the_gate") == 5)
        assert value(scrape(port), lag, group="obs-gated", topic="obs-gated", partition="0") == 0
        assert families(port)[lag] == "gauge"
    assert worker.process.returncode == 0, worker.log_text


def orjson_loads(body: bytes) -> dict[str, object]:
    import orjson

    loaded = orjson.loads(body)
    assert isinstance(loaded, dict)
    return loaded


# -- logs --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("before", [True, False])
def test_a_log_format_from_the_environment_that_names_no_format_is_one_line_naming_it(
    tmp_path: Path, subprocess_env: dict[str, str], before: bool
) -> None:
    env = {**subprocess_env, "EVENTBUS_LOG_FORMAT": "logfmt"}
    args = ["run", COUNTING, "--broker", f"sqlite:///{tmp_path}/events.db", "--until-idle"]
    result = subprocess.run(
        [PYTHON, "-m", "eventbus", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("eventbus: error:")]
    assert len(errors) == 1, result.stderr
    assert "'logfmt'" in errors[0]
    assert "EVENTBUS_LOG_FORMAT" in errors[0]
    assert "worker started" not in result.stderr

    # Given on the command line (before or after the command's name), the option wins over the environment.
    chosen = ["--log-format", "JSON"]
    args = [*chosen, *args] if before else [*args, *chosen]
    result = subprocess.run(
        [PYTHON, "-m", "eventbus", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = [orjson_loads(line.encode()) for line in result.stderr.splitlines() if line.strip()]
    assert any(str(line["message"]).startswith("worker started") for line in lines)
