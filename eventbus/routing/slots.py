"""What generated code reads out of an event: one *slot* per watched path (the run-time half of the fast path).

A slot holds :data:`MISSING` (the path has no value), one JSON scalar of an exact type (``str``, ``int``,
``float``, ``bool``, ``None``), or a non-empty ``list`` of such scalars (an array at the path, flattened as R1.2
says). Whenever the values of a path could depend on more than direct lookups, reading raises :class:`FallbackError`
and the caller decides with the general evaluator instead: an array on the way to a watched path (its elements
may need array consistency, R10), a key with a dot in it that reaches a watched path (R1.3), or a value of any
other type (a ``str`` subclass, a :class:`~eventbus.routing.numbers.NumberLiteral`...).
"""

from __future__ import annotations

from typing import Any, Final


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final[Any] = _Missing()
# The object generated code descends into when a path has no object at some level; it is never written to.
EMPTY: Final[dict[str, Any]] = {}
SCALAR_TYPES: Final = frozenset({str, int, float, bool, type(None)})
# Arrays nested deeper than this inside one leaf are left to the general evaluator.
_MAX_NESTED_ARRAYS = 32


class FallbackError(Exception):
    """The event needs the general evaluator (see the module docstring)."""


def leaf_slot(value: Any) -> Any:
    """The slot of a leaf path whose value is not a scalar of an exact type (or is absent)."""
    if value is MISSING or isinstance(value, dict):
        return MISSING  # an object gives no value to the path itself (R7.2)
    if isinstance(value, list):
        values: list[Any] = []
        _flatten(value, values, 0)
        return values or MISSING
    raise FallbackError


def _flatten(items: list[Any], out: list[Any], depth: int) -> None:
    # Objects inside the array give values only to longer paths, whose own readers fall back on this array.
    if depth > _MAX_NESTED_ARRAYS:
        raise FallbackError
    for item in items:
        if type(item) in SCALAR_TYPES:
            out.append(item)
        elif isinstance(item, list):
            _flatten(item, out, depth + 1)
        elif not isinstance(item, dict):
            raise FallbackError


def inner_object(value: Any) -> dict[str, Any]:
    """The object to read deeper paths from, when the value at an inner node is not exactly a ``dict``."""
    if isinstance(value, dict | list):
        raise FallbackError  # an array (consistency) or a dict subclass (whose lookups may differ)
    return EMPTY


def has_dotted_key(obj: dict[Any, Any]) -> bool:
    """Whether some key of ``obj`` contains a dot (or is not a string): a cheap, conservative guard."""
    try:
        return "." in "".join(obj)
    except TypeError:
        return True


# The globals of generated functions: only these names, no other builtins.
HELPERS: Final[dict[str, Any]] = {
    "__builtins__": {},
    "MISSING": MISSING,
    "EMPTY": EMPTY,
    "SCALARS": SCALAR_TYPES,
    "FallbackError": FallbackError,
    "leaf_slot": leaf_slot,
    "inner_object": inner_object,
    "has_dotted_key": has_dotted_key,
    "type": type,
    "list": list,
    "dict": dict,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "set": set,
    "len": len,
}
