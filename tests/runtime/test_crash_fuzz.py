"""Seeded random crash-restart scenarios: real `eventbus run` workers on a SQLite log, killed with SIGKILL.

Each seed publishes a few hundred events over three partitions (and maybe a few undecodable records), draws an app
(`crash_fuzz_app`: one to three processors over the topic; one event at a time, concurrent, or in batches; sync or
async; idempotent or not; events that fail for a while, for good, or until the attempts run out; maybe a processor
that kills its own process once, in the middle of an event), then starts a worker and kills it (SIGKILL) one to four
times at random moments, starting it again each time, and finally runs it until idle. Then it checks what the
README promises for at-least-once processing:

- the group's committed offsets are the partitions' ends;
- each event a processor succeeds on took effect at least once (exactly once when idempotent) and was never
  dead-lettered; its output is in the log exactly once when the processor is idempotent, or alone and one event
  at a time (outputs and offsets commit in one transaction), at least once otherwise (another processor's
  waiting event may hold the offset before it);
- each event a processor gives up on is dead-lettered exactly once, with its error, and never took effect;
- an idempotent event whose worker died in the middle of it is *in doubt*: dead-lettered once as such, run at
  most once, emitting nothing; at most one event per killed process is in doubt;
- within one worker process, events took effect in offset order (per key for concurrent processors), each once;
- each undecodable record is dead-lettered exactly once; the journals of killed workers are folded and removed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventbus import Event, Publisher
from eventbus.backends.base import Message
from eventbus.backends.sqlite import SQLiteLog
from eventbus.errors import TopicNotFoundError
from eventbus.runtime.dead_letter import failure_of
from tests.conftest import PYTHON, REPO

pytestmark = pytest.mark.slow

PARTITIONS = 3
KEYS = 7
GROUP = "fuzz"


def _draw_processor(rng: random.Random, index: int, count: int) -> dict[str, Any]:
    batch = rng.random() < 0.25
    concurrent = not batch and rng.random() < 0.3
    spec: dict[str, Any] = {
        "name": f"p{index}",
        "kind": "batch" if batch else "each",
        "async": rng.random() < 0.3,
        "idempotent": not batch and not concurrent and rng.random() < 0.6,
        "concurrency": 3 if concurrent else 1,
        "max_attempts": rng.randint(1, 4),
        "delay_ms": rng.choice([2, 10, 30]),
        "breaker": rng.random() < 0.2,
        "batch_size": rng.choice([5, 20, 50]),
        "batch_window_ms": rng.choice([0, 10]),
        "bisect": rng.random() < 0.5,
    }
    failures: dict[str, list[Any]] = {}
    for n in range(count):
        if rng.random() >= (0.05 if batch else 0.12):
            continue
        if batch:
            failures[str(n)] = ["exhausted"]  # a batch reports (or bisects to) the events that fail: for good
            continue
        kinds = ["exhausted", "permanent"] + (["transient"] * 2 if spec["max_attempts"] > 1 else [])
        kind = rng.choice(kinds)
        failures[str(n)] = [kind, rng.randint(1, spec["max_attempts"] - 1)] if kind == "transient" else [kind]
    spec["failures"] = failures
    return spec


def _draw_plan(rng: random.Random, count: int, tmp_path: Path) -> dict[str, Any]:
    processors = [_draw_processor(rng, index, count) for index in range(rng.randint(1, 3))]
    # Each call sleeps (the call to the outside world): about 1 to 2.5 s of work in all, so kills land in the middle.
    busy_s = rng.uniform(1.0, 2.5)
    for spec in processors:
        spec["sleep_ms"] = busy_s * 1000 / count / len(processors)
    self_kill = None
    if rng.random() < 0.5:
        victim = rng.choice(processors)
        healthy = [n for n in range(count) if str(n) not in victim["failures"]]
        self_kill = {"processor": victim["name"], "n": rng.choice(healthy), "after_effect": rng.random() < 0.5}
    return {
        "partitions": PARTITIONS,
        "processors": processors,
        "self_kill": self_kill,
        "effects": str(tmp_path / "effects.txt"),
        "marker": str(tmp_path / "self-killed"),
    }


@dataclass
class Run:
    """How the worker processes of a scenario went."""

    url: str
    env: dict[str, str]
    options: list[str]
    logs: Path
    started: int = 0
    killed: int = 0  # processes that died of SIGKILL, from outside or by their own hand
    self_killed: int = 0
    schedule: list[str] = field(default_factory=list)  # how each worker before the last was to be killed

    def start(self, *extra: str, die: str = "") -> tuple[subprocess.Popen[bytes], Path]:
        self.started += 1
        path = self.logs / f"worker-{self.started}.stderr"
        with open(path, "wb") as stderr:
            worker = subprocess.Popen(
                [
                    PYTHON,
                    "-m",
                    "eventbus",
                    "--log-level",
                    "WARNING",
                    "run",
                    "tests.runtime.crash_fuzz_app",
                    "--broker",
                    self.url,
                    *self.options,
                    *extra,
                ],
                cwd=REPO,
                env={**self.env, "EVENTBUS_FUZZ_DIE": die},
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        return worker, path

    def ended(self, worker: subprocess.Popen[bytes], path: Path, *, by_us: bool) -> None:
        """Account for a worker that has exited: SIGKILL (ours, or its own), else it must have finished cleanly."""
        text = path.read_text(errors="replace")
        if worker.returncode == -signal.SIGKILL:
            self.killed += 1
            if not by_us:
                self.self_killed += 1
            return
        assert worker.returncode == 0, f"worker {path.name} exited with {worker.returncode}:\n{text}"


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _kill_at_random_moments(run: Run, rng: random.Random, kills: int, effects: Path, work: int) -> None:
    """Start the worker and have it killed (SIGKILL), ``kills`` times, each time in one of three ways:

    - from outside, once the worker has had a random number of side effects (of about ``work`` in all), then a
      random moment more: tied to progress rather than to the clock alone, a seed plays out much the same way
      from run to run (a worker with nothing left to do is killed after 2 s);
    - by its own hand, in the middle of its N-th side effect, or just before its N-th commit lands: these play
      out the same way every time."""
    for _ in range(kills):
        how = rng.choice(["outside", "effect", "commit"])
        run.schedule.append(how)
        if how == "outside":
            worker, path = run.start()
            target = _lines(effects) + rng.randint(1, max(1, work // kills))
            deadline = time.monotonic() + 2.0
            while _lines(effects) < target and time.monotonic() < deadline and worker.poll() is None:
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.03))
        else:
            at = rng.randint(1, max(1, work // kills)) if how == "effect" else rng.randint(1, 12)
            run.schedule[-1] = f"{how}:{at}"
            worker, path = run.start(die=run.schedule[-1])
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline and worker.poll() is None:
                time.sleep(0.005)
        by_us = worker.poll() is None
        if by_us:
            worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        run.ended(worker, path, by_us=by_us)


def _finish(run: Run) -> None:
    for _ in range(3):  # a processor may kill its own process once more on the way
        worker, path = run.start("--until-idle")
        worker.wait(timeout=120)
        run.ended(worker, path, by_us=False)
        if worker.returncode == 0:
            return
    raise AssertionError("the worker did not run to idle")


def _read_all(log: SQLiteLog, topic: str) -> list[tuple[int, int, bytes | None, dict[str, str]]]:
    """(partition, offset, value, failure headers) of every record of ``topic``; none if it does not exist."""
    try:
        states = log.watermarks(topic)
    except TopicNotFoundError:
        return []
    return [
        (record.partition, record.offset, record.value, failure_of(record.headers))
        for state in states
        for record in log.read(topic, state.partition, 0, 1_000_000).records()
    ]


def _scenario(seed: int, tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    rng = random.Random(seed)
    count = rng.randint(200, 400)
    plan = _draw_plan(rng, count, tmp_path)
    plan_path = tmp_path / "plan.json"
    plan_path.write_bytes(orjson.dumps(plan))
    db = tmp_path / "fuzz.db"
    url = f"sqlite:///{db}"
    events = [
        Event("fuzz.start", {"n": n}, id=f"s{seed}-e{n}", partitionkey=f"k{rng.randrange(KEYS)}") for n in range(count)
    ]
    undecodable = rng.randint(0, 2)
    with Publisher(url) as publisher:
        publisher.log.create_topic("in", PARTITIONS)
        cut = rng.randint(0, count)
        publisher.publish_many("in", events[:cut])
        for _ in range(undecodable):
            publisher.log.append("in", [Message(b"not json", partition=rng.randrange(PARTITIONS))])
        publisher.publish_many("in", events[cut:])

    options = ["--max-poll-records", str(rng.choice([5, 20, 100]))]
    if rng.random() < 0.3:
        options += ["--commit-interval-ms", "20"]
    run = Run(url, {**subprocess_env, "EVENTBUS_FUZZ_PLAN": str(plan_path)}, options, tmp_path)
    effects_path = Path(plan["effects"])
    _kill_at_random_moments(run, rng, rng.randint(1, 4), effects_path, count * len(plan["processors"]))
    _finish(run)

    log = SQLiteLog(db)
    try:
        _check(plan, log, count, undecodable, run, effects_path, tmp_path)
    finally:
        log.close()


def _check(
    plan: dict[str, Any], log: SQLiteLog, count: int, undecodable: int, run: Run, effects_path: Path, tmp_path: Path
) -> None:
    """Assert the guarantees."""
    context = f"plan: {orjson.dumps({**plan, 'processors': [p['name'] for p in plan['processors']]}).decode()}"
    context += f"; {run.started} processes, {run.killed} killed ({run.self_killed} by their own hand), "
    context += f"kills planned: {run.schedule}"
    ends = {state.partition: state.end_offset for state in log.watermarks("in")}
    assert log.committed(GROUP, "in") == ends, f"committed offsets at the partitions' ends; {context}"

    where: dict[int, tuple[int, int, str]] = {}  # n -> (partition, offset, key)
    for partition, offset, value, _ in _read_all(log, "in"):
        if value != b"not json":
            attrs = orjson.loads(value or b"")
            where[attrs["data"]["n"]] = (partition, offset, attrs["partitionkey"])
    assert len(where) == count

    effects: Counter[tuple[str, int]] = Counter()
    by_process: dict[tuple[str, str], list[int]] = defaultdict(list)  # (processor, pid) -> n, in order of effect
    for line in effects_path.read_text().splitlines():
        name, n, pid = line.split()
        effects[name, int(n)] += 1
        by_process[name, pid].append(int(n))

    poison_topic = f"{plan['processors'][0]['name']}.dlq" if len(plan["processors"]) == 1 else "in.dlq"
    poison_letters = [v for _, _, v, f in _read_all(log, poison_topic) if f.get("processor") == "(decoder)"]
    assert poison_letters == [b"not json"] * undecodable, f"each undecodable record dead-lettered once; {context}"

    in_doubt = 0
    for spec in plan["processors"]:
        in_doubt += _check_processor(spec, plan, log, count, effects, context)
        _check_order(spec, by_process, where, context)
    assert in_doubt <= run.killed, f"at most one event in doubt per killed worker ({in_doubt}); {context}"

    store = tmp_path / "fuzz.idempotency"
    if store.exists():
        journals = sorted(p for p in os.listdir(store) if p.startswith("journal-"))
        assert journals == [], f"the journals of killed workers are folded and removed: {journals}; {context}"
        # Adopted records are deleted once their keys are committed; a file left would hold a key whose event does
        # not come back: one a dead worker had committed already.
        adopted = sorted(p for p in os.listdir(store) if p.startswith("adopted-"))
        assert adopted == [], f"adopted records are settled: {adopted}; {context}"


def _check_processor(
    spec: dict[str, Any],
    plan: dict[str, Any],
    log: SQLiteLog,
    count: int,
    effects: Counter[tuple[str, int]],
    ctx: str,
) -> int:
    """Check one processor's effects, outputs and dead letters; returns how many of its events were in doubt."""
    name = spec["name"]
    dead: dict[int, list[dict[str, str]]] = defaultdict(list)
    for _, _, value, failure in _read_all(log, f"{name}.dlq"):
        if failure.get("processor") == name:
            dead[orjson.loads(value or b"")["data"]["n"]].append(failure)
    outputs: Counter[int] = Counter()
    for _, _, value, _ in _read_all(log, f"{name}-out"):
        outputs[orjson.loads(value or b"")["data"]["n"]] += 1
    kill = plan["self_kill"]
    # Alone, in order: the offset committed with an output is past its event, and nothing past a waiting event runs.
    alone = len(plan["processors"]) == 1 and spec["concurrency"] == 1
    in_doubt = 0
    for n in range(count):
        failure = spec["failures"].get(str(n))
        gives_up = failure is not None and failure[0] != "transient"
        letters, took_effect, emitted = dead[n], effects[name, n], outputs[n]
        about = f"{name}: event {n} (failure {failure}, {spec['kind']}, idempotent {spec['idempotent']}): "
        about += f"{took_effect} effect(s), {emitted} output(s), dead letters {[f['error.class'] for f in letters]}"
        doubted = [f for f in letters if f["error.class"].endswith("InDoubtError")]
        died_in_it = kill is not None and (kill["processor"], kill["n"]) == (name, n) and spec["idempotent"]
        assert doubted or not died_in_it, f"{about}: its worker died in the middle of it: it is in doubt; {ctx}"
        if doubted:
            assert spec["idempotent"], f"{about}: in doubt, but not idempotent; {ctx}"
            assert len(letters) == 1, f"{about}: an event in doubt is dead-lettered once; {ctx}"
            assert took_effect <= 1, f"{about}: an event in doubt ran twice; {ctx}"
            assert emitted == 0, f"{about}: an event in doubt emitted; {ctx}"
            in_doubt += 1
            continue
        if gives_up:
            _check_given_up(spec, failure, letters, took_effect, emitted, f"{about}; {ctx}")
            continue
        assert letters == [], f"{about}: it succeeded, yet it was dead-lettered; {ctx}"
        if spec["idempotent"]:
            assert took_effect == 1, f"{about}: an idempotent event takes effect exactly once; {ctx}"
        else:
            assert took_effect >= 1, f"{about}: every event takes effect at least once; {ctx}"
        if spec["kind"] != "each":
            continue
        if spec["idempotent"] or alone:
            assert emitted == 1, f"{about}: its output is emitted exactly once; {ctx}"
        else:
            # Another processor's failure (or another key's, with concurrency) can hold the group's offset before
            # an event whose output is committed: after a crash it runs again, and emits again.
            assert emitted >= 1, f"{about}: its output is emitted at least once; {ctx}"
    return in_doubt


def _check_given_up(
    spec: dict[str, Any], failure: list[Any], letters: list[dict[str, str]], took_effect: int, emitted: int, about: str
) -> None:
    """An event the processor gives up on: dead-lettered exactly once, with its error, and no effect."""
    assert len(letters) == 1, f"given up, it is dead-lettered exactly once: {about}"
    assert took_effect == 0, f"given up, yet it took effect: {about}"
    assert emitted == 0, f"given up, yet it emitted: {about}"
    [letter] = letters
    attempts = int(letter["attempts"])
    if spec["kind"] == "batch":
        # The events a batch call reported fail together: each with the attempts of the batch's head.
        assert 1 <= attempts <= spec["max_attempts"], f"attempts {attempts}: {about}"
    elif failure[0] == "permanent":
        assert letter["error.class"].endswith("PermanentError"), about
        assert attempts == 1, f"a permanent failure is not retried ({attempts} attempts): {about}"
    else:
        assert letter["error.class"] == "ConnectionError", about
        assert attempts == spec["max_attempts"], f"given up after {attempts} attempts: {about}"


def _check_order(
    spec: dict[str, Any],
    by_process: dict[tuple[str, str], list[int]],
    where: dict[int, tuple[int, int, str]],
    ctx: str,
) -> None:
    """Within one worker process, a one-at-a-time processor's events took effect once each, in offset order per
    partition (per key, for a concurrent processor). Batches are left out: a batch item failure report sends the
    events after the first failed one round again."""
    if spec["kind"] != "each":
        return
    for (name, pid), numbers in by_process.items():
        if name != spec["name"]:
            continue
        repeated = [n for n, times in Counter(numbers).items() if times > 1]
        assert repeated == [], f"{name}: events {repeated} took effect twice in process {pid}; {ctx}"
        streams: dict[tuple[int, str], list[int]] = defaultdict(list)
        for n in numbers:
            partition, offset, key = where[n]
            streams[partition, key if spec["concurrency"] > 1 else ""].append(offset)
        for stream, offsets in streams.items():
            assert offsets == sorted(offsets), f"{name}: {stream} out of order in process {pid}: {offsets}; {ctx}"


def test_two_crashes_in_a_row_emit_an_idempotent_processors_outputs_once(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    """Deterministic: p0 (idempotent) emits one output per event; p1's first call on event 0 fails in each process
    (retried 300 ms later), holding the group's offset at 0.

    1. A worker polls events 0-3: p0 handles them all; it dies just before that round's commit lands.
    2. The next adopts p0's done records and polls two events at a time: it emits p0's outputs of 0 and 1 again and
       commits them (offset still 0), then dies just before its second commit (outputs of 2 and 3).
    3. The last runs to idle: p0's outputs of 0 and 1 are in the log once already, and must not be emitted again."""
    spec: dict[str, Any] = {
        "kind": "each",
        "async": False,
        "concurrency": 1,
        "delay_ms": 300,
        "jitter": "none",
        "breaker": False,
        "sleep_ms": 0,
    }
    plan = {
        "partitions": 1,
        "processors": [
            {**spec, "name": "p0", "idempotent": True, "max_attempts": 1, "failures": {}},
            {**spec, "name": "p1", "idempotent": False, "max_attempts": 2, "failures": {"0": ["transient", 1]}},
        ],
        "self_kill": None,
        "effects": str(tmp_path / "effects.txt"),
        "marker": str(tmp_path / "self-killed"),
    }
    plan_path = tmp_path / "plan.json"
    plan_path.write_bytes(orjson.dumps(plan))
    db = tmp_path / "fuzz.db"
    with Publisher(f"sqlite:///{db}") as publisher:
        publisher.log.create_topic("in", 1)
        publisher.publish_many("in", [Event("fuzz.start", {"n": n}, id=f"e{n}") for n in range(4)])
    env = {**subprocess_env, "EVENTBUS_FUZZ_PLAN": str(plan_path)}
    for poll, extra, die in [("4", (), "commit:1"), ("2", (), "commit:2"), ("2", ("--until-idle",), "")]:
        run = Run(f"sqlite:///{db}", env, ["--max-poll-records", poll], tmp_path)
        worker, path = run.start(*extra, die=die)
        worker.wait(timeout=60)
        assert worker.returncode == (0 if not die else -signal.SIGKILL), path.read_text(errors="replace")

    log = SQLiteLog(db)
    try:
        outputs = Counter(orjson.loads(v or b"")["data"]["n"] for _, _, v, _ in _read_all(log, "p0-out"))
        assert log.committed(GROUP, "in") == {0: 4}
    finally:
        log.close()
    effects = Counter(line.split()[:2][1] for line in (tmp_path / "effects.txt").read_text().splitlines())
    assert effects == {"0": 2, "1": 2, "2": 2, "3": 2}, "p0 ran each event once, p1 too (it is not idempotent)"
    assert outputs == {0: 1, 1: 1, 2: 1, 3: 1}, "each of p0's outputs is in the log once"


def test_a_worker_killed_just_after_its_commit_landed_emits_nothing_twice(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    """Deterministic: p0 (idempotent) emits one output per event; p1's first call on event 0 fails in each process
    (retried 300 ms later), holding the group's offset at 0.

    1. A worker polls events 0-3: p0 handles them all; its commit lands (p0's outputs, offset still 0), and it is
       killed before it hears so: its journal still holds p0's done records, which no key segment has.
    2. The next runs to idle: events 0-3 come back. p0's outputs are in the log once already, and must not be
       emitted again."""
    spec: dict[str, Any] = {
        "kind": "each",
        "async": False,
        "concurrency": 1,
        "delay_ms": 300,
        "jitter": "none",
        "breaker": False,
        "sleep_ms": 0,
    }
    plan = {
        "partitions": 1,
        "processors": [
            {**spec, "name": "p0", "idempotent": True, "max_attempts": 1, "failures": {}},
            {**spec, "name": "p1", "idempotent": False, "max_attempts": 2, "failures": {"0": ["transient", 1]}},
        ],
        "self_kill": None,
        "effects": str(tmp_path / "effects.txt"),
        "marker": str(tmp_path / "self-killed"),
    }
    plan_path = tmp_path / "plan.json"
    plan_path.write_bytes(orjson.dumps(plan))
    db = tmp_path / "fuzz.db"
    with Publisher(f"sqlite:///{db}") as publisher:
        publisher.log.create_topic("in", 1)
        publisher.publish_many("in", [Event("fuzz.start", {"n": n}, id=f"e{n}") for n in range(4)])
    env = {**subprocess_env, "EVENTBUS_FUZZ_PLAN": str(plan_path)}
    for poll, extra, die in [("4", (), "landed:1"), ("4", ("--until-idle",), "")]:
        run = Run(f"sqlite:///{db}", env, ["--max-poll-records", poll], tmp_path)
        worker, path = run.start(*extra, die=die)
        worker.wait(timeout=60)
        assert worker.returncode == (0 if not die else -signal.SIGKILL), path.read_text(errors="replace")

    log = SQLiteLog(db)
    try:
        outputs = Counter(orjson.loads(v or b"")["data"]["n"] for _, _, v, _ in _read_all(log, "p0-out"))
        assert log.committed(GROUP, "in") == {0: 4}
    finally:
        log.close()
    lines = [line.split() for line in (tmp_path / "effects.txt").read_text().splitlines()]
    assert Counter(n for name, n, _ in lines if name == "p0") == {"0": 1, "1": 1, "2": 1, "3": 1}, "p0 ran each once"
    assert outputs == {0: 1, 1: 1, 2: 1, 3: 1}, "each of p0's outputs is in the log once"


SEEDS = range(24)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_crashes_keep_the_at_least_once_guarantees(
    tmp_path: Path, subprocess_env: dict[str, str], seed: int
) -> None:
    _scenario(seed, tmp_path, subprocess_env)
