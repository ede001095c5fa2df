"""Kafka URLs: ``kafka://host:9092[,host2:9092][?option=value&librdkafka.setting=value...]``.

Query parameters are of two kinds. eventbus's own options have underscores in their names (``partitions``,
``auto_create``, ``replication_factor``, ``connect_timeout_s``, ``broker_unavailable_timeout_s``,
``default_type``); every other parameter is a librdkafka setting passed through to the clients as it is
(``security.protocol=SASL_SSL``, ``compression.type=zstd``, ``session.timeout.ms=6000``). Environment variables
``EVENTBUS_KAFKA_*`` add settings too: ``EVENTBUS_KAFKA_SASL_USERNAME`` becomes ``sasl.username`` and
``EVENTBUS_KAFKA_CONNECT_TIMEOUT_S`` the option ``connect_timeout_s``; the URL wins where both name one.

librdkafka checks the names and values of its settings when the first client is built; what it refuses becomes a
`ConfigurationError` naming the setting and the URL (see `eventbus.backends.kafka.log.open_kafka_log`).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from eventbus.backends import partition_count, redact_url, split_url
from eventbus.errors import ConfigurationError

ENV_PREFIX: Final = "EVENTBUS_KAFKA_"
DEFAULT_PORT: Final = 9092

# Settings eventbus owns: it sets them per client, and a value from the URL would break a guarantee.
RESERVED_SETTINGS: Final = {
    "bootstrap.servers": "give the brokers as the URL's host list (kafka://host1:9092,host2:9092)",
    "metadata.broker.list": "give the brokers as the URL's host list (kafka://host1:9092,host2:9092)",
    "group.id": "the group comes from the app (or `eventbus run --group`)",
    "enable.auto.commit": "eventbus commits offsets itself, after the outputs are acknowledged",
    "enable.auto.offset.store": "eventbus commits offsets itself, after the outputs are acknowledged",
    "transactional.id": "each exactly-once consumer gets its own transactional producer",
    "enable.partition.eof": "the driver relies on end-of-partition events to know where a partition ends",
}

_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$")


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """Everything a Kafka URL (plus the environment) says."""

    url: str
    bootstrap_servers: str
    # librdkafka settings from the URL and the environment, passed to every client.
    client_settings: Mapping[str, str] = field(default_factory=dict)
    default_partitions: int = 1
    auto_create: bool = True
    # -1 lets the broker choose (its default.replication.factor).
    replication_factor: int = -1
    # How long opening the log may take to reach a broker before it is an error.
    connect_timeout_s: float = 10.0
    # How long a running client keeps retrying while no broker answers before it gives up with an error.
    broker_unavailable_timeout_s: float = 60.0
    # The CloudEvents type given to records that carry no CloudEvent (None: such records are undecodable).
    default_type: str | None = None
    # The environment variable each client setting came from, for those the URL did not set: errors name it.
    from_environment: Mapping[str, str] = field(default_factory=dict)

    @property
    def redacted_url(self) -> str:
        """The URL without secrets, for error messages and logs."""
        return redact(self.url)


_SECRET = re.compile(r"(password|secret|key|token)", re.IGNORECASE)


def redact(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL urlsplit reads: still one a message has to show
        return redact_url(url)
    if not parts.query:
        return url
    pairs = [
        f"{name}={'***' if _SECRET.search(name) else value}"
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return parts._replace(query="&".join(pairs)).geturl()


def parse_kafka_url(url: str, environ: Mapping[str, str] | None = None) -> KafkaSettings:
    """The settings of a ``kafka://`` URL; anything malformed is a `ConfigurationError` naming it."""
    parts = split_url(url)
    shown = redact(url)
    if parts.scheme.lower() != "kafka":
        raise ConfigurationError(f"{shown}: not a kafka:// URL")
    if "@" in parts.netloc:
        raise ConfigurationError(
            f"{shown}: credentials do not go in the host part; set sasl.username and sasl.password "
            f"(e.g. {ENV_PREFIX}SASL_USERNAME and {ENV_PREFIX}SASL_PASSWORD)"
        )
    if parts.path not in {"", "/"}:
        raise ConfigurationError(f"{shown}: a Kafka URL has no path (kafka://host:9092?setting=value)")
    bootstrap = _bootstrap_servers(shown, parts.netloc)

    options: dict[str, str] = {}
    settings: dict[str, str] = {}
    sources: dict[str, str] = {}
    for name, (value, variable) in _from_environment(environ if environ is not None else os.environ).items():
        (options if name in _OPTIONS else settings)[name] = value
        sources[name] = variable
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        (options if name in _OPTIONS else settings)[name] = value
        sources.pop(name, None)

    def named(name: str) -> str:
        # A value from the environment is nowhere in the URL the message shows: name the variable too.
        variable = sources.get(name)
        return f"{name} (from {variable})" if variable else name

    for name in settings:
        if name in RESERVED_SETTINGS:
            raise ConfigurationError(f"{shown}: {named(name)} cannot be set: {RESERVED_SETTINGS[name]}")

    try:
        default_partitions = partition_count(shown, options.get("partitions", "1"))
    except ConfigurationError as exc:
        if "partitions" not in sources:
            raise
        # The shared check's message names the option as the URL would; say where this one came from.
        prefix = f"{shown}: partitions "
        raise ConfigurationError(str(exc).replace(prefix, f"{shown}: {named('partitions')} ", 1)) from None
    return KafkaSettings(
        url=url,
        bootstrap_servers=bootstrap,
        client_settings=settings,
        default_partitions=default_partitions,
        auto_create=_flag(shown, named("auto_create"), options.get("auto_create", "true")),
        replication_factor=_replication_factor(
            shown, named("replication_factor"), options.get("replication_factor", "-1")
        ),
        connect_timeout_s=_seconds(shown, named("connect_timeout_s"), options.get("connect_timeout_s", "10")),
        broker_unavailable_timeout_s=_seconds(
            shown, named("broker_unavailable_timeout_s"), options.get("broker_unavailable_timeout_s", "60")
        ),
        default_type=options.get("default_type") or None,
        from_environment=sources,
    )


def options_hint() -> str:
    """What to say when librdkafka does not know a setting: it may have been meant as one of ours."""
    return f"eventbus's own options are {', '.join(sorted(_OPTIONS))}; other names go to librdkafka"


_OPTIONS: Final = frozenset(
    {
        "partitions",
        "auto_create",
        "replication_factor",
        "connect_timeout_s",
        "broker_unavailable_timeout_s",
        "default_type",
    }
)


def _from_environment(environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Settings from ``EVENTBUS_KAFKA_*`` variables: name -> (value, the variable)."""
    found = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or len(name) == len(ENV_PREFIX):
            continue
        lowered = name[len(ENV_PREFIX) :].lower()
        found[lowered if lowered in _OPTIONS else lowered.replace("_", ".")] = (value, name)
    return found


def _bootstrap_servers(shown: str, netloc: str) -> str:
    if not netloc:
        raise ConfigurationError(f"{shown}: no broker address (e.g. kafka://localhost:9092)")
    servers = []
    for item in netloc.split(","):
        match = _HOST_PORT.match(item.strip())
        if match is None:
            raise ConfigurationError(f"{shown}: {item!r} is not a host[:port] broker address")
        host, port = match.group(1), int(match.group(2) or DEFAULT_PORT)
        if not 0 < port < 65536:
            raise ConfigurationError(f"{shown}: port {port} of {item!r} is out of range")
        servers.append(f"{host}:{port}")
    return ",".join(servers)


def _flag(shown: str, name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"{shown}: {name} must be true or false, got {value!r}")


def _positive_int(shown: str, name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigurationError(f"{shown}: {name} must be a positive integer, got {value!r}")
    return number


def _replication_factor(shown: str, name: str, value: str) -> int:
    if value.strip() == "-1":
        return -1
    return _positive_int(shown, name, value)


def _seconds(shown: str, name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (number > 0 and math.isfinite(number)):
        raise ConfigurationError(f"{shown}: {name} must be a positive number of seconds, got {value!r}")
    return number
