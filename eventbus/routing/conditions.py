"""What a compiled pattern is made of: conditions on leaf paths, grouped into AND-rules (spec R2.3, R9.2).

A pattern compiles to one or more *sub-rules* (one per combination of ``$or`` branches); it matches when any
sub-rule does. A sub-rule is a tuple of conditions in the lexical order of their dotted paths, the order in which
event-ruler walks them (it matters for ``exists: false`` inside arrays, R10.2). A condition holds when one of the
path's values satisfies one of its matchers, or, if it carries ``{"exists": false}``, when the path has no value
(consistent with the values already picked, R10).
"""

from __future__ import annotations

from collections.abc import Sequence

from eventbus.routing.matchers import EqualsString, Matcher


class Condition:
    """The leaf array of one path: OR of its matchers, plus whether absence also satisfies it."""

    __slots__ = ("allows_absence", "exact_strings", "matchers", "other_matchers", "path", "segments")

    def __init__(self, path: str, matchers: Sequence[Matcher], allows_absence: bool) -> None:
        self.path = path
        self.segments = tuple(path.split("."))
        self.matchers = tuple(matchers)
        self.allows_absence = allows_absence
        # Plain strings are the common case: test them with one set lookup instead of one call each.
        self.exact_strings = frozenset(m.text for m in self.matchers if type(m) is EqualsString)
        self.other_matchers = tuple(m for m in self.matchers if type(m) is not EqualsString)

    def value_matches(self, value: object) -> bool:
        if isinstance(value, str) and value in self.exact_strings:
            return True
        return any(m.matches(value) for m in self.other_matchers)

    def any_value_matches(self, values: Sequence[object]) -> bool:
        exact = self.exact_strings
        if exact:
            for value in values:
                if isinstance(value, str) and value in exact:
                    return True
        for matcher in self.other_matchers:
            for value in values:
                if matcher.matches(value):
                    return True
        return False

    def __repr__(self) -> str:
        absence = ", exists:false" if self.allows_absence else ""
        return f"Condition({self.path!r}, {len(self.matchers)} matchers{absence})"


SubRule = tuple[Condition, ...]


def path_order_key(path: str) -> bytes:
    """Sort key giving event-ruler's order of paths: Java string order, i.e. by UTF-16 code unit."""
    return path.encode("utf-16-be", "surrogatepass")
