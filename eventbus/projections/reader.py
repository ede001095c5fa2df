"""Reading projections: by key and by field values, each answer with the position it reflects.

A position is, per topic partition, the offset of the next event the projection will fold. A client that
published an event at offset ``n`` waits until the projection's position on that partition is past ``n`` to read
its own write (`wait_for`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from eventbus.backends.base import TopicPartition
from eventbus.errors import ConfigurationError
from eventbus.projections.sqlite import check_query_integer
from eventbus.projections.store import ProjectionStore, open_store

DEFAULT_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Read:
    """What a read found, and the position of the projection it was read from."""

    value: Any
    position: dict[TopicPartition, int]

    def position_json(self) -> dict[str, int]:
        return {f"{tp.topic}/{tp.partition}": offset for tp, offset in sorted(self.position.items())}


class ProjectionReader:
    def __init__(self, store: ProjectionStore | str, name: str) -> None:
        self._owns_store = isinstance(store, str)
        self.store = open_store(store) if isinstance(store, str) else store
        self.name = name

    def _version_and_position(self) -> tuple[int | None, dict[TopicPartition, int]]:
        # Looked up, never made: reading a projection no worker has started (or a misspelt name) creates nothing.
        version = self.store.find_version(self.name)
        return version, {} if version is None else self.store.checkpoints(self.name, version)

    def position(self) -> dict[TopicPartition, int]:
        return self._version_and_position()[1]

    def get(self, key: str) -> Read:
        """The row at ``key`` (None when there is none)."""
        version, position = self._version_and_position()
        if version is None:
            return Read(None, position)
        text = self.store.fetch(self.name, version, [key]).get(key)
        return Read(None if text is None else orjson.loads(text), position)

    def query(self, equals: Mapping[str, object] | None = None, *, limit: int = DEFAULT_LIMIT) -> Read:
        """Rows whose top-level fields equal ``equals``, by key: a list of ``{"key": ..., "value": ...}``.

        Values are compared as JSON, types included (``1`` is not ``True``, ``"1"`` is not ``1``); ``None`` matches
        a field that is null or missing. Only strings, numbers, booleans and ``None`` can be compared.
        ``limit`` is a whole number >= 0 (ValueError otherwise)."""
        # SQLite reads a negative LIMIT as "no limit" and PostgreSQL refuses it: refused here, so both agree.
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit={limit!r}: expected a whole number of rows >= 0")
        for field, value in (equals or {}).items():
            _check_query(field, value)
            check_query_integer(field, value)  # refused whether or not the projection has rows yet
        version, position = self._version_and_position()
        if version is None:
            return Read([], position)
        rows = self.store.query(self.name, version, equals or {}, limit)
        return Read([{"key": key, "value": orjson.loads(text)} for key, text in rows], position)

    def folded(self, tp: TopicPartition, offset: int) -> bool:
        """Whether the event at ``offset`` of ``tp`` is folded (one look at the position, no waiting)."""
        return self.position().get(tp, 0) > offset

    def wait_for(self, tp: TopicPartition, offset: int, timeout_s: float) -> bool:
        """Wait until the event at ``offset`` of ``tp`` is folded; False if ``timeout_s`` passes first.

        ``timeout_s`` must be a finite number >= 0 (ValueError otherwise): a NaN deadline would never pass.
        """
        if not math.isfinite(timeout_s) or timeout_s < 0:
            raise ValueError(f"timeout_s={timeout_s!r}: expected a finite number of seconds >= 0")
        deadline = time.monotonic() + timeout_s
        pause = 0.005
        while not self.folded(tp, offset):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.1)
        return True

    def content_hash(self) -> str:
        """A digest of every row (key and canonical JSON): equal for projections with equal content."""
        import hashlib

        digest = hashlib.sha256()
        version = self.store.find_version(self.name)
        for key, text in () if version is None else self.store.rows(self.name, version):
            digest.update(key.encode())
            digest.update(b"\0")
            digest.update(orjson.dumps(orjson.loads(text), option=orjson.OPT_SORT_KEYS))
            digest.update(b"\n")
        return digest.hexdigest()

    def close(self) -> None:
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> ProjectionReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _check_query(field: str, value: object) -> None:
    if not field.replace("_", "").isalnum():
        raise ConfigurationError(f"query field {field!r}: use letters, digits and '_'")
    if value is not None and not isinstance(value, str | int | float):
        raise ConfigurationError(
            f"query field {field!r}: compare with a string, number, boolean or null, not {type(value).__name__}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigurationError(f"query field {field!r}: {value} is not a JSON number")
