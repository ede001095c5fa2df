"""Building a Python function from generated source, without ever putting pattern or event text into that source.

Generated code names everything it uses: keys, values, matchers and helpers are *bound* under generated names
(``k0``, ``c3``, ``m7``...) and reach the function as closure variables of a factory, so the source is made only
of those names, Python keywords and operators. Whatever a pattern holds (quotes, newlines, backslashes), it
cannot change what the code does. :meth:`FunctionSource.describe` renders the source with a legend of the bound
names, for debugging.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from types import CodeType, FunctionType
from typing import Any

_INDENT = "    "
# How much of a bound value the legend shows.
_LEGEND_WIDTH = 60


class FunctionSource:
    """The body of one generated function, the names bound for it, and how to compile it."""

    def __init__(self, name: str, parameters: str) -> None:
        self.name = name
        self.parameters = parameters
        self._lines: list[str] = []
        self._depth = 1
        self._bound: dict[str, Any] = {}
        self._notes: dict[str, str] = {}
        # Equal strings share one name, so that the same key read in several places reads as one name.
        self._strings: dict[tuple[str, str], str] = {}
        self._counters: dict[str, int] = {}

    def bind(self, value: Any, prefix: str, note: str = "") -> str:
        """A name under which ``value`` is visible to the generated code."""
        if type(value) is str:
            known = self._strings.get((prefix, value))
            if known is not None:
                return known
        number = self._counters.get(prefix, 0)
        self._counters[prefix] = number + 1
        name = f"{prefix}{number}"
        self._bound[name] = value
        if note:
            self._notes[name] = note
        if type(value) is str:
            self._strings[(prefix, value)] = name
        return name

    def local(self, prefix: str) -> str:
        """A fresh local variable name."""
        number = self._counters.get(prefix, 0)
        self._counters[prefix] = number + 1
        return f"{prefix}{number}"

    def line(self, text: str) -> None:
        self._lines.append(_INDENT * self._depth + text)

    @contextmanager
    def block(self, header: str) -> Iterator[None]:
        """Lines emitted inside the ``with`` are indented under ``header`` (which ends with a colon)."""
        self.line(header)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    def source(self, shared_prefixes: frozenset[str] = frozenset()) -> str:
        """The factory's source. With ``shared_prefixes``, two levels: ``_factory`` takes the names bound under
        those prefixes and returns ``_make``, which takes the others and returns the function."""
        if not shared_prefixes:
            factory_parameters = ", ".join(self._bound)
            header = [f"def _factory({factory_parameters}):", f"    def {self.name}({self.parameters}):"]
            body = [_INDENT + line for line in self._lines] or [_INDENT * 2 + "pass"]
            return "\n".join([*header, *body, f"    return {self.name}", ""])
        shared, own = self._split(shared_prefixes)
        header = [
            f"def _factory({', '.join(shared)}):",
            f"    def _make({', '.join(own)}):",
            f"        def {self.name}({self.parameters}):",
        ]
        body = [_INDENT * 2 + line for line in self._lines] or [_INDENT * 3 + "pass"]
        return "\n".join([*header, *body, f"        return {self.name}", "    return _make", ""])

    def _split(self, shared_prefixes: frozenset[str]) -> tuple[list[str], list[str]]:
        shared = [name for name in self._bound if name.rstrip("0123456789") in shared_prefixes]
        own = [name for name in self._bound if name.rstrip("0123456789") not in shared_prefixes]
        return shared, own

    def build(self, helpers: dict[str, Any]) -> Callable[..., Any]:
        """Compile the function. ``helpers`` are the global names it uses; pass the same dict every time.

        Functions of the same source share one code object, and CPython's inline caches for global names are
        only valid for one globals dict: sharing it keeps them from being respecialised at every call.
        """
        factory = FunctionType(_compiled_factory(self.source(), self.name), helpers)
        function: Callable[..., Any] = factory(**self._bound)
        return function

    def build_sharing(self, helpers: dict[str, Any], shared_prefixes: frozenset[str]) -> Callable[..., Any]:
        """`build`, for a function made many times over with the same source: the names bound under
        ``shared_prefixes`` (keys, say) are bound once per source and values, and every function made with them
        reads those same cells; only the other names get cells of their own.

        A function reads its closure variables' cells; when thousands are made and each is called now and then
        (a router's checks of its candidates), cells shared by all of one shape stay in the CPU cache.
        """
        shared, own = self._split(shared_prefixes)
        source = self.source(shared_prefixes)
        key = (source, tuple((type(self._bound[n]), self._bound[n]) for n in shared))
        make = _makers.get(key)
        if make is None:
            factory = FunctionType(_compiled_factory(source, self.name), helpers)
            make = factory(**{name: self._bound[name] for name in shared})
            if len(_makers) >= _MAX_MAKERS:
                _makers.pop(next(iter(_makers)))
            _makers[key] = make
        function: Callable[..., Any] = make(**{name: self._bound[name] for name in own})
        return function

    def describe(self) -> str:
        """The source followed by what each bound name stands for."""
        legend = []
        for name, value in self._bound.items():
            shown = ascii(value)
            if len(shown) > _LEGEND_WIDTH:
                shown = shown[: _LEGEND_WIDTH - 3] + "..."
            note = self._notes.get(name)
            legend.append(f"# {name} = {shown}" + (f"  ({ascii(note)[1:-1]})" if note else ""))
        return self.source() + "\n" + "\n".join(legend) + "\n"


# Factories of shared names by source and shared values (see `FunctionSource.build_sharing`), oldest dropped first.
_makers: dict[tuple[str, tuple[tuple[type, Any], ...]], Callable[..., Any]] = {}
_MAX_MAKERS = 1024


@lru_cache(maxsize=256)
def _compiled_factory(source: str, name: str) -> CodeType:
    # Compiling is most of the cost of building, and rules of one shape (the same paths and operators, with
    # other values) give the same source: their functions share one code object.
    module = compile(source, f"<eventbus.routing {name}>", "exec")
    return next(c for c in module.co_consts if isinstance(c, CodeType) and c.co_name == "_factory")
