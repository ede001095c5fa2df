"""Errors of the schemas box, each a kind of an `eventbus.errors` error so callers (and the CLI's exit codes) treat
them like the rest: a bad ``.avsc`` or a class that does not match its schema is a configuration error (exit 2), an
unreachable registry a backend failure (exit 1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from eventbus.errors import BackendError, ConfigurationError

if TYPE_CHECKING:
    from eventbus.schemas.compatibility import Violation


class SchemaError(ConfigurationError):
    """A schema file that cannot be used; the message names the file and the problem."""


class SchemaMismatchError(SchemaError):
    """A typed event class does not match the schema of its event type; the message names the field."""


class IncompatibleSchemaError(SchemaError):
    """A schema breaks the compatibility rule of its subject; the message names the field and the rule."""

    def __init__(self, subject: str, violations: Sequence[Violation], detail: str | None = None) -> None:
        self.subject = subject
        self.violations = tuple(violations)
        lines = [v.describe() for v in self.violations] or [detail or "refused by the registry"]
        super().__init__(f"subject {subject!r}: " + "; ".join(lines))


class RegistryError(BackendError):
    """The schema registry failed or could not be reached; the message names its URL."""


class SchemaNotFoundError(RegistryError, KeyError):
    """A subject, version or schema id the registry does not have."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"
