"""Mistakes in log, registry and store URLs: each is a one-line error naming the URL (or the option or variable it
came from) and exit code 2, never a traceback, a silent fallback or a command that does not end."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from eventbus.backends import open_log
from eventbus.backends.base import MAX_PARTITIONS, Message
from eventbus.backends.kafka.config import parse_kafka_url
from eventbus.errors import ConfigurationError
from eventbus.projections.store import open_store
from eventbus.schemas.registry import open_registry
from tests.conftest import PYTHON, REPO


def eventbus(
    *args: str, cwd: Path, env: dict[str, str], stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "eventbus", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
        check=False,
    )


def refused(result: subprocess.CompletedProcess[str], *culprits: str) -> str:
    """The error of a command that exited 2 with one error line naming each of ``culprits`` (log lines aside)."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("eventbus: error: ")]
    assert len(errors) == 1, result.stderr
    for culprit in culprits:
        assert culprit in errors[0], (culprit, result.stderr)
    return errors[0]


# 1. URLs urlsplit cannot read (an unbalanced '[' in the host part).


@pytest.mark.parametrize(
    ("args", "environment", "culprit"),
    [
        (("topics", "list", "--broker", "sqlite://[::1"), {}, "sqlite://[::1"),
        (("topics", "list", "--broker", "kafka://[::1"), {}, "kafka://[::1"),
        (("topics", "list"), {"EVENTBUS_BROKER": "sqlite://["}, "sqlite://["),
        (("schema", "list", "--registry", "http://["), {}, "schema registry http://["),
    ],
)
def test_a_malformed_url_is_refused_naming_it(
    args: tuple[str, ...], environment: dict[str, str], culprit: str, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    result = eventbus(*args, cwd=tmp_path, env={**subprocess_env, **environment})
    refused(result, culprit, "not a valid URL")
    assert list(tmp_path.iterdir()) == [], "nothing is created for a URL that is refused"


def test_a_malformed_projection_store_url_is_refused_naming_it(subprocess_env: dict[str, str]) -> None:
    # The bank example declares its projection without a store: EVENTBUS_STORE chooses it.
    result = eventbus(
        "projections",
        "status",
        "--app",
        "processors.bank",
        "--broker",
        "memory://bank",
        cwd=REPO,
        env={**subprocess_env, "EVENTBUS_STORE": "sqlite://["},
    )
    refused(result, "projection store sqlite://[", "not a valid URL")


def test_malformed_urls_are_configuration_errors_in_the_library_too() -> None:
    openings: list[tuple[Callable[[str], object], str]] = [
        (open_log, "memory://[x"),
        (parse_kafka_url, "kafka://[::1"),
        (open_registry, "sqlite://["),
        (open_store, "postgresql://[::1/db"),
    ]
    for opening, url in openings:
        with pytest.raises(ConfigurationError, match="not a valid URL"):
            opening(url)


def test_a_secret_in_a_malformed_url_is_not_shown() -> None:
    with pytest.raises(ConfigurationError) as raised:
        open_log("kafka://bob:hunter2@[::1?sasl.password=swordfish&client.id=me")
    message = str(raised.value)
    assert "hunter2" not in message, message
    assert "swordfish" not in message, message
    assert message.startswith("kafka://bob:***@[::1?sasl.password=***&client.id=me: not a valid URL"), message
    with pytest.raises(ConfigurationError) as raised:
        open_store("postgresql://eventbus:hunter2@[::1/db")
    assert "hunter2" not in str(raised.value)
    assert "postgresql://eventbus:***@[::1/db" in str(raised.value)


# 2. An empty URL is a mistake, not a request for the default.


def test_an_empty_broker_url_is_refused_and_an_unset_variable_keeps_the_default(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    event = '{"type": "a"}\n'
    given_empty = eventbus("publish", "orders", "--broker", "", cwd=tmp_path, env=subprocess_env, stdin=event)
    refused(given_empty, "--broker ''", "empty")
    set_empty = eventbus("publish", "orders", cwd=tmp_path, env={**subprocess_env, "EVENTBUS_BROKER": ""}, stdin=event)
    refused(set_empty, "EVENTBUS_BROKER", "empty")
    assert not (tmp_path / "eventbus.db").exists(), "the events went to the default log"

    unset = eventbus("publish", "orders", cwd=tmp_path, env=subprocess_env, stdin=event)
    assert unset.returncode == 0, unset.stderr
    assert (tmp_path / "eventbus.db").exists()


def test_an_empty_url_is_refused_by_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTBUS_BROKER", raising=False)
    with pytest.raises(ConfigurationError, match="empty"):
        open_log("")
    monkeypatch.setenv("EVENTBUS_BROKER", "")
    with pytest.raises(ConfigurationError, match="EVENTBUS_BROKER is set but empty"):
        open_log()


# 3. ?partitions=N takes what `eventbus topics create --partitions` takes.


@pytest.mark.parametrize("scheme", ["sqlite", "memory"])
@pytest.mark.parametrize("count", ["100000000", "99999999999999999999999"])
def test_a_huge_partition_count_in_the_url_is_refused_at_once(
    scheme: str, count: str, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    url = f"{scheme}:///big.db?partitions={count}" if scheme == "sqlite" else f"memory://big?partitions={count}"
    # Without the limit, 100000000 kept the command creating partitions for hours (the timeout fails the test)
    # and the longer count overflowed SQLite's integers deep inside the append.
    result = eventbus(
        "publish", "big", "--broker", url, cwd=tmp_path, env=subprocess_env, stdin='{"type": "a"}\n', timeout=30
    )
    refused(result, url, "partitions", f"{MAX_PARTITIONS:,}")
    assert not (tmp_path / "big.db").exists()


LIMIT_REFUSED = f"partitions must be at most {MAX_PARTITIONS:,} per topic, got {MAX_PARTITIONS + 1}"


def test_the_url_partition_limit_is_the_one_topics_create_has() -> None:
    with pytest.raises(ConfigurationError, match=LIMIT_REFUSED):
        open_log(f"memory://at-the-limit?partitions={MAX_PARTITIONS + 1}")
    with open_log(f"memory://at-the-limit?partitions={MAX_PARTITIONS}") as log:
        log.append("t", [Message(b"x")])
        assert log.topic("t").partitions == MAX_PARTITIONS


def test_a_kafka_url_has_the_same_partition_limit() -> None:
    with pytest.raises(ConfigurationError, match=LIMIT_REFUSED):
        parse_kafka_url(f"kafka://localhost:9092?partitions={MAX_PARTITIONS + 1}", environ={})
    assert parse_kafka_url(f"kafka://h?partitions={MAX_PARTITIONS}", environ={}).default_partitions == MAX_PARTITIONS
