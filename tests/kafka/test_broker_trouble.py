"""Brokers that are not there, go away, or come back: ``eventbus run`` says so and exits, or carries on."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from eventbus.backends.kafka.log import open_kafka_log
from tests.kafka.brokers import Broker, running
from tests.kafka.conftest import eventbus_process
from tests.kafka.workload import all_processed, output_causes, publish_inputs, wait_until_committed

pytestmark = pytest.mark.kafka

APP = "tests.kafka.apps:pipeline"


def test_a_worker_started_without_a_reachable_broker_exits_naming_the_url(subprocess_env: dict[str, str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"kafka://127.0.0.1:{port}?connect_timeout_s=1"
    started = time.monotonic()
    worker = eventbus_process(subprocess_env, "run", APP, "--broker", url)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 1
    assert (
        f"eventbus: failed: kafka://127.0.0.1:{port}?connect_timeout_s=1: no Kafka broker answered" in stderr.decode()
    )
    assert time.monotonic() - started < 10


def test_a_worker_whose_brokers_all_go_away_gives_up_after_the_timeout(
    own_broker: Broker, subprocess_env: dict[str, str]
) -> None:
    url = own_broker.url(broker_unavailable_timeout_s=3)
    with open_kafka_log(url) as log:
        publish_inputs(log, 20_000)
        worker = eventbus_process({**subprocess_env, "EVENTBUS_TEST_DELAY_S": "0.001"}, "run", APP, "--broker", url)
        wait_until_committed(log, 200, 60)
        own_broker.kill()
        killed = time.monotonic()
        _, stderr = worker.communicate(timeout=60)
    gave_up_s = time.monotonic() - killed
    assert worker.returncode == 1, stderr.decode()
    assert "eventbus: failed: kafka://127.0.0.1:" in stderr.decode()
    assert 2.5 < gave_up_s < 20, f"gave up after {gave_up_s:.1f} s"


def test_a_worker_rides_out_a_broker_restart(subprocess_env: dict[str, str], tmp_path: Path) -> None:
    worker_log = tmp_path / "worker.log"
    with running("noida") as broker, worker_log.open("wb") as stderr:
        url = broker.url(broker_unavailable_timeout_s=30)
        with open_kafka_log(url) as log:
            ids = publish_inputs(log, 6000)
            time.sleep(3.5)  # noida-db persists with a lag of up to 3 s; the inputs must survive the restart
            env = {**subprocess_env, "EVENTBUS_TEST_DELAY_S": "0.001"}
            worker = eventbus_process(env, "run", APP, "--broker", url, stderr=stderr.fileno())
            wait_until_committed(log, 1000, 60)
            assert broker.process is not None
            broker.process.send_signal(signal.SIGTERM)  # a clean stop: what it acknowledged, it keeps
            broker.process.wait(timeout=30)
            broker.restart()
        # Watched through new clients: noida-db sometimes stops answering group-offset requests on connections
        # that lived through its restart (the worker's own clients recover; this checks the worker).
        with open_kafka_log(url) as log:
            deadline = time.monotonic() + 120
            while not all_processed(log) and time.monotonic() < deadline and worker.poll() is None:
                time.sleep(0.2)
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
            assert worker.returncode == 0, worker_log.read_text()
            assert all_processed(log)
            assert set(output_causes(log)) == set(ids), "nothing lost across the restart"
