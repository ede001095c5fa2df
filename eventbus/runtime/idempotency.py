"""Idempotency keys: which events a processor has already handled.

An invocation writes two records to a per-process *journal*: *begin* before the function is called and *done*
(with what it emitted) after it returns. The journal is a memory-mapped file: an append is a memory copy, and
what was copied survives a crash of the process (it is in the page cache, like the log's own WAL). After each
commit the round's keys are appended to the process's current *key segment* and the journal is cleared. A round
handed to the log's commit is marked in the journal (group, offsets moved, keys): a worker that dies after the
commit landed and before its keys were appended leaves a journal whose recovery asks the log, and finds them
committed.

Keys are hashed the store's way (``key-hash``, see `eventbus.runtime.key_hashing`).

Key segments (``keys-<pid>-<random>-<seq>.bin``, 16-byte records: key hash, time in ms) are append-only. A process
starts a new one when its current segment is a quarter of the retention window old (at least a minute, at most six
hours) or would pass 64 MiB (by default), so what expires goes a segment at a time: a segment whose newest record
is older than the retention window is deleted, by its process, or by any worker once that process is gone. A key
file of an earlier version (``keys-<pid>-<random>.bin``) is read like a segment and deleted the same way.

A worker starting up reads the key segments in the store's directory (those of other workers of the host, and of
processes gone) into memory, as 64-bit hashes, for the retention window: a segment last written before the window
is not opened. It keeps reading what live workers append, and replays the journals that processes now gone left
behind:

- a key *done* but never committed belongs to an event that will be delivered again; it is not run again, and
  what it emitted is emitted again, so no output is lost. The recovering worker *adopts* these records: it
  writes them to a file of its own (``adopted-<pid>-<random>-<seq>.mm``, in the journal's format) before it
  deletes the dead worker's journal, and deletes that file once each of its keys is committed (or expired). If
  the recovering worker dies too before then, the next one recovers the adopted file like a journal, so the
  keys are never forgotten while their events may still come back;
- a key *begun* and never done belongs to an event whose worker died in the middle of it: its side effects may or
  may not have happened. It is kept *in doubt* (written to the recovering worker's segment, with its time
  negated) for the retention window from its recovery, like any key: while it is known, the event is
  dead-lettered for a person to decide, neither repeated nor silently dropped. Rotation does not cut that short:
  the segment holding it is deleted only once its newest record, at least as new, has expired.

A worker whose round's commit a rebalance refused adopts that round's done records the same way: its events
will be delivered again, to it or to another worker of the host, which emits their outputs again.

A key seen and committed earlier is skipped without emitting anything: its outputs are already in the log.
"""

from __future__ import annotations

import array
import contextlib
import itertools
import logging
import mmap
import os
import struct
import sys
import time
import uuid
import weakref
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from eventbus.app.context import Context
from eventbus.backends.base import Message
from eventbus.errors import ConfigurationError
from eventbus.runtime.invoke import Failure, argument_factory, call_each, call_with_time_limit
from eventbus.runtime.key_hashing import KeyHashing, key_hashing_of, new_key_hashing

if TYPE_CHECKING:
    from eventbus.app.processor import Processor
    from eventbus.runtime.outbox import Outbox

Outputs = list[tuple[str, Message]]
# Where a round's commit moves a group: (topic, partition, offset committed before, offset it commits).
Moves = list[tuple[str, int, int, int]]
# Whether a group's commit of these moves landed in the log.
Landed = Callable[[str, Moves], bool]
# The group and the moves of a round's commit, as handed to the log.
HandedOver = tuple[str, Moves]

logger = logging.getLogger("eventbus.idempotency")


class InDoubt:
    """What `IdempotencyStore.seen` returns for a key whose invocation was cut short by a crash."""

    def __repr__(self) -> str:
        return "IN_DOUBT"


IN_DOUBT = InDoubt()
# Per key hash seen: what to emit instead of running the processor (often nothing), or IN_DOUBT.
Seen = dict[int, "Outputs | InDoubt"]

_KEY_RECORD = struct.Struct("<Qq")  # key hash, recorded at (ms; negative when in doubt)
_JOURNAL_HEADER = struct.Struct("<QQ")  # where the records not yet committed start, where the records end
_JOURNAL_HEADER_BYTES = _JOURNAL_HEADER.size
_RECORD_LENGTH = struct.Struct("<I")
_JOURNAL_START_BYTES = 1 << 20
# Journal records: a kind byte and the key hash; "done" adds the time and what the invocation emitted, framed
# (_DONE) or, in journals of earlier versions, as JSON (_DONE_JSON).
_BEGIN, _ABANDON, _DONE, _DONE_JSON = b"b", b"a", b"D", b"d"
# A round handed to the log's commit, after its records: the group, the offsets it moves, and its keys, as JSON. A
# worker recovering the journal asks the log whether it landed: if so, the round's keys are committed, not to adopt.
# Only a commit that moves an offset can be told apart: one that moves none is taken as not landed (its outputs may
# then be emitted twice, never lost).
_HANDED_OVER = b"R"
# A record that covers bytes left over when the journal moves its records to the top; readers pass over it (as
# over any record too short to hold a key, which is what a skip record of fewer than 5 bytes is).
_SKIP = b"s"
# A gap of 1 to 3 bytes cannot hold a skip record (its length alone takes 4): no move then, until a later commit.
_GAPS_TOO_SHORT = range(1, 4)
_JOURNAL_KEY = struct.Struct("<cQ")
_JOURNAL_TIME = struct.Struct("<q")
_DONE_HEAD = struct.Struct("<cQqI")  # kind, key hash, time, number of outputs
# Per output: lengths of its topic (UTF-8), key, value (-1: None) and headers (JSON, 0: none), then those bytes.
_OUTPUT_HEAD = struct.Struct("<Iiii")
# The common case in one record: an invocation done with one output (no headers, key and value set), then the next
# one's begin. Kind, key hash, time, next key hash, lengths of the output's topic (UTF-8), key and value, then those.
_DONE_ONE = b"N"
_DONE_ONE_THEN_BEGIN = struct.Struct("<cQqQIii")
# Records as the journal holds them, length first: built in one pack, written in one copy.
_FRAMED_KEY = struct.Struct("<IcQ")
_FRAMED_DONE_ONE_THEN_BEGIN = struct.Struct("<IcQqQIii")
# The same record with the key hashes and the time given as their 8 little-endian bytes (a key's digest): a
# 64-bit int takes CPython's slow conversion path, and two of them per event showed.
_FRAMED_DONE_ONE_THEN_BEGIN_BYTES = struct.Struct("<Ic8s8s8sIii")
_TIME_BYTES = struct.Struct("<q")


def key_hash(processor: str, key: str) -> int:
    """A key's hash the way stores made by earlier versions take it (`KeyHashing`, BLAKE2b-64): among a million
    stored keys, a new key is mistaken for one with odds of 1 in 10^13."""
    return _BLAKE2B.hash(processor, key)


_BLAKE2B = KeyHashing()


def default_key(attrs: Mapping[str, Any]) -> str:
    """`eventbus.app.policies.event_id` read straight from a decoded event's attributes."""
    return f"{attrs.get('source', '')}\x1f{attrs.get('id', '')}"


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else value.encode("latin-1")


def encode_outputs(outputs: Outputs) -> list[Any]:
    """Outputs as JSON-ready lists (the format of journals written by earlier versions)."""
    return [
        [topic, _text(m.value), _text(m.key), None if not m.headers else [[k, _text(v)] for k, v in m.headers]]
        for topic, m in outputs
    ]


def decode_outputs(encoded: list[Any]) -> Outputs:
    outputs: Outputs = []
    for topic, value, key, headers in encoded:
        decoded_headers = None if headers is None else tuple((k, _bytes(v) or b"") for k, v in headers)
        outputs.append((topic, Message(_bytes(value), _bytes(key), decoded_headers)))
    return outputs


def frame_outputs(outputs: Outputs) -> bytes:
    """Outputs as length-prefixed bytes: a done record per event is written on the hot path, and copying the
    bytes costs a fraction of turning them into JSON text."""
    parts: list[bytes] = []
    for topic, m in outputs:
        name, key, value = topic.encode(), m.key, m.value
        headers = b"" if not m.headers else orjson.dumps([[k, _text(v)] for k, v in m.headers])
        parts.append(
            _OUTPUT_HEAD.pack(
                len(name), -1 if key is None else len(key), -1 if value is None else len(value), len(headers)
            )
        )
        parts.append(name)
        if key:
            parts.append(key)
        if value:
            parts.append(value)
        if headers:
            parts.append(headers)
    return b"".join(parts)


def _framed_done_record(h: int, at_ms: int, outputs: Outputs, then_begin: int | None = None) -> bytes:
    """The journal's record of an invocation that returned (its key, when, and its outputs), length first; then,
    when given, the begin record of the next invocation, so that both take one write."""
    begin = b"" if then_begin is None else _FRAMED_KEY.pack(_JOURNAL_KEY.size, _BEGIN, then_begin)
    record = _DONE_HEAD.pack(_DONE, h, at_ms, len(outputs)) + frame_outputs(outputs)
    return b"".join((_RECORD_LENGTH.pack(len(record)), record, begin))


def _key_records(hashes: Sequence[int], times: Sequence[int]) -> bytes:
    """`_KEY_RECORD` records of keys and their times: two array conversions rather than a pack per key. The times
    of a round are when its keys were done, never negative (only doubts are, and they are written apart); a
    negative one would raise OverflowError here rather than be written wrong."""
    records = array.array("Q", bytes(16 * len(hashes)))
    records[0::2] = array.array("Q", hashes)
    records[1::2] = array.array("Q", times)
    if sys.byteorder == "big":
        records.byteswap()
    return records.tobytes()


def _framed_key_record(kind: bytes, h: int) -> bytes:
    return _FRAMED_KEY.pack(_JOURNAL_KEY.size, kind, h)


def _done_records(
    journal: bytes,
    begun: dict[int, int] | None = None,
    now_ms: int = 0,
    landed: Landed | None = None,
    committed: dict[int, int] | None = None,
) -> dict[int, tuple[int, Outputs]]:
    """The done records in a journal's pending part, by key: (time, outputs). Keys begun and not done (nor
    abandoned) go to ``begun``, with ``now_ms``. Keys of rounds handed over whose commit ``landed`` says landed go
    to ``committed`` (with their times) instead."""
    done: dict[int, tuple[int, Outputs]] = {}
    for raw in _Journal.records(journal):
        if len(raw) < _JOURNAL_KEY.size:
            continue
        kind = raw[:1]
        if kind == _HANDED_OVER:
            _take_landed(raw, landed, done, committed, now_ms)
            continue
        kind, h = _JOURNAL_KEY.unpack_from(raw)
        if kind == _BEGIN:
            if begun is not None:
                begun[h] = now_ms
        elif kind == _ABANDON:
            if begun is not None:
                begun.pop(h, None)
        elif kind == _DONE_ONE:
            _, _, at_ms, then, name_length, key_length, value_length = _DONE_ONE_THEN_BEGIN.unpack_from(raw)
            position = _DONE_ONE_THEN_BEGIN.size
            topic = raw[position : position + name_length].decode()
            position += name_length
            key = raw[position : position + key_length]
            value = raw[position + key_length : position + key_length + value_length]
            done[h] = (at_ms, [(topic, Message(value, key))])
            if begun is not None:
                begun.pop(h, None)
                begun[then] = now_ms
        elif kind in (_DONE, _DONE_JSON):
            if begun is not None:
                begun.pop(h, None)
            done[h] = _done_record(kind, raw)
    return done


def _done_record(kind: bytes, raw: bytes) -> tuple[int, Outputs]:
    """A _DONE or (written by earlier versions) _DONE_JSON record's time and outputs."""
    if kind == _DONE:
        _, _, at_ms, count = _DONE_HEAD.unpack_from(raw)
        return at_ms, unframe_outputs(raw, count, _DONE_HEAD.size)
    (at_ms,) = _JOURNAL_TIME.unpack_from(raw, _JOURNAL_KEY.size)
    return at_ms, decode_outputs(orjson.loads(raw[_JOURNAL_KEY.size + _JOURNAL_TIME.size :]))


def _handed_over_record(group: str, moves: Moves, key_records: bytes) -> bytes:
    """The kind, the length of the JSON of the group and moves, that JSON, then the round's _KEY_RECORD records
    (already built for the key segment: no work per key here)."""
    head = orjson.dumps({"group": group, "moves": moves})
    body = b"".join((_HANDED_OVER, _RECORD_LENGTH.pack(len(head)), head, key_records))
    return _RECORD_LENGTH.pack(len(body)) + body


def _take_landed(
    raw: bytes,
    landed: Landed | None,
    done: dict[int, tuple[int, Outputs]],
    committed: dict[int, int] | None,
    now_ms: int,
) -> None:
    """Move the keys of a handed-over round (``raw``) that landed from ``done`` to ``committed``."""
    if landed is None or committed is None:
        return
    for h, at_ms in _landed(raw, landed):
        done.pop(h, None)
        committed[h] = at_ms


def _landed(raw: bytes, landed: Landed) -> list[tuple[int, int]]:
    """The keys (and times) of a handed-over round whose commit landed; none when it did not, or that cannot be
    told."""
    try:
        (head_length,) = _RECORD_LENGTH.unpack_from(raw, 1)
        start = 1 + _RECORD_LENGTH.size
        handed = orjson.loads(raw[start : start + head_length])
        if landed(handed["group"], [(t, p, before, after) for t, p, before, after in handed["moves"]]):
            records = raw[start + head_length :]
            return list(_KEY_RECORD.iter_unpack(records[: len(records) - len(records) % _KEY_RECORD.size]))
    except Exception:  # unreadable, or the log cannot say: not known to have landed, so the keys are adopted
        logger.warning("idempotency: cannot tell whether a dead worker's round landed; its keys are adopted")
    return []


def unframe_outputs(data: bytes, count: int, start: int) -> Outputs:
    outputs: Outputs = []
    position = start
    for _ in range(count):
        name_length, key_length, value_length, headers_length = _OUTPUT_HEAD.unpack_from(data, position)
        position += _OUTPUT_HEAD.size
        topic = data[position : position + name_length].decode()
        position += name_length
        key = None if key_length < 0 else data[position : position + key_length]
        position += max(key_length, 0)
        value = None if value_length < 0 else data[position : position + value_length]
        position += max(value_length, 0)
        headers = None
        if headers_length:
            headers = tuple((k, _bytes(v) or b"") for k, v in orjson.loads(data[position : position + headers_length]))
            position += headers_length
        outputs.append((topic, Message(value, key, headers)))
    return outputs


class IdempotencyStore(ABC):
    """Keys are passed as hashes, computed once per event by the caller the store's way (`keys`)."""

    keys: KeyHashing

    @abstractmethod
    def seen(self, hashes: Sequence[int], ttl_s: float) -> Seen:
        """The hashes among ``hashes`` handled within ``ttl_s``: each with what to emit instead of running the
        processor again, or `IN_DOUBT`."""

    def begin(self, h: int) -> None:  # noqa: B027 - only stores that survive a crash need it
        """Note that the key's invocation starts (durable against a crash when it returns)."""

    def abandon(self, h: int) -> None:  # noqa: B027
        """Note that the key's invocation failed: it will be tried again, not doubted."""

    @abstractmethod
    def record(self, h: int, outputs: Outputs, then_begin: int | None = None) -> None:
        """Remember that the key was handled, and what it emitted (durable against a crash when it returns);
        then, when given, `begin` ``then_begin`` (the next invocation), in the same write."""

    def seal(self, handed_over: HandedOver | None = None) -> Round:
        """The keys recorded since the last seal: the round whose commit is being handed to the log."""
        return Round(b"", (), 0)

    def committed(self, sealed: Round) -> None:  # noqa: B027 - stores without files have nothing to write
        """The round's commit landed: keep its keys for the retention window."""

    def refused(self, sealed: Round) -> None:  # noqa: B027
        """The round's commit was refused (its outputs rolled back): its events will run again."""

    def reemitted(self, h: int) -> None:  # noqa: B027 - only stores that recover outputs have any
        """The outputs `seen` returned for ``h`` (a run cut short before its commit) are in the outbox now."""

    def close(self) -> None:  # noqa: B027
        """Release files."""

    def journal(self, outbox: Outbox) -> KeyJournal:
        """A journal for one run of new events' invocations, their outputs emitted to ``outbox``."""
        return KeyJournal(self, outbox)


class KeyJournal:
    """Journals one run of new events' invocations under their idempotency keys (`hashes`, by index in the run),
    told of each by `call_each` (see `eventbus.runtime.invoke.InvocationJournal`).

    An invocation's *done* record is written together with the next one's *begin*, just before the next call (or
    when the run ends): one journal write per event. A crash in between leaves the first begun and not done, in
    doubt, as a crash just after its call returned always did. A run never holds one key twice (the executor
    splits runs at a repeated key): the two records of a write may then come in either order."""

    __slots__ = ("_mark", "_outbox", "_store", "digests", "hashes")

    def __init__(self, store: IdempotencyStore, outbox: Outbox) -> None:
        self._store = store
        self._outbox = outbox
        self.hashes: list[int] = []
        # The same keys' digests (`key_digester`), where the caller has them.
        self.digests: list[bytes] | None = None
        # The outbox's count when the invocation under way began: what it emits comes after.
        self._mark = 0

    def begin(self, index: int) -> None:
        outbox = self._outbox
        if index:
            self._store.record(self.hashes[index - 1], outbox.since(self._mark), then_begin=self.hashes[index])
        else:
            self._store.begin(self.hashes[0])
        self._mark = outbox.count

    def end(self, index: int) -> None:
        self._store.record(self.hashes[index], self._outbox.since(self._mark))

    def abandon(self, index: int) -> None:
        self._store.abandon(self.hashes[index])

    def call_each(
        self,
        processor: Processor,
        topic: str,
        partition: int,
        offsets: Sequence[int],
        events: Sequence[dict[str, Any] | None],
        positions: Sequence[int],
    ) -> Failure | None:
        """`eventbus.runtime.invoke.call_each` over ``positions`` (their keys in `hashes`), journaled."""
        return call_each(processor, topic, partition, offsets, events, positions, self._outbox, self)


class _FileKeyJournal(KeyJournal):
    """`KeyJournal` for the file store, with the common case written out: one plain output per invocation, whose done
    record and the next invocation's begin go as one compact record (`_DONE_ONE_THEN_BEGIN`) in one copy.

    The run's keys become known to the store (`FileIdempotencyStore.seen`) when the run ends, all at once: nothing
    looks them up before, and a run that ends in an exception other than a failed call takes its worker down with
    it (the journal then tells the next worker what was done). Per event, the journal write is all that is left."""

    __slots__ = ("_file_store", "_journal", "_topic", "_topic_bytes", "_topic_fixed", "_topic_length")

    def __init__(self, store: FileIdempotencyStore, outbox: Outbox) -> None:
        super().__init__(store, outbox)
        self._journal = store._journal
        self._file_store = store
        # The topic most outputs go to, its name encoded once, and the length of a compact record to it without
        # the output's key and value.
        self._topic = ""
        self._topic_bytes = b""
        self._topic_length = 0
        self._topic_fixed = 0

    def begin(self, index: int) -> None:
        outbox = self._outbox
        count = outbox.count
        if index and count - self._mark == 1:
            topic = outbox.trail[-1]
            value, key, headers, _, _ = outbox.messages[topic][-1]  # unpacked at once: faster than three getattrs
            if key is not None and value is not None and not headers:
                if topic is not self._topic:
                    self._compact_topic(topic)
                hashes = self.hashes
                framed = b"".join(
                    (
                        _FRAMED_DONE_ONE_THEN_BEGIN.pack(
                            self._topic_fixed + len(key) + len(value),
                            _DONE_ONE,
                            hashes[index - 1],
                            _time_ns() // 1_000_000,
                            hashes[index],
                            self._topic_length,
                            len(key),
                            len(value),
                        ),
                        self._topic_bytes,
                        key,
                        value,
                    )
                )
                # `_Journal.append`, written out: a call less per event.
                journal = self._journal
                used = journal._used + len(framed)
                end = _JOURNAL_HEADER_BYTES + used
                if end > journal._size:
                    journal._grow(end)
                journal._map[end - len(framed) : end] = framed
                journal._used = used
                journal._header[1] = used
                self._mark = count
                return
        if index:
            framed = _framed_done_record(
                self.hashes[index - 1], _now_ms(), outbox.since(self._mark), then_begin=self.hashes[index]
            )
        else:
            framed = _framed_key_record(_BEGIN, self.hashes[0])
        self._journal.append(framed)
        self._mark = count

    def _compact_topic(self, topic: str) -> None:
        self._topic_bytes = topic.encode()
        self._topic_length = len(self._topic_bytes)
        self._topic_fixed = _DONE_ONE_THEN_BEGIN.size + self._topic_length
        self._topic = topic

    # The run's keys count from when it ends: never earlier than any of them was done, so a long run does not
    # shorten their retention window (it lengthens it by at most the run's duration).

    def end(self, index: int) -> None:
        now_ms = _now_ms()
        self._journal.append(_framed_done_record(self.hashes[index], now_ms, self._outbox.since(self._mark)))
        digests = self.digests
        self._file_store.remember(self.hashes[: index + 1], now_ms, None if digests is None else digests[: index + 1])

    def abandon(self, index: int) -> None:
        self._journal.append(_framed_key_record(_ABANDON, self.hashes[index]))
        digests = self.digests
        self._file_store.remember(self.hashes[:index], _now_ms(), None if digests is None else digests[:index])

    def call_each(  # noqa: PLR0912, PLR0915 - the per-event loop is written out in one function for speed
        self,
        processor: Processor,
        topic: str,
        partition: int,
        offsets: Sequence[int],
        events: Sequence[dict[str, Any] | None],
        positions: Sequence[int],
    ) -> Failure | None:
        """`KeyJournal.call_each` with `begin`, `end` and `abandon` written into the loop: on the happy path the
        journal write per event is most of what idempotency costs, and through `begin` it takes a method call, a
        dozen attribute lookups and a look back into the outbox. Here the journal's state lives in locals for the
        run, and keys go in as their digests. What is written, and when, is what `begin`, `end` and `abandon`
        write, but for the time of the done records before the last, taken once for the run: only a worker
        recovering the journal after a crash reads it (as the start of the key's retention), and it is earlier
        than the truth by at most the run."""
        digests = self.digests
        if not positions or digests is None:
            return super().call_each(processor, topic, partition, offsets, events, positions)
        outbox = self._outbox
        records = self._journal
        func, to, name, timeout_s = processor.func, processor.to, processor.name, processor.timeout_s
        wants_context = processor.wants_context
        make = argument_factory(processor)
        add_result = outbox.add_result
        messages, trail = outbox.messages, outbox.trail  # the same objects until the round is taken
        pack = _FRAMED_DONE_ONE_THEN_BEGIN_BYTES.pack
        run_ms = _now_ms()
        run_time = _TIME_BYTES.pack(run_ms)
        records.append(_framed_key_record(_BEGIN, self.hashes[0]))
        journal_map, header, size, used = records._map, records._header, records._size, records._used
        compact, compact_bytes, compact_fixed, compact_length = (
            self._topic,
            self._topic_bytes,
            self._topic_fixed,
            self._topic_length,
        )
        index = 0
        mark = outbox.count
        try:
            for index, position in enumerate(positions):
                count = outbox.count
                if index:
                    # The one before returned: its done record, with this one's begin, in one write.
                    if count - mark == 1 and trail[-1] is compact:
                        value, key, headers, _, _ = messages[compact][-1]  # unpacked at once: faster than getattrs
                        if key is None or value is None or headers:
                            framed = self._done_then_begin(index, mark, run_ms)  # not compact: the topic stays
                        else:
                            framed = b"".join(
                                (
                                    pack(
                                        compact_fixed + len(key) + len(value),
                                        _DONE_ONE,
                                        digests[index - 1],
                                        run_time,
                                        digests[index],
                                        compact_length,
                                        len(key),
                                        len(value),
                                    ),
                                    compact_bytes,
                                    key,
                                    value,
                                )
                            )
                    else:
                        framed = self._done_then_begin(index, mark, run_ms)
                        compact, compact_bytes, compact_fixed, compact_length = (
                            self._topic,
                            self._topic_bytes,
                            self._topic_fixed,
                            self._topic_length,
                        )
                    # The one before is done: its outputs stay, whatever happens to this write.
                    mark = count
                    # `_Journal.append`, written out (its `_used` is brought up to date when the run ends). The
                    # length counts the record only once it is copied: a signal raised in between (StoppedAtOnce)
                    # must not leave a length that a later header write would publish over bytes never written.
                    written = used + len(framed)
                    end = _JOURNAL_HEADER_BYTES + written
                    if end > size:
                        records._grow(end)
                        journal_map, header, size = records._map, records._header, records._size
                    journal_map[end - len(framed) : end] = framed
                    used = written
                    header[1] = used
                attrs: dict[str, Any] = events[position]  # type: ignore[assignment] # routed: always decoded
                if wants_context:
                    args: tuple[Any, ...] = (
                        make(attrs),
                        Context(name, topic, partition, offsets[position], outbox, to, attrs),
                    )
                else:
                    args = (make(attrs),)
                result = func(*args) if timeout_s is None else call_with_time_limit(func, args, timeout_s)
                if result is not None:
                    add_result(result, to, attrs, name)
        except BaseException as exc:
            records._used = used
            if not isinstance(exc, Exception):
                raise
            outbox.rollback(mark)
            self.abandon(index)
            return Failure(index, exc)
        records._used = used
        self._mark = mark
        self.end(index)
        return None

    def _done_then_begin(self, index: int, mark: int, at_ms: int) -> bytes:
        """The done record of the invocation at ``index - 1`` (its outputs are what the outbox gained since
        ``mark``) and the begin record of the one at ``index``: compact when it emitted one plain output, whose
        topic becomes the one compact records are for."""
        outbox = self._outbox
        if outbox.count - mark == 1:
            topic = outbox.trail[-1]
            value, key, headers, _, _ = outbox.messages[topic][-1]
            if key is not None and value is not None and not headers:
                self._compact_topic(topic)
                return b"".join(
                    (
                        _FRAMED_DONE_ONE_THEN_BEGIN.pack(
                            self._topic_fixed + len(key) + len(value),
                            _DONE_ONE,
                            self.hashes[index - 1],
                            at_ms,
                            self.hashes[index],
                            self._topic_length,
                            len(key),
                            len(value),
                        ),
                        self._topic_bytes,
                        key,
                        value,
                    )
                )
        return _framed_done_record(self.hashes[index - 1], at_ms, outbox.since(mark), then_begin=self.hashes[index])


class MemoryIdempotencyStore(IdempotencyStore):
    """Keys in a dict, for the memory log (whose events do not outlive the process either). The workers of one
    log share its keys (``shared``, another worker's store) and each has its own rounds."""

    def __init__(self, shared: MemoryIdempotencyStore | None = None) -> None:
        self.keys = new_key_hashing() if shared is None else shared.keys
        self._keys: dict[int, float] = {} if shared is None else shared._keys
        # Outputs of a refused round, to emit again when its events come back (see `FileIdempotencyStore.refused`).
        self._recovered: dict[int, Outputs] = {} if shared is None else shared._recovered
        self._open: dict[int, tuple[int, Outputs]] = {}

    def seal(self, handed_over: HandedOver | None = None) -> Round:
        opened, self._open = self._open, {}
        return Round(b"", tuple(opened), 0, opened)

    def refused(self, sealed: Round) -> None:
        for h in sealed.hashes:
            self._recovered[h] = sealed.outputs[h][1]

    def seen(self, hashes: Sequence[int], ttl_s: float) -> Seen:
        oldest = time.time() - ttl_s
        found: Seen = {}
        for h in hashes:
            recorded = self._keys.get(h)
            if recorded is not None and recorded >= oldest:
                found[h] = self._recovered.get(h, [])
        return found

    def reemitted(self, h: int) -> None:
        outputs = self._recovered.pop(h, None)
        if outputs is not None:
            self._open[h] = (0, outputs)

    def record(self, h: int, outputs: Outputs, then_begin: int | None = None) -> None:
        self._keys[h] = time.time()
        self._open[h] = (0, outputs)


_memory_stores: weakref.WeakKeyDictionary[object, MemoryIdempotencyStore] = weakref.WeakKeyDictionary()


def memory_store_for(log: object) -> MemoryIdempotencyStore:
    """A worker's in-memory store on a memory log: the keys live as long as the log, shared by every worker on it;
    the rounds are the worker's own."""
    shared = _memory_stores.get(log)
    if shared is None:
        shared = _memory_stores[log] = MemoryIdempotencyStore()
    return MemoryIdempotencyStore(shared)


class _LittleEndianWords:
    """The journal header's words on a big-endian host, where a native view would write them the wrong way round."""

    def __init__(self, journal: mmap.mmap) -> None:
        self._journal = journal

    def __setitem__(self, index: int, value: int) -> None:
        struct.pack_into("<Q", self._journal, 8 * index, value)

    def release(self) -> None:
        pass


def _header_words(journal: mmap.mmap) -> memoryview | _LittleEndianWords:
    """The journal header's two fields (start, end) as 8-byte words: an append updates one with an item assignment,
    which costs a third of a `pack_into`."""
    if sys.byteorder == "little":
        return memoryview(journal)[:_JOURNAL_HEADER_BYTES].cast("Q")
    return _LittleEndianWords(journal)


class _Journal:
    """An append-only, memory-mapped record file: a header (start, used), then length-prefixed records.

    Records before ``start`` belong to rounds whose commit landed; only those after it matter after a crash.
    Positions handed out (`position`, `release_to`) count every byte ever appended, so they stay right when the
    records that matter move to the top of the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self._size = _JOURNAL_START_BYTES
        os.ftruncate(self._fd, self._size)
        self._map = mmap.mmap(self._fd, self._size)
        self._header = _header_words(self._map)
        self._start = 0
        self._used = 0
        # The position of the file's first record: what was appended before it, and moved out of the way.
        self._base = 0

    @property
    def position(self) -> int:
        """Where the next record goes: a round that ends here is passed with `release_to`."""
        return self._base + self._used

    def append(self, framed: bytes) -> None:
        """Append records, each already preceded by its length; the header counts them only once every byte is
        in place."""
        used = self._used + len(framed)
        end = _JOURNAL_HEADER_BYTES + used
        if end > self._size:
            self._grow(end)
        self._map[end - len(framed) : end] = framed
        # The header moves last: a record cut short by a crash is never counted. Only its end changes here (the
        # start moves in `release_to`), in one aligned 8-byte store.
        self._used = used
        self._header[1] = used

    def release_to(self, position: int) -> None:
        """Records before ``position`` no longer matter (their round committed, or was given up)."""
        self._start = max(self._start, position - self._base)
        pending = self._used - self._start
        if pending <= 0:
            # Nothing left: write from the top again.
            self._base += self._used
            self._start = self._used = 0
        elif pending <= self._start and self._start - pending not in _GAPS_TOO_SHORT:
            self._move_pending_to_top(pending)
            return
        self._map[: _JOURNAL_HEADER.size] = _JOURNAL_HEADER.pack(self._start, self._used)

    def _move_pending_to_top(self, pending: int) -> None:
        """Copy the records that still matter to the top, so the journal reuses its pages: a worker always has a
        round in flight when one commits, so the journal is seldom empty, and writing ever further on would touch
        (and fault in) a fresh page every few records.

        A crash may stop this anywhere; each state it can leave reads right (`records` starts at the header's
        start, always a record's beginning):

        1. the header's start moved up to the records that still matter (what releasing always writes);
        2. the copy under way or done: the header points at the originals, which the copy does not overlap;
        3. a skip record now fills the gap between the copy and the originals;
        4. start set to the top: the copy, the skip record, then the originals are read, each record twice,
           which leaves every key as once (its last record decides);
        5. the end set to the copy's: the copy alone.
        """
        journal, top = self._map, _JOURNAL_HEADER.size
        gap = self._start - pending
        # One 8-byte field at a time: a store is not torn, but two may be split by a crash.
        struct.pack_into("<Q", journal, 0, self._start)
        journal.move(top, top + self._start, pending)
        if gap:
            skip = top + pending
            _RECORD_LENGTH.pack_into(journal, skip, gap - _RECORD_LENGTH.size)
            if gap > _RECORD_LENGTH.size:
                journal[skip + _RECORD_LENGTH.size] = _SKIP[0]
        struct.pack_into("<Q", journal, 0, 0)
        struct.pack_into("<Q", journal, 8, pending)
        self._base += self._start
        self._start, self._used = 0, pending

    def _grow(self, needed: int) -> None:
        while self._size < needed:
            self._size *= 2
        self._header.release()  # a map with views of it cannot be closed
        self._map.close()
        os.ftruncate(self._fd, self._size)
        self._map = mmap.mmap(self._fd, self._size)
        self._header = _header_words(self._map)

    @property
    def pending(self) -> bool:
        return self._used > self._start

    def pending_before(self, position: int) -> bytes:
        """The records not yet released that were appended before ``position``, in the file's format."""
        start, end = (
            _JOURNAL_HEADER_BYTES + self._start,
            _JOURNAL_HEADER_BYTES + max(position - self._base, self._start),
        )
        return _JOURNAL_HEADER.pack(0, end - start) + self._map[start:end]

    def close(self) -> None:
        keep = self.pending
        self._header.release()
        self._map.close()
        os.close(self._fd)
        if not keep:
            self.path.unlink(missing_ok=True)
        # else: left for the next worker to recover, like the journal of a worker that died

    @staticmethod
    def records(data: bytes) -> list[bytes]:
        """The records a crashed writer left that still matter."""
        if len(data) < _JOURNAL_HEADER.size:
            return []
        first, used = _JOURNAL_HEADER.unpack_from(data)
        end = min(len(data), _JOURNAL_HEADER.size + used)
        # The header's start is always where a record begins (what lies before it may have been overwritten).
        position, found = _JOURNAL_HEADER.size + first, []
        while position + _RECORD_LENGTH.size <= end:
            (length,) = _RECORD_LENGTH.unpack_from(data, position)
            found.append(data[position + _RECORD_LENGTH.size : position + _RECORD_LENGTH.size + length])
            position += _RECORD_LENGTH.size + length
        return found


@dataclass(frozen=True, slots=True)
class Round:
    """The keys one worker round recorded, and where its journal records end: sealed when the round's commit is
    handed to the log, then `IdempotencyStore.committed` or `refused`."""

    keys: bytes  # _KEY_RECORD records
    hashes: tuple[int, ...]
    journal_end: int
    # Keys whose recorded outputs the round emitted again (or, in memory, every key's outputs), with their time:
    # what a refused round must know again.
    outputs: Mapping[int, tuple[int, Outputs]] = field(default_factory=dict)


class FileIdempotencyStore(IdempotencyStore):
    """Keys as 64-bit hashes in memory, made durable by a journal and key segments in one directory per host."""

    # How often a running worker looks for journals that workers now gone left behind, and for expired segments.
    RECOVERY_INTERVAL_S = 5.0
    # A process starts a new key segment once its current one is this share of the retention window old, or would
    # pass the size cap. A segment goes only when its newest record has expired, so what is on disk outlives the
    # window by at most one segment's age: the share bounds that waste, the floor the number of files a short
    # window makes, the ceiling the files a long window leaves behind at once.
    SEGMENT_AGE_SHARE = 0.25
    SEGMENT_MIN_AGE_S = 60.0
    SEGMENT_MAX_AGE_S = 6 * 3600.0
    SEGMENT_MAX_BYTES = 64 << 20
    # A file's mtime comes from the kernel's coarse clock (and some filesystems round it), so it may trail the
    # time of the last record written to it: a segment counts as expired only this long after its mtime says so.
    MTIME_SLACK_S = 2.0

    def __init__(self, directory: str | os.PathLike[str], retention_s: float, landed: Landed | None = None) -> None:
        self.directory = Path(directory)
        # Asks the log whether a dead worker's handed-over round landed (see `_HANDED_OVER`); without it, such
        # rounds are adopted as not landed.
        self._landed = landed
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"idempotency store {self.directory}: cannot create it: {exc}") from None
        # A directory with files and no key-hash file holds a store of an earlier version, which used BLAKE2b.
        self.keys = key_hashing_of(
            self.directory,
            legacy=any(_is_key_file(n) or _is_journal(n) or _is_adopted(n) for n in os.listdir(self.directory)),
        )
        self._retention_ms = int(retention_s * 1000)
        self._segment_max_age_s = min(
            max(retention_s * self.SEGMENT_AGE_SHARE, self.SEGMENT_MIN_AGE_S), self.SEGMENT_MAX_AGE_S
        )
        self._segment_max_bytes = self.SEGMENT_MAX_BYTES
        self._mtime_slack_ms = int(self.MTIME_SLACK_S * 1000)
        self._keys: dict[int, int] = {}
        # Keys in the order they were recorded, for expiry: two queues of ints rather than one of pairs, which
        # spares a tuple per key (and the garbage collector's visits to it) on the hot path.
        self._expiry_times: deque[int] = deque()
        self._expiry_hashes: deque[int] = deque()
        self._recovered: dict[int, Outputs] = {}
        # Files of done records adopted from dead workers (see the module docstring): the keys each still holds
        # uncommitted and its newest record's time; and per key, its record (to know it again if a round that
        # re-emitted its outputs is refused).
        self._adopted: dict[Path, tuple[set[int], int]] = {}
        self._adopted_records: dict[int, tuple[int, Outputs]] = {}
        self._adopted_seq = 0
        # Files other live workers adopted, read once each (they do not change once written).
        self._adopted_read: set[str] = set()
        # The keys (and when each was recorded) of the round being processed, sealed when its commit is handed over;
        # and the recorded outputs it emitted again.
        self._open_hashes: list[int] = []
        self._open_times: list[int] = []
        self._open_reemitted: dict[int, tuple[int, Outputs]] = {}
        # The same keys' _KEY_RECORD records, a run's in one piece.
        self._open_records: list[bytes] = []
        # Rounds sealed and not yet committed or refused.
        self._in_flight: list[Round] = []
        # Other processes' segments: how far each was read; and those read to the end that will not grow again
        # (a newer segment of their process exists) or that are past the window, which are not looked at again.
        self._read_up_to: dict[str, int] = {}
        self._complete: set[str] = set()
        self._name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        _ours.add(self._name)
        # This process's segment being written (opened at the first write), and its earlier ones with the time of
        # their last write: every record in a segment is at most that old.
        self._segment_fd: int | None = None
        self._segment_seq = -1
        self._segment_bytes = 0
        self._segment_opened_s = 0.0
        self._segment_written_ms = 0
        self._sealed_segments: list[tuple[str, int]] = []
        self._owner_lock = _hold_owner_lock(self.directory, self._name)
        try:
            self._journal = _Journal(self.directory / f"journal-{self._name}.mm")
            names = os.listdir(self.directory)
            self._read_key_files(names)
            self._recover_journals(names)
            self._delete_expired_segments()
            self._next_recovery = time.monotonic() + self.RECOVERY_INTERVAL_S
        except BaseException:
            _ours.discard(self._name)
            _release_owner_lock(self.directory, self._name, self._owner_lock)
            raise

    # -- journals of workers that died --------------------------------------------------------------------------

    def _recover_journals(self, names: Sequence[str]) -> bool:
        """Take over what the journals of dead workers say: begun-but-not-done keys are in doubt (written to the key
        segment at once, so every worker knows); done-but-uncommitted keys keep their outputs, to emit again when
        the event comes back (they become committed keys with that round), and are adopted (see the module
        docstring). Files adopted by workers that died since are recovered the same way. ``names``: a listing of
        the store's directory. True when a file listed was gone when read: another worker recovered it."""
        # Journals first: the rounds of theirs that landed make keys committed, which adopted files then pass over.
        dead = sorted(
            (
                self.directory / name
                for name in names
                if (_is_journal(name) or _is_adopted(name)) and not _owner_alive(self.directory, name)
            ),
            key=lambda path: (not _is_journal(path.name), path.name),
        )
        vanished = False
        for path in dead:
            now_ms = _now_ms()
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # another worker recovered it since the listing
                vanished = True
                continue
            begun: dict[int, int] = {}
            landed: dict[int, int] = {}
            done = _done_records(data, begun, now_ms, self._landed, landed)
            if landed:
                # Committed with their outputs, the dead worker just did not write them down: they are now.
                for h, at_ms in landed.items():
                    self._keys[h] = at_ms
                    self._recovered.pop(h, None)
                self._expiry_times.extend(landed.values())
                self._expiry_hashes.extend(landed)
                self._write_keys(_key_records(list(landed), list(landed.values())))
            # A key some worker committed since (segments are read first) has its outputs in the log: an adopted
            # file keeps such keys until all of its keys are, and taking them again would emit them twice. A key
            # known otherwise is not committed: still to emit again, or emitted again by this worker in a round
            # not committed yet (the dead worker's file is all that keeps it then: it is adopted, not re-emitted).
            emitted = self._emitted_uncommitted()
            done = {
                h: record for h, record in done.items() if h not in self._keys or h in self._recovered or h in emitted
            }
            # Durable here before the dead worker's file goes: adopted records first, then the doubts.
            self._adopt(done, emitted)
            doubts = []
            for h, at_ms in begun.items():
                self._keys[h] = -at_ms
                self._expire_later(at_ms, h)
                doubts.append(_KEY_RECORD.pack(h, -at_ms))
            self._write_keys(b"".join(doubts))
            path.unlink(missing_ok=True)
            if _is_journal(path.name):  # its owner is gone for good: its lock file goes with its journal
                owner = "-".join(path.name.partition(".")[0].split("-")[1:3])
                if _owner_lock_held(self.directory, owner) is False:
                    _owner_lock_path(self.directory, owner).unlink(missing_ok=True)
        for name in names:
            if name.startswith("adopted-") and name.endswith(".mm.tmp") and not _owner_alive(self.directory, name):
                (self.directory / name).unlink(missing_ok=True)  # an adoption its worker did not live to finish
        return vanished

    def _catch_up(self) -> None:
        """Learn what other workers made known: keys they committed or found in doubt (their segments), the journals
        of workers that died (recovered here if nobody has yet), and the records live workers adopted. One
        directory listing, once per batch (two when another worker recovers a journal at the same moment)."""
        names = os.listdir(self.directory)
        self._read_key_files(names)
        if self._recover_journals(names):
            # Another worker recovered a journal between the listing and its reading. It writes what it learned
            # (its adopted file, its segment's doubts) before it deletes the journal: look again to see it.
            names = os.listdir(self.directory)
            self._read_key_files(names)
        for name in names:
            if not _is_adopted(name):
                continue
            path = self.directory / name
            if path in self._adopted or name in self._adopted_read or not _owner_alive(self.directory, name):
                continue  # ours, read already, or (its adopter dead) recovered above
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # settled by its adopter since the listing
                continue
            self._adopted_read.add(path.name)
            for h, (at_ms, outputs) in _done_records(data).items():
                if h not in self._keys:  # committed or in doubt already: that says more
                    self._keys[h] = at_ms
                    self._expire_later(at_ms, h)
                    self._recovered[h] = outputs

    def _adopt(self, done: dict[int, tuple[int, Outputs]], emitted: Set[int] = frozenset()) -> None:
        """Take ``done`` records of a dead worker as this worker's, in a file of its own (see the module docstring).
        Keys in ``emitted`` this worker emitted again already, in a round not committed yet: kept, not handed out
        again."""
        oldest_ms = _now_ms() - self._retention_ms
        done = {h: record for h, record in done.items() if record[0] >= oldest_ms}
        if not done:
            return
        body = b"".join(_framed_done_record(h, at_ms, outputs) for h, (at_ms, outputs) in done.items())
        self._adopted_seq += 1
        path = self.directory / f"adopted-{self._name}-{self._adopted_seq}.mm"
        staging = path.with_name(path.name + ".tmp")
        staging.write_bytes(_JOURNAL_HEADER.pack(0, len(body)) + body)
        staging.replace(path)
        for h, (at_ms, outputs) in done.items():
            self._keys[h] = at_ms
            self._expire_later(at_ms, h)
            if h not in emitted:
                self._recovered[h] = outputs
            self._adopted_records[h] = (at_ms, outputs)
        self._adopted[path] = (set(done), max(at_ms for at_ms, _ in done.values()))

    def _settle_adopted(self, committed: Sequence[int]) -> None:
        """Keys of adopted files that a commit made durable (or that expired): files left with none go."""
        oldest_ms = _now_ms() - self._retention_ms
        for path, (keys, newest_ms) in list(self._adopted.items()):
            keys.difference_update(committed)
            if keys and newest_ms >= oldest_ms:
                continue
            for h in keys:
                self._adopted_records.pop(h, None)
            del self._adopted[path]
            path.unlink(missing_ok=True)
        for h in committed:
            self._adopted_records.pop(h, None)

    # -- key segments -------------------------------------------------------------------------------------------

    def _write_keys(self, data: bytes) -> None:
        if not data:
            return
        now_s = time.monotonic()
        if (
            self._segment_fd is None
            or now_s - self._segment_opened_s >= self._segment_max_age_s
            or (self._segment_bytes and self._segment_bytes + len(data) > self._segment_max_bytes)
        ):
            self._start_segment(now_s)
        assert self._segment_fd is not None
        os.write(self._segment_fd, data)
        self._segment_bytes += len(data)
        # Taken after the write, so no record in the segment is newer.
        self._segment_written_ms = _now_ms()

    def _start_segment(self, now_s: float) -> None:
        self._seal_segment()
        self._segment_seq += 1
        self._segment_fd = os.open(self.directory / self._segment_name(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._segment_bytes = 0
        self._segment_opened_s = now_s

    def _seal_segment(self) -> None:
        if self._segment_fd is not None:
            os.close(self._segment_fd)
            self._segment_fd = None
            self._sealed_segments.append((self._segment_name(), self._segment_written_ms))

    def _segment_name(self) -> str:
        return f"keys-{self._name}-{self._segment_seq}.bin"

    def _take_key_records(self, data: bytes, oldest_ms: int) -> None:
        keys = self._keys
        for h, at_ms in _KEY_RECORD.iter_unpack(data):
            if abs(at_ms) < oldest_ms:
                continue
            # The later record of a key wins, whichever file holds it: an in-doubt key a person replayed and that
            # then succeeded is done. At the same millisecond, doubt wins.
            known = keys.get(h)
            if known is None or abs(at_ms) > abs(known) or (at_ms < 0 and abs(at_ms) == abs(known)):
                keys[h] = at_ms
                self._expire_later(abs(at_ms), h)
            if at_ms >= 0 and h in self._recovered:
                # Another worker emitted these outputs again and committed them: they are in the log now.
                del self._recovered[h]
                self._settle_adopted((h,))

    def _read_key_files(self, names: Sequence[str]) -> None:
        """Read what other processes' key segments gained since the last look (all of them at start-up).

        A segment whose mtime is before the window is not opened: its newest record is no newer than its mtime.
        One that a newer segment of its process has replaced is read to its end once, then left alone."""
        oldest_ms = _now_ms() - self._retention_ms
        segments = {name: _segment_of(name) for name in names if _is_key_file(name)}
        newest_seq: dict[str, int] = {}
        for stem, seq in segments.values():
            newest_seq[stem] = max(seq, newest_seq.get(stem, -1))
        # Segments deleted since the last look (expired) are forgotten, so the bookkeeping shrinks with them.
        for gone in self._read_up_to.keys() - segments.keys():
            del self._read_up_to[gone]
        self._complete.intersection_update(segments)
        for name, (stem, seq) in segments.items():
            if stem == self._name or name in self._complete:
                continue
            # Its process wrote the newer segment after its last write to this one, and the listing showed it:
            # what is read now is all this one will ever hold.
            sealed = seq < newest_seq[stem]
            path = self.directory / name
            start = self._read_up_to.get(name)
            try:
                if start is None:
                    if os.stat(path).st_mtime_ns // 1_000_000 + self._mtime_slack_ms < oldest_ms:
                        if sealed:
                            self._complete.add(name)
                        continue
                    start = 0
                with open(path, "rb") as file:
                    file.seek(start)
                    data = file.read()
            except FileNotFoundError:  # expired and deleted by another worker since the listing
                self._read_up_to.pop(name, None)
                continue
            whole = len(data) - len(data) % _KEY_RECORD.size
            self._take_key_records(data[:whole], oldest_ms)
            if sealed:
                self._complete.add(name)
                self._read_up_to.pop(name, None)
            else:
                self._read_up_to[name] = start + whole

    def _delete_expired_segments(self) -> None:
        """Delete the segments whose newest record is older than the window: this process's own earlier ones, and
        those of processes now gone (whichever worker looks first). A live process's segments are left to it: the
        one it is writing must not vanish under it. A worker still reading a deleted segment reads on (POSIX keeps
        an open file), and the next listing no longer shows it."""
        self._delete_own_expired_segments()
        oldest_ms = _now_ms() - self._retention_ms
        alive: dict[str, bool] = {}
        for name in os.listdir(self.directory):
            if not _is_key_file(name):
                continue
            stem, _ = _segment_of(name)
            if stem == self._name:
                continue
            if stem not in alive:
                alive[stem] = _owner_alive(self.directory, name)
            if alive[stem]:
                continue
            path = self.directory / name
            try:
                expired = path.stat().st_mtime_ns // 1_000_000 + self._mtime_slack_ms < oldest_ms
            except FileNotFoundError:
                continue
            if expired:
                path.unlink(missing_ok=True)
                self._read_up_to.pop(name, None)
                self._complete.discard(name)

    def _delete_own_expired_segments(self) -> None:
        oldest_ms = _now_ms() - self._retention_ms
        kept = []
        for name, written_ms in self._sealed_segments:
            if written_ms < oldest_ms:
                (self.directory / name).unlink(missing_ok=True)
            else:
                kept.append((name, written_ms))
        self._sealed_segments = kept

    # -- the contract -------------------------------------------------------------------------------------------

    def seen(self, hashes: Sequence[int], ttl_s: float) -> Seen:
        # Another worker may have handled these events, died, or taken over from one that died, since the last
        # look: a partition that moved here after a crash brings its events back at once.
        self._catch_up()
        oldest_ms = _now_ms() - int(ttl_s * 1000)
        found: Seen = {}
        known = self._keys
        # Most keys of a batch are new: the intersection finds the few known ones without a loop in Python.
        for h in known.keys() & hashes:
            at_ms = known[h]
            if at_ms < 0:
                found[h] = IN_DOUBT
            elif at_ms >= oldest_ms:
                # Committed before: its outputs are in the log already. Or a run cut short before its commit:
                # its outputs, to emit again (kept until `reemitted`: the caller may stop before it gets to them).
                found[h] = self._recovered.get(h, [])
        return found

    def reemitted(self, h: int) -> None:
        recovered = self._recovered.pop(h, None)
        if recovered is not None:
            # Emitted again in this round: the key commits with it this time.
            at_ms = self._keys.get(h, _now_ms())
            self._open_hashes.append(h)
            self._open_times.append(at_ms)
            self._open_records.append(_KEY_RECORD.pack(h, at_ms))
            self._open_reemitted[h] = (at_ms, recovered)

    def begin(self, h: int) -> None:
        self._journal.append(_framed_key_record(_BEGIN, h))

    def abandon(self, h: int) -> None:
        self._journal.append(_framed_key_record(_ABANDON, h))

    def record(self, h: int, outputs: Outputs, then_begin: int | None = None) -> None:
        now_ms = _now_ms()
        self._journal.append(_framed_done_record(h, now_ms, outputs, then_begin))
        self._remember(h, now_ms)

    def _remember(self, h: int, now_ms: int) -> None:
        """A key recorded in the journal: known from now on, and part of the round until it is sealed."""
        self._keys[h] = now_ms
        self._open_hashes.append(h)
        self._open_times.append(now_ms)
        self._open_records.append(_KEY_RECORD.pack(h, now_ms))

    def remember(self, hashes: Sequence[int], now_ms: int, digests: Sequence[bytes] | None = None) -> None:
        """`_remember` for the keys of a run, journaled done: a few calls per run rather than three per key. With
        the keys' ``digests``, their records are one join."""
        if not hashes:
            return
        known = self._keys
        for h in hashes:  # faster than an update from dict.fromkeys, which builds and then copies a dict
            known[h] = now_ms
        self._open_hashes.extend(hashes)
        self._open_times.extend(itertools.repeat(now_ms, len(hashes)))
        if digests is None:
            self._open_records.append(_key_records(hashes, [now_ms] * len(hashes)))
        else:
            # A record is a key's digest then the time's 8 bytes: the run's records are the digests joined by them.
            time_bytes = _TIME_BYTES.pack(now_ms)
            self._open_records.append(time_bytes.join(digests) + time_bytes)

    def _expire_later(self, at_ms: int, h: int) -> None:
        self._expiry_times.append(at_ms)
        self._expiry_hashes.append(h)

    def journal(self, outbox: Outbox) -> KeyJournal:
        return _FileKeyJournal(self, outbox)

    def seal(self, handed_over: HandedOver | None = None) -> Round:
        # The lists are emptied, not replaced: journals hold their bound methods.
        hashes, times = tuple(self._open_hashes), self._open_times[:]
        self._open_hashes.clear()
        self._open_times.clear()
        keys = b"".join(self._open_records)
        self._open_records.clear()
        reemitted = self._open_reemitted
        if reemitted:
            self._open_reemitted = {}
        # Per round rather than per key: the keys' records and their places in the expiry queue.
        self._expiry_times.extend(times)
        self._expiry_hashes.extend(hashes)
        if handed_over is not None and handed_over[1] and hashes:
            # After the round's records: a worker recovering this journal asks the log whether it landed.
            self._journal.append(_handed_over_record(handed_over[0], handed_over[1], keys))
        sealed = Round(keys, hashes, self._journal.position, reemitted)
        self._in_flight.append(sealed)
        return sealed

    def committed(self, sealed: Round) -> None:
        # Keys become shared knowledge only now that their round's outputs are in the log; the journal keeps the
        # records of later rounds, still in flight.
        self._land(sealed)
        self._write_keys(sealed.keys)
        self._journal.release_to(sealed.journal_end)
        if self._adopted:
            self._settle_adopted(sealed.hashes)
        self._maintain()

    def _land(self, sealed: Round) -> None:
        self._in_flight = [r for r in self._in_flight if r is not sealed]

    def _emitted_uncommitted(self) -> set[int]:
        """Keys this worker handled (or emitted again) in rounds not committed yet."""
        emitted = set(self._open_hashes)
        for sealed in self._in_flight:
            emitted.update(sealed.hashes)
        return emitted

    def refused(self, sealed: Round) -> None:
        self._land(sealed)
        # The round's outputs were rolled back and its events will be delivered again, here or to another worker.
        # What its invocations did is in the journal: adopted like a dead worker's records (see the module
        # docstring), it is emitted again, by this worker or another of the host, rather than run again.
        done = _done_records(self._journal.pending_before(sealed.journal_end))
        for h in sealed.hashes:
            if h in done:
                continue
            record = sealed.outputs.get(h) or self._adopted_records.get(h)
            if record is not None:
                # Recorded before, its outputs emitted again in this round: known again for the next delivery.
                self._keys[h], self._recovered[h] = record
            else:
                self._keys.pop(h, None)
        self._adopt(done)
        self._journal.release_to(sealed.journal_end)

    def _maintain(self) -> None:
        # What other workers wrote is read before every lookup (`_catch_up`); here only what is periodic.
        now = time.monotonic()
        if now >= self._next_recovery:
            self._next_recovery = now + self.RECOVERY_INTERVAL_S
            names = os.listdir(self.directory)
            self._read_key_files(names)
            self._recover_journals(names)
            self._delete_expired_segments()
            if self._adopted:
                self._settle_adopted(())
        oldest_ms = _now_ms() - self._retention_ms
        times, hashes = self._expiry_times, self._expiry_hashes
        while times and times[0] < oldest_ms:
            times.popleft()
            h = hashes.popleft()
            at_ms = self._keys.get(h)
            if at_ms is not None and abs(at_ms) < oldest_ms:
                del self._keys[h]
                # Outputs kept for an event that never came back (another member committed it) go with its key.
                self._recovered.pop(h, None)

    def close(self) -> None:
        self._journal.close()
        self._seal_segment()
        # From now on its segments are a gone process's: any worker deletes them once they expire.
        _ours.discard(self._name)
        _release_owner_lock(self.directory, self._name, self._owner_lock)
        self._owner_lock = None
        self._delete_own_expired_segments()


_time_ns = time.time_ns


def _now_ms() -> int:
    return _time_ns() // 1_000_000


def _is_key_file(file_name: str) -> bool:
    return file_name.startswith("keys-") and file_name.endswith(".bin")


def _is_journal(file_name: str) -> bool:
    return file_name.startswith("journal-") and file_name.endswith(".mm")


def _is_adopted(file_name: str) -> bool:
    return file_name.startswith("adopted-") and file_name.endswith(".mm")


def _segment_of(file_name: str) -> tuple[str, int]:
    """The writer (``<pid>-<random>``) and sequence number of ``keys-<pid>-<random>-<seq>.bin``; a key file of
    an earlier version, ``keys-<pid>-<random>.bin``, is one segment that is never replaced (-1)."""
    fields = file_name[len("keys-") : -len(".bin")].split("-")
    if len(fields) == 3 and fields[2].isdigit():
        return f"{fields[0]}-{fields[1]}", int(fields[2])
    return "-".join(fields), -1


def _owner_alive(directory: Path, file_name: str) -> bool:
    """Whether the process that named a journal or key segment ``<kind>-<pid>-<random>[-<seq>].<ext>`` still
    runs: its owner lock says, else (a store of an earlier version) whether its pid does."""
    fields = file_name.partition(".")[0].split("-")
    try:
        pid = int(fields[1])
    except (IndexError, ValueError):
        return False
    name = "-".join(fields[1:3])
    if _is_ours(name):
        return True
    # Before the pid: a store in another PID namespace can have this process's pid (both pid 1, say).
    held = _owner_lock_held(directory, name)
    if held is not None:
        return held
    # Not one of ours with this process's pid: an earlier process's.
    return pid != os.getpid() and _pid_runs(pid)


def _pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Each open store holds an exclusive lock on ``owner-<pid>-<random>.lock`` in its directory while it lives; the kernel
# drops it when the process dies, however it dies. Other workers test it to tell a live owner from a dead one: a pid
# alone cannot, from another PID namespace (two containers sharing the directory), where a live owner's pid is not
# there to look up, or is another process's.


def _owner_lock_path(directory: Path, name: str) -> Path:
    return directory / f"owner-{name}.lock"


def _hold_owner_lock(directory: Path, name: str) -> int | None:
    try:
        import fcntl
    except ImportError:  # no flock here: liveness goes by pid alone
        return None
    path = _owner_lock_path(directory, name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a name of its own: nobody else holds it
    except OSError:  # a file system without flock: no lock file, so others go by pid as before
        os.close(fd)
        path.unlink(missing_ok=True)
        return None
    _owner_locks[fd] = (os.getpid(), name)
    return fd


def _release_owner_lock(directory: Path, name: str, fd: int | None) -> None:
    # Only the process that took it: a child forked with the store open must not remove its parent's lock.
    if fd is not None and _owner_locks.get(fd) == (os.getpid(), name):
        del _owner_locks[fd]
        _owner_lock_path(directory, name).unlink(missing_ok=True)
        os.close(fd)


# The owner locks this process holds (fd -> the pid that took it, and the store's name). A forked child inherits the
# locked open file, which would keep its parent looking alive after the parent died: the child closes its copies.
_owner_locks: dict[int, tuple[int, str]] = {}


def _drop_inherited_owner_locks() -> None:
    for fd in list(_owner_locks):
        with contextlib.suppress(OSError):
            os.close(fd)
    _owner_locks.clear()
    _ours.clear()  # the parent's stores are not the child's


os.register_at_fork(after_in_child=_drop_inherited_owner_locks)


def _owner_lock_held(directory: Path, name: str) -> bool | None:
    """Whether the store ``name`` holds its owner lock; None when it has no lock file (it closed, or is of an
    earlier version)."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fd = os.open(_owner_lock_path(directory, name), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # no flock on this file system: the lock says nothing
        return None
    finally:
        os.close(fd)  # and with it the shared lock, if it was taken
    return False


# The ``<pid>-<random>`` names of the stores this process has open (a pid reused from an earlier process must not
# make its files look alive).
_ours: set[str] = set()


def _is_ours(name: str) -> bool:
    return name in _ours
