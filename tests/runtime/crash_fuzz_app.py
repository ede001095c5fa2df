"""The app `test_crash_fuzz` runs in worker subprocesses, built from the plan (JSON) in the file named by
``EVENTBUS_FUZZ_PLAN``.

Every processor reads topic ``in``. Each plan names how its events behave, by event number (``data.n``):
``["transient", k]`` fails with ConnectionError on the first k calls of each worker process (k is less than the
processor's ``max_attempts``, so the event succeeds in every process), ``["exhausted"]`` always fails with
ConnectionError, ``["permanent"]`` always fails with PermanentError (never retried). A batch processor reports the
events that fail in `BatchItemFailures` or, with ``bisect``, raises.

A call that succeeds appends ``<processor> <n> <pid>`` to the effects file (one `os.write` of one line on an
``O_APPEND`` file: never torn, and in the page cache when a SIGKILL comes). One-at-a-time processors also emit one
event to ``<processor>-out``.

``self_kill``: on its first call on event ``n`` (across processes: a marker file says it happened), processor
``processor`` kills its own process with SIGKILL, before or after its side effect.

``EVENTBUS_FUZZ_DIE`` (per process): ``effect:N`` kills the process (SIGKILL) right after its N-th side effect, in
the middle of that call; ``commit:N`` kills it just before its N-th commit lands (outputs and offsets of the round
written by the log in one transaction); ``landed:N`` right after it landed, before the worker heard of it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from typing import Any

import orjson

from eventbus import App, BatchItemFailures, CircuitBreaker, Event, Idempotency, Retry
from eventbus.backends.sqlite import SQLiteLog


class PermanentError(ValueError):
    """A failure the processors' retry policy does not retry."""


with open(os.environ["EVENTBUS_FUZZ_PLAN"], "rb") as plan_file:
    PLAN: dict[str, Any] = orjson.loads(plan_file.read())

_effects_fd = os.open(PLAN["effects"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
_calls: Counter[tuple[str, int]] = Counter()  # per (processor, n), in this process

app = App("fuzz")
app.topic("in", partitions=PLAN["partitions"])


_die_when, _, _die_at = os.environ.get("EVENTBUS_FUZZ_DIE", "").partition(":")
_counts: Counter[str] = Counter()  # effects and commits of this process


def _count(what: str) -> None:
    _counts[what] += 1
    if _die_when == what and _counts[what] == int(_die_at):
        os.kill(os.getpid(), signal.SIGKILL)


def _effect(name: str, n: int) -> None:
    os.write(_effects_fd, f"{name} {n} {os.getpid()}\n".encode())
    _count("effect")


if _die_when == "commit":
    _commit_owned = SQLiteLog.commit_owned

    def _commit_or_die(self: SQLiteLog, *args: Any, **kwargs: Any) -> Any:
        _count("commit")
        return _commit_owned(self, *args, **kwargs)

    SQLiteLog.commit_owned = _commit_or_die  # type: ignore[method-assign]

if _die_when == "landed":
    _commit_owned_then = SQLiteLog.commit_owned

    def _commit_then_die(self: SQLiteLog, *args: Any, **kwargs: Any) -> Any:
        result = _commit_owned_then(self, *args, **kwargs)
        _count("landed")
        return result

    SQLiteLog.commit_owned = _commit_then_die  # type: ignore[method-assign]


def _maybe_kill_myself(name: str, n: int, *, after_effect: bool) -> None:
    kill = PLAN["self_kill"]
    if kill is None or kill["processor"] != name or kill["n"] != n or kill["after_effect"] != after_effect:
        return
    try:
        os.close(os.open(PLAN["marker"], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        return  # it happened in an earlier process
    os.kill(os.getpid(), signal.SIGKILL)


def _fails_now(spec: dict[str, Any], n: int) -> BaseException | None:
    """Whether this call of the processor on event ``n`` fails, and with what; counts the call."""
    name = spec["name"]
    _calls[name, n] += 1
    failure = spec["failures"].get(str(n))
    if failure is None:
        return None
    if failure[0] == "permanent":
        return PermanentError(f"{name}: event {n} fails for good")
    if failure[0] == "exhausted" or _calls[name, n] <= failure[1]:
        return ConnectionError(f"{name}: event {n} fails")
    return None


def _one(spec: dict[str, Any], event: Event) -> Event:
    name = spec["name"]
    n = event.data["n"]
    error = _fails_now(spec, n)
    time.sleep(spec["sleep_ms"] / 1000)  # the call to the outside world
    if error is not None:
        raise error
    _maybe_kill_myself(name, n, after_effect=False)
    _effect(name, n)
    _maybe_kill_myself(name, n, after_effect=True)
    return Event("fuzz.done", {"n": n, "by": name})


def _batch(spec: dict[str, Any], events: list[Event]) -> BatchItemFailures | None:
    name = spec["name"]
    failed = [e.id for e in events if _fails_now(spec, e.data["n"]) is not None]
    time.sleep(spec["sleep_ms"] * len(events) / 1000)
    if failed and spec["bisect"]:
        raise ConnectionError(f"{name}: {len(failed)} event(s) of the batch fail")
    for event in events:
        if event.id not in failed:
            n = event.data["n"]
            _maybe_kill_myself(name, n, after_effect=False)
            _effect(name, n)
            _maybe_kill_myself(name, n, after_effect=True)
    return BatchItemFailures(failed) if failed else None


def _declare(spec: dict[str, Any]) -> None:
    name = spec["name"]
    options: dict[str, Any] = {
        "name": name,
        "retry": Retry(
            max_attempts=spec["max_attempts"],
            initial_delay_ms=spec["delay_ms"],
            max_delay_ms=spec["delay_ms"] * 4,
            jitter=spec.get("jitter", "full"),
            no_retry_on=(PermanentError,),
        ),
        "dead_letter_topic": f"{name}.dlq",
    }
    if spec["breaker"]:
        options["breaker"] = CircuitBreaker(f"{name}-dependency", failure_threshold=3, open_s=0.02)
    if spec["kind"] == "batch":
        options.update(batch_size=spec["batch_size"], batch_window_ms=spec["batch_window_ms"])
        options["bisect_on_error"] = spec["bisect"]
        if spec["async"]:

            async def handle_batch_async(events: list[Event]) -> BatchItemFailures | None:
                await asyncio.sleep(0)
                return _batch(spec, events)

            app.processor("in", **options)(handle_batch_async)
        else:

            def handle_batch(events: list[Event]) -> BatchItemFailures | None:
                return _batch(spec, events)

            app.processor("in", **options)(handle_batch)
        return
    options["to"] = f"{name}-out"
    if spec["idempotent"]:
        options["idempotency"] = Idempotency()
    if spec["concurrency"] > 1:
        options.update(concurrency=spec["concurrency"], ordering="key")
    if spec["async"]:

        async def handle_async(event: Event) -> Event:
            await asyncio.sleep(0)
            return _one(spec, event)

        app.processor("in", **options)(handle_async)
    else:

        def handle(event: Event) -> Event:
            return _one(spec, event)

        app.processor("in", **options)(handle)


for _spec in PLAN["processors"]:
    _declare(_spec)
