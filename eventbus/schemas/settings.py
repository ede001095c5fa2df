"""What an app says about its schemas: where the ``.avsc`` files are, which registry holds the registered versions,
and how subjects are named. Light on purpose: `App` imports it, and an app on JSON must not pay for Avro.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, get_args

from eventbus.errors import ConfigurationError

SubjectStrategy = Literal["record-name", "topic-name", "topic-record-name"]
SUBJECT_STRATEGIES: Final[tuple[str, ...]] = get_args(SubjectStrategy)

DEFAULT_DIRECTORY: Final = "schemas"
REGISTRY_ENVIRONMENT: Final = "EVENTBUS_SCHEMA_REGISTRY"


@dataclass(frozen=True, slots=True)
class Schemas:
    """Schema settings of an app.

    ``directories``: where the ``.avsc`` files are (default: ``schemas/`` in the working directory, skipped when
    it does not exist; any other directory must exist). ``registry``: a registry URL (``http(s)://`` for
    a Confluent Schema Registry, ``sqlite:///file.db`` or ``memory://name`` for an embedded one); default
    ``EVENTBUS_SCHEMA_REGISTRY``, else the embedded registry inside the log. ``subject_strategy``: how the subject
    a schema is registered under is named (``record-name`` by default, because one topic often carries several
    event types). ``auto_register``: register a schema the first time an event of its type is published, as
    Confluent's serializers do; with False, publishing needs the schema registered beforehand
    (``eventbus schema register``).
    """

    directories: tuple[str, ...] = (DEFAULT_DIRECTORY,)
    registry: str | None = None
    subject_strategy: SubjectStrategy = "record-name"
    auto_register: bool = True

    def __post_init__(self) -> None:
        if self.subject_strategy not in SUBJECT_STRATEGIES:
            raise ConfigurationError(
                f"subject_strategy must be one of {', '.join(SUBJECT_STRATEGIES)}, got {self.subject_strategy!r}"
            )
        if not self.directories:
            raise ConfigurationError("schema directories: name at least one directory")

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(Path(d) for d in self.directories)


SchemasOption = Schemas | str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None


def schema_settings(option: SchemasOption) -> Schemas:
    """`Schemas` from what ``App(schemas=...)`` accepts: settings, one directory, or a list of directories."""
    if option is None:
        return Schemas()
    if isinstance(option, Schemas):
        return option
    if isinstance(option, str | os.PathLike):
        return Schemas(directories=(os.fspath(option),))
    return Schemas(directories=tuple(os.fspath(d) for d in option))


def subject_name(strategy: SubjectStrategy, topic: str | None, record_name: str) -> str:
    """The subject a schema is registered under, with Confluent's naming strategies.

    ``topic-name``: ``<topic>-value``; ``record-name``: the record's full name; ``topic-record-name``:
    ``<topic>-<record full name>``.
    """
    if strategy == "record-name":
        return record_name
    if topic is None:
        raise ConfigurationError(
            f'subject strategy {strategy!r} needs the topic of {record_name!r}: add an "eventbus.topic" property '
            "to its schema, or use the record-name strategy"
        )
    return f"{topic}-value" if strategy == "topic-name" else f"{topic}-{record_name}"


def registry_url(settings: Schemas) -> str | None:
    """The registry URL the settings name, else ``EVENTBUS_SCHEMA_REGISTRY``, else None (embedded in the log)."""
    return chosen_registry_url(settings.registry)


def chosen_registry_url(url: str | None, what: str = "registry") -> str | None:
    """``url``, else ``EVENTBUS_SCHEMA_REGISTRY``, else None (the registry embedded in the log). An empty one is
    refused rather than read as "none": a registry meant to be shared would silently become the log's own."""
    if url is None:
        url = os.environ.get(REGISTRY_ENVIRONMENT)
        if url is None:
            return None
        what = REGISTRY_ENVIRONMENT
    if not url:
        raise ConfigurationError(f"{what} is empty: give a registry URL, or leave it out for the log's own registry")
    return url
