"""The one error a pattern can raise: where in the pattern it is wrong, and what is wrong there."""

from __future__ import annotations

ROOT = "(root)"


class InvalidPatternError(ValueError):
    """A pattern that the event-pattern language rejects, found at compile time.

    ``path`` is the dotted location inside the pattern (``detail.amount``, ``$or[1].source``), or ``(root)``
    when the pattern as a whole is wrong; ``problem`` says what is wrong there. ``str(error)`` is
    ``"<path>: <problem>"``.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path or ROOT
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple[type[InvalidPatternError], tuple[str, str]]:
        return (type(self), (self.path, self.problem))


# How much of an offending value an error message quotes.
_SHOWN_WIDTH = 60


def shown(value: object) -> str:
    """A value of the pattern as JSON text for an error message (numbers as spelled, long values cut short).

    Pattern authors write JSON, so messages quote ``true``/``null``/``{"x": 1}``, not Python's reprs.
    """
    text = _json_text(value)
    return text if len(text) <= _SHOWN_WIDTH else text[: _SHOWN_WIDTH - 3] + "..."


def _json_text(value: object) -> str:
    import json

    if isinstance(value, dict):
        return "{" + ", ".join(f"{_json_text(str(k))}: {_json_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_json_text(v) for v in value) + "]"
    text = getattr(value, "text", None)  # a NumberLiteral keeps the spelling the pattern used
    if isinstance(text, str) and not isinstance(value, str):
        return text
    if isinstance(value, int) and not isinstance(value, bool):
        from eventbus.routing.numbers import int_text, shortened

        return shortened(int_text(value))  # json.dumps and repr refuse more than 4,300 digits
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)
