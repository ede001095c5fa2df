"""Idempotency keys: which events a processor has already handled.

An invocation writes two records to a per-process *journal*: *begin* before the function is called and *done*
(with what it emitted) after it returns. The journal is a memory-mapped file: an append is a memory copy, and
what was copied survives a crash of the process (it is in the page cache, like the log's own WAL). After each
commit the round's keys are appended to the process's *key file* and the journal is cleared.

A worker starting up reads every key file in the store's directory (its own earlier ones, those of other workers
of the host) into memory, as 64-bit hashes, for the retention window, and keeps reading what live workers append.
It also replays the journals that processes now gone left behind:

- a key *done* but never committed belongs to an event that will be delivered again; it is not run again, and
  what it emitted is emitted again, so no output is lost;
- a key *begun* and never done belongs to an event whose worker died in the middle of it: its side effects may or
  may not have happened. It is kept *in doubt*: the event is dead-lettered for a person to decide, neither
  repeated nor silently dropped.

A key seen and committed earlier is skipped without emitting anything: its outputs are already in the log.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import time
import uuid
import weakref
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from eventbus.backends.base import Message
from eventbus.errors import ConfigurationError

Outputs = list[tuple[str, Message]]


class InDoubt:
    """What `IdempotencyStore.seen` returns for a key whose invocation was cut short by a crash."""

    def __repr__(self) -> str:
        return "IN_DOUBT"


IN_DOUBT = InDoubt()
# Per key hash seen: what to emit instead of running the processor (often nothing), or IN_DOUBT.
Seen = dict[int, "Outputs | InDoubt"]

_KEY_RECORD = struct.Struct("<Qq")  # key hash, recorded at (ms; negative when in doubt)
_JOURNAL_HEADER = struct.Struct("<QQ")  # where the records not yet committed start, where the records end
_RECORD_LENGTH = struct.Struct("<I")
_JOURNAL_START_BYTES = 1 << 20
# Journal records: a kind byte and the key hash; "done" adds the time and what the invocation emitted.
_BEGIN, _ABANDON, _DONE = b"b", b"a", b"d"
_JOURNAL_KEY = struct.Struct("<cQ")
_JOURNAL_TIME = struct.Struct("<q")


def key_hash(processor: str, key: str) -> int:
    """64 bits of BLAKE2b: among a million stored keys, a new key is mistaken for one with odds of 1 in 10^13."""
    return int.from_bytes(hashlib.blake2b(f"{processor}\0{key}".encode(), digest_size=8).digest(), "little")


def key_hasher(processor: str) -> Callable[[str], int]:
    """`key_hash` for one processor, its name hashed once: the worker hashes a key per event."""
    seeded = hashlib.blake2b(f"{processor}\0".encode(), digest_size=8)
    from_bytes = int.from_bytes

    def hash_key(key: str) -> int:
        h = seeded.copy()
        h.update(key.encode())
        return from_bytes(h.digest(), "little")

    return hash_key


def default_key(attrs: Mapping[str, Any]) -> str:
    """`eventbus.app.policies.event_id` read straight from a decoded event's attributes."""
    return f"{attrs.get('source', '')}\x1f{attrs.get('id', '')}"


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else value.encode("latin-1")


def encode_outputs(outputs: Outputs) -> list[Any]:
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


class IdempotencyStore(ABC):
    """Keys are passed as `key_hash` values, computed once per event by the caller."""

    @abstractmethod
    def seen(self, hashes: Sequence[int], ttl_s: float) -> Seen:
        """The hashes among ``hashes`` handled within ``ttl_s``: each with what to emit instead of running the
        processor again, or `IN_DOUBT`."""

    def begin(self, h: int) -> None:  # noqa: B027 - only stores that survive a crash need it
        """Note that the key's invocation starts (durable against a crash when it returns)."""

    def abandon(self, h: int) -> None:  # noqa: B027
        """Note that the key's invocation failed: it will be tried again, not doubted."""

    @abstractmethod
    def record(self, h: int, outputs: Outputs) -> None:
        """Remember that the key was handled, and what it emitted (durable against a crash when it returns)."""

    def seal(self) -> Round:
        """The keys recorded since the last seal: the round whose commit is being handed to the log."""
        return Round((), (), 0)

    def committed(self, sealed: Round) -> None:  # noqa: B027 - stores without files have nothing to write
        """The round's commit landed: keep its keys for the retention window."""

    def refused(self, sealed: Round) -> None:  # noqa: B027
        """The round's commit was refused (its outputs rolled back): its events will run again."""

    def close(self) -> None:  # noqa: B027
        """Release files."""


class MemoryIdempotencyStore(IdempotencyStore):
    """Keys in a dict, for the memory log (whose events do not outlive the process either)."""

    def __init__(self) -> None:
        self._keys: dict[int, float] = {}
        self._open: list[int] = []

    def seal(self) -> Round:
        hashes, self._open = tuple(self._open), []
        return Round((), hashes, 0)

    def refused(self, sealed: Round) -> None:
        for h in sealed.hashes:
            self._keys.pop(h, None)

    def seen(self, hashes: Sequence[int], ttl_s: float) -> Seen:
        oldest = time.time() - ttl_s
        found: Seen = {}
        for h in hashes:
            recorded = self._keys.get(h)
            if recorded is not None and recorded >= oldest:
                found[h] = []
        return found

    def record(self, h: int, outputs: Outputs) -> None:
        self._keys[h] = time.time()
        self._open.append(h)


_memory_stores: weakref.WeakKeyDictionary[object, MemoryIdempotencyStore] = weakref.WeakKeyDictionary()


def memory_store_for(log: object) -> MemoryIdempotencyStore:
    """The in-memory store that lives as long as a memory log, shared by every worker on it."""
    store = _memory_stores.get(log)
    if store is None:
        store = _memory_stores[log] = MemoryIdempotencyStore()
    return store


class _Journal:
    """An append-only, memory-mapped record file: a header (start, used), then length-prefixed records.

    Records before ``start`` belong to rounds whose commit landed; only those after it matter after a crash."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self._size = _JOURNAL_START_BYTES
        os.ftruncate(self._fd, self._size)
        self._map = mmap.mmap(self._fd, self._size)
        self._start = 0
        self._used = 0

    @property
    def position(self) -> int:
        """Where the next record goes: a round that ends here is passed with `release_to`."""
        return self._used

    def append(self, record: bytes) -> None:
        start = _JOURNAL_HEADER.size + self._used
        end = start + _RECORD_LENGTH.size + len(record)
        if end > self._size:
            self._grow(end)
        self._map[start : start + _RECORD_LENGTH.size] = _RECORD_LENGTH.pack(len(record))
        self._map[start + _RECORD_LENGTH.size : end] = record
        # The header moves last: a record cut short by a crash is never counted.
        self._used = end - _JOURNAL_HEADER.size
        self._map[: _JOURNAL_HEADER.size] = _JOURNAL_HEADER.pack(self._start, self._used)

    def release_to(self, position: int) -> None:
        """Records before ``position`` no longer matter (their round committed, or was given up)."""
        self._start = max(self._start, position)
        if self._start >= self._used:
            self._start = self._used = 0  # nothing left: write from the top again
        self._map[: _JOURNAL_HEADER.size] = _JOURNAL_HEADER.pack(self._start, self._used)

    def _grow(self, needed: int) -> None:
        while self._size < needed:
            self._size *= 2
        self._map.close()
        os.ftruncate(self._fd, self._size)
        self._map = mmap.mmap(self._fd, self._size)

    @property
    def pending(self) -> bool:
        return self._used > self._start

    def close(self) -> None:
        keep = self.pending
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
        position, found = _JOURNAL_HEADER.size, []
        while position + _RECORD_LENGTH.size <= end:
            (length,) = _RECORD_LENGTH.unpack_from(data, position)
            if position - _JOURNAL_HEADER.size >= first:
                found.append(data[position + _RECORD_LENGTH.size : position + _RECORD_LENGTH.size + length])
            position += _RECORD_LENGTH.size + length
        return found


@dataclass(frozen=True, slots=True)
class Round:
    """The keys one worker round recorded, and where its journal records end: sealed when the round's commit is
    handed to the log, then `IdempotencyStore.committed` or `refused`."""

    keys: tuple[bytes, ...]
    hashes: tuple[int, ...]
    journal_end: int


class FileIdempotencyStore(IdempotencyStore):
    """Keys as 64-bit hashes in memory, made durable by a journal and key files in one directory per host."""

    # How often a running worker looks for journals that workers now gone left behind.
    RECOVERY_INTERVAL_S = 5.0

    def __init__(self, directory: str | os.PathLike[str], retention_s: float) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"idempotency store {self.directory}: cannot create it: {exc}") from None
        self._retention_ms = int(retention_s * 1000)
        self._keys: dict[int, int] = {}
        self._expiry: deque[tuple[int, int]] = deque()
        self._recovered: dict[int, Outputs] = {}
        # Key records of the round being processed (sealed when its commit is handed over), and of rounds whose
        # commits landed but whose keys are not written yet.
        self._open_keys: list[bytes] = []
        self._open_hashes: list[int] = []
        self._read_up_to: dict[Path, int] = {}
        name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        _ours.update({f"keys-{name}.bin", f"journal-{name}.mm"})
        self._key_file_path = self.directory / f"keys-{name}.bin"
        self._key_file = os.open(self._key_file_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._read_up_to[self._key_file_path] = 0
        self._journal = _Journal(self.directory / f"journal-{name}.mm")
        self._read_key_files()
        self._recover_journals()
        self._next_recovery = time.monotonic() + self.RECOVERY_INTERVAL_S

    # -- journals of workers that died --------------------------------------------------------------------------

    def _recover_journals(self) -> None:
        """Take over what the journals of dead workers say: begun-but-not-done keys are in doubt (written to the key
        file at once, so every worker knows); done-but-uncommitted keys keep their outputs, to emit again when the
        event comes back (they become committed keys with that round)."""
        doubts = []
        for path in sorted(self.directory.glob("journal-*.mm")):
            if _owner_alive(path.name):
                continue
            now_ms = time.time_ns() // 1_000_000
            begun: dict[int, int] = {}
            for raw in _Journal.records(path.read_bytes()):
                if len(raw) < _JOURNAL_KEY.size:
                    continue
                kind, h = _JOURNAL_KEY.unpack_from(raw)
                if kind == _BEGIN:
                    begun[h] = now_ms
                elif kind == _ABANDON:
                    begun.pop(h, None)
                elif kind == _DONE:
                    begun.pop(h, None)
                    (at_ms,) = _JOURNAL_TIME.unpack_from(raw, _JOURNAL_KEY.size)
                    self._keys[h] = at_ms
                    self._expiry.append((at_ms, h))
                    self._recovered[h] = decode_outputs(orjson.loads(raw[_JOURNAL_KEY.size + _JOURNAL_TIME.size :]))
            for h, at_ms in begun.items():
                self._keys[h] = -at_ms
                self._expiry.append((at_ms, h))
                doubts.append(_KEY_RECORD.pack(h, -at_ms))
            path.unlink(missing_ok=True)
        self._write_keys(doubts)

    def _write_keys(self, records: list[bytes]) -> None:
        if records:
            data = b"".join(records)
            os.write(self._key_file, data)
            self._read_up_to[self._key_file_path] += len(data)

    def _read_key_files(self) -> None:
        """Read what key files gained since the last look (every worker's, this one's too at start-up)."""
        oldest_ms = time.time_ns() // 1_000_000 - self._retention_ms
        for path in self.directory.glob("keys-*.bin"):
            start = self._read_up_to.get(path, 0)
            try:
                with open(path, "rb") as file:
                    file.seek(start)
                    data = file.read()
            except FileNotFoundError:
                continue
            whole = len(data) - len(data) % _KEY_RECORD.size
            for h, at_ms in _KEY_RECORD.iter_unpack(data[:whole]):
                if abs(at_ms) >= oldest_ms and (h not in self._keys or at_ms < 0):
                    self._keys[h] = at_ms
                    self._expiry.append((abs(at_ms), h))
            self._read_up_to[path] = start + whole
            if not whole and not _owner_alive(path.name) and path.stat().st_mtime * 1000 < oldest_ms:
                path.unlink(missing_ok=True)  # every key in it has expired, and nobody writes to it any more

    # -- the contract -------------------------------------------------------------------------------------------

    def seen(self, hashes: Sequence[int], ttl_s: float) -> Seen:
        oldest_ms = time.time_ns() // 1_000_000 - int(ttl_s * 1000)
        found: Seen = {}
        known = self._keys
        for h in hashes:
            at_ms = known.get(h)
            if at_ms is None:
                continue
            if at_ms < 0:
                found[h] = IN_DOUBT
            elif at_ms >= oldest_ms:
                recovered = self._recovered.pop(h, None)
                if recovered is None:
                    found[h] = []  # committed before: its outputs are in the log already
                else:
                    # A run cut short before its commit: emit its outputs again, and commit its key this time.
                    found[h] = recovered
                    self._open_keys.append(_KEY_RECORD.pack(h, at_ms))
                    self._open_hashes.append(h)
        return found

    def begin(self, h: int) -> None:
        self._journal.append(_JOURNAL_KEY.pack(_BEGIN, h))

    def abandon(self, h: int) -> None:
        self._journal.append(_JOURNAL_KEY.pack(_ABANDON, h))

    def record(self, h: int, outputs: Outputs) -> None:
        now_ms = time.time_ns() // 1_000_000
        self._journal.append(
            _JOURNAL_KEY.pack(_DONE, h) + _JOURNAL_TIME.pack(now_ms) + orjson.dumps(encode_outputs(outputs))
        )
        self._keys[h] = now_ms
        self._expiry.append((now_ms, h))
        self._open_keys.append(_KEY_RECORD.pack(h, now_ms))
        self._open_hashes.append(h)

    def seal(self) -> Round:
        sealed = Round(tuple(self._open_keys), tuple(self._open_hashes), self._journal.position)
        self._open_keys, self._open_hashes = [], []
        return sealed

    def committed(self, sealed: Round) -> None:
        # Keys become shared knowledge only now that their round's outputs are in the log; the journal keeps the
        # records of later rounds, still in flight.
        self._write_keys(list(sealed.keys))
        self._journal.release_to(sealed.journal_end)
        self._maintain()

    def refused(self, sealed: Round) -> None:
        # The round's outputs were rolled back and its events will be delivered again: they must run again.
        for h in sealed.hashes:
            self._keys.pop(h, None)
        self._journal.release_to(sealed.journal_end)

    def _maintain(self) -> None:
        self._read_key_files()
        now = time.monotonic()
        if now >= self._next_recovery:
            self._next_recovery = now + self.RECOVERY_INTERVAL_S
            self._recover_journals()
        oldest_ms = time.time_ns() // 1_000_000 - self._retention_ms
        expiry = self._expiry
        while expiry and expiry[0][0] < oldest_ms:
            _, h = expiry.popleft()
            at_ms = self._keys.get(h)
            if at_ms is not None and abs(at_ms) < oldest_ms:
                del self._keys[h]

    def close(self) -> None:
        self._journal.close()
        os.close(self._key_file)
        _ours.discard(self._journal.path.name)


def _owner_alive(file_name: str) -> bool:
    """Whether the process that named a journal or key file ``<kind>-<pid>-<random>.<ext>`` still runs."""
    try:
        pid = int(file_name.split("-")[1])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return _is_ours(file_name)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Files this process opened itself (a pid reused from an earlier process must not make its files look alive).
_ours: set[str] = set()


def _is_ours(file_name: str) -> bool:
    return file_name in _ours
