"""``eventbus consume`` following a topic rides out a broker restart, as a worker does, for
``broker_unavailable_timeout_s``: reads no longer give up after a fixed 15 s."""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import orjson
import pytest

from eventbus import Event, Publisher
from eventbus.backends.kafka.log import open_kafka_log
from tests.conftest import PYTHON, REPO
from tests.kafka.brokers import running

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TOPIC = "followed"


def publish(url: str, n: int) -> None:
    with open_kafka_log(url) as log, Publisher(log) as publisher:
        publisher.publish(TOPIC, Event("followed.event", {"n": n}))


def next_line(lines: queue.Queue[bytes], timeout_s: float, stderr: Path) -> bytes:
    try:
        return lines.get(timeout=timeout_s)
    except queue.Empty:
        raise AssertionError(f"no line within {timeout_s} s: {stderr.read_text(errors='replace')[-2000:]}") from None


def test_consume_follows_a_topic_across_a_broker_restart(subprocess_env: dict[str, str], tmp_path: Path) -> None:
    consume_log = tmp_path / "consume.log"
    with running("noida", tmp_path / "noida") as broker, consume_log.open("wb") as stderr:
        url = f"kafka://{broker.bootstrap}?broker_unavailable_timeout_s=90"
        with open_kafka_log(url) as log:
            log.create_topic(TOPIC, 1)
        publish(url, 1)
        consumer = subprocess.Popen(
            [PYTHON, "-m", "eventbus", "consume", TOPIC, "--from-beginning", "--broker", url],
            cwd=REPO,
            env=subprocess_env,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        lines: queue.Queue[bytes] = queue.Queue()

        def read_lines() -> None:
            for line in consumer.stdout or ():
                lines.put(line)

        reader = threading.Thread(target=read_lines, daemon=True)
        reader.start()
        try:
            assert orjson.loads(next_line(lines, 30, consume_log))["data"] == {"n": 1}
            time.sleep(3.5)  # noida-db persists with a lag of up to 3 s: the topic must survive the restart
            assert broker.process is not None
            broker.process.send_signal(signal.SIGTERM)
            broker.process.wait(timeout=30)
            time.sleep(18)  # longer than the 15 s a read used to wait before failing
            broker.restart()
            publish(url, 2)
            second = next_line(lines, 60, consume_log)
            assert orjson.loads(second)["data"] == {"n": 2}
            assert consumer.poll() is None, "still following"
        finally:
            consumer.send_signal(signal.SIGINT)
            consumer.wait(timeout=30)
            reader.join(timeout=10)  # it ends at the end of the output: then the pipe can be closed
            if consumer.stdout is not None:
                consumer.stdout.close()
