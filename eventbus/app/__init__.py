"""`App`: what a user declares — processors (and, as they land, projections, schedules, workflows)."""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from eventbus.app.context import Context
from eventbus.app.policies import CircuitBreaker, Idempotency, Retry
from eventbus.app.processor import (
    FailureOptions,
    OnFailure,
    Ordering,
    Processor,
    bare_decorator_error,
    declare_processor,
    is_function,
)
from eventbus.app.projection import Projection, declare_projection
from eventbus.backends.base import Log, check_topic_name
from eventbus.errors import ConfigurationError
from eventbus.event import binding_of
from eventbus.schemas.settings import Schemas, SchemasOption, schema_settings

if TYPE_CHECKING:
    from eventbus.projections.eventstore import EventStore
    from eventbus.schemas.loader import SchemaSet

__all__ = ["App", "CircuitBreaker", "Context", "Idempotency", "Processor", "Projection", "Retry", "TopicSpec"]

F = TypeVar("F", bound=Callable[..., Any])
Codec = Literal["json", "avro"]
CODECS: tuple[Codec, ...] = ("json", "avro")

_APP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic the app wants to exist, with its partition count (created at worker start if missing), and the
    codec of the events the app writes to it (JSON unless it says Avro)."""

    name: str
    partitions: int
    codec: Codec = "json"


class App:
    """An application: a named set of processors. Its name is the default consumer group and event source.

    >>> app = App("shop")
    >>> @app.processor("orders", types="order.placed", to="payments")
    ... def request_payment(event): ...

    ``schemas``: where the app's Avro schemas are (a directory, a list of them, or `eventbus.schemas.Schemas`
    settings; default ``schemas/`` in the working directory). Naming them loads them at once, and each typed event
    class a processor takes or returns is checked against the schema of its type when it is declared.
    """

    def __init__(self, name: str, *, source: str | None = None, schemas: SchemasOption = None) -> None:
        if not isinstance(name, str) or not _APP_NAME.match(name):
            raise ConfigurationError(
                f"App name {name!r}: use letters, digits, '.', '_' and '-' (it names the consumer group)"
            )
        self.name = name
        self.source = source or f"/{name}"
        self._processors: dict[str, Processor] = {}
        self._projections: dict[str, Projection] = {}
        self._topics: dict[str, TopicSpec] = {}
        self._event_codecs: dict[str, Codec] = {}
        # Set by the runtime while the app runs: the log it runs on, and event stores opened over it.
        self._running_log: Log | None = None
        self._event_stores: dict[str, EventStore] = {}
        self._schema_settings = schema_settings(schemas)
        self._schema_set: SchemaSet | None = None
        if schemas is not None:
            self._load_schemas()

    @property
    def schema_settings(self) -> Schemas:
        return self._schema_settings

    @property
    def schema_set(self) -> SchemaSet:
        """The app's event schemas, loaded from its schema directories the first time they are needed."""
        return self._schema_set or self._load_schemas()

    def _load_schemas(self) -> SchemaSet:
        try:
            from eventbus.schemas.loader import load_schemas
        except ModuleNotFoundError as exc:
            raise ConfigurationError(
                f"app {self.name!r} uses Avro schemas, which need {exc.name}: pip install 'eventbus[avro]'"
            ) from None

        self._schema_set = loaded = load_schemas(self._schema_settings)
        for processor in self._processors.values():
            self._check_classes(processor)
        return loaded

    def _check_classes(self, processor: Processor) -> None:
        """Check the typed event classes ``processor`` takes and returns against their schemas."""
        from eventbus.schemas.errors import SchemaMismatchError

        schemas = self._schema_set
        if schemas is None:
            return
        for cls in _typed_classes(processor):
            try:
                schemas.check_class(cls)
            except SchemaMismatchError as exc:
                raise SchemaMismatchError(f"app {self.name!r}, {processor.description}: {exc}") from None

    @property
    def processors(self) -> tuple[Processor, ...]:
        return tuple(self._processors.values())

    def event_store(self, url: str | None = None) -> EventStore:
        """The event store of aggregates, over the log this app runs on (available while it runs: in
        `eventbus run` and `TestBus.run`). ``url`` defaults to the log's own SQLite file (appends and publishes in
        one transaction), or ``EVENTBUS_EVENT_STORE``."""
        if self._running_log is None:
            raise ConfigurationError(
                f"app {self.name!r} is not running: app.event_store() works inside its processors; elsewhere "
                "use EventStore(url, log)"
            )
        from eventbus.projections.eventstore import EventStore, default_event_store_url

        url = url or default_event_store_url(self._running_log)
        store = self._event_stores.get(url)
        if store is None:
            store = self._event_stores[url] = EventStore(url, self._running_log, source=self.source)
        return store

    def bind(self, log: Log | None) -> None:
        """Called by the runtime when the app starts running on ``log`` (and with None when it stops)."""
        if log is None:
            for store in self._event_stores.values():
                store.close()
            self._event_stores.clear()
        self._running_log = log

    @property
    def projections(self) -> Mapping[str, Projection]:
        return dict(self._projections)

    def projection(
        self,
        name: str,
        *,
        topics: str | Sequence[str],
        store: str | None = None,
        retry: Retry | None = None,
    ) -> Projection:
        """Declare a read model folded from ``topics`` into ``store`` (a ``sqlite:///`` or ``postgresql://`` URL;
        default ``EVENTBUS_STORE``, else ``sqlite:///eventbus.projections.db``). Add handlers with ``.on(type)``.
        A handler that keeps failing after ``retry`` sends its event to ``<topic>.dlq`` and folding goes on."""
        declared = declare_projection(self.name, name, topics, store, retry)
        if declared.name in self._projections:
            raise ConfigurationError(f"app {self.name!r}: projection {name!r} is declared twice")
        self._projections[declared.name] = declared
        return declared

    @property
    def topics(self) -> Mapping[str, TopicSpec]:
        return dict(self._topics)

    def topic(self, name: str, *, partitions: int = 1, codec: Codec = "json") -> TopicSpec:
        """Declare a topic with a partition count; `eventbus run` creates it if it does not exist.

        ``codec="avro"``: the events this app writes to it (its processors' outputs, and `Publisher(app=...)`) are
        Avro records with the schema of their type; declaring it loads the app's schemas."""
        try:
            check_topic_name(name)
        except ValueError as exc:
            raise ConfigurationError(f"app {self.name!r}: {exc}") from None
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ConfigurationError(f"app {self.name!r}: topic {name!r}: partitions must be >= 1, got {partitions!r}")
        if codec not in CODECS:
            raise ConfigurationError(f"app {self.name!r}: topic {name!r}: codec must be one of {CODECS}, got {codec!r}")
        spec = TopicSpec(name, partitions, codec)
        existing = self._topics.get(name)
        if existing is not None and existing != spec:
            raise ConfigurationError(f"app {self.name!r}: topic {name!r} declared twice ({existing} and {spec})")
        self._topics[name] = spec
        if codec == "avro":
            _ = self.schema_set
        return spec

    @property
    def event_codecs(self) -> Mapping[str, Codec]:
        """The codecs declared per event type with `event_codec`."""
        return dict(self._event_codecs)

    def event_codec(self, type_name: str, codec: Codec) -> None:
        """Write the events of type ``type_name`` with ``codec`` to every topic, whatever the topic's own codec.

        ``codec="avro"``: Avro records with the schema bound to the type (the app's schemas are loaded now, and a
        type without a schema is refused here rather than at its first event); ``"json"`` keeps the type JSON
        on topics declared Avro."""
        if not isinstance(type_name, str) or not type_name:
            raise ConfigurationError(f"app {self.name!r}: event_codec needs an event type, got {type_name!r}")
        if codec not in CODECS:
            raise ConfigurationError(
                f"app {self.name!r}: event type {type_name!r}: codec must be one of {CODECS}, got {codec!r}"
            )
        existing = self._event_codecs.get(type_name)
        if existing is not None and existing != codec:
            raise ConfigurationError(
                f"app {self.name!r}: event type {type_name!r} declared with codec {existing!r} and {codec!r}"
            )
        if codec == "avro" and self.schema_set.for_type(type_name) is None:
            directories = ", ".join(map(str, self.schema_set.directories)) or "(none)"
            raise ConfigurationError(
                f"app {self.name!r}: event type {type_name!r} is declared Avro but no schema binds it: add a .avsc "
                f'with "eventbus.type": {type_name!r} to the schema directories ({directories})'
            )
        self._event_codecs[type_name] = codec

    def processor(
        self,
        topic: str | Sequence[str],
        *,
        types: str | Sequence[str] | None = None,
        pattern: Mapping[str, Any] | str | None = None,
        name: str | None = None,
        batch_size: int | None = None,
        batch_window_ms: int | None = None,
        to: str | None = None,
        retry: Retry | None = None,
        timeout_s: float | None = None,
        dead_letter_topic: str | None = None,
        on_failure: OnFailure = "dead_letter",
        bisect_on_error: bool = False,
        idempotency: Idempotency | None = None,
        breaker: CircuitBreaker | None = None,
        concurrency: int = 1,
        ordering: Ordering = "partition",
    ) -> Callable[[F], F]:
        """Subscribe a function (sync or async) to ``topic``.

        ``types`` keeps events of those CloudEvents types; ``pattern`` is an event pattern (EventBridge syntax)
        over the event's CloudEvents JSON form. A parameter annotated with a class bound by ``@event_type``
        receives instances of it (and filters on its type). ``batch_size``/``batch_window_ms`` (or a ``list[...]``
        annotation) make it receive lists: up to ``batch_size`` events, waiting at most ``batch_window_ms`` to fill
        one. Whatever it returns — an event, a typed instance, a list of them — goes to ``to`` (or the topic the
        instance's class is bound to).

        When it raises: ``retry`` says how often to try again (default: 3 attempts, exponential backoff with full
        jitter), ``timeout_s`` bounds each invocation, and after the last attempt the event goes to
        ``dead_letter_topic`` (default ``<topic>.dlq``) — or, with ``on_failure="stop"``, the worker stops.
        ``bisect_on_error`` splits a failing batch to find the event that fails it. ``idempotency`` skips events
        seen before. ``breaker`` pauses the processor while a dependency keeps failing. ``concurrency`` runs that
        many invocations at once, keeping order per partition key (``ordering="key"``) or not at all (``"none"``).
        """
        if is_function(topic):
            # `@app.processor` without parentheses: the function arrived as the topic, and the name it was declared
            # under would be bound to `register` below, never subscribed to anything.
            raise bare_decorator_error("@app.processor needs the topic it reads: @app.processor('orders')", topic)

        def register(func: F) -> F:
            declared = declare_processor(
                func,
                topics=topic,
                types_=types,
                pattern=pattern,
                name=name,
                batch_size=batch_size,
                batch_window_ms=batch_window_ms,
                to=to,
                failure=FailureOptions(
                    retry=retry,
                    timeout_s=timeout_s,
                    dead_letter_topic=dead_letter_topic,
                    on_failure=on_failure,
                    bisect_on_error=bisect_on_error,
                    idempotency=idempotency,
                    breaker=breaker,
                    concurrency=concurrency,
                    ordering=ordering,
                ),
            )
            if declared.name in self._processors:
                raise ConfigurationError(
                    f"app {self.name!r}: two processors are named {declared.name!r}; pass name= to tell them apart"
                )
            self._check_breaker(declared)
            self._check_classes(declared)
            self._processors[declared.name] = declared
            return func

        return register

    def _check_breaker(self, declared: Processor) -> None:
        """Processors naming one breaker share it, with one set of thresholds: settings that differ would be
        silently replaced by whichever processor the worker set up first."""
        breaker = declared.breaker
        if breaker is None:
            return
        name = breaker.name or declared.name
        settings = _breaker_settings(breaker)
        for other in self._processors.values():
            if other.breaker is None or (other.breaker.name or other.name) != name:
                continue
            if _breaker_settings(other.breaker) != settings:
                raise ConfigurationError(
                    f"app {self.name!r}: {declared.description} and {other.description} share circuit breaker "
                    f"{name!r} with different settings ({breaker} and {other.breaker}); give both the same "
                    "settings, or different names"
                )

    def __repr__(self) -> str:
        return f"App({self.name!r}, processors={list(self._processors)}, projections={list(self._projections)})"


def _breaker_settings(breaker: CircuitBreaker) -> tuple[int, float, float]:
    return (breaker.failure_threshold, breaker.window_s, breaker.open_s)


def _typed_classes(processor: Processor) -> Iterator[type]:
    """The classes bound with ``@event_type`` that a processor takes, and those its return annotation names."""
    if processor.typed_class is not None:
        yield processor.typed_class
    try:
        returned = typing.get_type_hints(processor.func).get("return")
    except Exception:  # declaration reported unresolvable parameters already; a return annotation is optional
        return
    pending = [returned]
    while pending:
        annotation = pending.pop()
        if isinstance(annotation, type) and binding_of(annotation) is not None:
            yield annotation
        pending.extend(typing.get_args(annotation))
