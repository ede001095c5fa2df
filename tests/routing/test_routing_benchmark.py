"""The routing benchmark runs end to end in its quick mode (figures are the benchmark's business, not CI's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]


def test_quick_benchmark_runs_and_reports_every_size(tmp_path: Path) -> None:
    figures = tmp_path / "routing.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/routing.py", "--quick", "--json", str(figures)],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    assert "router cost at 10,000 rules / cost at 10 rules" in done.stdout
    figures_read = json.loads(figures.read_text())
    rows = figures_read["rules"]
    assert {(row["rules"], row["source"]) for row in rows} == {
        (rules, source) for rules in (10, 100, 1_000, 10_000) for source in ("dict", "bytes")
    }
    for row in rows:
        assert row["router"]["events_per_second"] > 0
        assert row["router"]["p50_us"] <= row["router"]["p99_us"]
        if row["rules"] >= 1_000:
            assert row["speedup"] > 1
    other = figures_read["rules_mostly_for_other_traffic"]
    assert {(row["rules"], row["source"]) for row in other} == {
        (rules, source) for rules in (10, 100, 1_000, 10_000) for source in ("dict", "bytes")
    }
    assert all(row["matches_per_event"] < 0.1 for row in other), "those rules are about other traffic"
    assert "for comparison: the same 10 rules about this traffic" in done.stdout
    single = {(row["name"], row["source"]) for row in figures_read["single_rule"]}
    assert ("Router.match", "dict") in single
    assert ("hand-written check", "bytes") in single
