"""A Confluent Schema Registry for tests: the REST endpoints confluent-kafka's client uses, served over real HTTP on
loopback, with an embedded registry behind them.

It answers as the Confluent registry does (paths, JSON bodies, error codes), so confluent-kafka's
`SchemaRegistryClient`, `AvroSerializer` and `AvroDeserializer` talk to it unchanged. ``requests`` records every
request made, for tests that count round trips.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from eventbus.schemas.compatibility import Compatibility
from eventbus.schemas.embedded import EmbeddedRegistry, open_embedded_registry
from eventbus.schemas.errors import IncompatibleSchemaError, SchemaError, SchemaNotFoundError

_names = itertools.count()


class _HttpError(Exception):
    """An error answer, with the registry's status and error body."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _error(status: int, code: int, message: str) -> _HttpError:
    return _HttpError(status, {"error_code": code, "message": message})


@dataclass
class RegistryServer:
    url: str
    registry: EmbeddedRegistry
    requests: list[tuple[str, str]] = field(default_factory=list)


def _registered(registry: EmbeddedRegistry, subject: str, version: str) -> dict[str, Any]:
    versions = registry.versions(subject)
    if not versions:
        raise _error(404, 40401, f"Subject '{subject}' not found.")
    chosen = versions[-1] if version == "latest" else next((v for v in versions if str(v.version) == version), None)
    if chosen is None:
        raise _error(404, 40402, f"Version {version} not found.")
    return {"subject": subject, "version": chosen.version, "id": chosen.schema_id, "schema": chosen.schema}


def _route(registry: EmbeddedRegistry, method: str, parts: list[str], body: Any) -> Any:
    if method == "GET" and parts == ["subjects"]:
        return registry.subjects()
    if parts[:2] == ["schemas", "ids"] and len(parts) == 3 and method == "GET":
        try:
            return {"schema": registry.schema_by_id(int(parts[2]))}
        except SchemaNotFoundError:
            raise _error(404, 40403, f"Schema {parts[2]} not found") from None
    if parts[:1] == ["config"]:
        subject = parts[1] if len(parts) > 1 else None
        if method == "PUT":
            registry.set_compatibility(Compatibility.parse(body["compatibility"]), subject)
            return {"compatibility": body["compatibility"].upper()}
        return {"compatibilityLevel": registry.compatibility(subject).value}
    if parts[:1] == ["subjects"] and len(parts) >= 2:
        return _route_subject(registry, method, parts[1], parts[2:], body)
    raise _error(404, 404, "Not found")


def _route_subject(registry: EmbeddedRegistry, method: str, subject: str, rest: list[str], body: Any) -> Any:
    if not rest and method == "POST":
        try:
            found = registry.lookup(subject, body["schema"])
        except SchemaError as exc:
            raise _error(422, 42201, f"Invalid schema: {exc}") from None
        if found is None:
            raise _error(404, 40403 if registry.versions(subject) else 40401, "Schema not found")
        return {"subject": subject, "version": found.version, "id": found.schema_id, "schema": found.schema}
    if rest == ["versions"] and method == "GET":
        if not registry.versions(subject):
            raise _error(404, 40401, f"Subject '{subject}' not found.")
        return [v.version for v in registry.versions(subject)]
    if rest == ["versions"] and method == "POST":
        try:
            added = registry.register(subject, body["schema"])
        except IncompatibleSchemaError as exc:
            raise _error(409, 409, f"Schema being registered is incompatible with an earlier schema: {exc}") from None
        except SchemaError as exc:
            raise _error(422, 42201, f"Invalid schema: {exc}") from None
        return {"id": added.schema_id, "version": added.version, "subject": subject, "schema": added.schema}
    if len(rest) == 2 and rest[0] == "versions" and method == "GET":
        return _registered(registry, subject, rest[1])
    raise _error(405, 405, "Method not allowed")


def _handler(server: RegistryServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            path = urlsplit(self.path).path
            server.requests.append((self.command, path))
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            parts = [unquote(p) for p in path.strip("/").split("/") if p]
            try:
                status, answer = 200, _route(server.registry, self.command, parts, body)
            except _HttpError as exc:
                status, answer = exc.status, exc.body
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _serve  # noqa: N815 - the names http.server dispatches to

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests read ``requests`` instead."""

    return Handler


@contextmanager
def registry_server(registry: EmbeddedRegistry | None = None) -> Iterator[RegistryServer]:
    """A registry served on a free loopback port for as long as the block runs."""
    backing = registry or open_embedded_registry(f"memory://registry-server-{next(_names)}")
    state = RegistryServer("", backing)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    # A short poll interval: shutdown() waits for the serving loop to notice it, once per interval.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), name="registry-server", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
