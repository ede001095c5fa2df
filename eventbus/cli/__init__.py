"""The ``eventbus`` command: a thin layer that parses arguments and calls library functions.

Exit codes: 0 done, 1 a runtime failure, 2 a usage or configuration error (with a message naming it).
Imports are deferred to the subcommand that needs them, so ``eventbus run`` starts fast.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import sys
from collections.abc import Sequence
from typing import cast

from eventbus.observability.logs import (
    LOG_FORMAT_ENV,
    LOG_FORMATS,
    configure_logging,
    default_log_format,
    parse_log_format,
)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
_FULL_OR_FAILING_DEVICE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def check_topic_option(name: str, option: str = "topic") -> str:
    """``name`` if it is a valid topic name, else a `ConfigurationError` naming ``option`` (``--to``) and it."""
    from eventbus.backends.base import check_topic_name
    from eventbus.errors import ConfigurationError

    try:
        return check_topic_name(name)
    except ValueError as exc:
        raise ConfigurationError(f"{option}: {exc}" if option != "topic" else str(exc)) from None


def check_group_option(group: str, option: str = "--group") -> str:
    """``group`` if it can be a consumer group's name, else a `ConfigurationError` naming ``option``.

    Kafka takes any non-empty string as a group id, and groups made by other tools may hold spaces, so those are
    taken; what is refused is what is a slip far more often than meant: an empty name (``run`` would quietly use
    the app's name instead), whitespace at either end (left by shell quoting, it names another group) and control
    characters."""
    from eventbus.errors import ConfigurationError

    if not group:
        raise ConfigurationError(f"{option}: a consumer group name cannot be empty")
    if group != group.strip() or any(not c.isprintable() for c in group):
        raise ConfigurationError(
            f"{option} {group!r}: a group name cannot start or end with whitespace or hold control characters"
        )
    return group


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # argparse declares NoReturn; we exit too
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"eventbus: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from eventbus.cli import dlq, projections, run, schema, streams, topics

    parser = _Parser(prog="eventbus", description="Event bus and stream processing: run, publish, consume, topics.")
    _add_log_options(parser, default_level="INFO", default_format=default_log_format())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    run.register(sub)
    streams.register(sub)
    topics.register(sub)
    dlq.register(sub)
    projections.register(sub)
    schema.register(sub)
    from eventbus.routing.cli import register as register_rules

    # The routing box's command is written against plain ArgumentParser subcommands; ours are a subclass.
    register_rules(cast("argparse._SubParsersAction[argparse.ArgumentParser]", sub))
    _take_log_options_after_commands(parser)
    return parser


def _add_log_options(parser: argparse.ArgumentParser, *, default_level: str, default_format: str) -> None:
    parser.add_argument("--log-level", default=default_level, choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument(
        "--log-format",
        default=default_format,
        type=parse_log_format,
        choices=LOG_FORMATS,
        help=f"json: one JSON object per line, for log shippers (default: ${LOG_FORMAT_ENV}, else text)",
    )


def _take_log_options_after_commands(parser: argparse.ArgumentParser) -> None:
    """Let every command take ``--log-level`` and ``--log-format`` after its name too (``eventbus run app
    --log-level DEBUG``). Suppressed defaults: given there, they override the ones given before the command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in dict.fromkeys(action.choices.values()):  # an alias names its parser again
                _add_log_options(command, default_level=argparse.SUPPRESS, default_format=argparse.SUPPRESS)
                _take_log_options_after_commands(command)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(getattr(logging, args.log_level), args.log_format)
    say = _Say(args.log_format)
    from eventbus.errors import ConfigurationError, EventbusError, TopicNotFoundError

    try:
        code: int = args.handler(args)
    except (ConfigurationError, TopicNotFoundError) as exc:
        say.error("error", f"eventbus: error: {exc}")
        return EXIT_USAGE
    except EventbusError as exc:
        say.error("failed", f"eventbus: failed: {exc}")
        return EXIT_FAILURE
    except KeyboardInterrupt as exc:
        if type(exc).__name__ == "StoppedAtOnce":  # not imported here: eventbus.runtime is slow to import
            say.error(
                "stopped at once",
                f"eventbus: stopped at once ({exc}): events read but not committed will be delivered again",
            )
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. `eventbus consume ... | head`): not an error of ours.
        sys.stderr.close()
        return EXIT_OK
    except OSError as exc:
        if exc.errno not in _FULL_OR_FAILING_DEVICE:
            raise
        # Output to a full disk (`> /dev/full`) or a failing device: say so, and drop what is still buffered
        # for standard output, which would fail again, with a traceback, as the interpreter exits.
        say.error("failed", f"eventbus: failed: cannot write: {exc.strerror}")
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    return code


class _Say:
    """The command's last word on standard error: ``eventbus: error: ...`` as text, or, with ``--log-format
    json``, a log line like every other (a log shipper reading the stream gets JSON only)."""

    def __init__(self, log_format: str) -> None:
        self._json = log_format == "json"

    def error(self, outcome: str, line: str) -> None:
        if self._json:
            logging.getLogger("eventbus").error("%s", line.removeprefix("eventbus: "), extra={"outcome": outcome})
        else:
            print(line, file=sys.stderr)
