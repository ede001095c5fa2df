"""SIGKILL a real ``eventbus run`` process mid-stream on Kafka, restart it, and check what the outputs say.

At-least-once (both brokers): every input has an output after the restart; some may have two.
Exactly-once (noida-db, the broker that honours ``read_committed``): a ``read_committed`` reader of the outputs
sees every expected output exactly once: no output of the aborted transaction, no duplicate.

On noida-db the workers are static members of their group (``group.instance.id``, a standard Kafka setting for
processes that restart with the same identity): its coordinator never drops a dynamic member that died, and a
group whose only member was SIGKILLed never completes another rebalance. A static member that comes back under
the same instance id takes the dead one's place at once, on any broker.
"""

from __future__ import annotations

import random
import signal

import pytest

from eventbus.backends.kafka.log import open_kafka_log
from tests.kafka.brokers import Broker, running
from tests.kafka.conftest import eventbus_process
from tests.kafka.workload import all_processed, committed_total, output_causes, publish_inputs, wait_until_committed

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

EVENTS = 10_000
APP = "tests.kafka.apps:pipeline"


def crash_and_recover(broker: Broker, env: dict[str, str], seed: int, *guarantee: str) -> tuple[list[str], int]:
    """Publish, run a worker, SIGKILL it mid-stream, run one again until idle; the input ids and the committed
    count at the kill."""
    url = broker.url() if broker.expires_silent_members else broker.url(**{"group.instance.id": f"crash-{seed}"})
    with open_kafka_log(url) as log:
        ids = publish_inputs(log, EVENTS)
        # Commits every 20 ms (not the default 100 ms): 10,000 events take a fraction of a second, and the kill
        # must land between two commits, with rounds held for the next one.
        worker = eventbus_process(
            env, "run", APP, "--broker", url, "--max-poll-records", "200", "--commit-interval-ms", "20", *guarantee
        )
        # Anywhere in the first 60%: past that, a fast machine can commit the rest before the kill lands.
        kill_at = int(EVENTS * random.Random(seed).uniform(0.05, 0.6))
        wait_until_committed(log, kill_at, 90)
        worker.send_signal(signal.SIGKILL)
        _, stderr = worker.communicate(timeout=30)
        assert worker.returncode == -signal.SIGKILL, stderr.decode()
        at_kill = committed_total(log)

        restarted = eventbus_process(env, "run", APP, "--broker", url, "--until-idle", *guarantee)
        _, stderr = restarted.communicate(timeout=180)
        assert restarted.returncode == 0, stderr.decode()
        assert all_processed(log), "every input committed"
    return ids, at_kill


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("kind", ["tansu", "noida"])
def test_sigkill_mid_stream_then_restart_loses_nothing(kind: str, seed: int, subprocess_env: dict[str, str]) -> None:
    with running(kind) as broker:
        ids, at_kill = crash_and_recover(broker, subprocess_env, seed)
        assert 0 < at_kill < EVENTS, f"the kill should land mid-stream (committed {at_kill})"
        with open_kafka_log(broker.url()) as log:
            causes = output_causes(log)
        assert set(causes) == set(ids), "every input produced its output"


@pytest.mark.parametrize("seed", range(5))
def test_exactly_once_sigkill_mid_stream_leaves_every_output_once(seed: int, subprocess_env: dict[str, str]) -> None:
    with running("noida") as broker:
        ids, at_kill = crash_and_recover(broker, subprocess_env, seed, "--guarantee", "exactly_once")
        assert 0 < at_kill < EVENTS, f"the kill should land mid-stream (committed {at_kill})"
        with open_kafka_log(broker.url()) as log:
            causes = output_causes(log)
        assert set(causes) == set(ids), "every input produced its output"
        duplicates = {cause: n for cause, n in causes.items() if n > 1}
        assert not duplicates, f"{len(duplicates)} inputs have more than one committed output"
