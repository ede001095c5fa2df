"""HTTP for a running app (``eventbus run --http PORT``): projection reads, event ingress, /metrics, /healthz.

- ``GET /projections/NAME/KEY`` — one row: ``{"key", "value", "position"}`` (404 when there is none).
- ``GET /projections/NAME?field=value&limit=N`` — rows whose fields equal the values (a value is read as JSON when
  it parses, so ``balance=100`` is a number and ``owner=ada`` a string), types included; ``field=null`` matches a
  field that is null or missing. A list or object to compare with answers 400.
- Both take ``after=TOPIC/PARTITION/OFFSET`` (repeatable) and ``timeout_s``: the read waits until the projection
  has folded past that event — read-your-writes, with the position a publish returned. ``timeout_s`` is a finite
  number of seconds >= 0 (default 5, at most 30); a wait that runs out answers 504. At most
  ``MAX_CONCURRENT_WAITS`` reads wait at once; more answer 503 with ``Retry-After``.
- ``POST /topics/TOPIC`` — publish one CloudEvent, in structured mode (``application/cloudevents+json``, or plain
  JSON) or binary mode (``ce-*`` headers, percent-decoded, the body as data); answers 201 with ``{"id", "topic",
  "partition", "offset"}``. Batch mode (``application/cloudevents-batch+json``, up to 1,000 events) answers a list
  of those. Other media types answer 415; a topic that does not exist (and the app does not declare) 404.
- ``GET /metrics`` (Prometheus text format) and ``GET /healthz``.

Served by aiohttp on the worker's own event loop; store and log calls run on a thread so they never hold it up.
A read waiting for a position sleeps on the event loop, not on a thread, and looks at the position on a small pool
of its own: however many reads wait, ingress and /metrics keep the shared executor's threads.
"""

from __future__ import annotations

import asyncio
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson

from eventbus.app import App
from eventbus.backends.base import Log, TopicPartition
from eventbus.errors import ConfigurationError, EventbusError, InvalidEventError, TopicNotFoundError
from eventbus.observability import metrics

if TYPE_CHECKING:
    from aiohttp import web

logger = logging.getLogger("eventbus.http")

MAX_WAIT_S = 30.0
MAX_CONCURRENT_WAITS = 64
WAIT_THREADS = 2
WAIT_RETRY_AFTER_S = 1
MAX_BODY_BYTES = 1 << 20


def _json(payload: Any, status: int = 200) -> web.Response:
    from aiohttp import web

    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def _problem(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _parse_after(values: list[str]) -> list[tuple[TopicPartition, int]]:
    found = []
    for value in values:
        parts = value.rsplit("/", 2)
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise ValueError(f"after={value!r}: expected TOPIC/PARTITION/OFFSET")
        found.append((TopicPartition(parts[0], int(parts[1])), int(parts[2])))
    return found


def _parse_timeout(text: str) -> float:
    try:
        timeout_s = float(text)
    except ValueError:
        raise ValueError(f"timeout_s={text!r}: expected a number of seconds") from None
    if not math.isfinite(timeout_s) or timeout_s < 0:
        raise ValueError(f"timeout_s={text!r}: expected a finite number of seconds >= 0")
    return min(timeout_s, MAX_WAIT_S)


def _field_value(text: str) -> object:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


class HttpService:
    def __init__(self, app: App, log: Log) -> None:
        self.app = app
        self.log = log
        self._readers: dict[str, Any] = {}
        self._waiting = 0
        self._wait_executor: ThreadPoolExecutor | None = None

    def _reader(self, name: str) -> Any:
        reader = self._readers.get(name)
        if reader is None:
            reader = self._readers[name] = self.app.projections[name].reader()
        return reader

    async def _in_thread(self, func: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, func, *args)

    async def _folded(self, reader: Any, tp: TopicPartition, offset: int) -> bool:
        # Its own pool: a slow store holds up waiting reads, never ingress or /metrics on the shared executor.
        if self._wait_executor is None:
            self._wait_executor = ThreadPoolExecutor(WAIT_THREADS, thread_name_prefix="eventbus-http-wait")
        return bool(await asyncio.get_running_loop().run_in_executor(self._wait_executor, reader.folded, tp, offset))

    async def _wait_for(self, reader: Any, tp: TopicPartition, offset: int, deadline: float) -> bool:
        """`ProjectionReader.wait_for` on the event loop: sleeps between looks without holding a thread."""
        loop = asyncio.get_running_loop()
        pause = 0.005
        while not await self._folded(reader, tp, offset):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.1)
        return True

    async def _close(self, application: web.Application) -> None:
        if self._wait_executor is not None:
            self._wait_executor.shutdown(wait=False, cancel_futures=True)
            self._wait_executor = None

    def routes(self) -> web.Application:
        from aiohttp import web

        application = web.Application(client_max_size=MAX_BODY_BYTES)
        application.router.add_get("/healthz", self.healthz)
        application.router.add_get("/metrics", self.metrics)
        application.router.add_get("/projections", self.list_projections)
        application.router.add_get("/projections/{name}", self.query)
        application.router.add_get("/projections/{name}/{key}", self.get)
        application.router.add_post("/topics/{topic}", self.publish)
        application.on_cleanup.append(self._close)
        return application

    async def healthz(self, request: web.Request) -> web.Response:
        return _json({"status": "ok", "app": self.app.name})

    async def metrics(self, request: web.Request) -> web.Response:
        from aiohttp import web

        body = await self._in_thread(metrics.exposition)
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    async def list_projections(self, request: web.Request) -> web.Response:
        names = sorted(self.app.projections)
        return _json({"projections": names})

    async def _wait(self, request: web.Request, name: str) -> web.Response | None:
        if name not in self.app.projections:
            return _problem(404, f"no projection {name!r} (this app has: {', '.join(sorted(self.app.projections))})")
        try:
            after = _parse_after(request.query.getall("after", []))
            timeout_s = _parse_timeout(request.query.get("timeout_s", "5"))
        except ValueError as exc:
            return _problem(400, str(exc))
        if not after:
            return None
        if self._waiting >= MAX_CONCURRENT_WAITS:
            response = _problem(503, f"{self._waiting} reads are already waiting for a position; retry shortly")
            response.headers["Retry-After"] = str(WAIT_RETRY_AFTER_S)
            return response
        reader = self._reader(name)
        deadline = asyncio.get_running_loop().time() + timeout_s
        self._waiting += 1
        try:
            for tp, offset in after:
                if not await self._wait_for(reader, tp, offset, deadline):
                    return _problem(504, f"projection {name!r} had not folded {tp}@{offset} within {timeout_s:g} s")
        finally:
            self._waiting -= 1
        return None

    async def get(self, request: web.Request) -> web.Response:
        name, key = request.match_info["name"], request.match_info["key"]
        problem = await self._wait(request, name)
        if problem is not None:
            return problem
        read = await self._in_thread(self._reader(name).get, key)
        if read.value is None:
            return _json({"error": f"no row {key!r} in projection {name!r}", "position": read.position_json()}, 404)
        return _json({"key": key, "value": read.value, "position": read.position_json()})

    async def query(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        problem = await self._wait(request, name)
        if problem is not None:
            return problem
        reserved = {"after", "timeout_s", "limit"}
        equals = {k: _field_value(v) for k, v in request.query.items() if k not in reserved}
        try:
            limit = max(1, min(int(request.query.get("limit", "100")), 10_000))
            read = await self._in_thread(lambda: self._reader(name).query(equals, limit=limit))
        except (ValueError, EventbusError) as exc:
            return _problem(400, str(exc))
        return _json({"rows": read.value, "position": read.position_json()})

    async def publish(self, request: web.Request) -> web.Response:
        from eventbus.backends.base import check_topic_name
        from eventbus.publisher import Publisher, event_from_json

        topic = request.match_info["topic"]
        try:
            check_topic_name(topic)
        except ValueError as exc:
            return _problem(400, str(exc))
        if topic not in self.app.topics:
            # Ingress faces clients the app does not control: it publishes to topics that exist, never makes one.
            try:
                await self._in_thread(self.log.topic, topic)
            except TopicNotFoundError:
                return _problem(404, f"no topic {topic!r}")
        try:
            body = await request.read()
            events = _events_from_request(request.headers, body, event_from_json)
        except UnsupportedMediaTypeError as exc:
            return _problem(415, str(exc))
        except (ValueError, InvalidEventError) as exc:
            return _problem(400, str(exc))
        publisher = Publisher(self.log, source=f"/{self.app.name}/http")
        if isinstance(events, list):
            positions = await self._in_thread(publisher.publish_many, topic, events)
            placed = [
                {"id": event.id, "topic": p.topic, "partition": p.partition, "offset": p.offset}
                for event, p in zip(events, positions, strict=True)
            ]
            return _json(placed, 201)
        position = await self._in_thread(publisher.publish, topic, events)
        return _json(
            {"id": events.id, "topic": position.topic, "partition": position.partition, "offset": position.offset},
            201,
        )


class UnsupportedMediaTypeError(ValueError):
    """A request body in a media type ingress does not take."""


_STRUCTURED = "application/cloudevents+json"
_BATCH = "application/cloudevents-batch+json"
_PLAIN_JSON = frozenset({"application/json", "text/json", ""})
MAX_BATCH_EVENTS = 1000


def _events_from_request(headers: Any, body: bytes, from_json: Any) -> Any:
    """The CloudEvent of an HTTP request in structured or binary mode, or the list of them in batch mode (the
    CloudEvents HTTP binding). A body without ``ce-*`` headers in plain JSON is taken as a structured event."""
    content_type = headers.get("Content-Type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media == _BATCH:
        parsed = _json_body(body)
        if not isinstance(parsed, list):
            raise ValueError(f"a batch ({_BATCH}) is a JSON array of CloudEvents, got {type(parsed).__name__}")
        if not 0 < len(parsed) <= MAX_BATCH_EVENTS:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH_EVENTS} events, got {len(parsed)}")
        events = []
        for index, item in enumerate(parsed):
            try:
                events.append(from_json(item))
            except InvalidEventError as exc:
                raise InvalidEventError(f"event {index} of the batch: {exc}") from None
        return events
    binary = any(name.lower().startswith("ce-") for name in headers)
    if media == _STRUCTURED or (not binary and media in _PLAIN_JSON):
        return from_json(_json_body(body))
    if not binary:
        raise UnsupportedMediaTypeError(
            f"Content-Type {content_type!r}: send a CloudEvent as {_STRUCTURED}, as a batch ({_BATCH}), or in "
            "binary mode (its attributes in ce-* headers)"
        )
    # Binary mode: header values are percent-encoded where they are not printable ASCII.
    attrs: dict[str, Any] = {
        name.lower()[3:]: unquote(value, errors="strict")
        for name, value in headers.items()
        if name.lower().startswith("ce-")
    }
    if content_type:
        attrs["datacontenttype"] = content_type
    if body:
        if media.endswith("json") or not content_type:
            attrs["data"] = _json_body(body)
        else:
            import base64

            attrs["data_base64"] = base64.b64encode(body).decode("ascii")
    return from_json(attrs)


def _json_body(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"body is not JSON: {exc}") from None


async def serve(app: App, log: Log, port: int, host: str = "0.0.0.0") -> Any:  # noqa: S104 - a server's default
    """Start serving; returns the aiohttp runner (``await runner.cleanup()`` to stop)."""
    from aiohttp import web

    runner = web.AppRunner(HttpService(app, log).routes(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigurationError(f"--http {port}: cannot serve HTTP on {host}:{port}: {exc.strerror or exc}") from None
    bound = [s.getsockname()[1] for s in getattr(site._server, "sockets", None) or ()]  # --http 0: the port chosen
    logger.info("serving HTTP on %s:%d", host, bound[0] if bound else port)
    return runner
