"""A projection declaration: a read model folded from events, with a handler per event type.

>>> balances = app.projection("balances", topics="accounts")
>>> @balances.on("bank.account.opened")
... def opened(event: Event, view: View) -> None:
...     view[event.subject] = {"owner": event.data["owner"], "balance": 0}

A handler takes the event (an `Event`, or an instance of a class bound with ``@event_type``) and the `View`: the
projection's rows, a dict of JSON documents by key. What it writes commits together with the projection's
checkpoint, so each event is folded exactly once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from eventbus.app.policies import Retry
from eventbus.app.processor import bare_decorator_error, check_topics, is_function
from eventbus.errors import ConfigurationError
from eventbus.event import binding_of

if TYPE_CHECKING:
    from eventbus.projections.reader import ProjectionReader

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Handler:
    func: Callable[..., Any]
    typed_class: type | None


class Projection:
    """Declared with `App.projection`; handlers are added with `on`."""

    def __init__(self, app_name: str, name: str, topics: str | Sequence[str], store: str | None, retry: Retry) -> None:
        from eventbus.projections.store import check_projection_name

        self.app_name = app_name
        self.name = check_projection_name(name)
        self.topics = check_topics(topics, f"projection {name!r}", empty="give it at least one topic to fold")
        self.store = check_store_url(name, store)
        self.retry = retry
        self.handlers: dict[str, Handler] = {}

    @property
    def group(self) -> str:
        """The consumer group the projection's worker reads with."""
        return f"{self.app_name}.projection.{self.name}"

    def on(self, *types: str) -> Callable[[F], F]:
        """Register a handler for events of ``types`` (or, with none given, the type its parameter's class is
        bound to)."""
        for type_name in types:
            if is_function(type_name):
                # `@view.on` without parentheses: the handler arrived as an event type and would never be registered
                raise bare_decorator_error(
                    f"projection {self.name!r}: .on needs parentheses: @{self.name}.on('x.happened'), or "
                    f"@{self.name}.on() for the type its event parameter's class is bound to",
                    type_name,
                )

        def register(func: F) -> F:
            from eventbus.app.processor import _argument_kind, _resolve_hints

            where = f"projection {self.name!r} handler {getattr(func, '__qualname__', func)!r}"
            parameters = [
                p
                for p in inspect.signature(func).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            if len(parameters) != 2:
                raise ConfigurationError(f"{where}: it must take the event and the view, (event, view)")
            # Looked for under decorators too: behind a sync wrapper an async handler returns a coroutine that
            # nothing awaits, and its events would be folded into nothing.
            if inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(inspect.unwrap(func)):
                raise ConfigurationError(f"{where}: projection handlers are plain functions, not async")
            annotation = _resolve_hints(func, where).get(parameters[0].name, inspect.Parameter.empty)
            _, typed_class = _argument_kind(annotation, where)
            names = list(types)
            if not names:
                binding = binding_of(typed_class)
                if binding is None:
                    raise ConfigurationError(f"{where}: name the event types, e.g. @{self.name}.on('x.happened')")
                names = [binding.type]
            for type_name in names:
                if not isinstance(type_name, str) or not type_name:
                    raise ConfigurationError(f"{where}: event types are non-empty strings, got {type_name!r}")
                if type_name in self.handlers:
                    raise ConfigurationError(f"{where}: {type_name!r} already has a handler in this projection")
                self.handlers[type_name] = Handler(func, typed_class)
            return func

        return register

    def reader(self, store: str | None = None) -> ProjectionReader:
        """Read this projection (by key, by field values) from ``store`` (default: the one it was declared with,
        else ``EVENTBUS_STORE``, else ``sqlite:///eventbus.projections.db``)."""
        from eventbus.projections.reader import ProjectionReader

        return ProjectionReader(store or resolve_store_url(self.store), self.name)

    def __repr__(self) -> str:
        return f"Projection({self.name!r}, topics={list(self.topics)}, types={sorted(self.handlers)})"


DEFAULT_STORE_URL = "sqlite:///eventbus.projections.db"


def resolve_store_url(declared: str | None, default: str = DEFAULT_STORE_URL) -> str:
    """The store a projection declared with ``store=declared`` folds into: its own, else ``EVENTBUS_STORE``, else
    ``default``."""
    import os

    return declared or os.environ.get("EVENTBUS_STORE") or default


_STORE_SCHEMES = ("sqlite", "postgresql", "postgres")


def check_store_url(projection: str, url: object) -> str | None:
    """``url`` if `eventbus.projections.store.open_store` will take it (by its form; whether the store can be
    reached is found out when it is opened), else a `ConfigurationError` naming the projection and the URL."""
    if url is None:
        return None
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"projection {projection!r}: store must be a store URL, got {url!r}")
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        netloc = parts.netloc
        path = parts.path
    except ValueError as exc:  # e.g. an unbalanced '[' in the host
        raise ConfigurationError(f"projection {projection!r}: store {_redacted(url)}: not a URL ({exc})") from None
    if scheme not in _STORE_SCHEMES:
        raise ConfigurationError(
            f"projection {projection!r}: store {_redacted(url)}: unknown store URL scheme; use sqlite:///path.db or "
            "postgresql://..."
        )
    if scheme == "sqlite" and (netloc or not path.removeprefix("/")):
        raise ConfigurationError(
            f"projection {projection!r}: store {_redacted(url)}: a SQLite store URL looks like sqlite:///projections.db"
        )
    return url


def _redacted(url: str) -> str:
    try:
        from eventbus.projections.postgres import redacted  # psycopg itself is imported only to connect

        return redacted(url)
    except ValueError:  # not parsable enough to find a password in: show none of it
        return "(an unparsable URL)"


def declare_projection(
    app_name: str, name: str, topics: str | Sequence[str], store: str | None, retry: Retry | None
) -> Projection:
    if retry is not None and not isinstance(retry, Retry):
        raise ConfigurationError(f"projection {name!r}: retry must be a Retry(...), got {retry!r}")
    return Projection(app_name, name, topics, store, retry or Retry())
