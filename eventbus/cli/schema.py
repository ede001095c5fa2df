"""``eventbus schema``: check schemas against the registry (a CI gate), register them, list and show what is
registered, set compatibility modes, and generate typed event classes.

The registry is ``--registry URL`` (or ``EVENTBUS_SCHEMA_REGISTRY``), else the embedded registry inside the log
(``--broker``, default ``sqlite:///eventbus.db``). ``check`` exits 1 when a schema would break its subject's rule.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventbus.cli import EXIT_FAILURE, EXIT_OK

if TYPE_CHECKING:
    from eventbus.schemas.loader import EventSchema, SchemaSet
    from eventbus.schemas.registry import SchemaRegistry
    from eventbus.schemas.settings import SubjectStrategy

# Schema ids are 32-bit signed in the Confluent wire format (the 4 bytes after the magic byte).
MAX_SCHEMA_ID = 2**31 - 1


def register(sub: argparse._SubParsersAction[Any]) -> None:
    from eventbus.schemas.settings import SUBJECT_STRATEGIES

    parser = sub.add_parser("schema", help="check, register, list and show Avro schemas; generate classes")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--registry", help="registry URL (default: $EVENTBUS_SCHEMA_REGISTRY, else inside the log)")
    where.add_argument("--broker", help="log URL holding the embedded registry (default: sqlite:///eventbus.db)")
    files = argparse.ArgumentParser(add_help=False)
    files.add_argument("directory", nargs="?", default="schemas", metavar="DIR", help="schema directory (schemas)")
    files.add_argument(
        "--subject-strategy",
        choices=SUBJECT_STRATEGIES,
        default="record-name",
        help='how subjects are named (default record-name; topic strategies need "eventbus.topic" in a schema)',
    )
    check = actions.add_parser(
        "check", parents=[where, files], help="compare the schemas with the registered versions; exit 1 on a break"
    )
    check.set_defaults(handler=handle_check)
    add = actions.add_parser("register", parents=[where, files], help="register the schemas (refusing breaks)")
    add.set_defaults(handler=handle_register)
    listing = actions.add_parser("list", parents=[where], help="subjects with their latest version and mode")
    listing.set_defaults(handler=handle_list)
    show = actions.add_parser("show", parents=[where], help="print a registered schema")
    show.add_argument("subject", nargs="?", help="subject (or give --id)")
    show.add_argument("--version", default="latest", help="version number or latest (default)")
    show.add_argument("--id", type=int, help="schema id, instead of a subject")
    show.set_defaults(handler=handle_show)
    mode = actions.add_parser("compatibility", parents=[where], help="show or set a subject's compatibility mode")
    mode.add_argument("subject", nargs="?", help="subject (default: the registry's default mode)")
    mode.add_argument("--set", metavar="MODE", help="NONE, BACKWARD(_TRANSITIVE), FORWARD(_TRANSITIVE), FULL(...)")
    mode.set_defaults(handler=handle_compatibility)
    codegen = actions.add_parser("codegen", help="generate a Python module of typed event classes")
    codegen.add_argument("directory", nargs="?", default="schemas", metavar="DIR", help="schema directory (schemas)")
    codegen.add_argument("-o", "--output", help="file to write (default: standard output)")
    codegen.set_defaults(handler=handle_codegen)


@contextmanager
def _registry(args: argparse.Namespace) -> Iterator[SchemaRegistry]:
    from eventbus.schemas.registry import open_registry
    from eventbus.schemas.settings import chosen_registry_url

    url = chosen_registry_url(args.registry, "--registry")
    if url is not None:
        with open_registry(url) as registry:
            yield registry
        return
    from eventbus.backends import open_log

    with open_log(args.broker) as log, open_registry(None, log) as registry:
        yield registry


def _load(directory: str) -> SchemaSet:
    from eventbus.errors import ConfigurationError
    from eventbus.schemas.loader import load_schemas

    if not Path(directory).is_dir():
        raise ConfigurationError(f"schema directory {directory} does not exist (or is not a directory)")
    return load_schemas([directory])


def _subject(schema: EventSchema, strategy: SubjectStrategy) -> str:
    from eventbus.schemas.settings import subject_name

    return subject_name(strategy, schema.topic, schema.name)


def handle_check(args: argparse.Namespace) -> int:
    schemas = _load(args.directory)
    broken = 0
    with _registry(args) as registry:
        for schema in schemas:
            subject = _subject(schema, args.subject_strategy)
            versions = registry.versions(subject)
            found = registry.lookup(subject, schema.text) if versions else None
            if not versions:
                print(f"new        {subject} ({schema.path}): not registered yet")
            elif found is not None:
                print(f"unchanged  {subject} ({schema.path}): registered as version {found.version}")
            else:
                violations = registry.violations(subject, schema.schema)
                level = registry.compatibility(subject).value
                if violations:
                    broken += 1
                    print(f"BREAKS     {subject} ({schema.path}), {level}:")
                    for violation in violations:
                        print(f"             {violation.describe()}")
                else:
                    print(f"compatible {subject} ({schema.path}): {level} with version {versions[-1].version}")
    print(f"{len(schemas)} schema(s) checked against {registry.url}: {broken} incompatible", file=sys.stderr)
    return EXIT_FAILURE if broken else EXIT_OK


def handle_register(args: argparse.Namespace) -> int:
    from eventbus.schemas.errors import IncompatibleSchemaError

    schemas = _load(args.directory)
    refused = 0
    with _registry(args) as registry:
        for schema in schemas:
            subject = _subject(schema, args.subject_strategy)
            before = registry.lookup(subject, schema.text)
            try:
                registered = registry.register(subject, schema.text)
            except IncompatibleSchemaError as exc:
                refused += 1
                print(f"refused    {subject} ({schema.path}): {exc}", file=sys.stderr)
                continue
            what = "unchanged " if before is not None else "registered"
            print(f"{what} {subject} version {registered.version} (id {registered.schema_id}) from {schema.path}")
    return EXIT_FAILURE if refused else EXIT_OK


def handle_list(args: argparse.Namespace) -> int:
    with _registry(args) as registry:
        subjects = registry.subjects()
        if not subjects:
            print(f"(no subjects in {registry.url})")
            return EXIT_OK
        width = max(len(s) for s in subjects)
        print(f"{'SUBJECT':<{width}}  VERSIONS  LATEST ID  COMPATIBILITY")
        for subject in subjects:
            versions = registry.versions(subject)
            latest = versions[-1].schema_id if versions else "-"
            level = registry.compatibility(subject).value
            print(f"{subject:<{width}}  {len(versions):>8}  {latest:>9}  {level}")
    return EXIT_OK


def handle_show(args: argparse.Namespace) -> int:
    import orjson

    from eventbus.errors import ConfigurationError
    from eventbus.schemas.errors import SchemaNotFoundError

    if args.subject is not None and args.id is not None:
        raise ConfigurationError(f"give a SUBJECT ({args.subject!r}) or --id {args.id}, not both")
    if args.subject is None and args.id is None:
        raise ConfigurationError("give a SUBJECT, or --id N")
    if args.id is not None and not 0 <= args.id <= MAX_SCHEMA_ID:
        raise ConfigurationError(f"--id {args.id}: schema ids are 0 to {MAX_SCHEMA_ID}")
    with _registry(args) as registry:
        if args.id is not None:
            text, label = registry.schema_by_id(args.id), f"schema id {args.id}"
        else:
            versions = registry.versions(args.subject)
            if not versions:
                raise SchemaNotFoundError(f"subject {args.subject!r} is not in {registry.url}")
            chosen = versions[-1] if args.version == "latest" else _version(versions, args.version, args.subject)
            text, label = chosen.schema, f"{args.subject} version {chosen.version} (id {chosen.schema_id})"
    print(label, file=sys.stderr)
    print(orjson.dumps(orjson.loads(text), option=orjson.OPT_INDENT_2).decode())
    return EXIT_OK


def _version(versions: list[Any], wanted: str, subject: str) -> Any:
    from eventbus.schemas.errors import SchemaNotFoundError

    for version in versions:
        if str(version.version) == wanted:
            return version
    known = ", ".join(str(v.version) for v in versions)
    raise SchemaNotFoundError(f"subject {subject!r} has no version {wanted} (it has {known})")


def handle_compatibility(args: argparse.Namespace) -> int:
    from eventbus.schemas.compatibility import Compatibility

    with _registry(args) as registry:
        if args.set is not None:
            registry.set_compatibility(Compatibility.parse(args.set), args.subject)
        level = registry.compatibility(args.subject).value
    print(f"{args.subject or '(registry default)'}: {level}")
    return EXIT_OK


def handle_codegen(args: argparse.Namespace) -> int:
    from eventbus.errors import ConfigurationError
    from eventbus.schemas.codegen import generate_module

    if args.output is not None:
        output = Path(args.output)
        if output.is_dir():
            raise ConfigurationError(f"-o {args.output}: is a directory; give the file to write (e.g. events.py)")
        if not output.parent.is_dir():
            raise ConfigurationError(f"-o {args.output}: directory {output.parent} does not exist")
    source = generate_module(_load(args.directory), origin=f"{args.directory}/")
    if args.output is None:
        sys.stdout.write(source)
    else:
        try:
            Path(args.output).write_text(source)
        except OSError as exc:
            raise ConfigurationError(f"-o {args.output}: cannot write: {exc.strerror or exc}") from None
        print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK
