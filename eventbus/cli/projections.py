"""``eventbus projections status|rebuild``: where each projection is, and blue/green rebuilds."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from eventbus.cli import EXIT_INTERRUPTED, EXIT_OK


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("projections", help="projection positions and lag; rebuilds")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    status = actions.add_parser("status", help="each projection's version, position and lag")
    rebuild = actions.add_parser("rebuild", help="fold a fresh copy from the start of the log, then swap it in")
    rebuild.add_argument("name", help="the projection to rebuild")
    rebuild.add_argument(
        "--dead-letter",
        action="store_true",
        help="dead-letter events a handler fails on and go on, as the live projection does (default: stop, and "
        "keep the current version)",
    )
    for action in (status, rebuild):
        action.add_argument("--app", required=True, metavar="MODULE[:ATTR]", help="the module declaring them")
        action.add_argument("--broker", help="log URL (default: $EVENTBUS_BROKER or sqlite:///eventbus.db)")
    status.set_defaults(handler=handle_status)
    rebuild.set_defaults(handler=handle_rebuild)


def handle_status(args: argparse.Namespace) -> int:
    from eventbus.app.projection import resolve_store_url
    from eventbus.backends import open_log
    from eventbus.backends.base import TopicPartition
    from eventbus.errors import TopicNotFoundError
    from eventbus.loader import load_app
    from eventbus.projections import open_store

    app = load_app(args.app)
    if not app.projections:
        print(f"app {app.name!r} declares no projections")
        return EXIT_OK
    with open_log(args.broker) as log:
        for name, projection in sorted(app.projections.items()):
            url = resolve_store_url(projection.store)
            with open_store(url) as store:
                # Looking must not make it: a projection no worker has started on has no version yet.
                version = store.find_version(name)
                position = {} if version is None else store.checkpoints(name, version)
            lag = ahead = 0
            lines = []
            for topic in projection.topics:
                try:
                    states = log.watermarks(topic)
                except TopicNotFoundError:
                    lines.append(f"  {topic}  not in the log (yet)")
                    continue
                for state in states:
                    at = position.get(TopicPartition(topic, state.partition), 0)
                    line = f"  {topic}[{state.partition}]  at {at:>10}  end {state.end_offset:>10}  "
                    if at > state.end_offset:
                        # A negative lag would read as "ahead"; the worker refuses to fold such a partition.
                        ahead += 1
                        lines.append(line + "AHEAD OF THE LOG: folded from another log; rebuild it from this one")
                        continue
                    lag += state.end_offset - at
                    lines.append(line + f"lag {state.end_offset - at:>8}")
            shown = "not started (nothing folded yet)" if version is None else f"version {version}"
            warning = f", {ahead} partition(s) ahead of the log" if ahead else ""
            print(f"projection {name}: {shown}, lag {lag}{warning}, store {url}")
            for line in lines:
                print(line)
    return EXIT_OK


def handle_rebuild(args: argparse.Namespace) -> int:
    from eventbus.backends import open_log
    from eventbus.errors import ConfigurationError
    from eventbus.loader import load_app
    from eventbus.projections.rebuild import rebuild

    app = load_app(args.app)
    projection = app.projections.get(args.name)
    if projection is None:
        known = ", ".join(sorted(app.projections)) or "none"
        raise ConfigurationError(f"app {app.name!r} has no projection {args.name!r} (it has: {known})")
    shown = {"at": -1}

    def progress(done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if sys.stderr.isatty():
            width = 30
            filled = width * done // max(total, 1)
            bar = "#" * filled + "-" * (width - filled)
            print(f"\rrebuilding {args.name} [{bar}] {done}/{total} events", end="", file=sys.stderr, flush=True)
        elif percent >= shown["at"] + 10 or done == total:
            shown["at"] = percent
            print(f"rebuilding {args.name}: {done}/{total} events ({percent}%)", file=sys.stderr, flush=True)

    from eventbus.codecs.avro import LazyAvroDecoder

    with open_log(args.broker) as log:
        avro = LazyAvroDecoder(app.schema_settings, log, lambda: app.schema_set)
        try:
            version = rebuild(projection, log, progress=progress, avro=avro, dead_letter_failures=args.dead_letter)
        except KeyboardInterrupt:
            # Before its swap a rebuild changes nothing readers see: say so, as Ctrl-C leaves people wondering.
            print(
                f"\nrebuilding {args.name}: interrupted; the current version is unchanged (the partial copy is dropped"
                " at the next rebuild's swap)",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"projection {args.name}: version {version} is now current")
    return EXIT_OK
