"""A Confluent Schema Registry, through confluent-kafka's `SchemaRegistryClient` (which caches ids and schemas).

The client's `SchemaRegistryError` and transport errors are translated here: a missing subject, version or id is a
`SchemaNotFoundError`, a refused registration an `IncompatibleSchemaError`, anything else a `RegistryError` naming
the registry (without the credentials a URL may carry). A new schema is checked against the subject's mode here
first, so a refusal names the field and the rule, as with the embedded registry; the server checks again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from eventbus.errors import ConfigurationError, EventbusError
from eventbus.schemas.compatibility import Compatibility
from eventbus.schemas.errors import IncompatibleSchemaError, RegistryError, SchemaError, SchemaNotFoundError
from eventbus.schemas.registry import RegisteredSchema, SchemaRegistry

T = TypeVar("T")

# Confluent's error codes for "no such subject" / "no subject-level configuration".
_SUBJECT_NOT_FOUND = 40401
_NO_SUBJECT_CONFIG = 40408


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


# Seconds one request to the registry may take (the client retries a few times on network errors).
REQUEST_TIMEOUT_S = 10


class ConfluentRegistry(SchemaRegistry):
    def __init__(self, url: str, config: dict[str, Any] | None = None) -> None:
        self.url = ",".join(_without_credentials(u.strip()) for u in url.split(","))
        try:
            from confluent_kafka.schema_registry import SchemaRegistryClient
        except ModuleNotFoundError as exc:
            raise ConfigurationError(
                f"schema registry {self.url}: confluent-kafka's registry client needs {exc.name}: "
                "pip install 'eventbus[avro]'"
            ) from None
        try:
            # A timeout of its own: without one, a registry (or a proxy) that accepts and never answers holds every
            # publish and decode that needs a schema for good.
            self._client = SchemaRegistryClient({"url": url, "timeout": REQUEST_TIMEOUT_S, **(config or {})})
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"schema registry {self.url}: {exc}") from None

    def _call(self, what: str, call: Callable[[], T]) -> T:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            return call()
        except SchemaRegistryError as exc:
            message = f"schema registry {self.url}: {what}: {exc.error_message}"
            if exc.http_status_code == 404:
                raise SchemaNotFoundError(message) from None
            if exc.http_status_code == 422:
                raise SchemaError(f"{message} (the registry refused the schema)") from None
            raise RegistryError(f"{message} (HTTP {exc.http_status_code}, code {exc.error_code})") from None
        except EventbusError:
            raise
        except Exception as exc:  # transport errors of the client's HTTP library: the registry is out of reach
            raise RegistryError(f"schema registry {self.url} failed ({what}): {type(exc).__name__}: {exc}") from None

    def register(self, subject: str, schema: str) -> RegisteredSchema:
        from confluent_kafka.schema_registry import Schema
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        from eventbus.schemas.loader import parse_registered

        existing = self.lookup(subject, schema)
        if existing is not None:
            return existing
        normal, _ = parse_registered(schema, f"schema for subject {subject!r}")
        violations = self.violations(subject, normal)
        if violations:
            raise IncompatibleSchemaError(subject, violations)

        def send() -> Any:
            try:
                return self._client.register_schema_full_response(subject, Schema(schema, "AVRO"))
            except SchemaRegistryError as exc:
                if exc.http_status_code == 409:
                    raise IncompatibleSchemaError(subject, (), f"refused by {self.url}: {exc.error_message}") from None
                raise

        self._call(f"registering under subject {subject!r}", send)
        registered = self.lookup(subject, schema)
        if registered is None:
            raise RegistryError(f"schema registry {self.url}: registered under {subject!r}, then not found there")
        return registered

    def lookup(self, subject: str, schema: str) -> RegisteredSchema | None:
        from confluent_kafka.schema_registry import Schema

        try:
            found = self._call(
                f"looking up a schema under subject {subject!r}",
                lambda: self._client.lookup_schema(subject, Schema(schema, "AVRO")),
            )
        except SchemaNotFoundError:
            return None
        return self._registered(subject, found, schema)

    def _registered(self, subject: str, found: Any, schema: str | None = None) -> RegisteredSchema:
        """Our record of the client's answer, which types every part as optional."""
        text = schema if schema is not None else found.schema.schema_str
        if found.version is None or found.schema_id is None or text is None:
            raise RegistryError(f"schema registry {self.url}: an incomplete answer about subject {subject!r}")
        return RegisteredSchema(subject, found.version, found.schema_id, text)

    def schema_by_id(self, schema_id: int) -> str:
        found = self._call(f"fetching schema id {schema_id}", lambda: self._client.get_schema(schema_id))
        if found.schema_str is None:
            raise RegistryError(f"schema registry {self.url}: schema id {schema_id} came back without its text")
        return found.schema_str

    def subjects(self) -> list[str]:
        return sorted(self._call("listing subjects", self._client.get_subjects))

    def versions(self, subject: str) -> list[RegisteredSchema]:
        try:
            numbers = self._call(f"listing versions of {subject!r}", lambda: self._client.get_versions(subject))
        except SchemaNotFoundError:
            return []
        return [self._registered(subject, self._version(subject, number)) for number in sorted(numbers)]

    def _version(self, subject: str, number: int) -> Any:
        return self._call(f"fetching {subject!r} version {number}", lambda: self._client.get_version(subject, number))

    def compatibility(self, subject: str | None = None) -> Compatibility:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        def fetch() -> str:
            if subject is not None:
                try:
                    level: str = self._client.get_compatibility(subject)
                    return level
                except SchemaRegistryError as exc:
                    if exc.error_code not in (_NO_SUBJECT_CONFIG, _SUBJECT_NOT_FOUND):
                        raise
            default: str = self._client.get_compatibility()
            return default

        return Compatibility.parse(self._call(f"reading the compatibility of {subject or 'the registry'}", fetch))

    def set_compatibility(self, level: Compatibility, subject: str | None = None) -> None:
        self._call(
            f"setting the compatibility of {subject or 'the registry'}",
            lambda: self._client.set_compatibility(subject, level.value),
        )

    def close(self) -> None:
        self._client.close()
