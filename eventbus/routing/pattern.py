"""A compiled event pattern, and :func:`compile_pattern`, the way to get one."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from eventbus.routing.compiler import compact_length, compile_subrules
from eventbus.routing.conditions import SubRule
from eventbus.routing.errors import InvalidPatternError
from eventbus.routing.evaluate import BoundCondition, holds, holds_consistently
from eventbus.routing.fields import PathTrie, collect, collect_tracked

DEFAULT_MAX_SIZE = 2048  # EventBridge's default quota
LAMBDA_MAX_SIZE = 4096  # Lambda's Filter.Pattern (spec R11 item 13)
# Calls to Pattern.matches (and to Router.match after a change) before a specialised function is generated:
# generating one costs about as much as this many matches by the general evaluator.
SPECIALISE_AFTER = 64


class Pattern:
    """An event pattern compiled for matching. Build one with :func:`compile_pattern`.

    ``source`` is the pattern as given (dict or JSON text); ``subrules`` are its AND-rules, one per combination
    of ``$or`` branches.
    """

    __slots__ = ("_bound", "_calls", "_paths", "_specialised", "source", "subrules")

    def __init__(self, source: dict[str, Any] | str, subrules: tuple[SubRule, ...]) -> None:
        self.source = source
        self.subrules = subrules
        self._paths = PathTrie()
        self._bound: tuple[tuple[BoundCondition, ...], ...] = tuple(
            tuple((self._paths.acquire(c.path), c) for c in rule) for rule in subrules
        )
        # A function specialised for this pattern (see :mod:`eventbus.routing.specialised`), generated once the
        # pattern has been used a few times: generating it costs as much as a few hundred matches.
        self._specialised: Callable[[Any], bool] | None = None
        self._calls = 0

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether the pattern matches a parsed JSON event. Anything but a JSON object is not an event."""
        specialised = self._specialised
        if specialised is not None:
            return specialised(event)
        self._calls += 1
        if self._calls >= SPECIALISE_AFTER:
            return self._specialise()(event)
        return self._matches_general(event)

    def _specialise(self) -> Callable[[Any], bool]:
        """Generate the function :meth:`matches` runs from now on, if not done yet, and return it."""
        if self._specialised is None:
            from eventbus.routing.specialised import fits_inline, pattern_function

            if fits_inline(self.subrules):
                self._specialised = pattern_function(self.subrules, self._matches_general)[0]
            else:
                self._specialised = self._matches_general
        return self._specialised

    def __getstate__(self) -> dict[str, Any]:
        # The generated function is not picklable, and a copy must not share it: copies generate their own.
        state = {name: getattr(self, name) for name in self.__slots__}
        state.update(_specialised=None, _calls=0)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def generated_source(self) -> str:
        """The source of the function specialised for this pattern, with what its names stand for (debugging)."""
        from eventbus.routing.specialised import fits_inline, pattern_function

        if not fits_inline(self.subrules):
            return "# no generated function: the general evaluator runs"
        return pattern_function(self.subrules, self._matches_general)[1].describe()

    def _matches_general(self, event: Any) -> bool:
        """What :meth:`matches` answers, by walking the event along every watched path."""
        if not isinstance(event, dict):
            return False
        found, nested = collect(event, self._paths.root)
        if nested:
            tracked = collect_tracked(event, self._paths.root)
            return any(holds_consistently(rule, tracked) for rule in self._bound)
        return any(holds(rule, found) for rule in self._bound)

    def matches_json(self, raw: bytes | bytearray | memoryview | str) -> bool:
        """Whether the pattern matches a raw JSON event, numbers compared with their spelling (R3.3)."""
        return self.matches(load_event(raw))

    @property
    def paths(self) -> tuple[str, ...]:
        """The dotted leaf paths the pattern constrains, in event-ruler's order."""
        seen = dict.fromkeys(c.path for rule in self.subrules for c in rule)
        return tuple(seen)

    def __repr__(self) -> str:
        return f"Pattern({self.source!r})"


_event_parser: list[Callable[[Any], Any]] = []


def load_event(raw: bytes | bytearray | memoryview | str) -> Any:
    """:func:`eventbus.routing.parse.loads_event`, imported on first use (it brings msgspec in).

    Kept here rather than imported in each call: an import statement costs more than parsing a small event.
    """
    if not _event_parser:
        from eventbus.routing.parse import loads_event

        _event_parser.append(loads_event)
    return _event_parser[0](raw)


def default_max_size(profile: str | None) -> int:
    """The longest pattern accepted when no limit is given: Lambda's under the lambda profile, else EventBridge's."""
    return LAMBDA_MAX_SIZE if profile == "lambda" else DEFAULT_MAX_SIZE


def compile_pattern(
    pattern: Mapping[str, Any] | str, *, max_size: int | None = None, profile: str | None = None
) -> Pattern:
    """Validate and compile an event pattern.

    ``pattern`` is a dict, or JSON text (whose number literals keep their spelling, R3.3). ``max_size`` limits
    the pattern's length as compact JSON; by default EventBridge's quota, 2048 characters, or under
    ``profile="lambda"`` Lambda's, 4096. ``profile="lambda"``
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
        if max_size is None:
            max_size = default_max_size(profile)
        if size > max_size:
            raise InvalidPatternError("", f"pattern is {size} characters as compact JSON, over the limit of {max_size}")
        return Pattern(source, compile_subrules(parsed, profile=profile))
    except RecursionError:
        raise InvalidPatternError("", "pattern is nested too deeply") from None
