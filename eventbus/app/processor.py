"""A processor declaration: which events a function receives, how (one at a time or in batches), and where what it
returns goes. Everything is checked when the module declaring it is imported, so a mistake is reported with the
function's name before any event is read.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import inspect
import math
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from eventbus.app.context import Context
from eventbus.app.policies import CircuitBreaker, Idempotency, Retry
from eventbus.app.results import BatchItemFailures
from eventbus.backends.base import check_topic_name
from eventbus.errors import ConfigurationError
from eventbus.event import Event, EventBinding, binding_of

ArgumentKind = Literal["event", "typed"]
Ordering = Literal["partition", "key", "none"]
OnFailure = Literal["dead_letter", "stop"]

# Lambda's default for stream and queue sources: large enough to amortise a call, small enough to retry cheaply.
DEFAULT_BATCH_SIZE = 100
MAX_BATCH_SIZE = 10_000
MAX_BATCH_WINDOW_MS = 300_000
MAX_CONCURRENCY = 1000
DEFAULT_RETRY = Retry()

_LIST_ORIGINS = (list, collections.abc.Sequence, collections.abc.Iterable, collections.abc.Collection, tuple)


@dataclass(frozen=True, slots=True)
class Processor:
    """What `App.processor` records about one function."""

    name: str
    func: Callable[..., Any]
    topics: tuple[str, ...]
    pattern: dict[str, Any] | str | None
    batched: bool
    batch_size: int
    batch_window_ms: int
    to: str | None
    is_async: bool
    argument: ArgumentKind
    typed_class: type | None
    wants_context: bool
    retry: Retry = DEFAULT_RETRY
    timeout_s: float | None = None
    dead_letter_topic: str | None = None
    on_failure: OnFailure = "dead_letter"
    bisect_on_error: bool = False
    idempotency: Idempotency | None = None
    breaker: CircuitBreaker | None = None
    concurrency: int = 1
    ordering: Ordering = "partition"

    @property
    def description(self) -> str:
        return f"processor {self.name!r} ({self.func.__module__}.{self.func.__qualname__})"

    def dead_letter_topic_for(self, topic: str) -> str:
        """Where events of ``topic`` go when this processor gives up on them."""
        return self.dead_letter_topic or f"{topic}.dlq"


@dataclass(frozen=True, slots=True)
class FailureOptions:
    """The failure-handling options of `App.processor`, checked together."""

    retry: Retry | None = None
    timeout_s: float | None = None
    dead_letter_topic: str | None = None
    on_failure: str = "dead_letter"
    bisect_on_error: bool = False
    idempotency: Idempotency | None = None
    breaker: CircuitBreaker | None = None
    concurrency: int = 1
    ordering: str = "partition"


def _fail(where: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"{where}: {message}")


def check_topics(topics: object, where: str, *, empty: str) -> tuple[str, ...]:
    """The topic names of a declaration (a name or a list of names), each checked; ``empty`` is the message for
    none. Every error starts with ``where``."""
    if isinstance(topics, str):
        names: tuple[object, ...] = (topics,)
    elif isinstance(topics, Iterable) and not isinstance(topics, bytes | bytearray | Mapping):
        names = tuple(topics)
    else:
        raise _fail(where, f"topics must be a topic name or a list of topic names, got {_shown(topics)}")
    if not names:
        raise _fail(where, empty)
    for topic in names:
        try:
            check_topic_name(topic)  # type: ignore[arg-type]  # it checks the type too
        except ValueError as exc:
            raise _fail(where, str(exc)) from None
    return names  # type: ignore[return-value]  # each one checked to be a str above


def _shown(value: object) -> str:
    """A value for a message: a function by its name rather than its repr."""
    if callable(value) and hasattr(value, "__qualname__"):
        return f"the function {value.__qualname__}"
    return repr(value)


def is_function(value: object) -> bool:
    """Whether ``value``, given where a name belongs, is the function a decorator written without parentheses got."""
    return callable(value) and not isinstance(value, str)


def bare_decorator_error(message: str, func: object) -> ConfigurationError:
    """What `@app.processor` (or another decorator that needs arguments) says when it is written without its
    parentheses, so the function it decorates arrives where its arguments belong: ``message``, naming the function."""
    qualname = getattr(func, "__qualname__", repr(func))
    module = getattr(func, "__module__", "?")
    return ConfigurationError(f"{message} ({module}.{qualname})")


def _is_function_like(func: object) -> bool:
    """Whether ``func`` is a function or method (possibly behind decorators), whose annotations can be read."""
    if isinstance(func, staticmethod):  # decorated inside a class body, under @staticmethod
        func = func.__func__
    return inspect.isfunction(inspect.unwrap(func)) or inspect.ismethod(func)  # type: ignore[arg-type]


def _shown_callable(func: object) -> str:
    if isinstance(func, functools.partial):
        return f"functools.partial({_shown(func.func)}, ...)"
    return f"a {type(func).__qualname__} object"


# What a return annotation may name, by what the runtime does with a returned value of that kind.
_ITERABLE_ORIGINS = (
    list,
    tuple,
    set,
    frozenset,
    collections.abc.Sequence,
    collections.abc.Iterable,
    collections.abc.Iterator,
    collections.abc.Collection,
    collections.abc.Generator,
    collections.abc.Set,
)
_MAPPING_ORIGINS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def _check_return_annotation(annotation: Any, batched: bool, where: str) -> None:
    """Refuse a return annotation naming something the runtime cannot emit: every invocation returning one would
    be dead-lettered at run time, event after event."""
    culprit = _unemittable(annotation, batched=batched, element=False)
    if culprit is None:
        return
    allowed = "None, an Event, an instance of a class bound with @event_type, or a list of them"
    if batched:
        allowed += " (or BatchItemFailures)"
    raise _fail(
        where,
        f"its return annotation {_annotation_text(annotation)} names {culprit}, which cannot be emitted; "
        f"return {allowed}",
    )


def _check_output_topic(annotation: Any, where: str) -> None:
    """Refuse a return annotation naming events that have nowhere to go: with no ``to=``, a returned `Event` (or
    an instance of a class bound with no topic) would fail every invocation at run time."""
    for cls in _named_classes(annotation):
        if isinstance(cls, type) and issubclass(cls, Event):
            topicless = "an Event"
        else:
            binding = binding_of(cls)
            if binding is None or binding.topic is not None:
                continue
            topicless = f"{cls.__qualname__} (bound with no topic)"
        raise _fail(
            where,
            f"it returns {topicless} but names no topic for it: pass to= to @app.processor, or bind the class "
            "with @event_type(..., topic=)",
        )


def _named_classes(annotation: Any) -> Iterator[Any]:
    """The classes a return annotation names, inside unions, lists, iterables and Annotated."""
    origin = typing.get_origin(annotation)
    if origin is None:
        yield annotation
        return
    if origin is typing.Annotated:
        yield from _named_classes(typing.get_args(annotation)[0])
        return
    if origin in (typing.Union, types.UnionType) or origin in _ITERABLE_ORIGINS:
        args = typing.get_args(annotation)
        if origin is collections.abc.Generator:
            args = args[:1]
        for arg in args:
            if arg is not Ellipsis:
                yield from _named_classes(arg)


def _annotation_text(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return repr(annotation.__qualname__)
    return repr(str(annotation).replace("typing.", ""))


def _unemittable(annotation: Any, *, batched: bool, element: bool) -> str | None:
    """What in ``annotation`` a processor cannot return (``element``: as an item of a returned list), or None when
    all of it can be. Forms it does not know (protocols, new types, other generics) get the benefit of the doubt."""
    if _always_emittable(annotation):
        return None
    if annotation in (None, type(None)):
        # None as the whole return value means "nothing"; as an item of a list it is not an event.
        return "None as an item of a list" if element else None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return _first_culprit(typing.get_args(annotation), batched=batched, element=element)
    if origin is typing.Annotated:
        return _unemittable(typing.get_args(annotation)[0], batched=batched, element=element)
    if not element:
        return _unemittable_result(annotation, origin, batched)
    return _unemittable_other(annotation, origin, element=True)


def _always_emittable(annotation: Any) -> bool:
    return (
        annotation in (Any, object, Event, typing.NoReturn, typing.Never)
        or isinstance(annotation, typing.TypeVar)
        or binding_of(annotation) is not None
    )


def _first_culprit(annotations: Iterable[Any], *, batched: bool, element: bool) -> str | None:
    for annotation in annotations:
        found = _unemittable(annotation, batched=batched, element=element)
        if found is not None:
            return found
    return None


def _unemittable_result(annotation: Any, origin: Any, batched: bool) -> str | None:
    """`_unemittable` for the whole return value, which may also be a list of events or a failure report."""
    if origin in _ITERABLE_ORIGINS:
        args = typing.get_args(annotation)
        if origin is collections.abc.Generator:
            args = args[:1]  # Generator[yielded, sent, returned]: only what it yields is emitted
        return _first_culprit([a for a in args if a is not Ellipsis], batched=batched, element=True)
    if annotation is BatchItemFailures or _is_mapping(annotation):
        # A failure report, or Lambda's {"batchItemFailures": [...]}: what batch processors answer with.
        if batched:
            return None
        return "BatchItemFailures, which only batch processors return" if annotation is BatchItemFailures else "a dict"
    return _unemittable_other(annotation, origin, element=False)


def _unemittable_other(annotation: Any, origin: Any, *, element: bool) -> str | None:
    if origin is not None:
        return "a dict" if origin in _MAPPING_ORIGINS else None
    if not isinstance(annotation, type):
        return None
    return _unemittable_class(annotation, element)


def _is_mapping(annotation: Any) -> bool:
    if typing.get_origin(annotation) in _MAPPING_ORIGINS or annotation in _MAPPING_ORIGINS:
        return True
    return isinstance(annotation, type) and (typing.is_typeddict(annotation) or issubclass(annotation, dict))


def _unemittable_class(cls: type, element: bool) -> str | None:
    try:
        if issubclass(cls, Event):
            return None
        if typing.is_typeddict(cls) or issubclass(cls, str | bytes | bytearray | int | float | Mapping):
            return repr(cls.__qualname__)
        if issubclass(cls, collections.abc.Iterable):
            # A bare list (or tuple, set, iterator) does not say what it holds; a list of lists is not emitted.
            return f"a list of {cls.__qualname__}" if element else None
    except TypeError:  # a class that refuses subclass checks (some protocols): not ours to judge
        return None
    unbound = ", a class not bound with @event_type" if dataclasses.is_dataclass(cls) else ""
    return f"{cls.__qualname__!r}{unbound}"


def _resolve_hints(func: Callable[..., Any], where: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func)
    except Exception as exc:  # an unresolvable annotation is the user's mistake; name it
        raise _fail(where, f"cannot resolve its type annotations ({type(exc).__name__}: {exc})") from None


def _element_type(annotation: Any) -> tuple[bool, Any]:
    """(is a list annotation, element annotation)."""
    origin = typing.get_origin(annotation)
    if origin in _LIST_ORIGINS or annotation in (list, Sequence):
        args = typing.get_args(annotation)
        return True, args[0] if args else Any
    return False, annotation


def _argument_kind(annotation: Any, where: str) -> tuple[ArgumentKind, type | None]:
    if annotation in (inspect.Parameter.empty, Any, Event, object):
        return "event", None
    binding = binding_of(annotation)
    if binding is not None:
        return "typed", annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        raise _fail(
            where,
            f"its event parameter is annotated {annotation!r}; use one type: Event or a class bound with @event_type",
        )
    raise _fail(
        where,
        f"its event parameter is annotated {getattr(annotation, '__qualname__', annotation)!r}, which is neither "
        "Event nor a class bound with @event_type",
    )


def _accepts_context(annotation: Any) -> bool:
    """Whether a parameter annotated ``annotation`` may be given the `Context`."""
    if annotation in (inspect.Parameter.empty, Any, object) or isinstance(annotation, typing.TypeVar):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_accepts_context(arg) for arg in typing.get_args(annotation))
    if isinstance(annotation, type):
        try:
            return issubclass(Context, annotation)
        except TypeError:  # a protocol that cannot be checked at run time: give it the benefit of the doubt
            return True
    return False


def _check_context_parameter(name: str, annotation: Any, where: str) -> None:
    if not _accepts_context(annotation):
        shown = getattr(annotation, "__qualname__", None) or repr(annotation)
        raise _fail(
            where,
            f"its second parameter {name!r} is annotated {shown!r}, but it receives the Context: annotate it "
            "Context (from eventbus import Context) or leave it unannotated",
        )


def _typed_from(types_: object, typed_class: type | None) -> str:
    """Where a processor's type filter comes from, in the words of its declaration."""
    if types_ is None and typed_class is not None:
        return f"its parameter's class {typed_class.__qualname__}"
    return "types="


def _type_filter(types_: str | Sequence[str] | None, binding: EventBinding | None, where: str) -> list[str] | None:
    if types_ is None:
        return [binding.type] if binding else None
    if not isinstance(types_, str) and (
        not isinstance(types_, Iterable) or isinstance(types_, bytes | bytearray | Mapping)
    ):
        raise _fail(where, f"types must be a non-empty string or list of strings, got {_shown(types_)}")
    names = [types_] if isinstance(types_, str) else list(types_)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise _fail(where, f"types must be a non-empty string or list of strings, got {types_!r}")
    if binding is not None and binding.type not in names:
        raise _fail(where, f"types={names!r} excludes {binding.type!r}, the type its parameter is bound to")
    return names


def _types_the_pattern_keeps(type_names: list[str], matcher: Any, typed_from: str, where: str) -> list[str]:
    """The types of ``type_names`` that a pattern's own ``"type"`` matcher lets through: an EventBridge user
    writes ``{"type": [...]}`` into the pattern out of habit, and both filters hold, so the processor takes the
    types both accept."""
    from eventbus.routing import InvalidPatternError, compile_pattern

    try:
        compiled = compile_pattern({"type": matcher})
    except InvalidPatternError as exc:
        raise _fail(where, f"invalid pattern: {exc}") from None
    kept = [name for name in type_names if compiled.matches({"type": name})]
    if not kept:
        if typed_from == "types=":
            advice = "give the event type either in types= or as a 'type' key in pattern, not both"
        else:
            advice = "drop the 'type' key from the pattern (the class already filters on its type)"
        raise _fail(
            where,
            f"its pattern's 'type' {_shown(matcher)} lets none of the types {typed_from} gives through "
            f"({', '.join(map(repr, type_names))}), so it would never run: {advice}",
        )
    return kept


def _build_pattern(
    type_names: list[str] | None, pattern: Mapping[str, Any] | str | None, where: str, typed_from: str = "types="
) -> dict[str, Any] | str | None:
    from eventbus.routing import InvalidPatternError, compile_pattern

    if pattern is None:
        return {"type": type_names} if type_names else None
    if isinstance(pattern, str):
        import json

        try:
            parsed = json.loads(pattern)
        except ValueError as exc:
            raise _fail(where, f"pattern is not valid JSON: {exc}") from None
        if type_names is not None:
            if not isinstance(parsed, dict):
                raise _fail(where, "pattern must be a JSON object")
            pattern = dict(parsed)
    if isinstance(pattern, Mapping):
        pattern = dict(pattern)
        if type_names is not None:
            if "type" in pattern:
                type_names = _types_the_pattern_keeps(type_names, pattern["type"], typed_from, where)
            pattern["type"] = type_names
    try:
        compile_pattern(pattern)
    except InvalidPatternError as exc:
        raise _fail(where, f"invalid pattern: {exc}") from None
    return pattern


def _check_failure_options(options: FailureOptions, batched: bool, where: str) -> dict[str, Any]:
    if options.retry is not None and not isinstance(options.retry, Retry):
        raise _fail(where, f"retry must be a Retry(...), got {options.retry!r}")
    timeout = options.timeout_s
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)  # nan and inf: no timeout at all (say timeout_s=None for that)
        or timeout <= 0
    ):
        raise _fail(where, f"timeout_s must be a finite number > 0 (or None for no timeout), got {timeout!r}")
    if options.dead_letter_topic is not None:
        try:
            check_topic_name(options.dead_letter_topic)
        except ValueError as exc:
            raise _fail(where, f"dead_letter_topic: {exc}") from None
    if options.on_failure not in ("dead_letter", "stop"):
        raise _fail(where, f"on_failure must be 'dead_letter' or 'stop', got {options.on_failure!r}")
    if options.bisect_on_error and not batched:
        raise _fail(where, "bisect_on_error applies to batch processors (give it batch_size)")
    if options.idempotency is not None:
        if not isinstance(options.idempotency, Idempotency):
            raise _fail(where, f"idempotency must be an Idempotency(...), got {options.idempotency!r}")
        if batched:
            raise _fail(where, "idempotency applies to processors that take one event at a time")
    if options.breaker is not None and not isinstance(options.breaker, CircuitBreaker):
        raise _fail(where, f"breaker must be a CircuitBreaker(...), got {options.breaker!r}")
    _check_concurrency(options, batched, where)
    return {
        "retry": options.retry or DEFAULT_RETRY,
        "timeout_s": None if timeout is None else float(timeout),
        "dead_letter_topic": options.dead_letter_topic,
        "on_failure": options.on_failure,
        "bisect_on_error": options.bisect_on_error,
        "idempotency": options.idempotency,
        "breaker": options.breaker,
        "concurrency": options.concurrency,
        "ordering": options.ordering,
    }


def _check_concurrency(options: FailureOptions, batched: bool, where: str) -> None:
    concurrency = options.concurrency
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= MAX_CONCURRENCY:
        raise _fail(where, f"concurrency must be an integer from 1 to {MAX_CONCURRENCY}, got {concurrency!r}")
    if options.ordering not in ("partition", "key", "none"):
        raise _fail(where, f"ordering must be 'partition', 'key' or 'none', got {options.ordering!r}")
    if concurrency > 1 and options.ordering == "partition":
        raise _fail(where, "concurrency > 1 cannot keep partition order; say ordering='key' or ordering='none'")
    if concurrency > 1 and batched:
        raise _fail(where, "concurrency applies to processors that take one event at a time")
    if concurrency > 1 and options.idempotency is not None:
        raise _fail(where, "idempotency needs concurrency=1 (each event's key is recorded before the next runs)")


def _check_function(func: Callable[..., Any], name: str | None) -> tuple[str, str, Callable[..., Any]]:
    """The processor's name, where messages about ``func`` say it is declared, and the function under its
    decorators."""
    if not callable(func):
        raise ConfigurationError(f"@app.processor decorates a function, got {func!r}")
    if not _is_function_like(func):
        # Type hints and async-ness are read from functions; a callable object (an instance with __call__, a
        # functools.partial) would only fail later with a message about annotations that says nothing useful.
        raise ConfigurationError(
            f"@app.processor decorates a function (def or async def), got {_shown_callable(func)}; wrap it in "
            "one: def handle(event): return handler(event)"
        )
    qualname: str = getattr(func, "__qualname__", repr(func))
    module = getattr(func, "__module__", "?")
    if name is not None and (not isinstance(name, str) or not name):
        raise ConfigurationError(
            f"processor {qualname!r} ({module}.{qualname}): name must be a non-empty string, got {name!r}"
        )
    where = f"processor {name or qualname!r} ({module}.{qualname})"
    # A sync decorator (functools.wraps) around an async function returns its coroutine: it is called as async,
    # or every event would fail with "returned a coroutine" and be dead-lettered.
    unwrapped = inspect.unwrap(func)
    if inspect.isasyncgenfunction(func) or inspect.isasyncgenfunction(unwrapped):
        raise _fail(where, "async generators are not supported; return a list of events instead")
    return name or qualname, where, unwrapped


def _check_required_keywords(func: Callable[..., Any], where: str) -> None:
    required = [
        p.name
        for p in inspect.signature(func).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.default is inspect.Parameter.empty
    ]
    if required:
        # It is called with the event (and the context) only: every call would fail with a TypeError.
        raise _fail(
            where,
            f"its keyword-only parameter(s) {', '.join(map(repr, required))} have no default, and nothing passes "
            "them; give them defaults or remove them",
        )


def declare_processor(
    func: Callable[..., Any],
    *,
    topics: str | Sequence[str],
    types_: str | Sequence[str] | None,
    pattern: Mapping[str, Any] | str | None,
    name: str | None,
    batch_size: int | None,
    batch_window_ms: int | None,
    to: str | None,
    failure: FailureOptions | None = None,
) -> Processor:
    """Check a processor declaration and record it; every error names the function and the option."""
    processor_name, where, unwrapped = _check_function(func, name)

    topic_names = check_topics(topics, where, empty="subscribe it to at least one topic")
    if to is not None:
        try:
            check_topic_name(to)
        except ValueError as exc:
            raise _fail(where, f"to: {exc}") from None

    parameters = [
        p for p in inspect.signature(func).parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(parameters) not in (1, 2):
        raise _fail(
            where,
            f"takes {len(parameters)} positional parameters; it must take the event (or a list of "
            "events) and, optionally, a context",
        )
    _check_required_keywords(func, where)
    hints = _resolve_hints(func, where)
    annotation = hints.get(parameters[0].name, inspect.Parameter.empty)
    is_list, element = _element_type(annotation)
    argument, typed_class = _argument_kind(element, where)
    if len(parameters) == 2:
        _check_context_parameter(parameters[1].name, hints.get(parameters[1].name, inspect.Parameter.empty), where)

    batched = is_list or batch_size is not None or batch_window_ms is not None
    size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH_SIZE:
        raise _fail(where, f"batch_size must be an integer from 1 to {MAX_BATCH_SIZE}, got {batch_size!r}")
    window = 0 if batch_window_ms is None else batch_window_ms
    if isinstance(window, bool) or not isinstance(window, int) or not 0 <= window <= MAX_BATCH_WINDOW_MS:
        raise _fail(
            where, f"batch_window_ms must be an integer from 0 to {MAX_BATCH_WINDOW_MS}, got {batch_window_ms!r}"
        )
    if batched and annotation is not inspect.Parameter.empty and not is_list:
        raise _fail(where, "batch_size/batch_window_ms make it receive a list; annotate the parameter as a list")
    if not batched:
        size = 1

    type_names = _type_filter(types_, binding_of(typed_class), where)
    failure_settings = _check_failure_options(failure or FailureOptions(), batched, where)
    if failure_settings["dead_letter_topic"] in topic_names:
        raise _fail(
            where,
            f"dead_letter_topic {failure_settings['dead_letter_topic']!r} is a topic it reads: each dead letter "
            "would come back to it and fail again, forever; dead-letter to another topic",
        )
    if "return" in hints:
        _check_return_annotation(hints["return"], batched, where)
        if to is None:
            _check_output_topic(hints["return"], where)
    return Processor(
        name=processor_name,
        func=func,
        topics=topic_names,
        pattern=_build_pattern(type_names, pattern, where, _typed_from(types_, typed_class)),
        batched=batched,
        batch_size=size,
        batch_window_ms=window,
        to=to,
        is_async=inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(unwrapped),
        argument=argument,
        typed_class=typed_class,
        wants_context=len(parameters) == 2,
        **failure_settings,
    )
