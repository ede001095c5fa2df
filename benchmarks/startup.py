"""Start-up: seconds from launching `eventbus run` to its first event processed and committed.

One event waits in a topic of a SQLite log; the benchmark launches ``python -m eventbus run MODULE`` and reads its
log until the line the worker writes once its first round is committed, then stops it with SIGTERM.
Baseline in the same run: a bare ``python -c pass`` (the interpreter's own floor) and ``python -c "import
eventbus"``.

usage: python benchmarks/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from eventbus import Event, Publisher  # noqa: E402

MODULE = """
from eventbus import App, Event

app = App("startup")


@app.processor("orders", types="order.placed", to="confirmations")
def confirm(event: Event) -> Event:
    return Event("order.confirmed", {"order_id": event.data["order_id"]})
"""


def time_to_first_event(workdir: Path, env: dict[str, str]) -> float:
    db_path = workdir / "startup.db"
    db_path.unlink(missing_ok=True)
    with Publisher(f"sqlite:///{db_path}") as publisher:
        publisher.publish("orders", Event("order.placed", {"order_id": "o-1"}))
    started = time.perf_counter()
    worker = subprocess.Popen(
        [sys.executable, "-m", "eventbus", "run", "startup_app", "--broker", f"sqlite:///{db_path}"],
        cwd=workdir,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stderr is not None
    try:
        for line in worker.stderr:
            if "first round committed" in line:
                return time.perf_counter() - started
        raise RuntimeError(f"the worker exited with {worker.wait()} before processing")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)


def time_command(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True)
    return time.perf_counter() - started


def summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"{name:<34} median {statistics.median(samples):.3f} s  p99 {p99:.3f} s  ({len(samples)} runs)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("EVENTBUS_BROKER", None)
    print(f"start-up of `eventbus run` to the first committed event, SQLite log, {args.runs} runs")
    print(f"on: Python {platform.python_version()} {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "startup_app.py").write_text(MODULE)
        time_to_first_event(workdir, env)  # warm the file cache and bytecode once
        ours = [time_to_first_event(workdir, env) for _ in range(args.runs)]
        bare = [time_command([sys.executable, "-c", "pass"], env, workdir) for _ in range(args.runs)]
        imported = [time_command([sys.executable, "-c", "import eventbus"], env, workdir) for _ in range(args.runs)]
    print(summary("eventbus run -> first event", ours))
    print(summary("baseline: python -c pass", bare))
    print(summary("baseline: python -c 'import eventbus'", imported))
    print(
        f"eventbus run costs {statistics.median(ours) - statistics.median(bare):.3f} s above the bare interpreter"
        " (target: first event <= 0.3 s)"
    )


if __name__ == "__main__":
    main()
