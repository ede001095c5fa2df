"""Generated code that reads watched paths out of an event into slots (see :mod:`eventbus.routing.slots`).

The paths are merged into a trie, so a shared prefix is looked up once, and read with straight-line code: one
``dict.get`` per key, the object at each level bound to a local. The code is flat (no nesting), so it compiles
whatever the depth of the paths. At each object the reader first checks that no key with a dot in it could
reach one of the paths below (R1.3): a key such as ``"data.amount"`` next to ``"data"`` sends the event to the
general evaluator.
"""

from __future__ import annotations

from collections.abc import Iterable

from eventbus.routing.codegen import FunctionSource

# Up to this many dotted keys are probed one by one; more are checked with one set operation.
_PROBED_GUARDS = 2
# Past this many dotted keys below one object, any dotted key at all sends the event to the general evaluator.
_MAX_GUARDS = 64


class _Node:
    __slots__ = ("children", "path")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.path: str | None = None


def _trie(paths: Iterable[str]) -> _Node:
    root = _Node()
    for path in paths:
        node = root
        for segment in path.split("."):
            node = node.children.setdefault(segment, _Node())
        node.path = path
    return root


def _dotted_keys(node: _Node) -> list[str]:
    """The keys with dots that, written in the object at ``node``, would reach a node below it."""
    keys: list[str] = []
    stack = [(child, segment) for segment, child in node.children.items()]
    while stack and len(keys) <= _MAX_GUARDS:
        below, joined = stack.pop()
        for segment, child in below.children.items():
            key = f"{joined}.{segment}"
            keys.append(key)
            stack.append((child, key))
    return keys


def emit_reads(src: FunctionSource, paths: Iterable[str], root: str) -> dict[str, str]:
    """Emit code reading every path of ``paths`` from the dict named ``root``; return path -> slot variable."""
    slots: dict[str, str] = {}
    pending = [(_trie(paths), root)]
    while pending:
        node, variable = pending.pop()
        _emit_guard(src, node, variable)
        for segment, child in node.children.items():
            inner = _emit_member(src, variable, segment, child, slots)
            if inner is not None:
                pending.append((child, inner))
    return slots


def _emit_guard(src: FunctionSource, node: _Node, variable: str) -> None:
    keys = _dotted_keys(node)
    if not keys:
        return
    if len(keys) > _MAX_GUARDS:
        condition = f"has_dotted_key({variable})"
    elif len(keys) <= _PROBED_GUARDS:
        condition = " or ".join(f"{src.bind(key, 'k')} in {variable}" for key in keys)
    else:
        condition = f"not {src.bind(frozenset(keys), 'g')}.isdisjoint({variable})"
    with src.block(f"if {condition}:"):
        src.line("raise FallbackError")


def _emit_member(src: FunctionSource, parent: str, segment: str, node: _Node, slots: dict[str, str]) -> str | None:
    """Read one member; return the variable holding the object to read deeper paths from, if any."""
    key = src.bind(segment, "k")
    inner = src.local("o") if node.children else None
    if node.path is None:
        src.line(f"{inner} = {parent}.get({key}, EMPTY)")
        with src.block(f"if type({inner}) is not dict:"):
            src.line(f"{inner} = inner_object({inner})")
        return inner
    slot = slots[node.path] = src.local("s")
    src.line(f"{slot} = {parent}.get({key}, MISSING)")
    if inner is not None:
        src.line(f"{inner} = {slot} if type({slot}) is dict else inner_object({slot})")
    with src.block(f"if type({slot}) not in SCALARS:"):
        src.line(f"{slot} = leaf_slot({slot})")
    return inner
