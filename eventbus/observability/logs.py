"""Structured logs: one JSON object per line (``eventbus --log-format json``), for log shippers and processors.

Each line holds ``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``, ``message``, ``pid`` (several worker
processes write to one stream under ``--workers``), ``exception`` when one was logged, and whatever the call passed
as ``extra=``. Text mode is the classic ``time LEVEL logger: message`` line.

The format is chosen with ``--log-format`` or ``EVENTBUS_LOG_FORMAT``; ``--workers`` passes it to its workers.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Final, TextIO

import orjson

LOG_FORMATS: Final = ("text", "json")
LOG_FORMAT_ENV: Final = "EVENTBUS_LOG_FORMAT"
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What every LogRecord has; anything else on a record came from ``extra=`` and is written as a field of its own.
_STANDARD_ATTRIBUTES: Final = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys() | {"message", "asctime", "taskName"}
)


class JsonLogFormatter(logging.Formatter):
    """A log record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        millis = int((record.created - seconds) * 1000)
        entry: dict[str, Any] = {
            "time": f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{millis:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRIBUTES and name not in entry:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra= value JSON has no form for (a path, an exception) is written as its text.
        return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def default_log_format() -> str:
    """``EVENTBUS_LOG_FORMAT`` (``text`` when it is unset or empty). A value that names no format is returned as
    it is, for `parse_log_format` to refuse: logs a shipper cannot parse are worse than a command that says why it
    will not start."""
    chosen = os.environ.get(LOG_FORMAT_ENV, "").strip()
    return chosen.lower() if chosen.lower() in LOG_FORMATS else chosen or "text"


def parse_log_format(text: str) -> str:
    """``--log-format``'s value (its default included, which comes from ``EVENTBUS_LOG_FORMAT``)."""
    chosen = text.strip().lower()
    if chosen not in LOG_FORMATS:
        import argparse

        raise argparse.ArgumentTypeError(
            f"{text!r} is not a log format (choose {' or '.join(LOG_FORMATS)}; the default is ${LOG_FORMAT_ENV})"
        )
    return chosen


def configure_logging(level: int, log_format: str, stream: TextIO | None = None) -> None:
    """Send the process's logs to ``stream`` (standard error) in ``log_format``, at ``level`` and above.

    As `logging.basicConfig`, it leaves a process whose logging someone else set up (a host application, a test
    runner) as it is; a handler it installed itself is replaced."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, _OURS, False):
            root.removeHandler(existing)
    if root.handlers:
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLogFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    setattr(handler, _OURS, True)
    root.addHandler(handler)
    root.setLevel(level)


_OURS: Final = "_eventbus_handler"
