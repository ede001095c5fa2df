"""Backends: the log contract (`base`) and its drivers, chosen by URL.

``memory://NAME``, ``sqlite:///path/to/events.db`` (the default: ``sqlite:///eventbus.db``) and
``kafka://host:9092[,host2:9092]``. ``EVENTBUS_BROKER`` sets the URL from the environment.
"""

from __future__ import annotations

import os
import re
from typing import Final
from urllib.parse import SplitResult, parse_qsl, urlsplit

from eventbus.backends.base import Log
from eventbus.errors import ConfigurationError

DEFAULT_BROKER_URL: Final = "sqlite:///eventbus.db"
BROKER_ENVIRONMENT: Final = "EVENTBUS_BROKER"
SCHEMES: Final = ("memory", "sqlite", "kafka")

_SECRET = re.compile(r"password|secret|key|token", re.IGNORECASE)


def broker_url(url: str | None = None) -> str:
    """The URL given, else ``EVENTBUS_BROKER``, else the embedded default.

    An empty URL is refused rather than read as "none": ``--broker "$UNSET_VARIABLE"`` or ``EVENTBUS_BROKER=`` would
    otherwise put the events in ``eventbus.db`` of whatever directory the command ran in."""
    if url is None:
        url = os.environ.get(BROKER_ENVIRONMENT)
        if url is None:
            return DEFAULT_BROKER_URL
        if not url:
            raise ConfigurationError(
                f"{BROKER_ENVIRONMENT} is set but empty: set it to a log URL (e.g. {DEFAULT_BROKER_URL}) or unset it "
                "for the default"
            )
        return url
    if not url:
        raise ConfigurationError(
            f"--broker '': the log URL is empty; give one (e.g. {DEFAULT_BROKER_URL}) or leave the option out for "
            f"${BROKER_ENVIRONMENT} or the default"
        )
    return url


def redact_url(url: str) -> str:
    """``url`` for messages, with its password and the values of secret-looking parameters as ``***``.

    Taken apart by hand, not by urlsplit: the URLs that error messages show are often the ones urlsplit refuses."""
    base, question, query = url.partition("?")
    scheme, separator, rest = base.partition("://")
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}{':***' if colon else ''}@{host}"
    if query:
        query = "&".join(
            f"{name}={'***' if _SECRET.search(name) else value}"
            for name, value in parse_qsl(query, keep_blank_values=True)
        )
    return f"{scheme}{separator}{netloc}{slash}{path}{question}{query}"


def split_url(url: str, what: str = "") -> SplitResult:
    """``urlsplit(url)``; what urlsplit refuses (an unbalanced ``[`` in the host, ...) is a `ConfigurationError`
    naming the URL, after ``what`` (e.g. ``"schema registry"``) if given."""
    try:
        return urlsplit(url)
    except ValueError as exc:
        shown = f"{what} {redact_url(url)}" if what else redact_url(url)
        raise ConfigurationError(f"{shown}: not a valid URL: {exc}") from None


def partition_count(shown: str, value: str) -> int:
    """The ``partitions`` option of a log URL: a positive integer, at most what ``eventbus topics create`` takes.

    A count beyond that is a typo: creating the topic would take minutes and much of the disk (or never end, in
    memory), and beyond SQLite's integers it would fail deep inside an append."""
    from eventbus.backends.base import MAX_PARTITIONS  # the CLI's limit too: both ways of making a topic agree

    try:
        number = int(value)
    except ValueError:  # not a number, or too many digits to convert
        number = 0
    if number < 1:
        raise ConfigurationError(f"{shown}: partitions must be a positive integer, got {value!r}")
    if number > MAX_PARTITIONS:
        raise ConfigurationError(f"{shown}: partitions must be at most {MAX_PARTITIONS:,} per topic, got {value}")
    return number


def _flag(url: str, name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"{url}: {name} must be true or false, got {value!r}")


def open_log(url: str | None = None) -> Log:
    """Open the log a URL names; a malformed URL or unknown scheme is a `ConfigurationError` naming it."""
    url = broker_url(url)
    parts = split_url(url)
    scheme = parts.scheme.lower()
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    if scheme == "kafka":
        from eventbus.backends.kafka import open_kafka_log

        return open_kafka_log(url)
    known = {"partitions", "auto_create", "synchronous"} if scheme == "sqlite" else {"partitions", "auto_create"}
    unknown = sorted(set(params) - known)
    if scheme in {"memory", "sqlite"} and unknown:
        raise ConfigurationError(f"{url}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    partitions = partition_count(url, params["partitions"]) if "partitions" in params else 1
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
