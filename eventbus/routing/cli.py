"""``eventbus rules``: check pattern files, and try a pattern on an event.

``eventbus rules check FILE...`` validates files holding one pattern object or a JSON array of patterns and
prints every error with its file, index and path in the pattern. Exit 0 when all are valid, 1 when any pattern
is invalid, 2 when a file is missing, unreadable or not JSON.

``eventbus rules test PATTERN EVENT`` (each a file or inline JSON) prints ``match`` or ``no match``. Exit 0 on a
match, 1 on none, 2 on an invalid pattern or bad JSON.

The ``eventbus`` command calls :func:`register`; ``python -m eventbus.routing.cli rules ...`` runs the same
commands on their own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from eventbus.routing.errors import InvalidPatternError
from eventbus.routing.pattern import DEFAULT_MAX_SIZE, LAMBDA_MAX_SIZE, Pattern, compile_pattern

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class _InputError(Exception):
    """A file or argument that could not be read as JSON; the message names it."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``rules`` command and its ``check`` and ``test`` subcommands."""
    rules = subparsers.add_parser("rules", help="validate event patterns and try them on events")
    commands = rules.add_subparsers(dest="rules_command", metavar="COMMAND", required=True)

    check = commands.add_parser("check", help="validate pattern files (one pattern or a JSON array of them)")
    check.add_argument("files", nargs="+", metavar="FILE", help="a JSON file holding a pattern or an array")
    _add_pattern_options(check)
    check.set_defaults(handler=check_files)

    test = commands.add_parser("test", help="say whether a pattern matches an event")
    test.add_argument("pattern", metavar="PATTERN", help="a pattern file, or the pattern as inline JSON")
    test.add_argument("event", metavar="EVENT", help="an event file, or the event as inline JSON")
    _add_pattern_options(test)
    test.set_defaults(handler=try_pattern)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of characters, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_pattern_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-size",
        type=_positive_int,
        default=None,
        help=f"longest pattern accepted, in characters of compact JSON (default {DEFAULT_MAX_SIZE}; "
        f"{LAMBDA_MAX_SIZE} with --profile lambda)",
    )
    parser.add_argument(
        "--profile",
        choices=["eventbridge", "lambda"],
        default=None,
        help="lambda refuses the operators Lambda and Pipes filtering lack",
    )


def check_files(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for name in args.files:
        try:
            document = _load_file(name, _parse_pattern_json)
        except _InputError as exc:
            print(f"eventbus rules check: {exc}", file=sys.stderr)
            status = EXIT_USAGE
            continue
        patterns = document if isinstance(document, list) else [document]
        errors = 0
        for index, pattern in enumerate(patterns):
            where = f"{name}[{index}]" if isinstance(document, list) else name
            try:
                _compile(pattern, args)
            except InvalidPatternError as exc:
                print(f"{where}: {exc}")
                errors += 1
        if errors:
            status = max(status, EXIT_FAILED)
        else:
            print(f"{name}: {len(patterns)} valid pattern{'s' if len(patterns) != 1 else ''}")
    return status


def try_pattern(args: argparse.Namespace) -> int:
    try:
        pattern_json = _load_argument(args.pattern, "pattern", _parse_pattern_json)
        event = _load_argument(args.event, "event", _parse_event_json)
    except _InputError as exc:
        print(f"eventbus rules test: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        pattern = _compile(pattern_json, args)
    except InvalidPatternError as exc:
        print(f"eventbus rules test: invalid pattern {_describe(args.pattern)}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not isinstance(event, dict):
        print(f"eventbus rules test: event {_describe(args.event)} is not a JSON object", file=sys.stderr)
        return EXIT_USAGE
    if pattern.matches(event):
        print("match")
        return EXIT_OK
    print("no match")
    return EXIT_FAILED


def _compile(pattern: Any, args: argparse.Namespace) -> Pattern:
    if not isinstance(pattern, dict):
        from eventbus.routing.compiler import compile_subrules

        # Refused as "not a number" (or a string, an array...): compile_pattern would name its Python class.
        compile_subrules(pattern, profile=args.profile)
    return compile_pattern(pattern, max_size=args.max_size, profile=args.profile)


def _parse_pattern_json(text: str) -> Any:
    from eventbus.routing.parse import loads_pattern

    return loads_pattern(text)


def _parse_event_json(text: str) -> Any:
    from eventbus.routing.parse import loads_event

    return loads_event(text)


def _load_file(name: str, parse: Any) -> Any:
    try:
        text = Path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _InputError(f"{name}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _InputError(f"{name}: cannot read: {exc}") from None
    try:
        return parse(text)
    except ValueError as exc:
        raise _InputError(f"{name}: not valid JSON: {exc}") from None
    except RecursionError:
        raise _InputError(f"{name}: JSON nested too deeply") from None


def _load_argument(argument: str, role: str, parse: Any) -> Any:
    """A file's JSON if ``argument`` names a file, else ``argument`` itself read as JSON."""
    if _is_file(argument):
        return _load_file(argument, parse)
    try:
        return parse(argument)
    except ValueError as exc:
        raise _InputError(f"{role} {_describe(argument)} is neither a file nor valid JSON: {exc}") from None
    except RecursionError:
        raise _InputError(f"{role} {_describe(argument)} is JSON nested too deeply") from None


def _is_file(argument: str) -> bool:
    try:
        return Path(argument).is_file()
    except (OSError, ValueError):  # inline JSON can be too long, or hold a NUL, for a file name
        return False


def _describe(argument: str) -> str:
    text = argument if len(argument) <= 60 else argument[:57] + "..."
    return repr(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eventbus", description="event pattern tools")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
