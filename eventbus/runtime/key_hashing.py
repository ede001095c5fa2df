"""How an idempotency store turns keys into 64-bit hashes, and how a store's directory says which way it uses.

A key's *digest* is 8 bytes, and its hash the little-endian integer of them; the journal and the key segments
hold digests, the in-memory sets hashes. The worker hashes a key per idempotent event, so the cost shows on the
happy path:

- ``xxh3-64``, keyed: XXH3 (xxhash) seeded with 64 random bits the store draws when it is created and keeps in
  its directory. About half of BLAKE2b's cost per key; the seed, which producers never see, keeps them from
  crafting ids that collide with another event's key.
- ``blake2b-64``: 64 bits of BLAKE2b, what stores made by earlier versions use; they keep it, so keys recorded
  before an upgrade are still recognised after it.

Every worker sharing a directory must hash alike: the first to open it writes the way into ``key-hash`` (created
atomically: racing workers end up reading the same file), and the others read it.
"""

from __future__ import annotations

import array
import hashlib
import os
import re
import secrets
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import xxhash

from eventbus.errors import ConfigurationError

KEY_HASH_FILE = "key-hash"
_FROM_BYTES = int.from_bytes


def hashes_of(digests: list[bytes]) -> list[int]:
    """The hashes of digests: the whole batch in one conversion rather than an `int.from_bytes` call per key."""
    words = array.array("Q", b"".join(digests))
    if sys.byteorder == "big":
        words.byteswap()
    return words.tolist()


class KeyHashing:
    """BLAKE2b-64 (``blake2b-64``): the way of stores made by earlier versions."""

    name = "blake2b-64"

    def digester(self, processor: str) -> Callable[[str], bytes]:
        """A key's digest for one processor, its name hashed once."""
        seeded = hashlib.blake2b(f"{processor}\0".encode(), digest_size=8)

        def digest_key(key: str) -> bytes:
            h = seeded.copy()
            h.update(key.encode())
            return h.digest()

        return digest_key

    def hash(self, processor: str, key: str) -> int:
        return _FROM_BYTES(self.digester(processor)(key), "little")

    def default_key_digests(self, processor: str, events: Iterable[Mapping[str, Any]]) -> tuple[list[int], list[bytes]]:
        """Hashes and digests of the events' default keys (source and id), for a batch in one loop."""
        copy = hashlib.blake2b(f"{processor}\0".encode(), digest_size=8).copy
        digests = []
        for attrs in events:
            h = copy()
            h.update(f"{attrs.get('source', '')}\x1f{attrs.get('id', '')}".encode())
            digests.append(h.digest())
        return hashes_of(digests), digests

    def describe(self) -> str:
        """The line `key-hash` holds."""
        return self.name


class KeyedXxh3(KeyHashing):
    """XXH3-64 with a secret seed (``xxh3-64 <seed in hex>``)."""

    name = "xxh3-64"

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def digester(self, processor: str) -> Callable[[str], bytes]:
        prefix, seed, digest = f"{processor}\0".encode(), self.seed, xxhash.xxh3_64_digest

        def digest_key(key: str) -> bytes:
            # .encode, not formatting: a key function that returns None or a number fails its event, as it
            # always did, instead of every such event sharing the key "None".
            return digest(prefix + key.encode(), seed)

        return digest_key

    def default_key_digests(self, processor: str, events: Iterable[Mapping[str, Any]]) -> tuple[list[int], list[bytes]]:
        prefix, seed, digest_of = f"{processor}\0", self.seed, xxhash.xxh3_64_digest
        # Subscripts rather than .get: an event without source or id raises, and the caller hashes the batch
        # one event at a time through the key function instead.
        digests = [digest_of(f"{prefix}{attrs['source']}\x1f{attrs['id']}".encode(), seed) for attrs in events]
        return hashes_of(digests), digests

    def describe(self) -> str:
        return f"{self.name} {self.seed:016x}"


def new_key_hashing() -> KeyHashing:
    return KeyedXxh3(secrets.randbits(64))


def parse_key_hashing(text: str, where: Path) -> KeyHashing:
    fields = text.split()
    if fields == [KeyHashing.name]:
        return KeyHashing()
    if len(fields) == 2 and fields[0] == KeyedXxh3.name and _SEED.fullmatch(fields[1]):
        return KeyedXxh3(int(fields[1], 16))
    raise ConfigurationError(f"idempotency store {where}: {KEY_HASH_FILE} holds {text.strip()!r}, not a known key hash")


_SEED = re.compile("[0-9a-f]{16}")


def key_hashing_of(directory: Path, *, legacy: bool) -> KeyHashing:
    """The way the store in ``directory`` hashes keys; chosen now if it has none yet (``legacy``: the directory
    holds files of a store made before the choice was written down, which hashed with BLAKE2b)."""
    path = directory / KEY_HASH_FILE
    try:
        try:
            return parse_key_hashing(path.read_text(encoding="ascii"), directory)
        except FileNotFoundError:
            pass
        chosen = KeyHashing() if legacy else new_key_hashing()
        text = (chosen.describe() + "\n").encode()
        staging = directory / f".{KEY_HASH_FILE}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # Written whole and synced before it appears: a worker never reads it half written, and a power cut
        # does not leave it empty.
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, text)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(staging, path)  # atomic, and refused if another worker wrote it first
        except FileExistsError:
            return parse_key_hashing(path.read_text(encoding="ascii"), directory)
        except OSError:  # a file system without hard links: the first rename wins, and the others read it
            if not path.exists():
                os.replace(staging, path)
            return parse_key_hashing(path.read_text(encoding="ascii"), directory)
        finally:
            staging.unlink(missing_ok=True)
        return chosen
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"idempotency store {directory}: cannot read or write {KEY_HASH_FILE}: {exc}"
        ) from None
