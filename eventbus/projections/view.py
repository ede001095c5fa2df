"""`View`: what a projection handler reads and writes — the projection's rows as JSON documents by key.

Reads and writes go through a cache in front of the store; a handler's writes are held apart until it returns,
so a handler that raises leaves no trace. Every document read is a fresh copy: changing it changes nothing until
it is assigned back (``view[key] = doc``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

_MISSING = object()


class View:
    __slots__ = ("_cache", "_fetch", "_writes")

    def __init__(self, cache: dict[str, str | None], fetch: Callable[[str], str | None]) -> None:
        self._cache = cache
        self._fetch = fetch
        self._writes: dict[str, str | None] = {}

    def _text(self, key: str) -> str | None:
        if key.__class__ is not str:
            raise TypeError(f"projection keys are strings, got {key!r}")
        text = self._writes.get(key, _MISSING)
        if text is _MISSING:
            text = self._cache.get(key, _MISSING)
            if text is _MISSING:
                text = self._cache[key] = self._fetch(key)
        return text  # type: ignore[return-value]

    def get(self, key: str, default: Any = None) -> Any:
        text = self._text(key)
        return default if text is None else orjson.loads(text)

    def __getitem__(self, key: str) -> Any:
        text = self._text(key)
        if text is None:
            raise KeyError(key)
        return orjson.loads(text)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._text(key) is not None

    def __setitem__(self, key: str, document: Any) -> None:
        if key.__class__ is not str:
            raise TypeError(f"projection keys are strings, got {key!r}")
        try:
            self._writes[key] = orjson.dumps(document).decode()
        except TypeError as exc:
            raise TypeError(f"projection row {key!r} is not JSON-serialisable: {exc}") from None

    def __delitem__(self, key: str) -> None:
        if self._text(key) is None:
            raise KeyError(key)
        self._writes[key] = None

    def discard(self, key: str) -> None:
        """Delete the row if it exists."""
        self._writes[key] = None

    def take_writes(self) -> dict[str, str | None]:
        writes, self._writes = self._writes, {}
        return writes
