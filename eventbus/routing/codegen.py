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

    def source(self) -> str:
        factory_parameters = ", ".join(self._bound)
        header = [f"def _factory({factory_parameters}):", f"    def {self.name}({self.parameters}):"]
        body = [_INDENT + line for line in self._lines] or [_INDENT * 2 + "pass"]
        return "\n".join([*header, *body, f"    return {self.name}", ""])

    def build(self, helpers: dict[str, Any]) -> Callable[..., Any]:
        """Compile the function. ``helpers`` are the global names it uses; pass the same dict every time.

        Functions of the same source share one code object, and CPython's inline caches for global names are
        only valid for one globals dict: sharing it keeps them from being respecialised at every call.
        """
        factory = FunctionType(_compiled_factory(self.source(), self.name), helpers)
        function: Callable[..., Any] = factory(**self._bound)
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


@lru_cache(maxsize=256)
def _compiled_factory(source: str, name: str) -> CodeType:
    # Compiling is most of the cost of building, and rules of one shape (the same paths and operators, with
    # other values) give the same source: their functions share one code object.
    module = compile(source, f"<eventbus.routing {name}>", "exec")
    return next(c for c in module.co_consts if isinstance(c, CodeType) and c.co_name == "_factory")
