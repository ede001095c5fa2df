"""The cost of failure handling on the happy path: W1 with retries, a dead-letter topic and idempotency enabled,
against the same W1 with them off, in one run, on the embedded SQLite log.

Nothing fails here: this measures what the machinery costs when it is not needed (target: at most 10% slower).
Retries and dead-letter topics cost nothing until an event fails; idempotency costs a key per event (a hash, a
lookup, and one journal write: its done record with the next event's begin), since it must be durable before the
commit.

Runs go in pairs, one of each back to back (each first in every other pair), each in a directory removed after it;
reported are the best of each, and the median over the pairs of the ratio of their times (wall clock, and CPU time
of the process).

`--instructions` counts instead of timing, for a figure that does not move with the machine's load: each side runs
once under valgrind's callgrind (on fewer events: 20,000 by default), and so does filling the log alone; the
worker's instructions per event are a side's count less the fill's. Under valgrind every millisecond holds a few
events, so the per-millisecond caches of output times and ids hit less than at full speed, on both sides alike.

usage: python benchmarks/w1_failure_features.py [--events N] [--repeat R] [--instructions]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.w1_embedded import BATCH, describe, fill_eventbus_log, make_events, scratch_db
from eventbus import App, Event, Idempotency, Retry
from eventbus.runtime import Worker, WorkerSettings, run_coroutine

PATTERN = {"type": ["order.paid"], "data": {"amount": [{"numeric": [">", 100]}]}}


def w1_app(*, features: bool) -> App:
    app = App("w1")
    options: dict[str, Any] = {}
    if features:
        options = {
            "retry": Retry(max_attempts=5, initial_delay_ms=100, max_delay_ms=10_000),
            "dead_letter_topic": "orders.failed",
            "idempotency": Idempotency(),
        }

    @app.processor("orders", pattern=PATTERN, to="large-payments", **options)
    def large_payment(event: Event) -> Event:
        data = event.data
        return Event(
            "payment.large",
            {
                "id": event.id,
                "customer": data["customer"],
                "amount": data["amount"],
                "currency": data["currency"],
                "time": event.time,
            },
            partitionkey=data["customer"],
        )

    return app


def run(path: Path, events: list[tuple[bytes, bytes]], *, features: bool) -> dict[str, Any]:
    log = fill_eventbus_log(path, events)
    settings = WorkerSettings(until_idle=True, max_poll_records=BATCH, idle_poll_s=0.0)
    worker = Worker(w1_app(features=features), log, settings)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    stats = run_coroutine(worker.run())
    elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    outputs = sum(s.end_offset for s in log.watermarks("large-payments"))
    log.close()
    return {
        "elapsed_s": elapsed,
        "cpu_s": cpu_s,
        "events": stats.events_in,
        "outputs": outputs,
        "batch_s": stats.round_latencies_s,
    }


SIDES = ("fill", "features off", "features on")


def run_side(side: str, count: int) -> None:
    """One side, as counted by `count_instructions`: fill a log, then (but for "fill") run the worker over it."""
    with tempfile.TemporaryDirectory() as tmp:
        log = fill_eventbus_log(Path(tmp) / "events.db", make_events(count))
        if side != "fill":
            settings = WorkerSettings(until_idle=True, max_poll_records=BATCH, idle_poll_s=0.0)
            run_coroutine(Worker(w1_app(features=side == "features on"), log, settings).run())
        log.close()


def count_instructions(count: int) -> None:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        sys.exit("--instructions needs valgrind (Debian: apt-get install valgrind)")
    print(f"W1 with and without retries + dead-letter topic + idempotency: {count:,} events, batch {BATCH}")
    print(f"on: Python {platform.python_version()} {platform.machine()}, SQLite {sqlite3.sqlite_version}, callgrind")
    runs = [(side, events) for side in SIDES for events in (0, count)]
    totals: dict[tuple[str, int], int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # Two at a time: callgrind runs one thread, and the machine has at least two cores.
        for first in range(0, len(runs), 2):
            procs = {
                (side, events): subprocess.Popen(
                    [
                        valgrind,
                        "--tool=callgrind",
                        f"--callgrind-out-file={tmp}/{side}-{events}.out",
                        sys.executable,
                        __file__,
                        "--side",
                        side,
                        "--events",
                        str(events),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for side, events in runs[first : first + 2]
            }
            for run_of, proc in procs.items():
                _, stderr = proc.communicate()
                found = re.search(r"Collected : (\d+)", stderr)
                if proc.returncode != 0 or found is None:
                    sys.exit(f"{run_of} under callgrind failed (exit {proc.returncode}):\n{stderr[-2000:]}")
                totals[run_of] = int(found.group(1))
    # A side's count less the same side with no events is its work per event plus filling the log; start-up
    # (imports, which compile from source where no bytecode is cached, and opening stores) is apart.
    fill = totals["fill", count] - totals["fill", 0]
    per_event = {side: (totals[side, count] - totals[side, 0] - fill) / count for side in SIDES[1:]}
    for side, instructions in per_event.items():
        start_up = totals[side, 0] - totals["fill", 0]
        print(f"  {side:<14} {instructions:>10,.0f} instructions per event  (start-up {start_up / 1e6:,.1f} M)")
    extra = per_event["features on"] - per_event["features off"]
    cost = 100 * extra / per_event["features off"]
    print(f"features on cost, instructions per event: {extra:+,.0f}, {cost:+.1f}% (target: <= +10%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=None, help="default 200,000; 20,000 with --instructions")
    parser.add_argument("--repeat", type=int, default=5, help="pairs of runs, one of each, back to back")
    parser.add_argument("--instructions", action="store_true", help="count instructions under callgrind instead")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # one side, run by --instructions
    args = parser.parse_args()
    if args.side is not None:
        run_side(args.side, args.events)
        return
    if args.instructions:
        count_instructions(args.events or 20_000)
        return
    args.events = args.events or 200_000
    events = make_events(args.events)
    print(f"W1 with and without retries + dead-letter topic + idempotency: {args.events:,} events, batch {BATCH}")
    print(
        f"on: Python {platform.python_version()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"SQLite {sqlite3.sqlite_version}, {platform.platform()}"
    )
    best: dict[str, dict[str, Any]] = {}
    wall_ratios, cpu_ratios = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.repeat):
            pair = {}
            order = (("features off", False), ("features on", True))
            # Each goes first in every other pair: what running first or second costs falls on both alike.
            for name, features in order if n % 2 == 0 else order[::-1]:
                with scratch_db(tmp, f"{name.replace(' ', '-')}-{n}") as path:
                    result = run(path, events, features=features)
                print(f"  run {n + 1}: {describe(name, result)}  cpu {result['cpu_s']:.2f} s")
                pair[name] = result
                if name not in best or result["elapsed_s"] < best[name]["elapsed_s"]:
                    best[name] = result
            assert pair["features on"]["outputs"] == pair["features off"]["outputs"]
            wall_ratios.append(pair["features on"]["elapsed_s"] / pair["features off"]["elapsed_s"])
            cpu_ratios.append(pair["features on"]["cpu_s"] / pair["features off"]["cpu_s"])
    print("best of each:")
    for name, result in best.items():
        print("  " + describe(name, result))
    best_ratio = best["features on"]["elapsed_s"] / best["features off"]["elapsed_s"]
    # This VM's speed drifts by tens of percent within minutes; a pair run back to back shares the drift, so the
    # median of the pairs' ratios is the steadier figure.
    print(f"features on cost, best against best: {100 * (best_ratio - 1):+.1f}%")
    print(f"features on cost, CPU time, median of pairs: {100 * (statistics.median(cpu_ratios) - 1):+.1f}%")
    print(
        f"features on cost, median of pairs: {100 * (statistics.median(wall_ratios) - 1):+.1f}% "
        f"(pairs from {100 * (min(wall_ratios) - 1):+.1f}% to {100 * (max(wall_ratios) - 1):+.1f}%; target: <= +10%)"
    )


if __name__ == "__main__":
    main()
