"""Declaration mistakes that used to pass silently (or fail deep inside, or only at `eventbus run`) are refused
when they are written, with a `ConfigurationError` naming what was declared."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import pytest

from eventbus import App, CircuitBreaker, Context, Event, Idempotency, Retry
from eventbus.errors import ConfigurationError
from eventbus.projections import View
from eventbus.publisher import Publisher, publish_lines
from eventbus.testing import TestBus


def audit(event: Event) -> None: ...


# 1. decorators written without their parentheses


def test_a_processor_decorator_without_parentheses_is_refused() -> None:
    app = App("t")
    with pytest.raises(ConfigurationError, match=r"@app.processor needs the topic it reads.*audit\)"):
        app.processor(audit)  # type: ignore[arg-type]
    assert app.processors == ()


def test_a_projection_on_without_parentheses_is_refused() -> None:
    balances = App("t").projection("balances", topics="accounts")

    def opened(event: Event, view: Any) -> None: ...

    with pytest.raises(ConfigurationError, match=r"projection 'balances': \.on needs parentheses.*opened\)"):
        balances.on(opened)  # type: ignore[arg-type]
    assert balances.handlers == {}


# 2. topics that are not topic names


@pytest.mark.parametrize("topics", [None, 42, [None], ["orders", 3], {"orders": 1}, b"orders"])
def test_processor_topics_that_are_not_names_are_refused_naming_the_processor(topics: object) -> None:
    with pytest.raises(ConfigurationError, match=r"processor 'audit' \(.*audit\): .*topic"):
        App("t").processor(topics)(audit)  # type: ignore[arg-type]


@pytest.mark.parametrize("topics", [None, 42, [None], ("accounts", ""), {"accounts": 1}])
def test_projection_topics_that_are_not_names_are_refused_naming_the_projection(topics: object) -> None:
    with pytest.raises(ConfigurationError, match=r"projection 'balances': .*topic"):
        App("t").projection("balances", topics=topics)  # type: ignore[arg-type]


def test_lists_tuples_and_sets_of_topics_still_work() -> None:
    app = App("t")
    app.processor(["a", "b"], name="one")(audit)
    app.processor(("a",), name="two")(audit)
    app.processor(frozenset({"c"}), name="three")(audit)
    assert [p.topics for p in app.processors] == [("a", "b"), ("a",), ("c",)]
    assert app.projection("p", topics=["a", "b"]).topics == ("a", "b")


def test_an_empty_projection_topic_list_is_still_refused() -> None:
    with pytest.raises(ConfigurationError, match="projection 'p': give it at least one topic"):
        App("t").projection("p", topics=[])


# 3. store URLs open_store will not take


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("foo://x", "store foo://x: unknown store URL scheme"),
        ("projections.db", "store projections.db: unknown store URL scheme"),
        ("sqlite://host/x.db", "a SQLite store URL looks like sqlite:///projections.db"),
        ("sqlite:///", "a SQLite store URL looks like"),
        ("mysql://user:hunter2@db/x", "store mysql://user:***@db/x: unknown store URL scheme"),
        (42, "store must be a store URL, got 42"),
        ("", "store must be a store URL, got ''"),
    ],
)
def test_a_bad_store_url_is_refused_at_declaration(store: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=r"projection 'balances'") as raised:
        App("t").projection("balances", topics="accounts", store=store)  # type: ignore[arg-type]
    assert message in str(raised.value)
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    "store", ["sqlite:///p.db", "sqlite:////abs/p.db", "postgresql://u:p@h:5432/db", "postgres://h/db", "SQLITE:///x"]
)
def test_store_urls_open_store_takes_are_accepted(store: str) -> None:
    assert App("t").projection("balances", topics="accounts", store=store).store == store


# 4. numbers that are not finite


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("parameter", ["initial_delay_ms", "max_delay_ms", "multiplier", "max_event_age_s"])
def test_retry_refuses_non_finite_numbers(parameter: str, value: float) -> None:
    with pytest.raises(ConfigurationError, match=rf"Retry: {parameter} must be a finite number"):
        Retry(**{parameter: value})


@pytest.mark.parametrize("value", [math.nan, math.inf])
@pytest.mark.parametrize("parameter", ["window_s", "open_s"])
def test_circuit_breaker_refuses_non_finite_numbers(parameter: str, value: float) -> None:
    with pytest.raises(ConfigurationError, match=rf"CircuitBreaker: {parameter} must be a finite number"):
        CircuitBreaker("cb", **{parameter: value})


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_idempotency_refuses_non_finite_numbers(value: float) -> None:
    with pytest.raises(ConfigurationError, match="Idempotency: ttl_s must be a finite number"):
        Idempotency(ttl_s=value)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_processor_timeout_refuses_non_finite_numbers(value: float) -> None:
    with pytest.raises(ConfigurationError, match=r"processor 'audit' .*timeout_s must be a finite number"):
        App("t").processor("in", timeout_s=value)(audit)


# 5. a second parameter annotated as something a Context is not


def test_a_context_parameter_annotated_with_another_type_is_refused() -> None:
    def handle(event: Event, ctx: str) -> None: ...

    with pytest.raises(ConfigurationError, match=r"processor '.*handle' .*second parameter 'ctx' is annotated 'str'"):
        App("t").processor("in")(handle)


def test_a_context_parameter_annotated_with_a_union_without_context_is_refused() -> None:
    def handle(event: Event, ctx: int | None) -> None: ...

    with pytest.raises(ConfigurationError, match="second parameter 'ctx'"):
        App("t").processor("in")(handle)


def test_the_ways_of_taking_a_context_still_work() -> None:
    app = App("t")

    def bare(event, ctx):  # type: ignore[no-untyped-def]
        return None

    def typed(event: Event, ctx: Context) -> None: ...

    def optional(event: Event, ctx: Context | None) -> None: ...

    def loose(event: Event, ctx: object) -> None: ...

    def anything(event: Event, ctx: Any) -> None: ...

    for func in (bare, typed, optional, loose, anything):
        app.processor("in")(func)
    assert all(p.wants_context for p in app.processors)


# 6. `eventbus publish --key-field` on values that are not keys


def _publish(lines: list[str]) -> tuple[int, list[tuple[int, str]], list[Event]]:
    bus = TestBus()
    with Publisher(bus.log) as publisher:
        report = publish_lines(publisher, "in", lines, event_type="thing", key_field="id")
    return report.published, report.errors, bus.events("in") if report.published else []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": {"x": 1}}', "id: the key field must be a string or a number, got an object"),
        ('{"id": [1]}', "id: the key field must be a string or a number, got an array"),
        ('{"id": true}', "id: the key field must be a string or a number, got a boolean"),
        ('[{"id": "a"}]', "expected a JSON object (the event's data, with the key field 'id'), got an array"),
        ('"a"', "expected a JSON object (the event's data, with the key field 'id'), got a string"),
        ("{}", "id: the key field is missing from the data"),
        ('{"id": null}', "id: the key field is null (a partition key is a string or a number)"),
        (
            '{"id": "a", "n": 18446744073709551616}',
            "n: the integer 18446744073709551616 is out of the 64-bit range (-9223372036854775808 to "
            "18446744073709551615) and would lose digits; send it as a string",
        ),
    ],
)
def test_key_fields_that_are_not_keys_are_reported(line: str, message: str) -> None:
    published, errors, _ = _publish([line])
    assert published == 0
    assert errors == [(1, message)]


def test_string_and_number_key_fields_become_partition_keys() -> None:
    published, errors, events = _publish(['{"id": "a"}', '{"id": 7}', '{"id": 1.5}'])
    assert (published, errors) == (3, [])
    assert [e.partitionkey for e in events] == ["a", "7", "1.5"]


def test_lines_in_cloudevents_form_with_data_and_data_base64_or_wide_integers_are_refused() -> None:
    bus = TestBus()
    lines = [
        '{"type": "t", "source": "/s", "id": "1", "data": {"n": 1}, "data_base64": "AA=="}',
        '{"type": "t", "source": "/s", "id": "2", "data": {"n": -9223372036854775809}}',
        '{"type": "t", "source": "/s", "id": "3", "data": {"n": 18446744073709551615}}',
    ]
    with Publisher(bus.log) as publisher:
        report = publish_lines(publisher, "in", lines)
    assert report.errors == [
        (1, "data and data_base64: an event carries one or the other, not both"),
        (
            2,
            "data.n: the integer -9223372036854775809 is out of the 64-bit range (-9223372036854775808 to "
            "18446744073709551615) and would lose digits; send it as a string",
        ),
    ]
    assert [e.data for e in bus.events("in")] == [{"n": 18446744073709551615}]


def test_lines_too_deep_to_check_or_with_lone_surrogates_are_reported_and_the_others_kept() -> None:
    bus = TestBus()
    deep = '{"id": "12345678901234567890", "n": ' + "[" * 1010 + "]" * 1010 + "}"
    with Publisher(bus.log) as publisher:
        report = publish_lines(
            publisher, "in", ['{"id": "a"}', deep, '{"id": "\ud800"}', '{"id": "b"}'], event_type="t"
        )
    assert [number for number, _ in report.errors] == [2, 3], report.errors
    assert "nested too deeply" in report.errors[0][1]
    assert report.published == 2


def test_data_too_deep_to_be_written_is_a_bad_line_not_a_failed_batch() -> None:
    # orjson reads about 1,000 levels but writes 254: such a line parsed, then failed its whole batch when sent.
    bus = TestBus()
    deep = "[" * 300 + "]" * 300
    # Written as an event: its attributes, then the data object, then the list: 254 levels, orjson's most.
    deepest_kept, one_deeper = "[" * 252 + "]" * 252, "[" * 253 + "]" * 253
    lines = ['{"n": 1}', '{"n": ' + deep + "}", '{"n": ' + deepest_kept + "}", '{"n": ' + one_deeper + "}"]
    cloudevent = '{"type": "t", "source": "/s", "id": "x", "data": ' + deep + "}"
    with Publisher(bus.log) as publisher:
        report = publish_lines(publisher, "in", lines, event_type="t")
        in_cloudevents_form = publish_lines(publisher, "in", [cloudevent])
    assert [(n, m.startswith("nested too deeply to be written")) for n, m in report.errors] == [(2, True), (4, True)]
    assert report.published == 2
    assert [(n, m.startswith("nested too deeply to be written")) for n, m in in_cloudevents_form.errors] == [(1, True)]


def test_an_async_projection_handler_is_refused_even_behind_a_decorator() -> None:
    def logged(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any) -> Any:
            return func(*args)

        return wrapper

    balances = App("bank").projection("balances", topics="accounts")
    for decorate in (lambda f: f, logged):
        with pytest.raises(ConfigurationError, match="projection handlers are plain functions, not async"):

            @balances.on("deposited")
            @decorate
            async def deposited(event: Event, view: View) -> None:
                view[event.data["account"]] = event.data
