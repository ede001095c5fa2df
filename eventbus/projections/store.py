"""The read-model store contract: projection rows and checkpoints, written together in one transaction.

A projection is a table of JSON documents by key. Its *checkpoint* says, per topic partition, the offset of the next
event to fold. Rows and checkpoint are written in ONE transaction of the store, so after any crash they agree: an
event is either folded and checkpointed, or neither, and a redelivered event (below the checkpoint) is skipped.

Each projection has *versions*: the live one serves reads; a rebuild folds a new version from the start of the log
beside it and makes it current in one transaction when it has caught up (blue/green). Every write names the
version it writes to and is refused once that version is no longer current, so a worker still folding the old
version cannot write over the swap.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from eventbus.backends.base import TopicPartition
from eventbus.errors import ConfigurationError, EventbusError

_NAME = re.compile(r"[a-z][a-z0-9_]{0,47}\Z")


class VersionChangedError(EventbusError):
    """The projection version a worker folds into is no longer current (a rebuild swapped in another)."""


class CheckpointMovedError(VersionChangedError):
    """Another worker moved a partition's checkpoint since this worker read it (the partition changed hands):
    what this worker folded from the old checkpoint is dropped and it reads the partition again."""


class RowsChangedError(CheckpointMovedError):
    """Another worker of the projection wrote rows this worker folded from since it read them (workers folding
    different partitions into the same rows): what this worker folded is dropped and it folds again from the
    store's rows and checkpoints, so neither worker's events are lost."""


class StaleVersionError(VersionChangedError):
    """A version is not newer than the projection's current one, so it is not made current: another rebuild of
    the same projection swapped in a newer version while this one ran (its work is dropped, the newer one stays)."""


def stale_version(projection: str, version: int, current: int) -> StaleVersionError:
    """The error for making ``version`` current when ``current`` is: a swap only ever moves to a newer version."""
    if version == current:
        why = "it is already current"
    else:
        why = f"version {current} is current and newer (another rebuild of it finished first)"
    return StaleVersionError(f"projection {projection!r}: version {version} is not made current: {why}")


class ProjectionGapError(EventbusError):
    """A projection's checkpoint points at events the log no longer holds: folding on would skip them."""


def check_projection_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(
            f"projection name {name!r}: use lowercase letters, digits and '_', starting with a letter (max 48)"
        )
    return name


Checkpoints = dict[TopicPartition, int]


@dataclass(frozen=True, slots=True)
class Changes:
    """One batch to write: rows to put (key -> JSON text), keys to delete, the checkpoints after it, and the
    checkpoints the batch was folded from (``expected``: None for a partition never folded): a write whose expected
    checkpoints are no longer the stored ones is refused, so two workers never both fold the same events.

    ``read`` holds, for the rows put or deleted whose earlier content the batch was folded from, that content as
    the store had it (None: no row): a write finding another content there is refused (`RowsChangedError`), so a
    worker never writes over what another worker folded into the same row meanwhile (a lost update). ``seen`` is
    every checkpoint of the version as the writer left them at its previous write: when the store still holds
    exactly those, nobody else has written since (every write moves a checkpoint), and ``read`` needs no look."""

    puts: Mapping[str, str]
    deletes: frozenset[str]
    checkpoints: Mapping[TopicPartition, int]
    expected: Mapping[TopicPartition, int | None] = field(default_factory=dict)
    read: Mapping[str, str | None] = field(default_factory=dict)
    seen: Mapping[TopicPartition, int] | None = None


class ProjectionStore(ABC):
    """One database holding any number of projections (SQLite file or PostgreSQL database)."""

    url: str

    def find_version(self, projection: str) -> int | None:
        """The projection's current version, or None when no worker has made one yet (nothing is created)."""
        return self.current_version(projection) if projection in self.projections() else None

    @abstractmethod
    def current_version(self, projection: str) -> int:
        """The version reads are served from; creates version 1 the first time a projection is seen."""

    @abstractmethod
    def create_version(self, projection: str) -> int:
        """A new, empty version beside the current one (for a rebuild)."""

    @abstractmethod
    def make_current(self, projection: str, version: int) -> None:
        """Swap reads and live folding to ``version`` and drop the previous one, in one transaction;
        `StaleVersionError` (and nothing changes) unless ``version`` is newer than the current version."""

    @abstractmethod
    def checkpoints(self, projection: str, version: int) -> Checkpoints: ...

    @abstractmethod
    def fetch(self, projection: str, version: int, keys: list[str]) -> dict[str, str]:
        """The JSON text of the rows among ``keys`` that exist."""

    @abstractmethod
    def write(self, projection: str, version: int, changes: Changes) -> Checkpoints:
        """Apply rows and checkpoints in one transaction; `VersionChangedError` if ``version`` is no longer the one
        it was created as (current, or the rebuild in progress), `CheckpointMovedError` if a checkpoint is not the
        ``expected`` one, `RowsChangedError` if a row is not as ``read``: nothing is written then. Returns every
        checkpoint of the version as this write left them."""

    @abstractmethod
    def query(self, projection: str, version: int, equals: Mapping[str, object], limit: int) -> list[tuple[str, str]]:
        """(key, JSON text) of rows whose top-level fields equal the given values, by key."""

    @abstractmethod
    def rows(self, projection: str, version: int) -> Iterator[tuple[str, str]]:
        """Every row, ordered by key (for content hashes and exports)."""

    @abstractmethod
    def projections(self) -> list[str]: ...

    def close(self) -> None:  # noqa: B027 - stores without resources need not override it
        """Release connections."""

    def __enter__(self) -> ProjectionStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_store(url: str) -> ProjectionStore:
    """A store from its URL: ``sqlite:///path.db`` or ``postgresql://user@host:port/db``."""
    from eventbus.backends import split_url

    parts = split_url(url, "projection store")
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        from eventbus.projections.sqlite import SQLiteStore

        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path or parts.netloc:
            raise ConfigurationError(f"{url}: a SQLite store URL looks like sqlite:///projections.db")
        return SQLiteStore(path)
    if scheme in {"postgresql", "postgres"}:
        from eventbus.projections.postgres import PostgresStore

        return PostgresStore(url)
    raise ConfigurationError(f"{url}: unknown store URL scheme; use sqlite:///path.db or postgresql://...")
