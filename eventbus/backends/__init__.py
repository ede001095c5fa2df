"""Backends: the log contract (`base`) and its drivers, chosen by URL.

``memory://NAME``, ``sqlite:///path/to/events.db`` (the default: ``sqlite:///eventbus.db``) and
``kafka://host:9092[,host2:9092]``. ``EVENTBUS_BROKER`` sets the URL from the environment.
"""

from __future__ import annotations

import os
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from eventbus.backends.base import Log
from eventbus.errors import ConfigurationError

DEFAULT_BROKER_URL: Final = "sqlite:///eventbus.db"
SCHEMES: Final = ("memory", "sqlite", "kafka")


def broker_url(url: str | None = None) -> str:
    """The URL given, else ``EVENTBUS_BROKER``, else the embedded default."""
    return url or os.environ.get("EVENTBUS_BROKER") or DEFAULT_BROKER_URL


def _flag(url: str, name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"{url}: {name} must be true or false, got {value!r}")


def _positive_int(url: str, name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigurationError(f"{url}: {name} must be a positive integer, got {value!r}")
    return number


def open_log(url: str | None = None) -> Log:
    """Open the log a URL names; a malformed URL or unknown scheme is a `ConfigurationError` naming it."""
    url = broker_url(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    if scheme == "kafka":
        from eventbus.backends.kafka import open_kafka_log

        return open_kafka_log(url)
    known = {"partitions", "auto_create", "synchronous"} if scheme == "sqlite" else {"partitions", "auto_create"}
    unknown = sorted(set(params) - known)
    if scheme in {"memory", "sqlite"} and unknown:
        raise ConfigurationError(f"{url}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    partitions = _positive_int(url, "partitions", params["partitions"]) if "partitions" in params else 1
    auto_create = _flag(url, "auto_create", params["auto_create"]) if "auto_create" in params else True
    if scheme == "memory":
        from eventbus.backends.memory import open_memory_log

        name = (parts.netloc + parts.path).strip("/") or "default"
        return open_memory_log(name, default_partitions=partitions, auto_create=auto_create)
    if scheme == "sqlite":
        from eventbus.backends.sqlite import SQLiteLog

        if parts.netloc:
            raise ConfigurationError(
                f"{url}: a SQLite URL has three slashes before a relative path (sqlite:///events.db) "
                "and four before an absolute one (sqlite:////var/lib/events.db)"
            )
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise ConfigurationError(f"{url}: no database path (e.g. sqlite:///events.db)")
        return SQLiteLog(
            path,
            synchronous=params.get("synchronous", "normal"),
            default_partitions=partitions,
            auto_create=auto_create,
        )
    raise ConfigurationError(
        f"{url}: unknown broker URL scheme {parts.scheme + ':' if parts.scheme else '(none)'}; "
        f"use one of {', '.join(s + '://' for s in SCHEMES)}"
    )
