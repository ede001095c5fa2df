"""``eventbus topics``: list, create and describe topics."""

from __future__ import annotations

import argparse
from typing import Any

from eventbus.backends.base import MAX_PARTITIONS
from eventbus.cli import EXIT_OK, check_topic_option


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("topics", help="list, create and describe topics")
    parser.add_argument("--broker", help="log URL (default: $EVENTBUS_BROKER or sqlite:///eventbus.db)")
    parser.set_defaults(handler=handle_list)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="every topic with its partition count")
    listing.set_defaults(handler=handle_list)
    create = actions.add_parser("create", help="create a topic, or every topic an app declares (--app)")
    create.add_argument("name", nargs="?")
    create.add_argument("--partitions", type=int, default=1)
    create.add_argument("--app", metavar="MODULE[:ATTR]", help="create the topics this app declares (app.topic)")
    create.add_argument("--exist-ok", action="store_true", help="do nothing if it exists with that many partitions")
    create.set_defaults(handler=handle_create)
    describe = actions.add_parser("describe", help="partitions with their offsets, and each group's lag")
    describe.add_argument("name")
    describe.set_defaults(handler=handle_describe)
    for action in (listing, create, describe):
        action.add_argument("--broker", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def handle_list(args: argparse.Namespace) -> int:
    from eventbus.backends import open_log

    with open_log(args.broker) as log:
        topics = log.list_topics()
    if not topics:
        print("(no topics)")
    width = max((len(t.name) for t in topics), default=5)
    for topic in topics:
        print(f"{topic.name:<{width}}  {topic.partitions} partition{'s' if topic.partitions != 1 else ''}")
    return EXIT_OK


def handle_create(args: argparse.Namespace) -> int:
    from eventbus.backends import open_log
    from eventbus.errors import ConfigurationError

    if args.partitions < 1:
        raise ConfigurationError(f"--partitions must be at least 1, got {args.partitions}")
    if args.partitions > MAX_PARTITIONS:
        raise ConfigurationError(f"--partitions {args.partitions}: at most {MAX_PARTITIONS:,} partitions per topic")
    if args.name is not None and args.app is not None:
        raise ConfigurationError(f"give a topic NAME ({args.name!r}) or --app {args.app}, not both")
    if args.name is None and args.app is None:
        raise ConfigurationError("give a topic NAME, or --app MODULE to create the topics an app declares")
    if args.app is not None:
        return _create_declared(args)
    check_topic_option(args.name)
    with open_log(args.broker) as log:
        try:
            info = log.create_topic(args.name, args.partitions, exist_ok=args.exist_ok)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
    if info.partitions != args.partitions:
        raise ConfigurationError(f"topic {info.name!r} exists with {info.partitions} partitions, not {args.partitions}")
    print(f"{info.name}: {info.partitions} partition{'s' if info.partitions != 1 else ''}")
    return EXIT_OK


def _create_declared(args: argparse.Namespace) -> int:
    from eventbus.backends import open_log
    from eventbus.errors import ConfigurationError
    from eventbus.loader import load_app

    app = load_app(args.app)
    if not app.topics:
        raise ConfigurationError(
            f"app {app.name!r} declares no topics (declare them with app.topic(name, partitions=N))"
        )
    with open_log(args.broker) as log:
        for spec in app.topics.values():
            info = log.ensure_topic(spec.name, spec.partitions)
            if info.partitions != spec.partitions:
                raise ConfigurationError(
                    f"topic {spec.name!r} exists with {info.partitions} partitions; app {app.name!r} declares "
                    f"{spec.partitions}"
                )
            print(f"{info.name}: {info.partitions} partition{'s' if info.partitions != 1 else ''}")
    return EXIT_OK


def handle_describe(args: argparse.Namespace) -> int:
    from eventbus.backends import open_log

    check_topic_option(args.name)
    with open_log(args.broker) as log:
        description = log.describe_topic(args.name)
    total = sum(p.end_offset - p.start_offset for p in description.partitions)
    count = len(description.partitions)
    print(
        f"topic {description.name}: {count} partition{'s' if count != 1 else ''}, "
        f"{total} record{'s' if total != 1 else ''}"
    )
    print(f"  {'partition':>9}  {'start':>10}  {'end':>10}")
    for p in description.partitions:
        print(f"  {p.partition:>9}  {p.start_offset:>10}  {p.end_offset:>10}")
    groups: dict[str, list[Any]] = {}
    for lag in description.groups:
        groups.setdefault(lag.group, []).append(lag)
    for group, lags in groups.items():
        print(f"group {group}: lag {sum(lag.lag for lag in lags)}")
        print(f"  {'partition':>9}  {'committed':>10}  {'end':>10}  {'lag':>10}")
        for lag in lags:
            committed = "-" if lag.committed is None else str(lag.committed)
            print(f"  {lag.partition:>9}  {committed:>10}  {lag.end_offset:>10}  {lag.lag:>10}")
    return EXIT_OK
