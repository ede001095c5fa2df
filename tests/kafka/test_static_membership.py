"""Static group membership (``group.instance.id`` in the URL) with several ``eventbus run`` processes.

Two members under one instance id fence each other: the broker takes the newer and fences the older out for
good. ``eventbus run --workers N`` therefore gives each of its workers an id of its own (``ID-0``, ``ID-1``...),
and a worker fenced out by someone else's process exits with a usage error naming the setting, instead of
waiting for partitions that never come.

noida-db only: Tansu neither fences a duplicate static member nor hands a departed static member's partitions on.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventbus.backends.base import ConsumerSettings
from eventbus.backends.kafka.clients import consumer_config
from eventbus.backends.kafka.config import parse_kafka_url
from eventbus.backends.kafka.log import open_kafka_log
from tests.kafka.brokers import Broker, running
from tests.kafka.conftest import eventbus_process
from tests.kafka.workload import all_processed, output_causes, publish_inputs, wait_until_committed

pytestmark = pytest.mark.kafka

APP = "tests.kafka.apps:pipeline"


@pytest.fixture
def noida(tmp_path: Path) -> Iterator[Broker]:
    with running("noida", tmp_path / "noida") as started:
        yield started


def test_each_supervised_worker_gets_an_instance_id_of_its_own() -> None:
    settings = parse_kafka_url("kafka://127.0.0.1:9092?group.instance.id=orders-host-1", environ={})
    ids = [
        consumer_config(settings, "g", ConsumerSettings(worker_index=index))["group.instance.id"] for index in (0, 1)
    ]
    assert ids == ["orders-host-1-0", "orders-host-1-1"]
    alone = consumer_config(settings, "g", ConsumerSettings())
    assert alone["group.instance.id"] == "orders-host-1", "a process on its own keeps the id it was given"
    dynamic = consumer_config(
        parse_kafka_url("kafka://127.0.0.1:9092", environ={}), "g", ConsumerSettings(worker_index=1)
    )
    assert "group.instance.id" not in dynamic, "a dynamic member stays dynamic"


def test_two_workers_under_one_static_id_split_the_partitions_and_finish(
    noida: Broker, subprocess_env: dict[str, str]
) -> None:
    url = noida.url(**{"group.instance.id": "static-pair"})
    with open_kafka_log(url) as log:
        ids = publish_inputs(log, 2000)
        supervisor = eventbus_process(subprocess_env, "run", APP, "--broker", url, "--workers", "2", "--until-idle")
        try:
            _, stderr = supervisor.communicate(timeout=90)
        finally:
            if supervisor.poll() is None:
                supervisor.send_signal(signal.SIGKILL)
        text = stderr.decode()
        assert supervisor.returncode == 0, text
        assert "fenced" not in text.lower(), text
        assert all_processed(log)
        assert set(output_causes(log)) == set(ids)
        # Each worker owned half of the six partitions: neither was fenced out and replaced by the other.
        assigned = [line for line in text.splitlines() if "partitions assigned" in line]
        assert len(assigned) == 2, text
        assert all(line.count("kafka-in[") == 3 for line in assigned), text


def test_a_worker_fenced_out_by_another_process_with_its_instance_id_exits_naming_the_setting(
    noida: Broker, subprocess_env: dict[str, str]
) -> None:
    url = noida.url(**{"group.instance.id": "copied-id"})
    with open_kafka_log(url) as log:
        publish_inputs(log, 200)
        first = eventbus_process(subprocess_env, "run", APP, "--broker", url)
        second: subprocess.Popen[bytes] | None = None
        try:
            wait_until_committed(log, 200, 60)
            second = eventbus_process(subprocess_env, "run", APP, "--broker", url)
            _, stderr = first.communicate(timeout=60)
            text = stderr.decode()
            assert first.returncode == 2, text
            assert "another member joined with the same group.instance.id ('copied-id')" in text
            assert "Traceback" not in text
            assert second.poll() is None, "the newer member goes on"
        finally:
            for process in (first, second):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGKILL)
                    process.communicate(timeout=30)
