"""``eventbus publish`` and ``eventbus consume``: JSON events, one per line, in and out."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from eventbus.cli import EXIT_FAILURE, EXIT_OK, check_topic_option


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
    from eventbus.publisher import Publisher, publish_lines

    check_topic_option(args.topic)  # before reading stdin: not a traceback once the first line is published
    if args.key_field and not args.event_type:
        raise ConfigurationError("--key-field needs --type (lines in CloudEvents form carry their own partitionkey)")
    with Publisher(args.broker, source=args.source) as publisher:
        report = publish_lines(
            publisher, args.topic, sys.stdin.buffer, event_type=args.event_type, key_field=args.key_field
        )
    for number, message in report.errors:
        print(f"eventbus: line {number}: {message}", file=sys.stderr)
    print(
        f"published {report.published} event(s) to {args.topic}"
        + (f"; {len(report.errors)} line(s) rejected" if report.errors else ""),
        file=sys.stderr,
    )
    return EXIT_FAILURE if report.errors else EXIT_OK


def handle_consume(args: argparse.Namespace) -> int:
    import orjson

    from eventbus.backends import open_log
    from eventbus.codecs import decode_record
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
            out.write(orjson.dumps(attrs) + b"\n")
            out.flush()
    return EXIT_FAILURE if bad else EXIT_OK
