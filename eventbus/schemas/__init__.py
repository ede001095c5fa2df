"""Schemas: Avro schemas of event types, the registries that hold their versions, and compatibility checks.

- `loader`: ``.avsc`` files from ``schemas/`` (and the directories an app names), each top-level record bound to a
  CloudEvents ``type`` (its ``"eventbus.type"``, else its full name) — a `SchemaSet`.
- `classes`: a typed event class checked against the schema of its type; `codegen`: classes generated from schemas.
- `registry`: the `SchemaRegistry` interface and `open_registry`; `embedded` (SQLite tables, by default in the
  log's own file) and `confluent` (a Confluent Schema Registry through confluent-kafka's client) implement it.
- `compatibility`: NONE, BACKWARD, FORWARD, FULL and their transitive variants, with the Avro resolution rules;
  refusals name the field and the rule.
- `settings`: what an app says (`Schemas`), and the subject naming strategies.

The codec that writes and reads Avro records is `eventbus.codecs.avro`. Names are imported on first use, so an app
that only declares settings does not load fastavro.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from eventbus.schemas.errors import (
    IncompatibleSchemaError,
    RegistryError,
    SchemaError,
    SchemaMismatchError,
    SchemaNotFoundError,
)
from eventbus.schemas.settings import Schemas, SubjectStrategy, subject_name

if TYPE_CHECKING:
    from eventbus.schemas.compatibility import Compatibility, Violation, check, reader_problems
    from eventbus.schemas.confluent import ConfluentRegistry
    from eventbus.schemas.embedded import EmbeddedRegistry
    from eventbus.schemas.loader import EventSchema, SchemaSet, load_schemas
    from eventbus.schemas.registry import RegisteredSchema, SchemaRegistry, open_registry

__all__ = [
    "Compatibility",
    "ConfluentRegistry",
    "EmbeddedRegistry",
    "EventSchema",
    "IncompatibleSchemaError",
    "RegisteredSchema",
    "RegistryError",
    "SchemaError",
    "SchemaMismatchError",
    "SchemaNotFoundError",
    "SchemaRegistry",
    "SchemaSet",
    "Schemas",
    "SubjectStrategy",
    "Violation",
    "check",
    "load_schemas",
    "open_registry",
    "reader_problems",
    "subject_name",
]

_LAZY = {
    "Compatibility": "compatibility",
    "Violation": "compatibility",
    "check": "compatibility",
    "reader_problems": "compatibility",
    "ConfluentRegistry": "confluent",
    "EmbeddedRegistry": "embedded",
    "EventSchema": "loader",
    "SchemaSet": "loader",
    "load_schemas": "loader",
    "RegisteredSchema": "registry",
    "SchemaRegistry": "registry",
    "open_registry": "registry",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
