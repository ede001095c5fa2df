"""Reading the values of the paths a pattern (or a router) cares about out of an event (spec R1.2, R1.3, R10).

Paths are kept in a trie of key segments, so an event is walked only along paths some rule names, whatever else
it holds. Arrays are transparent: an array's elements count as values of the path the array sits at. Keys are
joined with ``.``, so ``{"a.b": 1}`` and ``{"a": {"b": 1}}`` give the same path.

:func:`collect` returns the plain values per path, and whether an object inside an array was entered (only then
can array consistency matter). :func:`collect_tracked` also returns, for every value, the array elements it sits
in (its *membership*), for the array-consistent search.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from eventbus.routing.numbers import NumberLiteral

# A value's membership: (array id, element index) for every array it sits in through an object or array element.
Membership = tuple[tuple[int, int], ...]
Found = dict[int, list[Any]]
Tracked = dict[int, list[tuple[Any, Membership]]]

_MISSING = object()
_LEAF_TYPES = frozenset({str, int, float, bool, type(None), NumberLiteral})


class PathNode:
    """One key segment of the path trie; ``path_id`` is set when a watched path ends here."""

    __slots__ = ("children", "deep", "path_id", "uses")

    def __init__(self) -> None:
        self.children: dict[str, PathNode] = {}
        self.path_id = -1
        self.uses = 0
        # True when some child has children: only then can a dotted event key reach a watched path from here.
        self.deep = False


class PathTrie:
    """The watched paths, each with a small integer id, reference-counted so paths can come and go."""

    def __init__(self) -> None:
        self.root = PathNode()
        self._ids: dict[str, int] = {}
        self._free_ids: list[int] = []
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._ids)

    def id_of(self, path: str) -> int | None:
        return self._ids.get(path)

    def items(self) -> Iterable[tuple[str, int]]:
        """Each watched path with its id."""
        return self._ids.items()

    def acquire(self, path: str) -> int:
        """Watch ``path`` (once more) and return its id."""
        nodes = self._nodes(path.split("."), create=True)
        for node in nodes:
            node.uses += 1
        leaf = nodes[-1]
        if leaf.path_id < 0:
            leaf.path_id = self._free_ids.pop() if self._free_ids else self._take_id()
            self._ids[path] = leaf.path_id
        self._refresh_depth(nodes)
        return leaf.path_id

    def release(self, path: str) -> None:
        """Stop watching ``path`` once; the path disappears when nothing watches it any more."""
        segments = path.split(".")
        nodes = self._nodes(segments, create=False)
        for node in nodes:
            node.uses -= 1
        leaf = nodes[-1]
        if not self._still_ends_here(leaf):
            self._free_ids.append(leaf.path_id)
            del self._ids[path]
            leaf.path_id = -1
        parents = [self.root, *nodes[:-1]]
        for parent, segment, node in zip(reversed(parents), reversed(segments), reversed(nodes), strict=True):
            if node.uses == 0:
                del parent.children[segment]
        self._refresh_depth(nodes)

    def _still_ends_here(self, leaf: PathNode) -> bool:
        # Uses count every path through the node; those ending here are uses minus uses of the children.
        through_children = sum(child.uses for child in leaf.children.values())
        return leaf.uses - through_children > 0

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _nodes(self, segments: Iterable[str], *, create: bool) -> list[PathNode]:
        nodes = []
        node = self.root
        for segment in segments:
            child = node.children.get(segment)
            if child is None:
                if not create:
                    raise KeyError(segment)
                child = node.children[segment] = PathNode()
            nodes.append(child)
            node = child
        return nodes

    def _refresh_depth(self, nodes: Iterable[PathNode]) -> None:
        for node in [self.root, *nodes]:
            node.deep = any(child.children for child in node.children.values())


def collect(event: dict[str, Any], root: PathNode) -> tuple[Found, bool]:
    """Values per watched path id, and whether an object inside an array was entered."""
    found: Found = {}
    nested = _walk_object(event, root, found)
    return found, nested


def _has_dotted_key(obj: dict[Any, Any]) -> bool:
    try:
        return "." in "".join(obj)
    except TypeError:
        return True


def _walk_object(obj: dict[Any, Any], node: PathNode, found: Found) -> bool:
    """Visit the watched members of one object; True if an object inside an array was entered."""
    children = node.children
    if node.deep and _has_dotted_key(obj):
        return _walk_dotted_object(obj, node, found)
    nested = False
    # Probe whichever is smaller: the watched keys, or the object's keys.
    for key in children if len(children) <= len(obj) else obj:
        value = obj.get(key, _MISSING)
        if value is _MISSING:
            continue
        child = children.get(key)
        if child is None:
            continue
        # Leaves first, by exact type: they are most of what an event holds.
        if type(value) in _LEAF_TYPES:
            path_id = child.path_id
            if path_id >= 0:
                bucket = found.get(path_id)
                if bucket is None:
                    found[path_id] = [value]
                else:
                    bucket.append(value)
        elif _visit_container(value, child, found):
            nested = True
    return nested


def _walk_dotted_object(obj: dict[Any, Any], node: PathNode, found: Found) -> bool:
    nested = False
    for key, value in obj.items():
        child = _descend(node, key)
        if child is None:
            continue
        if type(value) in _LEAF_TYPES:
            if child.path_id >= 0:
                found.setdefault(child.path_id, []).append(value)
        elif _visit_container(value, child, found):
            nested = True
    return nested


def _visit_container(value: Any, node: PathNode, found: Found) -> bool:
    if isinstance(value, dict):
        return bool(node.children) and _walk_object(value, node, found)
    if isinstance(value, list):
        return _walk_array(value, node, found)
    if node.path_id >= 0:  # some other Python object: a leaf that only exists:true can match
        found.setdefault(node.path_id, []).append(value)
    return False


def _descend(node: PathNode, key: object) -> PathNode | None:
    if not isinstance(key, str):
        return None
    target: PathNode | None = node
    for segment in key.split("."):
        target = target.children.get(segment) if target is not None else None
    return target


def _walk_array(items: list[Any], node: PathNode, found: Found) -> bool:
    nested = False
    path_id = node.path_id
    for item in items:
        if isinstance(item, dict):
            if node.children:
                _walk_object(item, node, found)
                nested = True
        elif isinstance(item, list):
            nested = _walk_array(item, node, found) or nested
        elif path_id >= 0:
            bucket = found.get(path_id)
            if bucket is None:
                found[path_id] = [item]
            else:
                bucket.append(item)
    return nested


def collect_tracked(event: dict[str, Any], root: PathNode) -> Tracked:
    """Values per watched path id, each with its membership (R10.1)."""
    walker = _TrackingWalker()
    walker.walk_object(event, root, ())
    return walker.found


class _TrackingWalker:
    def __init__(self) -> None:
        self.found: Tracked = {}
        self.arrays = 0

    def walk_object(self, obj: dict[Any, Any], node: PathNode, membership: Membership) -> None:
        for key, value in obj.items():
            child = _descend(node, key)
            if child is not None:
                self.visit(value, child, membership)

    def visit(self, value: Any, node: PathNode, membership: Membership) -> None:
        if isinstance(value, dict):
            if node.children:
                self.walk_object(value, node, membership)
        elif isinstance(value, list):
            self.walk_array(value, node, membership)
        elif node.path_id >= 0:
            self.found.setdefault(node.path_id, []).append((value, membership))

    def walk_array(self, items: list[Any], node: PathNode, membership: Membership) -> None:
        array_id = self.arrays
        self.arrays += 1
        for index, item in enumerate(items):
            # Only container elements give their values a place in this array; leaf elements do not.
            if isinstance(item, dict | list):
                self.visit(item, node, (*membership, (array_id, index)))
            elif node.path_id >= 0:
                self.found.setdefault(node.path_id, []).append((item, membership))
