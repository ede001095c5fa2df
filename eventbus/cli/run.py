"""``eventbus run MODULE[:ATTR]``: run an app's processors."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
from typing import Any

from eventbus.cli import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

MAX_PORT = 65535

# A round holds every record of a poll in memory: past a million, a larger --max-poll-records is a typo.
MAX_POLL_RECORDS = 1_000_000


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("run", help="run every processor an app declares until stopped")
    parser.add_argument("app", metavar="MODULE[:ATTR]", help="module (and attribute) holding the App")
    parser.add_argument("--broker", help="log URL (default: $EVENTBUS_BROKER or sqlite:///eventbus.db)")
    parser.add_argument("--group", help="consumer group (default: the app's name)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the partitions")
    parser.add_argument("--until-idle", action="store_true", help="stop once every subscribed partition is caught up")
    parser.add_argument("--max-poll-records", type=int, default=2000, help="records per poll (default 2000)")
    parser.add_argument(
        "--commit-interval-ms",
        type=float,
        help="commit the rounds processed within this interval together (default: every round on SQLite, 100 ms "
        "on Kafka; 0: every round)",
    )
    parser.add_argument(
        "--http", type=int, metavar="PORT", help="serve projection reads, event ingress, /metrics and /healthz"
    )
    parser.add_argument(
        "--guarantee",
        choices=["at_least_once", "exactly_once"],
        default="at_least_once",
        help="exactly_once commits outputs and offsets atomically (SQLite always does; Kafka uses transactions)",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from eventbus.cli import check_group_option
    from eventbus.cli.supervisor import MAX_WORKERS
    from eventbus.errors import ConfigurationError

    if args.workers < 1:
        raise ConfigurationError(f"--workers must be at least 1, got {args.workers}")
    if args.workers > MAX_WORKERS:
        raise ConfigurationError(f"--workers {args.workers}: at most {MAX_WORKERS} worker processes per supervisor")
    if args.http is not None and not 0 <= args.http <= MAX_PORT:
        raise ConfigurationError(f"--http {args.http}: a port is 0 to {MAX_PORT} (0: any free port)")
    if args.group is not None:
        check_group_option(args.group)
    if not 1 <= args.max_poll_records <= MAX_POLL_RECORDS:
        raise ConfigurationError(f"--max-poll-records must be 1 to {MAX_POLL_RECORDS:,}, got {args.max_poll_records}")
    if args.commit_interval_ms is not None and not 0 <= args.commit_interval_ms < math.inf:  # nan fails too
        raise ConfigurationError(f"--commit-interval-ms must be 0 or more, got {args.commit_interval_ms:g}")
    if args.workers > 1:
        return _supervise(args)
    from eventbus.cli.supervisor import SUPERVISOR_PID_ENV, stop_with_supervisor, supervised_index

    stop_with_supervisor()
    from eventbus.observability.metrics import share_with_supervisor

    share_with_supervisor()
    from eventbus.backends import open_log
    from eventbus.backends.base import ConsumerSettings
    from eventbus.loader import load_app
    from eventbus.runtime import AppRunner, WorkerSettings, run_worker

    app = load_app(args.app)
    log = open_log(args.broker)
    try:
        settings = WorkerSettings(
            group=args.group,
            until_idle=args.until_idle,
            max_poll_records=args.max_poll_records,
            commit_interval_ms=args.commit_interval_ms,
            consumer=ConsumerSettings(processing_guarantee=args.guarantee, worker_index=supervised_index()),
        )
        # Under a supervisor, a stop may reach the worker twice (see run_worker): only the supervisor's own
        # second stop, a different signal, stops it at once.
        supervised = os.environ.get(SUPERVISOR_PID_ENV) is not None
        run_worker(AppRunner(app, log, settings, http_port=args.http), repeat_stops_at_once=not supervised)
    finally:
        log.close()
    return EXIT_OK


def _supervise(args: argparse.Namespace) -> int:
    """Run ``--workers`` processes of one group under a `Supervisor`."""
    from eventbus.backends import broker_url
    from eventbus.cli.supervisor import Supervisor
    from eventbus.loader import load_app
    from eventbus.observability.metrics import shared_directory

    load_app(args.app)  # report a bad module once, here, rather than once per child
    broker_url(args.broker)  # and an empty --broker, which the children would not be passed
    argv = [sys.executable, "-m", "eventbus", "--log-level", args.log_level, "--log-format", args.log_format]
    argv += ["run", args.app]
    for flag, value in (("--broker", args.broker), ("--group", args.group)):
        if value:  # an empty --group was refused above
            argv += [flag, value]
    argv += ["--max-poll-records", str(args.max_poll_records), "--guarantee", args.guarantee]
    if args.commit_interval_ms is not None:
        argv += ["--commit-interval-ms", str(args.commit_interval_ms)]
    if args.until_idle:
        argv.append("--until-idle")
    # Only the first worker serves HTTP: the others would compete for the port.
    first = [*argv, "--http", str(args.http)] if args.http is not None else argv
    supervisor = Supervisor([first, *[argv] * (args.workers - 1)])
    signal.signal(signal.SIGINT, supervisor.forward)
    signal.signal(signal.SIGTERM, supervisor.forward)
    # The worker serving /metrics reports for all of them: they share their values through this directory.
    with shared_directory() if args.http is not None else contextlib.nullcontext():
        succeeded = supervisor.run()
    if succeeded:
        return EXIT_INTERRUPTED if supervisor.stopped_at_once else EXIT_OK
    return EXIT_USAGE if supervisor.misconfigured else EXIT_FAILURE
