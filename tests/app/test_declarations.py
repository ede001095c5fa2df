"""@app.processor checks its options, signature and filter at import time, naming the function."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from eventbus import App, Event, event_type
from eventbus.errors import ConfigurationError


@event_type("thing.happened")
@dataclass
class ThingHappened:
    name: str


def test_app_names_must_be_usable_as_group_names() -> None:
    with pytest.raises(ConfigurationError, match="App name 'has space'"):
        App("has space")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch_size must be an integer from 1 to 10000, got 0"),
        ({"batch_size": "10"}, "batch_size must be an integer"),
        ({"batch_window_ms": -1}, "batch_window_ms must be an integer from 0 to 300000"),
        ({"to": "bad topic"}, "topic name 'bad topic'"),
        ({"types": []}, "types must be a non-empty string or list of strings"),
        ({"pattern": {"data": {"amount": [{"numeric": [">", "x"]}]}}}, "invalid pattern: data.amount"),
        ({"pattern": "{not json"}, "pattern is not valid JSON"),
        ({"types": "a", "pattern": {"type": ["b"]}}, "either in types= or as a 'type' key"),
    ],
)
def test_bad_options_name_the_processor_and_the_option(options: dict[str, object], message: str) -> None:
    app = App("t")
    with pytest.raises(ConfigurationError, match=r"processor 'handler' \(.*handler\).*") as raised:
        app.processor("in", **options)(_handler)  # type: ignore[arg-type]
    assert message in str(raised.value)


def _handler(event: Event) -> None:
    return None


_handler.__qualname__ = "handler"


def test_a_topic_is_required() -> None:
    with pytest.raises(ConfigurationError, match="subscribe it to at least one topic"):
        App("t").processor([])(_handler)


def test_the_signature_must_take_the_event_and_optionally_a_context() -> None:
    app = App("t")

    def nothing() -> None: ...

    def three(a: Event, b: object, c: object) -> None: ...

    with pytest.raises(ConfigurationError, match="takes 0 positional parameters"):
        app.processor("in")(nothing)
    with pytest.raises(ConfigurationError, match="takes 3 positional parameters"):
        app.processor("in")(three)


def test_an_annotation_that_is_not_an_event_class_is_refused() -> None:
    app = App("t")

    def wants_int(event: int) -> None: ...

    with pytest.raises(ConfigurationError, match="annotated 'int', which is neither Event nor a class bound"):
        app.processor("in")(wants_int)


def test_batch_options_need_a_list_parameter() -> None:
    app = App("t")

    def single(event: Event) -> None: ...

    with pytest.raises(ConfigurationError, match="annotate the parameter as a list"):
        app.processor("in", batch_size=10)(single)


def test_a_list_annotation_makes_a_batch_processor_with_the_default_size() -> None:
    app = App("t")

    @app.processor("in")
    def many(events: list[ThingHappened]) -> None: ...

    (declared,) = app.processors
    assert declared.batched
    assert declared.batch_size == 100
    assert declared.pattern == {"type": ["thing.happened"]}


def test_a_typed_parameter_filters_on_its_type_and_conflicting_types_are_refused() -> None:
    app = App("t")

    def typed(event: ThingHappened) -> None: ...

    with pytest.raises(ConfigurationError, match=r"excludes 'thing\.happened'"):
        app.processor("in", types="other")(typed)
    app.processor("in", pattern={"source": ["/x"]})(typed)
    assert app.processors[0].pattern == {"source": ["/x"], "type": ["thing.happened"]}


def test_unresolvable_annotations_are_reported() -> None:
    app = App("t")

    def broken(event: NoSuchClass) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(ConfigurationError, match="cannot resolve its type annotations"):
        app.processor("in")(broken)


def test_two_processors_with_one_name_are_refused() -> None:
    app = App("t")
    app.processor("in", name="same")(_handler)
    with pytest.raises(ConfigurationError, match="two processors are named 'same'"):
        app.processor("other", name="same")(_handler)


def test_topic_declarations_must_agree() -> None:
    app = App("t")
    app.topic("orders", partitions=3)
    with pytest.raises(ConfigurationError, match="declared twice"):
        app.topic("orders", partitions=4)
    with pytest.raises(ConfigurationError, match="partitions must be >= 1"):
        app.topic("other", partitions=0)


def test_event_type_needs_a_dataclass() -> None:
    with pytest.raises(TypeError, match=r"must be a dataclass or a msgspec\.Struct"):

        @event_type("x")
        class Plain:
            pass
