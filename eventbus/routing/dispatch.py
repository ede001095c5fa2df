"""The router's generated dispatcher, for many rules: read the anchor paths, probe their indexes, verify.

Only the paths some sub-rule is anchored on are read up front (see :mod:`eventbus.routing.anchoring`); each
value is looked up in its path's index with the lookups that index needs: a ``dict.get`` for exact strings, one
slice and ``dict.get`` per key length for prefixes and suffixes (unrolled), a call for the ignore-case and address
tables, the index's general ``collect`` for any other value. Most events bring up no candidate and are done after
those few lookups. Each candidate is checked by a generated function of its sub-rule's other conditions, which
reads the paths it needs. The generated code depends on which paths are indexed, which tables are in use and
their key lengths, not on the rules in them, so it stays the same size from 10 rules to 10,000.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from eventbus.routing.affixes import STEM, AffixTable, add_checked
from eventbus.routing.codegen import FunctionSource
from eventbus.routing.index import ValueIndex
from eventbus.routing.readers import emit_reads
from eventbus.routing.slots import HELPERS

Decide = Callable[[Any], Any]
# A sub-rule's (rule id, check of its conditions other than the anchor, target).
Check = tuple[int, Callable[[dict[str, Any]], bool], Any]
_HELPERS = {**HELPERS, "add_checked": add_checked, "STEM": STEM}
# Prefix and suffix probes are unrolled up to this many distinct key lengths.
_MAX_UNROLLED = 16


def dispatcher_function(
    indexes: Mapping[str, ValueIndex],
    absent: Mapping[str, Sequence[int]],
    general: Decide,
    checks: Mapping[int, Check],
    make_check: Callable[[int], Check],
    several: Callable[[list[Check]], Any],
) -> tuple[Decide, FunctionSource]:
    """``event -> targets`` by index lookups, then checks of the candidates.

    ``indexes`` by path; ``absent`` the sub-rules anchored on a path having no value; ``checks`` by sub-rule id,
    ``(rule id, check of the other conditions, target)``, made by ``make_check`` the first time a sub-rule is a
    candidate; ``several`` orders and deduplicates the targets when more than one sub-rule holds.
    """
    src = FunctionSource("route", "event")
    fall_back = src.bind(general, "general")
    with src.block("if type(event) is not dict:"):
        src.line(f"return {fall_back}(event)")
    with src.block("try:"):
        slots = emit_reads(src, dict.fromkeys([*indexes, *absent]), "event")
        if not slots:
            src.line("pass")
    with src.block("except FallbackError:"):
        src.line(f"return {fall_back}(event)")
    src.line("found = set()")
    for path, index in indexes.items():
        _emit_probe(src, index, slots[path])
    for path, sub_rules in absent.items():
        with src.block(f"if {slots[path]} is MISSING:"):
            src.line(f"found.update({src.bind(sub_rules, 'z')})")
    with src.block("if not found:"):
        src.line("return []")
    _emit_verification(src, src.bind(checks, "checks"), src.bind(make_check, "make_check"), fall_back)
    with src.block("if len(hits) == 1:"):
        src.line("return [hits[0][2]]")
    src.line(f"return {src.bind(several, 'several')}(hits) if hits else []")
    return src.build(_HELPERS), src


def _emit_verification(src: FunctionSource, checks: str, make_check: str, fall_back: str) -> None:
    src.line("hits = []")
    with src.block("try:"), src.block("for candidate in found:"):
        src.line(f"entry = {checks}.get(candidate) or {make_check}(candidate)")
        with src.block("if entry[1](event):"):
            src.line("hits.append(entry)")
    with src.block("except FallbackError:"):
        src.line(f"return {fall_back}(event)")


def _emit_probe(src: FunctionSource, index: ValueIndex, slot: str) -> None:
    collect = src.bind(index.collect, "ix")
    every_value = f"{collect}({slot} if type({slot}) is list else [{slot}], found)"
    if index.checks_every_value or not (index.strings or index.prefixes or index.suffixes):
        with src.block(f"if {slot} is not MISSING:"):
            src.line(every_value)
        return
    # A single string, the common case, is looked up inline; anything else goes through the index's collect.
    with src.block(f"if type({slot}) is str:"):
        if index.strings:
            hit = src.local("h")
            src.line(f"{hit} = {src.bind(index.strings, 'x')}.get({slot})")
            with src.block(f"if {hit} is not None:"):
                src.line(f"found.update({hit})")
        if index.prefixes or index.suffixes:
            size = src.local("n")
            src.line(f"{size} = len({slot})")
            for table in (index.prefixes, index.suffixes):
                if table:
                    _emit_affix_probe(src, table, slot, size)
        if index.has_other_text_tables:
            src.line(f"{src.bind(index.probe_other_text, 'p')}({slot}, found)")
    with src.block(f"elif {slot} is not MISSING:"):
        src.line(every_value)


def _emit_affix_probe(src: FunctionSource, table: AffixTable, slot: str, size: str) -> None:
    """Inline :meth:`AffixTable.collect`: per key length, one slice and one ``dict.get``.

    The lengths are known when the code is generated, so the probe is unrolled: straight-line code inside a
    one-pass ``while`` that ``break`` leaves, with no loop bookkeeping between probes.
    """
    if len(table.lengths) > _MAX_UNROLLED:
        src.line(f"{src.bind(table.collect, 'p')}({slot}, found)")
        return
    entries, entry = src.bind(table.entries, "y"), src.local("e")
    with src.block("while True:"):
        for length in table.lengths:
            bound = src.bind(length, "w")
            with src.block(f"if {size} < {bound}:"):
                src.line("break")
            part = f"{slot}[{size} - {bound} :]" if table.from_end else f"{slot}[:{bound}]"
            src.line(f"{entry} = {entries}.get({part})")
            with src.block(f"if {entry} is None:"):
                src.line("break")
            with src.block(f"if {entry} is not STEM:"):
                _emit_affix_hit(src, table, entry, slot)
        src.line("break")


def _emit_affix_hit(src: FunctionSource, table: AffixTable, entry: str, slot: str) -> None:
    if table.plain and table.checked:
        with src.block(f"if {entry}.plain:"):
            src.line(f"found.update({entry}.plain)")
        with src.block(f"if {entry}.checked:"):
            src.line(f"add_checked({entry}.checked, {slot}, found)")
    elif table.plain:
        src.line(f"found.update({entry}.plain)")
    else:
        src.line(f"add_checked({entry}.checked, {slot}, found)")
