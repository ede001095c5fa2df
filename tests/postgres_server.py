"""A throwaway PostgreSQL server for the test session, from the machine's PostgreSQL binaries.

``initdb`` refuses to run as root, so the server runs as the ``postgres`` user, in a directory made with
``tempfile.mkdtemp`` and given to that user; it listens on a free loopback port with fsync off. Set
``EVENTBUS_TEST_POSTGRES=postgresql://...`` to use a server of your own instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN_DIRS = [Path("/usr/lib/postgresql/15/bin"), *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]


def find_binaries() -> Path | None:
    for directory in BIN_DIRS:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yield its URL; stop it and delete its files."""
    external = os.environ.get("EVENTBUS_TEST_POSTGRES")
    if external:
        yield external
        return
    binaries = find_binaries()
    if binaries is None:
        raise RuntimeError("PostgreSQL server binaries not found (install postgresql-15; .ci/run does)")
    data = Path(tempfile.mkdtemp(prefix="eventbus-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    log_file = data / "server.log"
    subprocess.run(
        _as_postgres([str(binaries / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres", "--no-sync"]),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c fsync=off -c max_connections=200"
    subprocess.run(
        _as_postgres(
            [str(binaries / "pg_ctl"), "-D", str(data / "db"), "-l", str(log_file), "-o", options, "-w", "start"]
        ),
        check=True,
        capture_output=True,
    )
    try:
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        _wait_for(url)
        yield url
    finally:
        subprocess.run(
            _as_postgres([str(binaries / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"]),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)


def _wait_for(url: str, timeout_s: float = 30) -> None:
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def fresh_database(url: str) -> str:
    """A new, empty database on the server at ``url``; returns its URL."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + f"/{name}"
