"""The schema registry interface: subjects with numbered versions of schemas, each schema with a global id.

Two implementations: `EmbeddedRegistry` (tables in the SQLite log's own file, a file of its own, or memory: the
default, no server needed) and `ConfluentRegistry` (a Confluent Schema Registry over HTTP, through
confluent-kafka's client). Both check a new schema against the subject's compatibility mode before registering it,
so a refusal names the field and the rule the same way whichever registry holds the subject.

`open_registry` picks one from a URL: ``http(s)://...`` Confluent; ``sqlite:///file.db`` or ``memory://name``
embedded; none (and no ``EVENTBUS_SCHEMA_REGISTRY``) the embedded registry inside the log.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventbus.errors import ConfigurationError
from eventbus.schemas.compatibility import Compatibility, Violation, check
from eventbus.schemas.settings import REGISTRY_ENVIRONMENT, chosen_registry_url

if TYPE_CHECKING:
    from eventbus.backends.base import Log


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    """One version of a subject: its schema's global id and JSON text."""

    subject: str
    version: int
    schema_id: int
    schema: str


class SchemaRegistry(ABC):
    """Where schemas are registered. ``url`` names it in messages and in the ``dataschema`` of events."""

    url: str

    @abstractmethod
    def register(self, subject: str, schema: str) -> RegisteredSchema:
        """Register ``schema`` (JSON text) under ``subject``: the existing version if it is already there, else a
        new version after checking the subject's compatibility mode (`IncompatibleSchemaError` names the field
        and the rule)."""

    @abstractmethod
    def lookup(self, subject: str, schema: str) -> RegisteredSchema | None:
        """The version of ``subject`` that holds ``schema``, or None."""

    @abstractmethod
    def schema_by_id(self, schema_id: int) -> str:
        """The JSON text of schema ``schema_id``; `SchemaNotFoundError` if the registry has none."""

    @abstractmethod
    def subjects(self) -> list[str]:
        """Every subject, sorted."""

    @abstractmethod
    def versions(self, subject: str) -> list[RegisteredSchema]:
        """Every version of ``subject``, oldest first (empty for an unknown subject)."""

    @abstractmethod
    def compatibility(self, subject: str | None = None) -> Compatibility:
        """The mode of ``subject`` (its own, else the registry's default), or the registry's default."""

    @abstractmethod
    def set_compatibility(self, level: Compatibility, subject: str | None = None) -> None:
        """Set the mode of ``subject``, or the registry's default."""

    def close(self) -> None:  # noqa: B027 - most registries hold nothing to release
        """Release connections."""

    def schema_uri(self, schema_id: int) -> str:
        """Where schema ``schema_id`` can be found: the ``dataschema`` of events written with it."""
        return f"{self.url}/schemas/ids/{schema_id}"

    def violations(self, subject: str, schema: Any) -> list[Violation]:
        """What registering ``schema`` (as JSON data) under ``subject`` would break, by the subject's mode."""
        from eventbus.schemas.loader import parse_registered

        history = [
            (v.version, parse_registered(v.schema, f"{self.url} subject {subject!r} version {v.version}")[0])
            for v in self.versions(subject)
        ]
        return check(self.compatibility(subject), schema, history)

    def __enter__(self) -> SchemaRegistry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_registry(url: str | None = None, log: Log | None = None) -> SchemaRegistry:
    """The registry ``url`` names (default ``EVENTBUS_SCHEMA_REGISTRY``), else the embedded one inside ``log``."""
    url = chosen_registry_url(url)
    if url is None:
        if log is None:
            raise ConfigurationError(f"no schema registry: give a registry URL or set {REGISTRY_ENVIRONMENT}")
        from eventbus.schemas.embedded import embedded_registry_for

        return embedded_registry_for(log)
    from eventbus.backends import split_url

    scheme = split_url(url, "schema registry").scheme.lower()
    if scheme in ("http", "https"):
        from eventbus.schemas.confluent import ConfluentRegistry

        return ConfluentRegistry(url)
    if scheme in ("sqlite", "memory"):
        from eventbus.schemas.embedded import open_embedded_registry

        return open_embedded_registry(url)
    raise ConfigurationError(
        f"schema registry {url!r}: use http(s)://host:port (Confluent Schema Registry), sqlite:///file.db or "
        "memory://name (embedded)"
    )
