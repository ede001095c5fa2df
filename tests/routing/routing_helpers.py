"""Helpers shared by the routing tests (a plainly named module, so it cannot clash with other conftests).

``decide(pattern, event)`` answers through every entry point at once (``Pattern.matches``, ``Router.match``,
and ``Pattern.matches_json`` on the event's JSON text) and through each generated function (the pattern's, and
the router's inline function and index dispatcher), and fails the test if they disagree, so every rule-by-rule
test also checks the router and the generated code against the general evaluator.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eventbus.routing import Pattern, Router, compile_pattern

Decide = Callable[[dict[str, Any] | str | Pattern, Any], bool]


def find_shared_dir() -> Path | None:
    """The project's shared/ folder: $EVENTBUS_SHARED_DIR, else ``shared`` beside the repository."""
    candidates = []
    if os.environ.get("EVENTBUS_SHARED_DIR"):
        candidates.append(Path(os.environ["EVENTBUS_SHARED_DIR"]))
    candidates.append(Path(__file__).resolve().parents[2] / ".." / "shared")
    for candidate in candidates:
        if (candidate / "conformance" / "expected.json").is_file():
            return candidate.resolve()
    return None


def decide(pattern: dict[str, Any] | str | Pattern, event: Any) -> bool:
    compiled = pattern if isinstance(pattern, Pattern) else compile_pattern(pattern)
    by_pattern = compiled.matches(event)
    router: Router[str] = Router()
    router.add(compiled, "hit")
    by_router = router.match(event) == ["hit"]
    assert by_router == by_pattern, f"router says {by_router}, pattern says {by_pattern}"
    assert compiled._specialise()(event) == by_pattern, "the pattern's generated function disagrees"
    for inline in (True, False):
        generated = router._generate(inline=inline)[0](event) == ["hit"]
        assert generated == by_pattern, f"the router's generated function (inline={inline}) disagrees"
    try:
        text = json.dumps(event)
    except (TypeError, ValueError):
        return by_pattern
    by_json = compiled.matches_json(text)
    assert by_json == by_pattern, f"matches_json says {by_json}, matches says {by_pattern}"
    assert (router.match_json(text.encode()) == ["hit"]) == by_pattern
    return by_pattern
