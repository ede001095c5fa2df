"""The ``wildcard`` operator (spec R4.6, R6.6).

``*`` matches any run of characters (empty included, ``/`` included); ``\\*`` is a literal star and ``\\\\`` a
literal backslash; any other escape, a trailing lone backslash, or two unescaped stars in a row are errors. The
match is anchored at both ends.
"""

from __future__ import annotations

from collections.abc import Sequence

# EventBridge refuses wildcard rules that are too non-deterministic. The score is the largest number of
# automaton states a single input can keep alive (see complexity()); AWS accepts 3 and refuses 11. A rule
# scoring above this limit is refused.
MAX_COMPLEXITY = 10
# Cap on the subset construction, so that scoring a hostile pattern stays cheap; reaching it means "too complex".
_MAX_EXPLORED_STATES = 20_000

_STAR = -1


class WildcardSyntaxError(ValueError):
    """An invalid wildcard pattern; the message is the problem, with its position."""


class Wildcard:
    """A parsed wildcard pattern: literal segments separated by stars."""

    __slots__ = ("head", "middle", "min_length", "source", "tail", "tokens", "whole")

    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokenize(source)
        segments = _segments(self.tokens)
        # Without a star the pattern is one literal and matching is plain equality.
        self.whole: str | None = segments[0] if len(segments) == 1 else None
        self.head = segments[0]
        self.tail = segments[-1] if len(segments) > 1 else ""
        self.middle: tuple[str, ...] = tuple(segments[1:-1])
        self.min_length = sum(len(s) for s in segments)

    def matches(self, text: str) -> bool:
        if self.whole is not None:
            return text == self.whole
        if len(text) < self.min_length or not text.startswith(self.head) or not text.endswith(self.tail):
            return False
        position = len(self.head)
        end = len(text) - len(self.tail)
        # Taking each middle segment at its leftmost place leaves the most room for the rest, so a greedy scan
        # finds a match whenever one exists.
        for segment in self.middle:
            found = text.find(segment, position, end)
            if found < 0:
                return False
            position = found + len(segment)
        return True


def _tokenize(source: str) -> list[str | int]:
    tokens: list[str | int] = []
    index = 0
    while index < len(source):
        char = source[index]
        if char == "\\":
            escaped = source[index + 1] if index + 1 < len(source) else ""
            if escaped not in ("*", "\\"):
                raise WildcardSyntaxError(f"Invalid escape character at pos {_position(source, index)}")
            tokens.append(escaped)
            index += 2
            continue
        if char == "*":
            if tokens and tokens[-1] == _STAR:
                raise WildcardSyntaxError(f"Consecutive wildcard characters at pos {_position(source, index - 1)}")
            tokens.append(_STAR)
        else:
            tokens.append(char)
        index += 1
    return tokens


def _position(source: str, index: int) -> int:
    """event-ruler's position of ``source[index]``: a byte offset in the UTF-8 of the pattern between quotes."""
    return 1 + len(source[:index].encode("utf-8", "surrogatepass"))


def _segments(tokens: Sequence[str | int]) -> list[str]:
    segments: list[str] = []
    current: list[str] = []
    for token in tokens:
        if token == _STAR:
            segments.append("".join(current))
            current = []
        else:
            current.append(str(token))
    segments.append("".join(current))
    return segments


def complexity(wildcards: Sequence[Wildcard], cap: int = MAX_COMPLEXITY + 1) -> int:
    """How many automaton states one input can keep alive at once across ``wildcards`` (capped at ``cap``).

    Each pattern is read as event-ruler stores it: UTF-8 bytes between quote characters, a state after every
    literal byte, and for each star a separate looping state. A state that sits just before a star counts twice
    while the star's own state is not active, as it will be one byte later. This reproduces the scores event-ruler's
    complexity evaluator gives (``a*b`` 2, ``*:*:*:*:*:event-bus/*`` 11).
    """
    machines = [_byte_tokens(w) for w in wildcards if w.whole is None]
    if not machines:
        return 0
    alphabet = {t for m in machines for t in m if t != _STAR} | {256}
    start = frozenset((n, "S", 0) for n in range(len(machines)))
    seen = {start}
    pending = [start]
    best = 0
    while pending:
        states = pending.pop()
        for byte in alphabet:
            following = frozenset(s for state in states for s in _step(machines, state, byte))
            if not following:
                continue
            best = max(best, _score(machines, following))
            if best >= cap or len(seen) >= _MAX_EXPLORED_STATES:
                return cap
            if following not in seen:
                seen.add(following)
                pending.append(following)
    return best


def _byte_tokens(wildcard: Wildcard) -> list[int]:
    tokens: list[int] = [ord('"')]
    for token in wildcard.tokens:
        if token == _STAR:
            tokens.append(_STAR)
        else:
            tokens.extend(str(token).encode("utf-8", "surrogatepass"))
    tokens.append(ord('"'))
    return tokens


def _step(machines: list[list[int]], state: tuple[int, str, int], byte: int) -> list[tuple[int, str, int]]:
    machine_index, kind, position = state
    tokens = machines[machine_index]
    following: list[tuple[int, str, int]] = []
    if kind == "S":
        if position >= len(tokens):
            return following
        if tokens[position] != _STAR:
            if tokens[position] == byte:
                following.append((machine_index, "S", position + 1))
            return following
    # A star (or the looping state of a star) stays put on any byte, or skips ahead on the byte after it.
    following.append((machine_index, "W", position))
    if position + 1 < len(tokens) and tokens[position + 1] == byte:
        following.append((machine_index, "S", position + 2))
    return following


def _score(machines: list[list[int]], states: frozenset[tuple[int, str, int]]) -> int:
    score = len(states)
    for machine_index, kind, position in states:
        tokens = machines[machine_index]
        before_star = kind == "S" and position < len(tokens) and tokens[position] == _STAR
        if before_star and (machine_index, "W", position) not in states:
            score += 1
    return score
