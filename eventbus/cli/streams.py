"""``eventbus publish`` and ``eventbus consume``: JSON events, one per line, in and out."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from eventbus.cli import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, check_topic_option

if TYPE_CHECKING:
    from eventbus.backends.base import Message
    from eventbus.publisher import Publisher


def register(sub: argparse._SubParsersAction[Any]) -> None:
    publish = sub.add_parser("publish", help="publish JSON events read from stdin, one per line")
    publish.add_argument("topic")
    publish.add_argument("--broker", help="log URL (default: $EVENTBUS_BROKER or sqlite:///eventbus.db)")
    publish.add_argument("--type", dest="event_type", help="treat each line as the data of an event of this type")
    publish.add_argument("--source", default="/eventbus/cli", help="source of events that name none")
    publish.add_argument(
        "--key-field", help="with --type: use this field of each line's data as the event's partition key"
    )
    publish.set_defaults(handler=handle_publish)

    consume = sub.add_parser("consume", help="print a topic's events as JSON, one per line")
    consume.add_argument("topic")
    consume.add_argument("--broker", help="log URL (default: $EVENTBUS_BROKER or sqlite:///eventbus.db)")
    consume.add_argument("--from-beginning", action="store_true", help="start at the oldest event, not new ones")
    consume.add_argument("--max", type=int, dest="max_events", help="stop after this many events")
    consume.add_argument(
        "--until-end", action="store_true", help="stop at the end of the topic instead of waiting for more"
    )
    consume.set_defaults(handler=handle_consume)


def handle_publish(args: argparse.Namespace) -> int:
    from eventbus.errors import ConfigurationError
    from eventbus.publisher import Publisher

    check_topic_option(args.topic)  # before reading stdin: not a traceback once the first line is published
    for option, value, what in (
        ("--type", args.event_type, "an event type"),
        ("--key-field", args.key_field, "a field name"),
        ("--source", args.source, "a source (leave the option out for /eventbus/cli)"),
    ):
        if value == "":
            # Else --type and --key-field fail once per line, and the publisher takes an empty source for "none".
            raise ConfigurationError(f"{option}: {what} cannot be empty")
    if args.key_field and not args.event_type:
        raise ConfigurationError("--key-field needs --type (lines in CloudEvents form carry their own partitionkey)")
    with Publisher(args.broker, source=args.source) as publisher:
        lines = _LinePublisher(publisher, args.topic, args.event_type, args.key_field)
        with _StopSignals() as stop:
            try:
                _publish_stdin(lines, stop)
            except KeyboardInterrupt:
                # A second Ctrl-C while the last batch was being sent: the log may or may not hold that batch.
                note = f"; stopped at once by a second signal, {len(lines.pending)} event(s) read maybe not published"
                _print_summary(lines, note)
                return EXIT_INTERRUPTED
    if stop.requested():
        note = f"; stopped by {signal.Signals(stop.signum).name} after line {lines.last_line}"
        if lines.partial:
            note += f" (line {lines.last_line + 1} was cut off before its end and not published)"
        _print_summary(lines, note)
        return EXIT_INTERRUPTED
    _print_summary(lines, "")
    return EXIT_FAILURE if lines.rejected else EXIT_OK


def _print_summary(lines: _LinePublisher, note: str) -> None:
    rejected = f"; {lines.rejected} line(s) rejected" if lines.rejected else ""
    print(f"published {lines.published} event(s) to {lines.topic}{rejected}{note}", file=sys.stderr)


class _LinePublisher:
    """Cuts input into numbered lines, turns them into events and publishes those in batches: of ``batch_size``,
    and once the first event of a batch has waited ``linger_s`` (see `wait_s`). A bad line is reported on stderr
    by its number as it is met and skipped; the good ones still go out."""

    def __init__(
        self,
        publisher: Publisher,
        topic: str,
        event_type: str | None,
        key_field: str | None,
        batch_size: int = 1000,
        linger_s: float = 0.15,
    ) -> None:
        from eventbus.event import InvalidEventError
        from eventbus.publisher import line_parser

        self.publisher = publisher
        self.topic = topic
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.pending: list[Message] = []
        self.published = 0
        self.rejected = 0
        self.last_line = 0  # the number of the last line read whole
        self.partial: list[bytes] = []  # a line's beginning, read without its end yet
        self._due: float | None = None  # when the pending batch goes out, however much more is coming
        self._event_of = line_parser(event_type, key_field)
        self._refusals = (InvalidEventError, TypeError)

    def feed(self, chunk: bytes) -> None:
        """Take the lines ``chunk`` ends, keeping a last line without its newline for the next chunk."""
        from eventbus.publisher import may_hold_wide_integers

        if b"\n" not in chunk:
            self.partial.append(chunk)  # joined once its end comes: a long line costs no repeated copying
            return
        pieces = chunk.split(b"\n")
        suspect = may_hold_wide_integers(chunk)
        if self.partial:
            # Its digits may run across the chunks' boundary, out of the sight of the chunk's own check.
            first = b"".join((*self.partial, pieces.pop(0)))
            self.partial = []
            self.add(self.last_line + 1, first, may_hold_wide_integers(first))
        if pieces[-1]:
            self.partial.append(pieces[-1])
        for piece in pieces[:-1]:
            self.add(self.last_line + 1, piece, suspect)

    def end_of_input(self) -> None:
        """The last line may have no newline; then send everything pending."""
        from eventbus.publisher import may_hold_wide_integers

        if self.partial:
            line = b"".join(self.partial)
            self.partial = []
            self.add(self.last_line + 1, line, may_hold_wide_integers(line))
        self.flush()

    def add(self, number: int, line: bytes, suspect: bool = True) -> None:
        """Take line ``number``; ``suspect`` False when a check on more input found no integer beyond 64 bits."""
        self.last_line = number
        if not line.strip():
            return
        try:
            # Encoded here, one line at a time: a line whose record the log would refuse is reported by number.
            self.pending.append(self.publisher.encode(self.topic, self._event_of(line, suspect)))
        except self._refusals as exc:
            self.rejected += 1
            print(f"eventbus: line {number}: {exc}", file=sys.stderr)
            return
        if len(self.pending) >= self.batch_size:
            self.flush()

    def wait_s(self) -> float | None:
        """How long to wait for more input before the pending batch is due, sending it if it is due now; None
        when nothing is pending. Called once per read, not per line: it reads the clock."""
        if not self.pending:
            return None
        now = time.monotonic()
        if self._due is None:
            self._due = now + self.linger_s
        elif now >= self._due:
            self.flush()
            return None
        return self._due - now

    def flush(self) -> None:
        self._due = None
        if self.pending:
            self.published += len(self.publisher.append_encoded(self.topic, self.pending))
            self.pending = []


# Big reads keep a large file's cost per line low; a pipe hands over what it holds, up to its own size.
_CHUNK_BYTES = 1 << 20


def _publish_stdin(lines: _LinePublisher, stop: _StopSignals) -> None:
    """Feed stdin to ``lines`` until the end of input or a stop signal, waiting for input no longer than the
    pending batch may wait; then send what is pending."""
    import selectors

    from eventbus.errors import ConfigurationError

    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        raise ConfigurationError("publish reads its events from stdin, which is closed or not a file") from None
    if sys.platform == "win32":
        # select() takes only sockets there: read as input comes, each batch going out when full or at the end.
        while not stop.requested():
            chunk = os.read(fd, _CHUNK_BYTES)
            if not chunk:
                lines.end_of_input()
                return
            lines.feed(chunk)
        lines.flush()
        return
    # Not the default selector: epoll refuses regular files, and `publish < file` is the common case.
    with selectors.SelectSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        if stop.wakeup_fd is not None:
            selector.register(stop.wakeup_fd, selectors.EVENT_READ)
        while not stop.requested():
            ready = {key.fd for key, _ in selector.select(lines.wait_s())}
            if stop.wakeup_fd in ready:
                stop.drain()
            if fd in ready and not stop.requested():
                chunk = os.read(fd, _CHUNK_BYTES)
                if not chunk:
                    lines.end_of_input()
                    return
                lines.feed(chunk)
    lines.flush()


class _StopSignals:
    """SIGINT and SIGTERM, turned into a request the read loop sees (`signum`), woken from its wait by a byte on
    `wakeup_fd`: what was read is published before stopping. The first signal puts the former handlers back, so a
    second one stops at once, as usual. Signals the process ignores (a background job's SIGINT) stay ignored."""

    def __init__(self) -> None:
        self.signum = 0
        self.wakeup_fd: int | None = None
        self._write_fd: int | None = None
        self._former_wakeup_fd = -1
        self._former: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self  # only the main thread may handle signals; elsewhere they keep their usual effect
        if sys.platform == "win32":
            # No wakeup pipe (pipes cannot be made non-blocking before Python 3.12 there): the flag is seen
            # between reads.
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self._former[signum] = signal.signal(signum, self._on_signal)
            return self
        self.wakeup_fd, self._write_fd = os.pipe()
        os.set_blocking(self.wakeup_fd, False)
        os.set_blocking(self._write_fd, False)
        self._former_wakeup_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) is not signal.SIG_IGN:
                self._former[signum] = signal.signal(signum, self._on_signal)
        return self

    def requested(self) -> bool:
        return self.signum != 0

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signum = signum
        self._restore_handlers()

    def _restore_handlers(self) -> None:
        for signum, handler in self._former.items():
            signal.signal(signum, handler)
        self._former = {}

    def drain(self) -> None:
        """Empty the wakeup pipe, which every signal writes to, handled here or not."""
        assert self.wakeup_fd is not None
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wakeup_fd, 4096):
                pass

    def __exit__(self, *exc_info: object) -> None:
        self._restore_handlers()
        if self.wakeup_fd is None or self._write_fd is None:
            return
        signal.set_wakeup_fd(self._former_wakeup_fd)
        os.close(self.wakeup_fd)
        os.close(self._write_fd)


def handle_consume(args: argparse.Namespace) -> int:

    from eventbus.backends import open_log
    from eventbus.codecs import decode_record, json_values
    from eventbus.codecs.avro import reading_decoder
    from eventbus.errors import ConfigurationError, DecodeError
    from eventbus.reader import read_topic

    check_topic_option(args.topic)
    if args.max_events is not None and args.max_events < 1:
        raise ConfigurationError(f"--max must be at least 1, got {args.max_events}")
    out = sys.stdout.buffer
    bad = 0
    with open_log(args.broker) as log:
        log.topic(args.topic)
        avro = reading_decoder(log)
        follow = not args.until_end
        for record in read_topic(
            log, args.topic, from_beginning=args.from_beginning, max_events=args.max_events, follow=follow
        ):
            try:
                attrs = decode_record(record.value, record.headers, avro)
            except DecodeError as exc:
                bad += 1
                print(f"eventbus: {args.topic}[{record.partition}]@{record.offset}: {exc}", file=sys.stderr)
                continue
            out.write(json_values.dumps(attrs) + b"\n")
            out.flush()
    return EXIT_FAILURE if bad else EXIT_OK
