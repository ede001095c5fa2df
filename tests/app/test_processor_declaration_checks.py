"""Processor declarations that could never work are refused when the module is imported, naming the function and
the culprit; declarations that work are still accepted. Where the mistake used to show only at run time, the real
worker (`eventbus run` on an SQLite file) shows the difference."""

from __future__ import annotations

import functools
import re
import subprocess
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import pytest

from eventbus import App, BatchItemFailures, CircuitBreaker, Context, Event, event_type
from eventbus.errors import ConfigurationError
from eventbus.testing import TestBus
from tests.conftest import PYTHON


@event_type("thing.happened", topic="things")
@dataclass
class ThingHappened:
    name: str


@dataclass
class NotBound:
    name: str


class Report(TypedDict):
    batchItemFailures: list[dict[str, str]]


def _declare(func: Callable[..., Any], **options: Any) -> App:
    app = App("t")
    app.processor("in", **options)(func)
    return app


# -- return annotations ----------------------------------------------------------------------------------------


def _returns_dict(event: Event) -> dict[str, Any]:
    return {}


def _returns_str(event: Event) -> str:
    return ""


def _returns_unbound(event: Event) -> NotBound:
    return NotBound("x")


def _returns_list_of_str(event: Event) -> list[str]:
    return []


def _returns_report_one_at_a_time(event: Event) -> BatchItemFailures:
    return BatchItemFailures([])


def _returns_list_with_none(event: Event) -> list[Event | None]:
    return []


@pytest.mark.parametrize(
    ("func", "culprit"),
    [
        (_returns_dict, "names a dict"),
        (_returns_str, "names 'str'"),
        (_returns_unbound, "names 'NotBound', a class not bound with @event_type"),
        (_returns_list_of_str, "'list\\[str\\]' names 'str'"),
        (_returns_report_one_at_a_time, "BatchItemFailures, which only batch processors return"),
        (_returns_list_with_none, "None as an item of a list"),
    ],
)
def test_a_return_annotation_naming_what_cannot_be_emitted_is_refused(func: Callable[..., Any], culprit: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"processor '{func.__name__}' \(.*{func.__name__}\): .*{culprit}"):
        _declare(func, to="out")


def test_return_annotations_that_can_be_emitted_are_accepted() -> None:
    app = App("t")

    @app.processor("in", to="out")
    def one(event: Event) -> Event | None: ...

    @app.processor("in", to="out")
    def typed(event: Event) -> ThingHappened: ...

    @app.processor("in", to="out")
    def many(event: Event) -> list[Event | ThingHappened]: ...

    @app.processor("in", to="out")
    def generated(event: Event) -> Iterator[Event]: ...

    @app.processor("in", to="out")
    def anything(event: Event) -> Any: ...

    @app.processor("in", to="out")
    def a_tuple(event: Event) -> tuple[Event, ...]: ...

    @app.processor("in", to="out")
    def a_bare_list(event: Event) -> list: ...  # type: ignore[type-arg]

    @app.processor("in", batch_size=10)
    def report(events: list[Event]) -> BatchItemFailures | None: ...

    @app.processor("in", batch_size=10)
    def lambda_report(events: list[Event]) -> dict[str, object]: ...

    @app.processor("in", batch_size=10)
    def typed_report(events: list[Event]) -> Report: ...

    @app.processor("in", batch_size=10, to="out")
    def batch_out(events: Sequence[Event]) -> list[Event]: ...

    assert len(app.processors) == 11


@event_type("thing.unplaced")
@dataclass
class Unplaced:
    n: int


@pytest.mark.parametrize(
    ("annotation", "culprit"),
    [
        (Event, "it returns an Event but names no topic"),
        (Event | None, "it returns an Event but names no topic"),
        (list[Event], "it returns an Event but names no topic"),
        (Iterator[Unplaced], "it returns Unplaced (bound with no topic) but names no topic"),
    ],
    ids=["event", "optional", "list", "unplaced-class"],
)
def test_events_returned_with_nowhere_to_go_are_refused(annotation: Any, culprit: str) -> None:
    def nowhere(event: Event) -> None: ...

    nowhere.__annotations__["return"] = annotation
    with pytest.raises(ConfigurationError, match=rf"nowhere\): {re.escape(culprit)} for it: pass to="):
        App("t").processor("in")(nowhere)


def test_events_returned_to_a_topic_or_of_a_class_bound_to_one_are_accepted() -> None:
    app = App("t")

    @app.processor("in")
    def bound(event: Event) -> list[ThingHappened]: ...

    @app.processor("in", to="out")
    def routed(event: Event) -> Event: ...

    @app.processor("in")
    def nothing(event: Event) -> None: ...

    assert len(app.processors) == 3


# -- options and signatures ------------------------------------------------------------------------------------


def _handler(event: Event) -> None: ...


def test_types_that_are_not_strings_are_refused_naming_the_processor() -> None:
    with pytest.raises(ConfigurationError, match=r"processor '_handler' .*types must be .* got 5"):
        _declare(_handler, types=5)


@pytest.mark.parametrize("name", ["", 5])
def test_a_name_that_is_not_a_non_empty_string_is_refused(name: object) -> None:
    with pytest.raises(
        ConfigurationError, match=rf"processor '_handler' .*name must be a non-empty string, got {name!r}"
    ):
        _declare(_handler, name=name)


def test_a_required_keyword_only_parameter_is_refused() -> None:
    def needs_flag(event: Event, *, flag: bool) -> None: ...

    with pytest.raises(ConfigurationError, match=r"processor .*needs_flag.*keyword-only parameter\(s\) 'flag'"):
        _declare(needs_flag)


def test_keyword_only_parameters_with_defaults_are_accepted() -> None:
    def with_default(event: Event, ctx: Context, *, flag: bool = False, **extra: object) -> None: ...

    assert _declare(with_default).processors[0].wants_context


def test_callable_objects_are_refused_with_a_way_out() -> None:
    class Handler:
        def __call__(self, event: Event) -> None: ...

    def takes_two(prefix: str, event: Event) -> None: ...

    with pytest.raises(ConfigurationError, match=r"decorates a function .*got a .*Handler object; wrap it in one"):
        _declare(Handler())
    with pytest.raises(ConfigurationError, match=r"got functools.partial\(the function .*takes_two, \.\.\.\); wrap"):
        _declare(functools.partial(takes_two, "x"))


def test_bound_methods_and_decorated_functions_are_accepted() -> None:
    class Service:
        def handle(self, event: Event) -> None: ...

    def logged(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any) -> Any:
            return func(*args)

        return wrapper

    app = App("t")
    app.processor("in", name="method")(Service().handle)

    @app.processor("in")
    @logged
    def plain(event: Event) -> None: ...

    assert [p.is_async for p in app.processors] == [False, False]


def test_a_dead_letter_topic_it_reads_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"processor '_handler' .*dead_letter_topic 'in' is a topic it reads"):
        _declare(_handler, dead_letter_topic="in")
    app = App("t")
    with pytest.raises(ConfigurationError, match=r"processor 'two' .*dead_letter_topic 'other' is a topic it reads"):
        app.processor(["in", "other"], dead_letter_topic="other", name="two")(_handler)
    # Another processor may read the dead letters: it is not the one that gave up on them.
    app.processor("in", dead_letter_topic="failed", name="worker")(_handler)
    app.processor("failed", name="janitor")(_handler)
    assert [p.name for p in app.processors] == ["worker", "janitor"]


def test_processors_sharing_a_breaker_with_different_settings_are_refused() -> None:
    app = App("t")
    app.processor("in", name="a", breaker=CircuitBreaker("gateway", failure_threshold=2))(_handler)
    app.processor("in", name="b", breaker=CircuitBreaker("gateway", failure_threshold=2))(_handler)
    app.processor("in", name="c", breaker=CircuitBreaker("other", failure_threshold=9))(_handler)
    with pytest.raises(
        ConfigurationError, match=r"processor 'd' .* and processor 'a' .* share circuit breaker 'gateway'"
    ):
        app.processor("in", name="d", breaker=CircuitBreaker("gateway", failure_threshold=5))(_handler)
    # An unnamed breaker is named after its processor.
    app.processor("in", name="e", breaker=CircuitBreaker())(_handler)
    with pytest.raises(ConfigurationError, match="share circuit breaker 'e'"):
        app.processor("in", name="f", breaker=CircuitBreaker("e", open_s=1))(_handler)


# -- with the real worker ----------------------------------------------------------------------------------------


def _run(module: str, tmp_path: Path, env: dict[str, str], events: list[Event]) -> subprocess.CompletedProcess[str]:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    from eventbus.backends import open_log
    from eventbus.publisher import Publisher

    with open_log(url) as log:
        Publisher(log, source="/tests").publish_many("in", events)
    return subprocess.run(
        [PYTHON, "-m", "eventbus", "run", module, "--until-idle", "--broker", url],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )


def test_eventbus_run_refuses_a_dead_letter_loop_instead_of_running_it_forever(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    (tmp_path / "looping.py").write_text(
        textwrap.dedent(
            """
            from eventbus import App, Event, Retry

            app = App("looping")


            @app.processor("in", dead_letter_topic="in", retry=Retry(max_attempts=1))
            def fail(event: Event) -> None:
                raise ValueError("no")
            """
        )
    )
    result = _run("looping", tmp_path, subprocess_env, [Event("x", {})])
    assert result.returncode == 2, result.stderr
    assert "processor 'fail' (looping.fail): dead_letter_topic 'in' is a topic it reads" in result.stderr


DECORATED_ASYNC = """
import functools
import re

from eventbus import App, Event

app = App("decorated")


def traced(func):
    @functools.wraps(func)
    def wrapper(*args):
        return func(*args)

    return wrapper


@app.processor("in", to="out")
@traced
async def forward(event: Event) -> Event:
    return Event("forwarded", event.data)


@app.processor("in", batch_size=10, to="batches")
@traced
async def count(events: list[Event]) -> Event:
    return Event("counted", {"n": len(events)})
"""


def test_an_async_processor_under_a_sync_decorator_is_awaited_by_testbus_and_the_worker(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    (tmp_path / "decorated.py").write_text(DECORATED_ASYNC)
    inputs = [Event("x", {"n": n}) for n in range(3)]
    result = _run("decorated", tmp_path, subprocess_env, inputs)
    assert result.returncode == 0, result.stderr
    assert "0 dead-lettered" in result.stderr

    from eventbus.backends import open_log

    with open_log(f"sqlite:///{tmp_path / 'events.db'}") as log:
        on_sqlite = TestBus(log=log)
        assert on_sqlite.data("out") == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert on_sqlite.data("batches") == [{"n": 3}]
        assert on_sqlite.events("in.dlq") == []

    namespace: dict[str, Any] = {"__name__": "decorated_in_memory"}
    exec(compile(DECORATED_ASYNC, "decorated.py", "exec"), namespace)  # noqa: S102 - the module above, in process
    bus = TestBus()
    bus.publish("in", *inputs)
    bus.run(namespace["app"])
    assert bus.data("out") == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert bus.data("batches") == [{"n": 3}]
