"""The W1 Kafka benchmark runs end to end on a small input (its figures are not asserted: benchmarks measure)."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import PYTHON, REPO

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_the_w1_kafka_benchmark_runs_and_reports_both_loops(subprocess_env: dict[str, str]) -> None:
    result = subprocess.run(
        [PYTHON, "benchmarks/w1_kafka.py", "--events", "3000", "--repeat", "1"],
        cwd=REPO,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "eventbus run" in result.stdout
    assert "hand-written loop" in result.stdout
    assert "ratio eventbus / hand-written:" in result.stdout
