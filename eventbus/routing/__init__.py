"""Event patterns (the EventBridge pattern language) and the router that matches events against many of them.

``compile_pattern(pattern)`` validates a pattern and returns a :class:`Pattern` with ``matches(event)``;
``Router`` holds many (pattern, target) rules and returns the targets an event matches, at a cost per event that
does not grow with the number of rules. The language is specified in ``shared/specs/event-patterns.md``.
"""

from eventbus.routing.errors import InvalidPatternError
from eventbus.routing.pattern import DEFAULT_MAX_SIZE, Pattern, compile_pattern
from eventbus.routing.router import Router

__all__ = ["DEFAULT_MAX_SIZE", "InvalidPatternError", "Pattern", "Router", "compile_pattern"]
