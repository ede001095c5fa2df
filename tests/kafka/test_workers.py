"""``eventbus run`` processes on Kafka: one worker to the end, and two in one group sharing the partitions."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from eventbus.backends.kafka.log import open_kafka_log
from tests.kafka.brokers import Broker
from tests.kafka.conftest import eventbus_process
from tests.kafka.workload import (
    IN,
    all_processed,
    output_causes,
    owned_partitions,
    publish_inputs,
    wait_until_committed,
)

pytestmark = pytest.mark.kafka

APP = "tests.kafka.apps:pipeline"


def test_a_worker_processes_every_event_and_stops_when_idle(own_broker: Broker, subprocess_env: dict[str, str]) -> None:
    url = own_broker.url()
    with open_kafka_log(url) as log:
        ids = publish_inputs(log, 3000)
        worker = eventbus_process(subprocess_env, "run", APP, "--broker", url, "--until-idle")
        _, stderr = worker.communicate(timeout=120)
        assert worker.returncode == 0, stderr.decode()
        assert all_processed(log)
        causes = output_causes(log)
        assert set(causes) == set(ids)
        assert max(causes.values()) == 1, "no failure, no redelivery: each output once"


def wait_for(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)
    assert condition(), f"timed out after {timeout_s} s waiting for {what}"  # type: ignore[operator]


def test_two_workers_share_the_partitions_and_the_survivor_takes_over_a_killed_one(
    own_broker: Broker, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    if not own_broker.expires_silent_members:
        pytest.skip(f"{own_broker.kind} never drops a member whose heartbeats stopped (see tests/kafka/brokers.py)")
    url = own_broker.url()
    env = {**subprocess_env, "EVENTBUS_TEST_DELAY_S": "0.002"}
    with open_kafka_log(url) as log:
        ids = publish_inputs(log, 4000)
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        files = [path.open("wb") for path in logs]
        a, b = (eventbus_process(env, "run", APP, "--broker", url, stderr=f.fileno()) for f in files)
        try:
            wait_for(
                lambda: len(owned_partitions(logs[0])) == 3 and len(owned_partitions(logs[1])) == 3,
                60,
                "the workers to own three partitions each",
            )
            assert owned_partitions(logs[0]).isdisjoint(owned_partitions(logs[1]))
            wait_until_committed(log, 500, 60)
            a.send_signal(signal.SIGKILL)
            a.wait(timeout=30)
            wait_for(lambda: owned_partitions(logs[1]) == set(range(6)), 60, "the survivor to own every partition")
            wait_for(lambda: all_processed(log), 120, "every event to be processed")
        finally:
            for process in (a, b):
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(timeout=60)
            for f in files:
                f.close()
        assert b.returncode == 0, logs[1].read_text()
        causes = output_causes(log)
        assert set(causes) == set(ids), "nothing lost"
        assert IN in logs[1].read_text()


def test_exactly_once_workers_hand_partitions_over_and_every_output_is_committed_once(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    """Under exactly-once, a second worker joining and the first stopping move partitions twice while
    transactions are in flight; a read_committed reader still sees each output once (noida-db only: it is the
    broker that honours read_committed)."""
    from tests.kafka.brokers import running

    env = {**subprocess_env, "EVENTBUS_TEST_DELAY_S": "0.001"}
    with running("noida", tmp_path / "noida") as broker:
        # A rebalance that a member never completes (it stopped while its JoinGroup was held) ends after the
        # rebalance timeout, max.poll.interval.ms: 20 s here rather than 5 minutes.
        url = broker.url(**{"max.poll.interval.ms": 20_000})
        with open_kafka_log(url) as log:
            ids = publish_inputs(log, 6000)
            run = ("run", APP, "--broker", url, "--guarantee", "exactly_once", "--max-poll-records", "100")
            first = eventbus_process(env, *run)
            wait_until_committed(log, 1000, 60)
            second = eventbus_process(env, *run)
            wait_until_committed(log, 3000, 60)
            first.send_signal(signal.SIGTERM)
            _, first_err = first.communicate(timeout=60)
            try:
                wait_for(lambda: all_processed(log), 120, "the second worker to process what the first left")
            finally:
                second.send_signal(signal.SIGTERM)
                _, second_err = second.communicate(timeout=60)
                print("first worker:", first_err.decode(), "second worker:", second_err.decode(), sep="\n")
            assert first.returncode == 0, first_err.decode()
            assert second.returncode == 0, second_err.decode()
            causes = output_causes(log)
    assert set(causes) == set(ids)
    assert max(causes.values()) == 1, "each output committed once"
