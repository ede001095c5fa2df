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
