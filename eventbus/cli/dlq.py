"""``eventbus dlq list|replay`` and ``eventbus replay``: dead letters, and moving a group's position."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from eventbus.cli import EXIT_OK, check_group_option, check_topic_option

# Offsets are signed 64-bit numbers in Kafka and SQLite alike.
MAX_OFFSET = 2**63 - 1


def register(sub: argparse._SubParsersAction[Any]) -> None:
    dlq = sub.add_parser("dlq", help="inspect and replay dead-letter topics")
    actions = dlq.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="dead letters grouped by error")
    listing.add_argument("topic", metavar="TOPIC.dlq")
    listing.add_argument("--broker", help="log URL (default: $EVENTBUS_BROKER or sqlite:///eventbus.db)")
    listing.set_defaults(handler=handle_list)
    replay = actions.add_parser("replay", help="publish dead letters again, to their original topic or --to")
    replay.add_argument("topic", metavar="TOPIC.dlq")
    replay.add_argument("--broker", help="log URL (default: $EVENTBUS_BROKER or sqlite:///eventbus.db)")
    replay.add_argument("--to", help="send them here instead of the topic each came from")
    replay.add_argument("--filter", metavar="PATTERN", help="only events matching this event pattern (JSON)")
    replay.add_argument("--dry-run", action="store_true", help="count what would be replayed, publish nothing")
    replay.add_argument(
        "--from-beginning", action="store_true", help="replay everything, not only what earlier replays left"
    )
    replay.add_argument(
        "--all-processors",
        action="store_true",
        help="send each to every processor and projection of its topic, not only to the one that gave up on it",
    )
    replay.set_defaults(handler=handle_replay)

    position = sub.add_parser("replay", help="move a consumer group's position on a topic")
    position.add_argument("topic")
    position.add_argument("--group", required=True)
    position.add_argument(
        "--from",
        dest="start",
        required=True,
        metavar="OFFSET|TIME",
        help="an offset, 'earliest', 'latest', or an ISO 8601 time (e.g. 2026-11-23T10:00:00Z)",
    )
    position.add_argument("--broker", help="log URL (default: $EVENTBUS_BROKER or sqlite:///eventbus.db)")
    position.set_defaults(handler=handle_reset)


def handle_list(args: argparse.Namespace) -> int:
    from eventbus.backends import open_log
    from eventbus.errors import ConfigurationError
    from eventbus.replay import count_dead_letters

    check_topic_option(args.topic)
    with open_log(args.broker) as log:
        log.topic(args.topic)
        groups, others = count_dead_letters(log, args.topic)
    if others and not groups:
        raise ConfigurationError(
            f"{args.topic} is not a dead-letter topic: its {others} record(s) have no eventbus failure headers"
            + ("" if args.topic.endswith(".dlq") else f" (a processor's dead letters go to {args.topic}.dlq)")
        )
    total = sum(g.count for g in groups)
    waiting = sum(g.waiting for g in groups)
    print(
        f"{args.topic}: {total} dead letter(s), {waiting} not replayed yet, {len(groups)} kind(s) of failure"
        if waiting != total
        else f"{args.topic}: {total} dead letter(s), {len(groups)} kind(s) of failure"
    )
    if others:
        print(f"({others} other record(s) without eventbus failure headers, not dead letters, left out)")
    for group in groups:
        origins = ", ".join(sorted(group.origin_topics))
        replayed = group.count - group.waiting
        done = f" ({replayed} replayed already)" if replayed else ""
        print(f"\n{group.count:>8}  {group.error_class}: {group.message}{done}")
        if group.examples != [group.message]:
            for example in group.examples:
                print(f"          e.g. {example}")
        print(f"          processor {group.processor}, from {origins}")
        print(f"          first {group.first_failure}, last {group.last_failure}")
    return EXIT_OK


def handle_replay(args: argparse.Namespace) -> int:
    from eventbus.backends import open_log
    from eventbus.replay import replay_dead_letters

    check_topic_option(args.topic)
    if args.to is not None:
        check_topic_option(args.to, "--to")
    pattern = _filter_pattern(args.filter) if args.filter is not None else None
    shown = {"at": -1}

    def progress(done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if sys.stderr.isatty() or percent >= shown["at"] + 10 or done == total:
            shown["at"] = percent
            end = "\r" if sys.stderr.isatty() and done < total else "\n"
            print(
                f"reading {args.topic}: {done}/{total} dead letters ({percent}%)", end=end, file=sys.stderr, flush=True
            )

    with open_log(args.broker) as log:
        log.topic(args.topic)
        report = replay_dead_letters(
            log,
            args.topic,
            to=args.to,
            pattern=pattern,
            dry_run=args.dry_run,
            from_beginning=args.from_beginning,
            all_processors=args.all_processors,
            progress=progress,
        )
    verb = "would replay" if report.dry_run else "replayed"
    targets = ", ".join(f"{n} to {t}" for t, n in sorted(report.by_topic.items())) or "nothing"
    summary = f"{verb} {report.replayed} event(s): {targets}; {report.filtered_out} left out by the filter"
    if report.already_replayed:
        summary += f"; {report.already_replayed} sent by an earlier filtered replay, not sent again"
    print(summary)
    return EXIT_OK


def _filter_pattern(argument: str) -> str:
    """``--filter``'s pattern: the text of the file it names, if it names one (as ``rules test`` takes it), else
    the argument itself as inline JSON. A file's invalid pattern is reported with the file's name."""
    from pathlib import Path

    from eventbus.errors import ConfigurationError
    from eventbus.routing import InvalidPatternError, compile_pattern

    try:
        is_file = Path(argument).is_file()
    except (OSError, ValueError):  # inline JSON can be too long, or hold a NUL, for a file name
        is_file = False
    if not is_file:
        if not argument.lstrip().startswith("{"):
            # Not JSON text, so meant as a file: say what is wrong with it rather than "not valid JSON".
            what = "is a directory" if Path(argument).is_dir() else "no such file"
            raise ConfigurationError(f"--filter {argument}: {what} (give a pattern file, or the pattern as JSON)")
        return argument
    try:
        text = Path(argument).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"--filter {argument}: cannot read: {exc}") from None
    try:
        compile_pattern(text)
    except InvalidPatternError as exc:
        raise ConfigurationError(f"--filter {argument}: invalid pattern: {exc}") from None
    return text


def handle_reset(args: argparse.Namespace) -> int:
    from datetime import datetime

    from eventbus.backends import open_log
    from eventbus.errors import ConfigurationError
    from eventbus.replay import reset_group

    check_topic_option(args.topic)
    check_group_option(args.group)
    start = args.start.strip()
    with open_log(args.broker) as log:
        log.topic(args.topic)
        if start == "earliest" or (start.isascii() and start.isdigit()):  # isdigit alone takes "²" and other digits
            offset = 0 if start == "earliest" else int(start)
            if offset > MAX_OFFSET:
                raise ConfigurationError(f"--from {start}: an offset is at most {MAX_OFFSET}")
            positions = reset_group(log, args.group, args.topic, offset=offset)
        elif start == "latest":
            positions = reset_group(log, args.group, args.topic, offset=2**62)
        else:
            try:
                moment = datetime.fromisoformat(start)
            except ValueError:
                raise ConfigurationError(
                    f"--from {start!r}: expected an offset, 'earliest', 'latest' or an ISO 8601 time"
                ) from None
            if moment.tzinfo is None:
                raise ConfigurationError(f"--from {start!r}: give a time zone (e.g. ...Z or +01:00)")
            positions = reset_group(log, args.group, args.topic, time_ms=int(moment.timestamp() * 1000))
    for partition, offset in sorted(positions.items()):
        print(f"{args.topic}[{partition}]: group {args.group} now at offset {offset}")
    return EXIT_OK
