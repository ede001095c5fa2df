"""The file-backed idempotency store's key segments: rotation by age and size, expiry, start-up reads, several
workers on one directory, and the segments that dead workers leave behind. Real files, real processes; the
windows are a second or two, so the tests sleep that long, no more."""

from __future__ import annotations

import builtins
import functools
import os
import signal
import struct
import subprocess
import time
import types
from pathlib import Path
from typing import Any

import pytest

from eventbus import App, Event
from eventbus.backends.base import Message
from eventbus.runtime import idempotency, key_hashing
from eventbus.runtime.idempotency import IN_DOUBT, FileIdempotencyStore, key_hash
from eventbus.runtime.key_hashing import KeyHashing
from eventbus.runtime.outbox import Outbox
from tests.conftest import PYTHON, REPO

RECORD_BYTES = 16
WRITER = str(Path(__file__).with_name("idempotency_key_writer.py"))


@pytest.fixture(autouse=True)
def blake2b_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests are about the store's files and name keys by `key_hash` (BLAKE2b): their stores hash that way
    # (test_failures checks how a store chooses).
    monkeypatch.setattr(key_hashing, "new_key_hashing", KeyHashing)


def pin_blake2b(directory: Path) -> None:
    """Have a store that a subprocess creates in ``directory`` hash with BLAKE2b too."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / key_hashing.KEY_HASH_FILE).write_text("blake2b-64\n")


@pytest.fixture(autouse=True)
def quick_store(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every commit looks for dead workers' leftovers; mtimes are taken at their word; no floor on a segment's age,
    # so a window of a second or two rotates within it.
    monkeypatch.setattr(FileIdempotencyStore, "RECOVERY_INTERVAL_S", 0.0)
    monkeypatch.setattr(FileIdempotencyStore, "MTIME_SLACK_S", 0.0)
    monkeypatch.setattr(FileIdempotencyStore, "SEGMENT_MIN_AGE_S", 0.0)


def commit(store: FileIdempotencyStore, *keys: str) -> list[int]:
    """Run and commit one round that handles ``keys``, as a worker does."""
    hashes = [key_hash("p", key) for key in keys]
    for h in hashes:
        store.begin(h)
        store.record(h, [])
    store.committed(store.seal())
    return hashes


def hashes_of(*keys: str) -> list[int]:
    return [key_hash("p", key) for key in keys]


def segments(directory: Path, pid: int | None = None) -> list[str]:
    """The key segments in ``directory`` (of process ``pid`` only, if given), oldest first per writer."""
    fields = [n.removesuffix(".bin").split("-") for n in os.listdir(directory) if n.endswith(".bin")]
    found = [f for f in fields if len(f) == 4 and f[0] == "keys" and (pid is None or f[1] == str(pid))]
    return ["-".join(f) + ".bin" for f in sorted(found, key=lambda f: (f[2], int(f[3])))]


def records(path: Path) -> list[int]:
    return [h for h, _ in struct.iter_unpack("<Qq", path.read_bytes())]


def kill_a_writer(directory: Path, env: dict[str, str], max_bytes: int, *keys: str) -> int:
    """Run a worker that commits ``keys`` and is killed; its pid."""
    pin_blake2b(directory)
    writer = subprocess.Popen([PYTHON, WRITER, str(directory), str(max_bytes), *keys], cwd=REPO, env=env)
    assert writer.wait(timeout=60) == -9
    return writer.pid


def test_a_segment_that_would_pass_the_size_cap_is_replaced_by_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FileIdempotencyStore, "SEGMENT_MAX_BYTES", 4 * RECORD_BYTES)
    store = FileIdempotencyStore(tmp_path, retention_s=3600)
    keys = [f"k{n}" for n in range(10)]
    for key in keys:
        commit(store, key)
    big_round = commit(store, *[f"big{n}" for n in range(6)])

    names = segments(tmp_path)
    assert [len(records(tmp_path / n)) for n in names] == [4, 4, 2, 6], "a round's keys are never split"
    assert records(tmp_path / names[-1]) == big_round
    everything = hashes_of(*keys) + big_round
    assert set(store.seen(everything, 3600)) == set(everything)
    store.close()
    reopened = FileIdempotencyStore(tmp_path, retention_s=3600)
    assert set(reopened.seen(everything, 3600)) == set(everything)
    reopened.close()


def test_a_segment_a_share_of_the_window_old_is_replaced_by_a_new_one(tmp_path: Path) -> None:
    store = FileIdempotencyStore(tmp_path, retention_s=2.0)  # a new segment every 0.5 s
    first = commit(store, "a") + commit(store, "b")
    time.sleep(0.6)
    second = commit(store, "c")

    names = segments(tmp_path)
    assert [records(tmp_path / n) for n in names] == [first, second]
    assert set(store.seen(first + second, 2.0)) == set(first + second)
    store.close()


def test_a_segment_whose_newest_key_expired_is_deleted_and_newer_ones_still_count(tmp_path: Path) -> None:
    store = FileIdempotencyStore(tmp_path, retention_s=1.5)  # a new segment every 0.375 s
    old = commit(store, "old")
    time.sleep(0.45)
    middle = commit(store, "middle")
    first, second = segments(tmp_path)
    time.sleep(1.15)  # "old" is over 1.5 s old, "middle" is not
    new = commit(store, "new")

    assert segments(tmp_path)[:1] == [second], f"{first} expired and was deleted"
    assert len(segments(tmp_path)) == 2
    assert set(store.seen(old + middle + new, 1.5)) == set(middle + new)
    reopened = FileIdempotencyStore(tmp_path, retention_s=1.5)
    assert set(reopened.seen(old + middle + new, 1.5)) == set(middle + new)
    reopened.close()
    store.close()


def test_a_restarted_store_does_not_open_segments_written_before_the_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = FileIdempotencyStore(tmp_path, retention_s=1.5)  # another worker, still running
    old = commit(writer, "old")
    time.sleep(0.45)
    middle = commit(writer, "middle")
    expired, current = segments(tmp_path)
    time.sleep(1.15)

    opened: list[str] = []

    def spy(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(Path(file).name)
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(idempotency, "open", spy, raising=False)
    reader = FileIdempotencyStore(tmp_path, retention_s=1.5)
    assert opened == [current]
    assert set(reader.seen(old + middle, 1.5)) == set(middle)
    assert (tmp_path / expired).exists(), "the segments of a live worker are left to it"
    commit(writer)
    assert not (tmp_path / expired).exists()
    commit(reader)
    assert set(reader._read_up_to) | reader._complete <= set(os.listdir(tmp_path)), "deleted files are forgotten"
    reader.close()
    writer.close()


def test_two_workers_on_one_directory_see_each_others_keys_across_rotations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FileIdempotencyStore, "SEGMENT_MAX_BYTES", 2 * RECORD_BYTES)
    first = FileIdempotencyStore(tmp_path, retention_s=3600)
    second = FileIdempotencyStore(tmp_path, retention_s=3600)
    from_first = commit(first, "a0")
    commit(second)  # reads first's segment while it still grows
    for n in range(1, 7):
        from_first += commit(first, f"a{n}")
    from_second = []
    for n in range(5):
        from_second += commit(second, f"b{n}")
    commit(first)

    assert len(segments(tmp_path)) == 4 + 3
    assert set(second.seen(from_first, 3600)) == set(from_first), "the tail of a replaced segment is read too"
    assert set(first.seen(from_second, 3600)) == set(from_second)
    third = FileIdempotencyStore(tmp_path, retention_s=3600)
    assert set(third.seen(from_first + from_second, 3600)) == set(from_first + from_second)
    for store in (first, second, third):
        store.close()


def test_a_worker_learns_what_another_committed_at_its_next_lookup_whatever_its_recovery_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Commits read nothing of other workers (only the periodic recovery lists the directory); lookups do.
    monkeypatch.setattr(FileIdempotencyStore, "RECOVERY_INTERVAL_S", 3600.0)
    first = FileIdempotencyStore(tmp_path, retention_s=3600)
    second = FileIdempotencyStore(tmp_path, retention_s=3600)
    commit(second)
    for n in range(3):
        from_first = commit(first, f"a{n}")
        assert set(second.seen(from_first, 3600)) == set(from_first)
        commit(second)
    first.close()
    second.close()


def test_an_in_doubt_key_outlives_rotations_and_the_expiry_of_older_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, subprocess_env: dict[str, str]
) -> None:
    # A window of 3 s: a new segment every 0.75 s, long enough that the five commits below, which must share
    # the window's second and later segments, never straddle a rotation by age on a loaded machine.
    window_s = 3.0
    rotation_s = window_s / 4
    monkeypatch.setattr(FileIdempotencyStore, "SEGMENT_MAX_BYTES", 2 * RECORD_BYTES)
    store = FileIdempotencyStore(tmp_path, retention_s=window_s)
    started = time.monotonic()
    old = commit(store, "old")
    kill_a_writer(tmp_path, subprocess_env, 1 << 20, "done", "?doubt")
    time.sleep(max(0.0, started + 1.2 * rotation_s - time.monotonic()))
    recovered_at = time.monotonic()
    middle = commit(store, "middle")  # the dead worker's journal is taken over: its begun key is in doubt
    doubt = hashes_of("doubt")
    assert store.seen(doubt, window_s) == {doubt[0]: IN_DOUBT}
    for n in range(4):
        commit(store, f"more{n}")
    ours = segments(tmp_path, os.getpid())
    assert len(ours) == 4
    assert doubt[0] in records(tmp_path / ours[1])
    time.sleep(max(0.0, recovered_at + 0.77 * window_s - time.monotonic()))
    commit(store, "new")

    assert segments(tmp_path, os.getpid())[:1] == [ours[1]], "only the segment before the doubt expired"
    assert store.seen(doubt + old, window_s) == {doubt[0]: IN_DOUBT}
    reopened = FileIdempotencyStore(tmp_path, retention_s=window_s)
    assert reopened.seen(doubt + old + middle, window_s) == {doubt[0]: IN_DOUBT, middle[0]: []}
    reopened.close()
    store.close()


def test_a_dead_workers_expired_segments_are_deleted_by_a_live_one(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    keys = [f"d{n}" for n in range(5)]
    dead_pid = kill_a_writer(tmp_path, subprocess_env, 2 * RECORD_BYTES, *keys)
    # ... and a key file an earlier version left, one file per process.
    legacy = tmp_path / f"keys-{dead_pid}-0a1b2c3d.bin"
    legacy.write_bytes(struct.pack("<Qq", key_hash("p", "legacy"), time.time_ns() // 1_000_000))
    written = time.monotonic()
    leftovers = [*segments(tmp_path, dead_pid), legacy.name]
    assert len(leftovers) == 4

    store = FileIdempotencyStore(tmp_path, retention_s=1.0)
    everything = hashes_of(*keys, "legacy")
    assert set(store.seen(everything, 1.0)) == set(everything)
    assert all((tmp_path / name).exists() for name in leftovers), "kept while their keys are in the window"
    time.sleep(max(0.0, written + 1.1 - time.monotonic()))
    commit(store, "live")

    assert segments(tmp_path) == segments(tmp_path, os.getpid()) != []
    assert not legacy.exists()
    assert store._read_up_to == {}, "nothing is remembered about deleted files"
    assert store._complete == set()
    store.close()


def test_a_store_that_recorded_nothing_leaves_no_key_file(tmp_path: Path) -> None:
    store = FileIdempotencyStore(tmp_path, retention_s=3600)
    store.committed(store.seal())
    store.close()
    assert os.listdir(tmp_path) == [key_hashing.KEY_HASH_FILE], "only how the store's keys are hashed"


# -- the journal: what a worker that died had done, and emitted -----------------------------------------------------

OUTPUTS = [
    ("payments", Message(b'{"id":"p-1"}', b"customer-7")),
    ("audit.\u00e9v\u00e9nements", Message(None, None, (("ce_type", b"x"), ("raw", bytes(range(256)))))),
    ("empty", Message(b"", b"")),
]


def test_a_dead_workers_done_records_give_back_every_output_as_written(tmp_path: Path) -> None:
    dead = FileIdempotencyStore(tmp_path, retention_s=3600)
    first, second, third = hashes_of("a", "b", "c")
    dead.begin(first)
    dead.record(first, OUTPUTS, then_begin=second)  # done and the next begin, in one write
    dead.record(second, [])
    dead.begin(third)
    dead.close()  # its round never committed: the journal is left as a crash leaves it

    taken_over = FileIdempotencyStore(tmp_path, retention_s=3600)
    seen = taken_over.seen([first, second, third], 3600)
    assert seen[first] == OUTPUTS, "topics, keys, values and headers come back byte for byte"
    assert seen[second] == []
    assert seen[third] is IN_DOUBT, "begun in the same write as a done record, never done: in doubt"
    taken_over.close()


def test_journals_written_by_earlier_versions_are_still_recovered(tmp_path: Path) -> None:
    import orjson

    (done,) = hashes_of("old")
    record = struct.pack("<cQq", b"d", done, int(time.time() * 1000)) + orjson.dumps(
        idempotency.encode_outputs(OUTPUTS)
    )
    framed = struct.pack("<I", len(record)) + record
    (tmp_path / "journal-999999999-0ld0ld00.mm").write_bytes(struct.pack("<QQ", 0, len(framed)) + framed)

    store = FileIdempotencyStore(tmp_path, retention_s=3600)
    assert store.seen([done], 3600) == {done: OUTPUTS}
    store.close()


@pytest.mark.parametrize(
    "outputs",
    [
        [("payments", Message(b'{"id":"p-1"}', b"customer-7"))],  # one plain output: the common, packed case
        [("payments", Message(b"", b""))],
        [("payments", Message(b'{"id":"p-1"}', None))],
        [("payments", Message(None, b"k"))],
        [("payments", Message(b"v", b"k", (("h", b"1"),)))],
        [],
    ],
)
@pytest.mark.parametrize("then_begin", [False, True], ids=["last of its run", "with the next begin"])
def test_each_shape_of_outputs_comes_back_from_a_dead_workers_journal(
    tmp_path: Path, outputs: Any, then_begin: bool
) -> None:
    dead = FileIdempotencyStore(tmp_path, retention_s=3600)
    done, following = hashes_of("one", "two")
    dead.begin(done)
    dead.record(done, outputs, then_begin=following if then_begin else None)
    dead.close()
    store = FileIdempotencyStore(tmp_path, retention_s=3600)
    expected: dict[int, Any] = {done: outputs, following: IN_DOUBT} if then_begin else {done: outputs}
    assert store.seen([done, following], 3600) == expected
    store.close()


SHAPES_OF_OUTPUTS: list[Any] = [
    [("payments", Message(b'{"id":"p-1"}', b"customer-7"))],  # one plain output: the journal's written-out case
    [("payments", Message(b"", b""))],
    [("payments", Message(b'{"id":"p-1"}', None))],
    [("payments", Message(None, b"k"))],
    [("payments", Message(b"v", b"k", (("h", b"1"),)))],
    [],
    OUTPUTS,
]


def test_a_run_journaled_as_call_each_tells_it_comes_back_from_a_dead_workers_journal(tmp_path: Path) -> None:
    """Through `KeyJournal` as `call_each` drives it: each invocation's outputs, of every shape, come back; the one
    that was under way is in doubt; one that failed is neither."""
    dead = FileIdempotencyStore(tmp_path, retention_s=3600)
    outbox = Outbox("test", lambda attrs: Message(b""))
    keys = [f"event-{n}" for n in range(len(SHAPES_OF_OUTPUTS) + 2)]
    hashes = hashes_of(*keys)
    journal = dead.journal(outbox)
    journal.hashes = hashes
    for index, outputs in enumerate(SHAPES_OF_OUTPUTS):
        journal.begin(index)
        for topic, message in outputs:
            outbox.add_message(topic, message)
    failed, under_way = len(SHAPES_OF_OUTPUTS), len(SHAPES_OF_OUTPUTS) + 1
    journal.begin(failed)
    journal.abandon(failed)
    journal.hashes = hashes[under_way:]  # a new run, as after a failure that is retried later
    journal.begin(0)
    dead.close()  # killed in the middle of the last one: nothing committed

    store = FileIdempotencyStore(tmp_path, retention_s=3600)
    expected: dict[int, Any] = dict(zip(hashes, SHAPES_OF_OUTPUTS, strict=False))
    expected[hashes[under_way]] = IN_DOUBT
    assert store.seen(hashes, 3600) == expected
    store.close()


def test_a_run_that_ends_journals_its_last_invocation_as_done(tmp_path: Path) -> None:
    dead = FileIdempotencyStore(tmp_path, retention_s=3600)
    outbox = Outbox("test", lambda attrs: Message(b""))
    hashes = hashes_of("first", "last")
    journal = dead.journal(outbox)
    journal.hashes = hashes
    for index, h in enumerate(hashes):
        journal.begin(index)
        outbox.add_message("out", Message(str(h).encode(), b"k"))
    journal.end(len(hashes) - 1)
    dead.close()

    store = FileIdempotencyStore(tmp_path, retention_s=3600)
    assert store.seen(hashes, 3600) == {h: [("out", Message(str(h).encode(), b"k"))] for h in hashes}
    store.close()


def test_a_runs_keys_are_known_to_its_own_store_once_it_ends_or_fails_and_go_with_its_round(tmp_path: Path) -> None:
    store = FileIdempotencyStore(tmp_path, retention_s=3600)
    outbox = Outbox("test", lambda attrs: Message(b""))
    first, second = hashes_of("a", "b", "c"), hashes_of("d", "e", "f")
    journal = store.journal(outbox)
    journal.hashes = first
    for index in range(len(first)):
        journal.begin(index)
        outbox.add_message("out", Message(b"v", b"k"))
    journal.end(len(first) - 1)
    journal.hashes = second
    for index in range(2):
        journal.begin(index)
        outbox.add_message("out", Message(b"v", b"k"))
    journal.abandon(1)  # the second of this run raised: only the first is done

    # Known as handled in this round: nothing to emit again, the outputs are in the round's outbox.
    assert store.seen(first + second, 3600) == {h: [] for h in first + second[:1]}
    assert set(store.seal().hashes) == set(first + second[:1])
    store.close()


def test_a_run_longer_than_the_window_keeps_the_keys_done_within_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four invocations of 25 s each, a 60 s window: a key counts from when it was done (or later), never from
    when its run or batch began, live and after a crash."""
    clock_ns = [1_700_000_000 * 10**9]
    monkeypatch.setattr(idempotency, "_time_ns", lambda: clock_ns[0])
    dead = FileIdempotencyStore(tmp_path, retention_s=60)
    outbox = Outbox("test", lambda attrs: Message(b""))
    hashes = hashes_of("a", "b", "c", "d")
    journal = dead.journal(outbox)
    journal.hashes = hashes
    for index in range(len(hashes)):
        journal.begin(index)
        clock_ns[0] += 25 * 10**9
        outbox.add_message("out", Message(b"v%d" % index, b"k"))
    journal.end(len(hashes) - 1)
    assert set(dead.seen(hashes, 60)) == set(hashes)
    dead.close()  # killed before its commit

    store = FileIdempotencyStore(tmp_path, retention_s=60)
    # b, c and d were done 50, 25 and 0 s ago; a, done 75 s ago, is past the window.
    assert set(store.seen(hashes, 60)) == set(hashes[1:])
    store.close()


def test_a_journal_that_outgrows_its_first_mapping_comes_back_whole(tmp_path: Path) -> None:
    """Killed in the middle of its last invocation, after its journal grew: every other one is done."""
    dead = FileIdempotencyStore(tmp_path, retention_s=3600)
    outbox = Outbox("test", lambda attrs: Message(b""))
    value = b"x" * 4096
    count = 3 * idempotency._JOURNAL_START_BYTES // len(value)
    hashes = hashes_of(*(f"event-{n}" for n in range(count)))
    journal = dead.journal(outbox)
    journal.hashes = hashes
    for index in range(count):
        journal.begin(index)
        outbox.add_message("out", Message(value + str(index).encode(), b"k"))
    assert dead._journal.path.stat().st_size > idempotency._JOURNAL_START_BYTES
    dead.close()

    store = FileIdempotencyStore(tmp_path, retention_s=3600)
    expected: dict[int, Any] = {h: [("out", Message(value + str(n).encode(), b"k"))] for n, h in enumerate(hashes)}
    expected[hashes[-1]] = IN_DOUBT
    assert store.seen(hashes, 3600) == expected
    store.close()


def run_round(store: FileIdempotencyStore, keys: list[str], value: bytes) -> list[int]:
    """Record ``keys`` (each emitting ``value``) as one run, without committing it."""
    hashes = hashes_of(*keys)
    store.begin(hashes[0])
    for n, h in enumerate(hashes):
        following = hashes[n + 1] if n + 1 < len(hashes) else None
        store.record(h, [("out", Message(value, b"k"))], then_begin=following)
    return hashes


def test_rounds_sealed_before_the_journal_moves_its_records_still_release_only_their_own(tmp_path: Path) -> None:
    store = FileIdempotencyStore(tmp_path, retention_s=3600)
    value = b"v" * 100
    run_round(store, [f"a-{i}" for i in range(100)], value)
    first = store.seal()
    run_round(store, [f"b-{i}" for i in range(10)], value)
    second = store.seal()
    in_flight = run_round(store, [f"c-{i}" for i in range(10)], value)
    store.committed(first)  # what is left is short: moved to the top of the journal
    store.committed(second)
    store.close()  # the third round never committed

    taken_over = FileIdempotencyStore(tmp_path, retention_s=3600)
    seen = taken_over.seen(in_flight, 3600)
    assert all(seen[h] == [("out", Message(value, b"k"))] for h in in_flight), "the round in flight comes back"
    taken_over.close()


@pytest.mark.parametrize(
    "stores_before_the_kill", [0, 1, 2], ids=["before any header store", "copied, start not yet 0", "start 0, end not"]
)
def test_a_worker_killed_while_its_journal_moves_records_to_the_top_loses_none(
    tmp_path: Path, stores_before_the_kill: int
) -> None:
    # The move copies the pending records to the top, writes a skip record over the gap, then sets the header's
    # two fields one at a time: SIGKILL the worker before the header store numbered ``stores_before_the_kill``.
    marker = tmp_path / "killed-inside-the-move"
    done, in_flight = hashes_of("c", "c-in-flight")
    outputs = [("out", Message(b"c" * 300, b"k"))]
    pid = os.fork()
    if pid == 0:  # the worker
        stores = [0]

        def pack_into(fmt: str, buffer: Any, offset: int, *values: Any) -> None:
            if stores[0] == stores_before_the_kill:
                marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)
            stores[0] += 1
            struct.pack_into(fmt, buffer, offset, *values)

        # The header's stores go through struct.pack_into; Struct objects (the records) are left as they are.
        counting = types.SimpleNamespace(pack_into=pack_into, Struct=struct.Struct)
        idempotency.struct = counting  # type: ignore[attr-defined,assignment]
        store = FileIdempotencyStore(tmp_path, retention_s=3600)
        run_round(store, ["a"], b"a" * 100)
        first = store.seal()
        run_round(store, ["b"], b"b" * 2000)
        store.committed(first)  # what is pending is longer than what was released: no move
        second = store.seal()
        store.begin(done)
        store.record(done, outputs, then_begin=in_flight)
        store.committed(second)  # the third round, short, moves to the top
        os._exit(0)  # not reached: killed inside the move
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    assert marker.exists(), "the worker was killed inside the move"

    taken_over = FileIdempotencyStore(tmp_path, retention_s=3600)
    assert taken_over.seen([done, in_flight], 3600) == {done: outputs, in_flight: IN_DOUBT}
    taken_over.close()


def test_the_journal_reuses_its_space_while_rounds_overlap_and_a_crash_still_finds_the_round_in_flight(
    tmp_path: Path,
) -> None:
    # A worker seals a round, processes the next one while the first commits, and so on: its journal is never
    # empty when a commit lands. 200 rounds of 100 outputs of 300 bytes would take 6 MB written end to end.
    store = FileIdempotencyStore(tmp_path, retention_s=3600)
    value = b"v" * 300
    sealed = store.seal()
    for n in range(200):
        in_flight = run_round(store, [f"{n}-{i}" for i in range(100)], value)
        store.committed(sealed)
        sealed = store.seal()
    assert store._journal.path.stat().st_size <= idempotency._JOURNAL_START_BYTES
    last_committed = hashes_of("198-0", "198-99")
    store.close()  # the last round never committed: as a crash leaves it

    taken_over = FileIdempotencyStore(tmp_path, retention_s=3600)
    seen = taken_over.seen(in_flight + last_committed, 3600)
    assert all(seen[h] == [("out", Message(value, b"k"))] for h in in_flight), "the round in flight comes back"
    assert seen[last_committed[0]] == seen[last_committed[1]] == [], "committed rounds are not in flight"
    taken_over.close()


def adopted_files(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.startswith("adopted-"))


def die_with_a_done_record(directory: Path, key: str) -> int:
    """A worker that handled ``key``, emitting OUTPUTS, and died before its round committed."""
    dead = FileIdempotencyStore(directory, retention_s=3600)
    (h,) = hashes_of(key)
    dead.begin(h)
    dead.record(h, OUTPUTS)
    dead.close()  # as a crash leaves it: the journal stays
    return h


def test_done_records_taken_from_a_dead_worker_survive_the_death_of_the_one_that_took_them(tmp_path: Path) -> None:
    h = die_with_a_done_record(tmp_path, "a")
    second = FileIdempotencyStore(tmp_path, retention_s=3600)
    assert second.seen([h], 3600) == {h: OUTPUTS}
    assert not any(n.startswith("journal-") and n != second._journal.path.name for n in os.listdir(tmp_path))
    second.close()  # dies too, before the event came back and its round committed

    third = FileIdempotencyStore(tmp_path, retention_s=3600)
    assert third.seen([h], 3600) == {h: OUTPUTS}, "still known: not run a second time"
    third.close()


def test_an_adopted_record_goes_once_its_key_is_committed(tmp_path: Path) -> None:
    h = die_with_a_done_record(tmp_path, "a")
    store = FileIdempotencyStore(tmp_path, retention_s=3600)
    assert store.seen([h], 3600) == {h: OUTPUTS}  # the event came back: its outputs are to be emitted again
    assert store.seen([h], 3600) == {h: OUTPUTS}, "kept until the worker says it emitted them"
    store.reemitted(h)
    assert len(adopted_files(tmp_path)) == 1
    store.committed(store.seal())
    assert adopted_files(tmp_path) == []
    store.close()

    later = FileIdempotencyStore(tmp_path, retention_s=3600)
    assert later.seen([h], 3600) == {h: []}, "committed: known, with its outputs in the log already"
    later.close()


def test_an_adopted_record_is_known_again_after_a_refused_commit(tmp_path: Path) -> None:
    h = die_with_a_done_record(tmp_path, "a")
    store = FileIdempotencyStore(tmp_path, retention_s=3600)
    assert store.seen([h], 3600) == {h: OUTPUTS}
    store.reemitted(h)
    store.refused(store.seal())  # the round that emitted them again was rolled back: the event comes back again
    assert store.seen([h], 3600) == {h: OUTPUTS}
    assert len(adopted_files(tmp_path)) == 1
    store.close()


def test_a_refused_round_is_emitted_again_not_run_again_here_and_by_the_hosts_other_workers(tmp_path: Path) -> None:
    store = FileIdempotencyStore(tmp_path, retention_s=3600)
    other = FileIdempotencyStore(tmp_path, retention_s=3600)  # another worker of the host
    first, second, failed = hashes_of("first", "second", "failed")
    store.begin(first)
    store.record(first, OUTPUTS[:1], then_begin=second)
    store.record(second, OUTPUTS[1:])
    store.begin(failed)
    store.abandon(failed)
    store.refused(store.seal())  # a rebalance refused the round's commit: its events come back

    assert store.seen([first, second, failed], 3600) == {first: OUTPUTS[:1], second: OUTPUTS[1:]}
    assert other.seen([first, second, failed], 3600) == {first: OUTPUTS[:1], second: OUTPUTS[1:]}
    assert len(adopted_files(tmp_path)) == 1

    # Emitted again in a round that is refused too: still known.
    store.reemitted(first)
    store.refused(store.seal())
    assert store.seen([first], 3600) == {first: OUTPUTS[:1]}

    # Emitted again and committed: known as committed, and the adopted file goes once both keys are.
    store.reemitted(first)
    store.reemitted(second)
    store.committed(store.seal())
    assert store.seen([first, second], 3600) == {first: [], second: []}
    assert adopted_files(tmp_path) == []
    store.close()
    other.close()


def test_a_refused_round_survives_its_worker_dying_before_the_events_come_back(tmp_path: Path) -> None:
    store = FileIdempotencyStore(tmp_path, retention_s=3600)
    (h,) = hashes_of("a")
    store.begin(h)
    store.record(h, OUTPUTS)
    store.refused(store.seal())
    store.close()  # as a crash leaves it: the adopted file stays

    later = FileIdempotencyStore(tmp_path, retention_s=3600)
    assert later.seen([h], 3600) == {h: OUTPUTS}
    later.close()


def test_outputs_kept_for_an_event_that_never_comes_back_go_when_its_key_expires(tmp_path: Path) -> None:
    store = FileIdempotencyStore(tmp_path, retention_s=0.3)
    (h,) = hashes_of("moved away")
    store.begin(h)
    store.record(h, OUTPUTS)
    store.refused(store.seal())  # its partition went to a member on another host, which committed it
    assert store._recovered == {h: OUTPUTS}
    time.sleep(0.4)
    commit(store, "later")
    assert store._recovered == {}
    assert adopted_files(tmp_path) == []
    store.close()


def test_a_key_committed_from_an_adopted_file_is_not_adopted_again_when_its_adopter_dies(tmp_path: Path) -> None:
    dead = FileIdempotencyStore(tmp_path, retention_s=3600)
    a, b = hashes_of("a", "b")
    dead.begin(a)
    dead.record(a, OUTPUTS, then_begin=b)
    dead.record(b, OUTPUTS)
    dead.close()  # dies before its round commits

    adopter = FileIdempotencyStore(tmp_path, retention_s=3600)
    assert adopter.seen([a], 3600) == {a: OUTPUTS}
    adopter.reemitted(a)
    adopter.committed(adopter.seal())  # a's outputs are in the log now; b's event has not come back yet
    adopter.close()  # dies too, its adopted file still holding both

    last = FileIdempotencyStore(tmp_path, retention_s=3600)
    assert last.seen([a, b], 3600) == {a: [], b: OUTPUTS}, "a committed: emitting it again would repeat it"
    last.close()


@pytest.mark.parametrize("commits", [True, False], ids=["committed", "crashed"])
def test_a_run_journaled_from_key_digests_reads_back_as_its_key_hashes(tmp_path: Path, commits: bool) -> None:
    # The worker's loop writes keys as their digests (the bytes of their hashes); what it writes must read back,
    # from the journal after a crash and from the key segment after a commit, as the hashes themselves.
    app = App("t")

    @app.processor("in", to="out")
    def handle(event: Event) -> Event:
        return Event("done", {"n": event.data["n"]}, partitionkey=f"k{event.data['n']}")

    events: list[dict[str, Any] | None] = [
        {"specversion": "1.0", "id": f"e{n}", "source": "/s", "type": "n", "data": {"n": n}} for n in range(3)
    ]
    store = FileIdempotencyStore(tmp_path, retention_s=3600)
    hashes, digests = store.keys.default_key_digests("p", [e for e in events if e is not None])
    assert hashes == [store.keys.hash("p", f"/s\x1fe{n}") for n in range(3)]
    outbox = Outbox(
        "/eventbus", lambda attrs: Message(str(attrs["data"]["n"]).encode(), attrs["partitionkey"].encode())
    )
    journal = store.journal(outbox)
    journal.hashes, journal.digests = hashes, digests
    assert journal.call_each(app.processors[0], "in", 0, [0, 1, 2], events, [0, 1, 2]) is None
    if commits:
        store.committed(store.seal())
    store.close()

    later = FileIdempotencyStore(tmp_path, retention_s=3600)
    expected = {
        h: [] if commits else [("out", Message(str(n).encode(), f"k{n}".encode()))] for n, h in enumerate(hashes)
    }
    assert later.seen(hashes, 3600) == expected
    later.close()


def test_a_key_another_worker_is_emitting_again_survives_the_death_of_the_worker_that_adopted_it(
    tmp_path: Path,
) -> None:
    h = die_with_a_done_record(tmp_path, "e")
    adopter = FileIdempotencyStore(tmp_path, retention_s=3600)  # recovers the dead worker's journal
    emitting = FileIdempotencyStore(tmp_path, retention_s=3600)  # got the partition
    assert len(adopted_files(tmp_path)) == 1
    assert emitting.seen([h], 3600) == {h: OUTPUTS}  # read from the adopter's file
    emitting.reemitted(h)
    emitting.seal()  # handed to the commit, which has not landed
    adopter.close()  # dies: its adopted file is recovered at the next lookup
    emitting.seen([], 3600)
    emitting.close()  # dies too, before its commit landed: only its adopted file keeps the key now

    assert FileIdempotencyStore(tmp_path, retention_s=3600).seen([h], 3600) == {h: OUTPUTS}


def test_outputs_kept_to_emit_again_are_dropped_once_another_worker_commits_them(tmp_path: Path) -> None:
    refusing = FileIdempotencyStore(tmp_path, retention_s=3600)
    other = FileIdempotencyStore(tmp_path, retention_s=3600)
    (h,) = hashes_of("e")
    refusing.begin(h)
    refusing.record(h, OUTPUTS)
    refusing.refused(refusing.seal())
    assert other.seen([], 3600) == {}  # reads the refusing worker's adopted file: e's outputs to emit again
    refusing.reemitted(h)  # the event came back to the worker that refused it
    refusing.committed(refusing.seal())
    assert other.seen([h], 3600) == {h: []}, "committed by the other: emitting it again would repeat it"
    assert adopted_files(tmp_path) == []
    refusing.close()
    other.close()


def test_workers_of_one_memory_log_share_keys_and_keep_their_own_rounds() -> None:
    from eventbus.backends.memory import MemoryLog
    from eventbus.runtime.idempotency import memory_store_for

    log = MemoryLog("shared-keys")
    a, b = memory_store_for(log), memory_store_for(log)
    a.record(1, OUTPUTS)
    b.record(2, OUTPUTS)
    assert a.seal().hashes == (1,)
    b.refused(b.seal())  # b's round came back: its event is emitted again, not run again, by either worker
    assert a.seen([1, 2], 3600) == {1: [], 2: OUTPUTS}
    assert b.seen([2], 3600) == {2: OUTPUTS}


def test_a_running_worker_learns_of_a_crash_when_the_partition_comes_to_it(tmp_path: Path) -> None:
    # Three workers on one host. "running" started first; "dead" handles two events (one to the end, one not)
    # and dies before committing; "taking_over" starts and recovers its journal. The partition then goes to
    # "running", which must know both events before it would run them again.
    running = FileIdempotencyStore(tmp_path, retention_s=3600)
    done, cut_short = hashes_of("done", "cut short")
    dead = FileIdempotencyStore(tmp_path, retention_s=3600)
    dead.begin(done)
    dead.record(done, OUTPUTS, then_begin=cut_short)
    dead.close()
    taking_over = FileIdempotencyStore(tmp_path, retention_s=3600)
    assert not dead._journal.path.exists(), "taken over"

    assert running.seen([done, cut_short], 3600) == {done: OUTPUTS, cut_short: IN_DOUBT}
    taking_over.close()
    running.close()


def test_a_running_worker_recovers_a_dead_workers_journal_itself_when_it_is_first(tmp_path: Path) -> None:
    running = FileIdempotencyStore(tmp_path, retention_s=3600)
    h = die_with_a_done_record(tmp_path, "a")
    assert running.seen([h], 3600) == {h: OUTPUTS}
    assert len(adopted_files(tmp_path)) == 1, "adopted, so a crash of this worker does not lose it"
    running.close()


def test_a_journal_another_worker_recovers_while_this_one_looks_is_still_learned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    looking = FileIdempotencyStore(tmp_path, retention_s=3600)
    other = FileIdempotencyStore(tmp_path, retention_s=3600)
    done, begun = hashes_of("done", "begun")
    dead = FileIdempotencyStore(tmp_path, retention_s=3600)
    dead.begin(done)
    dead.record(done, OUTPUTS, then_begin=begun)
    dead.close()  # as a crash leaves it: the journal stays

    read_bytes = Path.read_bytes
    raced: list[Path] = []

    def recovered_by_the_other_first(path: Path) -> bytes:
        if path.name.startswith("journal-") and not raced:
            raced.append(path)
            other.seen([], 3600)  # between this worker's listing and its read, the other one recovers the journal
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", recovered_by_the_other_first)
    assert looking.seen([done, begun], 3600) == {done: OUTPUTS, begun: IN_DOUBT}
    assert raced, "the race happened"
    looking.close()
    other.close()


@pytest.mark.parametrize("same_pid", [False, True], ids=["its-pid-unseen", "its-pid-is-ours"])
def test_a_live_worker_whose_pid_cannot_be_seen_keeps_its_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, subprocess_env: dict[str, str], same_pid: bool
) -> None:
    # Two containers sharing the store's directory: each in its own PID namespace, where the other's pid is not
    # there to look up. Such a namespace cannot be made here; what the lookup then answers is stood in for.
    pin_blake2b(tmp_path)
    live = subprocess.Popen(
        [PYTHON, WRITER, str(tmp_path), str(1 << 20), "done", "?begun"],
        cwd=REPO,
        env={**subprocess_env, "STAY_ALIVE": "1"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert live.stdout is not None
        assert live.stdout.readline() == "ready\n"
        journal = [n for n in os.listdir(tmp_path) if n.startswith("journal-")]
        real_kill = os.kill

        def unseen(pid: int, signum: int) -> None:
            if pid == live.pid:
                raise ProcessLookupError(pid)
            real_kill(pid, signum)

        monkeypatch.setattr(os, "kill", unseen)
        if same_pid:  # both pid 1 in their containers, say
            monkeypatch.setattr(os, "getpid", lambda: live.pid)
        store = FileIdempotencyStore(tmp_path, retention_s=3600)
        assert [n for n in os.listdir(tmp_path) if n.startswith("journal-") and n in journal] == journal
        assert store.seen(hashes_of("begun"), 3600) == {}, "its invocation under way is not taken for in doubt"
        store.close()
    finally:
        assert live.stdin is not None
        live.stdin.close()
        assert live.wait(timeout=30) == 0
        assert live.stdout is not None
        live.stdout.close()
    assert not [n for n in os.listdir(tmp_path) if n.startswith("owner-")], "a closed store leaves no lock"


def test_a_dead_workers_owner_lock_goes_with_its_journal(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    dead_pid = kill_a_writer(tmp_path, subprocess_env, 1 << 20, "done", "?doubt")
    assert [n for n in os.listdir(tmp_path) if n.startswith(f"owner-{dead_pid}-")], "left by the killed worker"
    store = FileIdempotencyStore(tmp_path, retention_s=3600)
    assert store.seen(hashes_of("doubt"), 3600) == {hashes_of("doubt")[0]: IN_DOUBT}, "recovered: its lock was free"
    assert not [n for n in os.listdir(tmp_path) if n.startswith(f"owner-{dead_pid}-")]
    assert len([n for n in os.listdir(tmp_path) if n.startswith("owner-")]) == 1, "this store's own"
    store.close()


def test_a_child_forked_with_the_store_open_does_not_keep_a_dead_worker_looking_alive(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    pin_blake2b(tmp_path)
    writer = subprocess.run(
        [PYTHON, WRITER, str(tmp_path), str(1 << 20), "done", "?doubt"],
        cwd=REPO,
        env={**subprocess_env, "FORK_A_CHILD": "30"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert writer.returncode == -9
    child = int(writer.stdout)
    try:
        store = FileIdempotencyStore(tmp_path, retention_s=3600)
        assert store.seen(hashes_of("doubt"), 3600) == {hashes_of("doubt")[0]: IN_DOUBT}, "its journal recovered"
        store.close()
    finally:
        os.kill(child, signal.SIGKILL)


def test_a_file_system_without_flock_leaves_liveness_to_pids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import fcntl

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")  # as on NFS without lockd, or Lustre without flock

    monkeypatch.setattr(fcntl, "flock", no_locks)
    first = FileIdempotencyStore(tmp_path, retention_s=3600)
    assert not [n for n in os.listdir(tmp_path) if n.startswith("owner-")], "no lock file that no one holds"
    committed = commit(first, "a")
    second = FileIdempotencyStore(tmp_path, retention_s=3600)
    assert second.seen(committed, 3600) == {committed[0]: []}
    second.close()
    first.close()


class _Killed(BaseException):
    """Stands for the worker dying in the middle of an invocation (nothing catches it)."""


@pytest.mark.parametrize("seed", range(40))
def test_the_written_out_journal_loop_leaves_what_the_generic_one_does(tmp_path: Path, seed: int) -> None:
    """`_FileKeyJournal.call_each` writes a run's journal in its own loop; the generic `KeyJournal.call_each`
    writes it through `begin`, `end` and `abandon`. For random runs (outputs of every shape, to two topics, a
    failure, a death in the middle) a worker recovering either journal must find the same: each done key with
    its outputs, the one under way in doubt, the failed one neither."""
    import random

    from eventbus.runtime.idempotency import KeyJournal

    rng = random.Random(seed)
    count = rng.randint(1, 12)
    shapes = [rng.choice(SHAPES_OF_OUTPUTS + [[("other", Message(b"o", b"k"))]] * 2) for _ in range(count)]
    ending = rng.choice(["end", "fail", "die"])
    stop_at = rng.randrange(count)
    app = App("t")

    @app.processor("in", to="payments")
    def handle(event: Event) -> None:
        n = event.data["n"]
        if n == stop_at and ending != "end":
            raise ValueError("failed") if ending == "fail" else _Killed()
        for topic, message in shapes[n]:
            context_outbox.add_message(topic, message)

    events: list[dict[str, Any] | None] = [
        {"specversion": "1.0", "id": f"e{n}", "source": "/s", "type": "n", "data": {"n": n}} for n in range(count)
    ]
    recovered = []
    for written_out in (True, False):
        directory = tmp_path / ("written-out" if written_out else "generic")
        directory.mkdir()
        dead = FileIdempotencyStore(directory, retention_s=3600)
        context_outbox = Outbox("/eventbus", lambda attrs: Message(b""))
        hashes, digests = dead.keys.default_key_digests("p", [e for e in events if e is not None])
        journal = dead.journal(context_outbox)
        journal.hashes, journal.digests = hashes, digests
        # The generic path: the base class's method on the same journal object.
        run = journal.call_each if written_out else functools.partial(KeyJournal.call_each, journal)
        try:
            failure = run(app.processors[0], "in", 0, list(range(count)), events, list(range(count)))
        except _Killed:
            failure = None
        assert (failure is not None) == (ending == "fail")
        dead.close()  # dies before its round commits
        store = FileIdempotencyStore(directory, retention_s=3600)
        recovered.append([store.seen([h], 3600).get(h) for h in store.keys.default_key_digests("p", events)[0]])
        store.close()

    written, generic = recovered
    assert written == generic
    last = count if ending == "end" else stop_at
    assert written[:last] == [shapes[n] for n in range(last)]
    if ending == "die":
        assert written[stop_at] is IN_DOUBT
    assert all(seen is None for seen in written[last + (ending == "die") :])


def test_a_stop_raised_while_the_journal_grows_leaves_its_length_at_what_was_written(tmp_path: Path) -> None:
    """A second stop signal (StoppedAtOnce) can be raised at any step of the written-out loop. Raised as the
    journal grows, before a record is copied, the journal must not count that record: a later header write (a
    commit that lands on the writer thread as the worker stops) would publish bytes never written."""
    app = App("t")

    @app.processor("in", to="out")
    def handle(event: Event) -> Event:
        return Event("done", {"n": event.data["n"]}, partitionkey="k")

    count = 8
    events: list[dict[str, Any] | None] = [
        {"specversion": "1.0", "id": f"e{n}", "source": "/s", "type": "n", "data": {"n": n}} for n in range(count)
    ]
    store = FileIdempotencyStore(tmp_path, retention_s=3600)
    value = b"x" * (idempotency._JOURNAL_START_BYTES // 3)  # the journal grows at the fourth record
    outbox = Outbox("/eventbus", lambda attrs: Message(value + str(attrs["data"]["n"]).encode(), b"k"))
    journal = store.journal(outbox)
    journal.hashes, journal.digests = store.keys.default_key_digests("p", [e for e in events if e is not None])

    def stopped(needed: int) -> None:
        raise _Killed()

    store._journal._grow = stopped  # type: ignore[method-assign]
    with pytest.raises(_Killed):
        journal.call_each(app.processors[0], "in", 0, list(range(count)), events, list(range(count)))
    records = store._journal
    on_disk = struct.unpack_from("<QQ", records._map, 0)
    assert records._used == on_disk[1], "the journal counts exactly what its header says was written"
