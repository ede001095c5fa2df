"""A compiled event pattern, and :func:`compile_pattern`, the way to get one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventbus.routing.compiler import compact_length, compile_subrules
from eventbus.routing.conditions import SubRule
from eventbus.routing.errors import InvalidPatternError
from eventbus.routing.evaluate import BoundCondition, holds, holds_consistently
from eventbus.routing.fields import PathTrie, collect, collect_tracked

DEFAULT_MAX_SIZE = 2048


class Pattern:
    """An event pattern compiled for matching. Build one with :func:`compile_pattern`.

    ``source`` is the pattern as given (dict or JSON text); ``subrules`` are its AND-rules, one per combination
    of ``$or`` branches.
    """

    __slots__ = ("_bound", "_paths", "source", "subrules")

    def __init__(self, source: dict[str, Any] | str, subrules: tuple[SubRule, ...]) -> None:
        self.source = source
        self.subrules = subrules
        self._paths = PathTrie()
        self._bound: tuple[tuple[BoundCondition, ...], ...] = tuple(
            tuple((self._paths.acquire(c.path), c) for c in rule) for rule in subrules
        )

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether the pattern matches a parsed JSON event. Anything but a JSON object is not an event."""
        if not isinstance(event, dict):
            return False
        found, nested = collect(event, self._paths.root)
        if nested:
            tracked = collect_tracked(event, self._paths.root)
            return any(holds_consistently(rule, tracked) for rule in self._bound)
        return any(holds(rule, found) for rule in self._bound)

    def matches_json(self, raw: bytes | bytearray | memoryview | str) -> bool:
        """Whether the pattern matches a raw JSON event, numbers compared with their spelling (R3.3)."""
        from eventbus.routing.parse import loads_event

        return self.matches(loads_event(raw))

    @property
    def paths(self) -> tuple[str, ...]:
        """The dotted leaf paths the pattern constrains, in event-ruler's order."""
        seen = dict.fromkeys(c.path for rule in self.subrules for c in rule)
        return tuple(seen)

    def __repr__(self) -> str:
        return f"Pattern({self.source!r})"


def compile_pattern(
    pattern: Mapping[str, Any] | str, *, max_size: int = DEFAULT_MAX_SIZE, profile: str | None = None
) -> Pattern:
    """Validate and compile an event pattern.

    ``pattern`` is a dict, or JSON text (whose number literals keep their spelling, R3.3). ``max_size`` limits
    the pattern's length as compact JSON (EventBridge's default quota is 2048 characters). ``profile="lambda"``
    refuses what Lambda and Pipes filtering do not support (wildcard, cidr, the object forms of anything-but).
    Raises :class:`InvalidPatternError` naming where the pattern is wrong and what is wrong there.
    """
    source: dict[str, Any] | str
    if isinstance(pattern, str):
        from eventbus.routing.parse import loads_pattern

        try:
            parsed = loads_pattern(pattern)
        except ValueError as exc:
            raise InvalidPatternError("", f"pattern is not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidPatternError("", "pattern is nested too deeply") from None
        source = pattern
    elif isinstance(pattern, Mapping):
        parsed = dict(pattern)
        source = parsed
    else:
        raise InvalidPatternError("", f"a pattern must be a JSON object or its text, not {type(pattern).__name__}")
    try:
        size = compact_length(parsed)
        if size > max_size:
            raise InvalidPatternError("", f"pattern is {size} characters as compact JSON, over the limit of {max_size}")
        return Pattern(source, compile_subrules(parsed, profile=profile))
    except RecursionError:
        raise InvalidPatternError("", "pattern is nested too deeply") from None
