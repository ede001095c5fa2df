"""HTTP for a running app (``eventbus run --http PORT``): projection reads, event ingress, /metrics, /healthz.

- ``GET /projections/NAME/KEY`` — one row: ``{"key", "value", "position"}`` (404 when there is none).
- ``GET /projections/NAME?field=value&limit=N`` — rows whose fields equal the values (a value is read as JSON when
  it parses, so ``balance=100`` is a number and ``owner=ada`` a string), types included; ``field=null`` matches a
  field that is null or missing. A list or object to compare with, or an integer outside 64 bits, answers 400;
  ``limit`` is a whole number (brought within 1 to 10,000).
- Both take ``after=TOPIC/PARTITION/OFFSET`` (repeatable) and ``timeout_s``: the read waits until the projection
  has folded past that event — read-your-writes, with the position a publish returned. ``timeout_s`` is a finite
  number of seconds >= 0 (default 5, at most 30); a wait that runs out answers 504. A partition the projection
  does not read answers 400 at once, saying which it reads. At most ``MAX_CONCURRENT_WAITS`` reads wait at once;
  more answer 503 with ``Retry-After``.
- ``POST /topics/TOPIC`` — publish one CloudEvent, in structured mode (``application/cloudevents+json``, or plain
  JSON) or binary mode (``ce-*`` headers, each given once, UTF-8 and percent-decoded, the body as data); answers
  201 with ``{"id", "topic", "partition", "offset"}``. Batch mode (``application/cloudevents-batch+json``, up to
  1,000 events) answers a list of those, or refuses the whole batch, naming the event by its index. Events are
  written as the app declares: Avro records, checked against their schemas, to its ``codec="avro"`` topics. An
  event that cannot be written (data that does not fit its schema, or nested too deeply) answers 400; other media
  types 415; a topic that does not exist (and the app does not declare) 404. A body that has not all arrived
  within ``body_timeout_s`` (default 30 s) answers 408 and the connection is closed; a client that hangs up part
  way through its body has published nothing.
- ``GET /metrics`` (Prometheus text format: `eventbus.observability.metrics`, the group's consumer lag included)
  and ``GET /healthz``.

Every refusal is JSON, ``{"error": ...}`` naming the culprit, aiohttp's own (404, 405, 413) included.

Served by aiohttp on an event loop and thread of its own, so a processor that holds the worker's thread never holds
up /healthz or /metrics; store and log calls run on a thread so they never hold up that loop.
A read waiting for a position sleeps on the event loop, not on a thread, and looks at the position on a small pool
of its own: however many reads wait, ingress and /metrics keep the shared executor's threads.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson

from eventbus.app import App
from eventbus.backends.base import Log, Message, TopicPartition
from eventbus.errors import ConfigurationError, EventbusError, InvalidEventError, TopicNotFoundError
from eventbus.event import Event, complete
from eventbus.observability import metrics

if TYPE_CHECKING:
    from aiohttp import web

    from eventbus.publisher import EventEncoder

logger = logging.getLogger("eventbus.http")

MAX_WAIT_S = 30.0
MAX_CONCURRENT_WAITS = 64
WAIT_THREADS = 2
WAIT_RETRY_AFTER_S = 1
MAX_BODY_BYTES = 1 << 20
MAX_QUERY_LIMIT = 10_000
BODY_TIMEOUT_S = 30.0


def _json(payload: Any, status: int = 200) -> web.Response:
    from aiohttp import web

    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def _problem(status: int, message: str) -> web.Response:
    # A message may quote what the client sent, and a request's bytes that are not UTF-8 reach Python as lone
    # surrogates, which JSON cannot carry: they are shown escaped rather than turning a 4xx into a 500.
    return _json({"error": message.encode("utf-8", "backslashreplace").decode("utf-8")}, status)


def _is_whole_number(text: str) -> bool:
    # str.isdigit alone takes '²' and other digits int() refuses.
    return text.isascii() and text.isdigit()


def _parse_after(values: list[str]) -> list[tuple[str, TopicPartition, int]]:
    """Each ``after=`` value, as given (for messages), with the partition and offset it names."""
    found = []
    for value in values:
        parts = value.rsplit("/", 2)
        if len(parts) != 3 or not _is_whole_number(parts[1]) or not _is_whole_number(parts[2]):
            raise ValueError(f"after={value!r}: expected TOPIC/PARTITION/OFFSET")
        found.append((value, TopicPartition(parts[0], int(parts[1])), int(parts[2])))
    return found


def _parse_limit(text: str) -> int:
    """``limit=``: a whole number of rows; past the bounds it is brought within them rather than refused."""
    if not _is_whole_number(text.removeprefix("-")):
        raise ValueError(f"limit={text!r}: expected a whole number of rows (1 to {MAX_QUERY_LIMIT})")
    return max(1, min(int(text), MAX_QUERY_LIMIT))


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
    def __init__(self, app: App, log: Log, *, body_timeout_s: float = BODY_TIMEOUT_S) -> None:
        self.app = app
        self.log = log
        self.body_timeout_s = body_timeout_s
        self._readers: dict[str, Any] = {}
        self._waiting = 0
        self._wait_executor: ThreadPoolExecutor | None = None
        self._source = f"/{app.name}/http"
        self._encoder: EventEncoder | None = None
        self._encoder_lock = threading.Lock()
        # Partition counts of the topics projections read, as last looked up (they only ever grow).
        self._partitions: dict[str, int] = {}

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

        application = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[web.middleware(_json_errors)])
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
        refused = await self._refuse_wait(name, after)
        if refused is not None:
            return refused
        reader = self._reader(name)
        deadline = asyncio.get_running_loop().time() + timeout_s
        self._waiting += 1
        try:
            for _, tp, offset in after:
                if not await self._wait_for(reader, tp, offset, deadline):
                    return _problem(504, f"projection {name!r} had not folded {tp}@{offset} within {timeout_s:g} s")
        finally:
            self._waiting -= 1
        return None

    async def _refuse_wait(self, name: str, after: Sequence[tuple[str, TopicPartition, int]]) -> web.Response | None:
        """400 for a wait that could only run out, 503 when too many reads wait already; else None."""
        unread = await self._unread(name, after)
        if unread is not None:
            return _problem(400, unread)
        if self._waiting >= MAX_CONCURRENT_WAITS:
            response = _problem(503, f"{self._waiting} reads are already waiting for a position; retry shortly")
            response.headers["Retry-After"] = str(WAIT_RETRY_AFTER_S)
            return response
        return None

    async def _unread(self, name: str, after: Sequence[tuple[str, TopicPartition, int]]) -> str | None:
        """Why one of ``after`` names an event projection ``name`` never folds (a topic it does not read, a
        partition its topic does not have), or None: waiting for it could only run out, so it is refused at once."""
        topics = self.app.projections[name].topics
        known = self._partitions
        if all(tp.topic in topics and tp.partition < known.get(tp.topic, 0) for _, tp, _ in after):
            return None
        # Looked up again on a miss: the topic may have been created, or given more partitions, since the last look.
        counts = await self._in_thread(self._partition_counts, topics)
        for value, tp, _ in after:
            count = counts.get(tp.topic)
            if count is None or tp.partition >= count:
                reads = ", ".join(_partitions_text(topic, n) for topic, n in counts.items())
                where = f"{tp.topic}/{tp.partition}"
                return f"after={value!r}: projection {name!r} does not read {where}; it reads {reads}"
        return None

    def _partition_counts(self, topics: Sequence[str]) -> dict[str, int | None]:
        counts: dict[str, int | None] = {}
        for topic in topics:
            try:
                counts[topic] = self._partitions[topic] = self.log.topic(topic).partitions
            except TopicNotFoundError:
                counts[topic] = None
        return counts

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
        try:
            # Before waiting: a mistake in the request is answered at once, not after the wait.
            limit = _parse_limit(request.query.get("limit", "100"))
        except ValueError as exc:
            return _problem(400, str(exc))
        problem = await self._wait(request, name)
        if problem is not None:
            return problem
        reserved = {"after", "timeout_s", "limit"}
        equals = {k: _field_value(v) for k, v in request.query.items() if k not in reserved}
        try:
            read = await self._in_thread(lambda: self._reader(name).query(equals, limit=limit))
        except (ValueError, EventbusError) as exc:
            return _problem(400, str(exc))
        return _json({"rows": read.value, "position": read.position_json()})

    async def publish(self, request: web.Request) -> web.Response:
        from eventbus.publisher import event_from_json

        topic = request.match_info["topic"]
        refusal = await self._refuse_topic(topic)
        if refusal is not None:
            return refusal
        body = await self._body(request)
        if not isinstance(body, bytes):
            return body
        try:
            events = _events_from_request(request.headers, body, event_from_json)
        except UnsupportedMediaTypeError as exc:
            return _problem(415, str(exc))
        except (ValueError, InvalidEventError) as exc:
            return _problem(400, str(exc))
        batched = isinstance(events, list)
        batch: list[Event] = events if batched else [events]
        try:
            positions = await self._in_thread(self._append, topic, batch, batched)
        except InvalidEventError as exc:
            return _problem(400, str(exc))
        placed = [
            {"id": event.id, "topic": topic, "partition": partition, "offset": offset}
            for event, (partition, offset) in zip(batch, positions, strict=True)
        ]
        return _json(placed if batched else placed[0], 201)

    async def _refuse_topic(self, topic: str) -> web.Response | None:
        """The answer to a publish to a topic ingress does not take, or None."""
        from eventbus.backends.base import check_topic_name

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
        return None

    async def _body(self, request: web.Request) -> bytes | web.Response:
        """The whole request body, or the answer when it does not all arrive (the connection is then closed)."""
        try:
            return await asyncio.wait_for(request.read(), self.body_timeout_s)
        except TimeoutError:
            # A client that stalls mid-body would otherwise hold its connection (and the body so far) for ever.
            response = _problem(408, f"the request body did not all arrive within {self.body_timeout_s:g} s")
        except ConnectionResetError:
            # The client hung up mid-body: nothing was published and nobody is left to answer.
            logger.debug("%s: the client closed the connection before its body had arrived", request.path)
            response = _problem(400, "the connection closed before the request body had arrived")
        response.force_close()
        return response

    def _append(self, topic: str, events: Sequence[Event], batched: bool) -> list[tuple[int, int]]:
        """`Publisher.publish_many` with the app's encoders, so a topic the app declares Avro gets Avro records
        checked against their schemas; an event that cannot be written is refused by its place in a batch.

        Every event is encoded before any is appended: a batch is written whole, or not at all."""
        encode = self._encoder_for(topic)
        messages: list[Message] = []
        for index, event in enumerate(events):
            try:
                message = encode(complete(event, self._source))
                too_large = self.log.oversized(message)
                if too_large is not None:
                    raise InvalidEventError(f"the event is {too_large}")
                messages.append(message)
            except (InvalidEventError, orjson.JSONEncodeError) as exc:
                # Binary mode (Kafka) leaves the data to orjson, which refuses what structured mode refuses.
                what = str(exc) if isinstance(exc, InvalidEventError) else f"data cannot be written as JSON: {exc}"
                raise InvalidEventError(f"event {index} of the batch: {what}" if batched else what) from None
        return self.log.append(topic, messages)

    def _encoder_for(self, topic: str) -> EventEncoder:
        from eventbus.publisher import Encoders, encoder_for

        with self._encoder_lock:
            if self._encoder is None:
                # Made at the first publish, on a thread: for an app with Avro topics it opens the schema registry.
                self._encoder = encoder_for(self.log, self.app)
            encoder = self._encoder
            return encoder.for_topic(topic) if isinstance(encoder, Encoders) else encoder


def _partitions_text(topic: str, count: int | None) -> str:
    if count is None:
        return f"{topic} (not created yet)"
    return f"{topic}/0" if count == 1 else f"{topic}/0 to {topic}/{count - 1}"


async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Middleware: aiohttp's own refusals (no such route, a method a route does not take, a body too large) in
    the JSON every other answer uses, with the same status and headers."""
    from aiohttp import web

    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            message = (
                f"no route for {request.method} {request.path}: this app serves GET /healthz, GET /metrics,"
                " GET /projections[/NAME[/KEY]] and POST /topics/TOPIC"
            )
        elif exc.status == 405:
            message = f"{request.method} {request.path}: method not allowed (allowed: {exc.headers.get('Allow', '')})"
        else:
            message = exc.text or exc.reason
        response = _problem(exc.status, message)
        for name, value in exc.headers.items():
            if name.lower() not in ("content-type", "content-length"):
                response.headers[name] = value
        return response


class UnsupportedMediaTypeError(ValueError):
    """A request body in a media type ingress does not take."""


_STRUCTURED = "application/cloudevents+json"
_BATCH = "application/cloudevents-batch+json"
_PLAIN_JSON = frozenset({"application/json", "text/json", ""})
MAX_BATCH_EVENTS = 1000


def _events_from_request(headers: Any, body: bytes, from_json: Any) -> Any:
    """The CloudEvent of an HTTP request in structured or binary mode, or the list of them in batch mode (the
    CloudEvents HTTP binding). A body without ``ce-*`` headers in plain JSON is taken as a structured event."""
    content_type = _header_text("Content-Type", headers.get("Content-Type", ""))
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
    attrs = _binary_attributes(headers)
    if content_type:
        attrs["datacontenttype"] = content_type
    if body:
        if media.endswith("json") or not content_type:
            attrs["data"] = _json_body(body)
        else:
            import base64

            attrs["data_base64"] = base64.b64encode(body).decode("ascii")
    return from_json(attrs)


def _binary_attributes(headers: Any) -> dict[str, Any]:
    """The attributes of a binary-mode request, from its ``ce-*`` headers (values percent-encoded where they
    are not printable ASCII); a header given twice is refused, as a CloudEvent has one value per attribute."""
    attrs: dict[str, Any] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if not lowered.startswith("ce-"):
            continue
        if lowered[3:] in attrs:
            raise ValueError(f"header {name}: given more than once (an attribute has one value)")
        try:
            attrs[lowered[3:]] = unquote(_header_text(name, value), errors="strict")
        except UnicodeDecodeError:
            raise ValueError(f"header {name}: its percent-encoded bytes are not valid utf-8 ({value!r})") from None
    return attrs


def _header_text(name: str, value: str) -> str:
    # aiohttp hands bytes that are not UTF-8 over as lone surrogates, which no event (and no JSON) can carry.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"header {name}: its value is not valid utf-8 (percent-encode bytes outside printable ASCII)"
        ) from None
    return value


def _json_body(body: bytes) -> Any:
    from eventbus.publisher import may_hold_wide_integers, refuse_wide_integers

    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"body is not JSON: {exc}") from None
    if may_hold_wide_integers(body):
        refuse_wide_integers(body)  # an integer orjson would have turned into a float: 400 naming where it is
    return parsed


async def serve(app: App, log: Log, port: int, host: str = "0.0.0.0") -> Any:  # noqa: S104 - a server's default
    """Start serving on a thread and event loop of its own; returns what stops it (``await server.cleanup()``).

    Not on the worker's loop: a sync processor runs on that loop's thread, and while one takes seconds (a slow
    call, a big batch) /healthz and /metrics would take as long to answer, and a liveness probe with a timeout
    would have the worker killed for being busy."""
    server = _ServerThread(app, log, port, host)
    await asyncio.get_running_loop().run_in_executor(None, server.start)
    return server


class _ServerThread:
    def __init__(self, app: App, log: Log, port: int, host: str) -> None:
        self._app, self._log, self._port, self._host = app, log, port, host
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="eventbus-http", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        """Start the thread and wait until it serves (or could not)."""
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        runner = None
        try:
            try:
                runner = loop.run_until_complete(self._listen())
            except BaseException as exc:
                self._error = exc
                return
            finally:
                self._started.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    async def _listen(self) -> Any:
        from aiohttp import web

        host, port = self._host, self._port
        runner = web.AppRunner(HttpService(self._app, self._log).routes(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigurationError(
                f"--http {port}: cannot serve HTTP on {host}:{port}: {exc.strerror or exc}"
            ) from None
        bound = [s.getsockname()[1] for s in getattr(site._server, "sockets", None) or ()]  # --http 0: the port
        logger.info("serving HTTP on %s:%d", host, bound[0] if bound else port)
        return runner

    async def cleanup(self) -> None:
        """Stop serving: what is being answered is finished, then the thread ends."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
