"""`eventbus publish` reading its input: lines from a pipe that stays open go out without waiting for more, a
stop signal publishes what was read, and mistaken options or lines are refused by name, in real subprocesses on a
real SQLite log."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from eventbus.backends.sqlite import SQLiteLog
from eventbus.codecs import decode_record
from tests.conftest import PYTHON

WIDE = 18446744073709551616  # 2**64: orjson would read it as a float and drop its last digits


def publish(*args: str, cwd: Path, env: dict[str, str], stdin: bytes | str = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [PYTHON, "-m", "eventbus", "publish", *args],
        input=stdin.encode() if isinstance(stdin, str) else stdin,
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )


def text(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stderr.decode()


def events_in(project: Path, topic: str) -> list[dict[str, Any]]:
    """The events of ``topic`` on the project's default log, as CloudEvents dicts; none if it does not exist yet."""
    db = project / "eventbus.db"
    if not db.exists():
        return []
    log = SQLiteLog(db)
    try:
        if topic not in {t.name for t in log.list_topics()}:
            return []
        batch = log.read(topic, 0, 0, 100_000)
        return [decode_record(v, h) for v, h in zip(batch.values, batch.headers, strict=True)]
    finally:
        log.close()


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def publisher(tmp_path: Path, subprocess_env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`eventbus publish t` in ``tmp_path``, reading a pipe the test writes to and closes when it wants."""
    process = subprocess.Popen(
        [PYTHON, "-m", "eventbus", "publish", "t"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=subprocess_env,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        for stream in (process.stdin, process.stderr):
            if stream is not None:
                stream.close()


def write(process: subprocess.Popen[bytes], data: bytes) -> None:
    stdin: IO[bytes] | None = process.stdin
    assert stdin is not None
    stdin.write(data)
    stdin.flush()


def finish(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    """Its exit code and stderr, once it ends."""
    assert process.stderr is not None
    stderr = process.stderr.read().decode()
    return process.wait(timeout=30), stderr


def test_lines_from_a_pipe_left_open_are_published_before_it_closes(
    tmp_path: Path, publisher: subprocess.Popen[bytes]
) -> None:
    write(publisher, b"".join(json.dumps({"type": "tick", "data": n}).encode() + b"\n" for n in range(3)))
    wait_for(lambda: len(events_in(tmp_path, "t")) == 3, "the three lines to be published")
    assert publisher.poll() is None  # still reading: the events went out before the end of input
    write(publisher, b'{"type": "tick", "data": 3}\n')
    wait_for(lambda: len(events_in(tmp_path, "t")) == 4, "the fourth line to be published")

    assert publisher.stdin is not None
    publisher.stdin.close()
    code, stderr = finish(publisher)
    assert code == 0, stderr
    assert "published 4 event(s) to t" in stderr
    assert [e["data"] for e in events_in(tmp_path, "t")] == [0, 1, 2, 3]


def test_sigint_publishes_the_lines_read_says_how_many_and_exits_130(
    tmp_path: Path, publisher: subprocess.Popen[bytes]
) -> None:
    write(publisher, b'{"type": "a", "data": 1}\n')
    wait_for(lambda: len(events_in(tmp_path, "t")) == 1, "the first line to be published")  # signals handled now
    write(publisher, b'{"type": "a", "data": 2}\n{"type": "a", "data": 3}\n\n{"type": "a", "da')
    wait_for(lambda: len(events_in(tmp_path, "t")) == 3, "the complete lines to be published")
    publisher.send_signal(signal.SIGINT)

    code, stderr = finish(publisher)
    assert code == 130
    assert "Traceback" not in stderr, stderr
    assert (
        "published 3 event(s) to t; stopped by SIGINT after line 4"
        " (line 5 was cut off before its end and not published)" in stderr
    ), stderr
    assert [e["data"] for e in events_in(tmp_path, "t")] == [1, 2, 3]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_right_after_lines_arrive_loses_none_of_those_it_read(
    tmp_path: Path, publisher: subprocess.Popen[bytes], signum: signal.Signals
) -> None:
    write(publisher, b'{"type": "a", "data": 0}\n')
    wait_for(lambda: len(events_in(tmp_path, "t")) == 1, "the first line to be published")
    # Sent well within the time read lines wait for company before going out, these are most often still waiting
    # when the signal comes; whenever it comes, what the summary says was read must be on the log.
    write(publisher, b"".join(b'{"type": "a", "data": %d}\n' % n for n in range(1, 6)))
    time.sleep(0.03)
    publisher.send_signal(signum)

    code, stderr = finish(publisher)
    assert code == 130, stderr
    assert "Traceback" not in stderr, stderr
    summary = re.search(rf"published (\d+) event\(s\) to t; stopped by {signum.name} after line (\d+)\n", stderr)
    assert summary is not None, stderr
    published, last_line = int(summary[1]), int(summary[2])
    assert published == last_line
    assert [e["data"] for e in events_in(tmp_path, "t")] == list(range(published))


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--type", ""], "--type: an event type cannot be empty"),
        (["--type", "x", "--key-field", ""], "--key-field: a field name cannot be empty"),
        (["--source", ""], "--source: a source (leave the option out for /eventbus/cli) cannot be empty"),
    ],
    ids=["type", "key-field", "source"],
)
def test_an_empty_type_key_field_or_source_is_one_usage_error_naming_the_option(
    tmp_path: Path, subprocess_env: dict[str, str], options: list[str], named: str
) -> None:
    lines = '{"type": "a", "id": "e-1"}\n{"type": "a", "id": "e-2"}\n'
    result = publish("t", *options, cwd=tmp_path, env=subprocess_env, stdin=lines)
    stderr = text(result)
    assert result.returncode == 2, stderr
    assert stderr == f"eventbus: error: {named}\n"
    assert events_in(tmp_path, "t") == []


def test_integers_beyond_64_bits_are_refused_by_line_and_the_others_kept_to_the_digit(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    lines = [
        {"type": "a", "data": {"id": WIDE}},
        {"type": "a", "data": {"id": 2**64 - 1, "digits": "1234567890123456789012345"}},
        {"type": "a", "data": {"ids": [1, -(2**63) - 1]}},
        {"type": "a", "data": {"id": -(2**63), "big": 1e19}},
    ]
    result = publish("t", cwd=tmp_path, env=subprocess_env, stdin="".join(json.dumps(d) + "\n" for d in lines))
    stderr = text(result)
    assert result.returncode == 1, stderr
    assert (
        f"eventbus: line 1: data.id: the integer {WIDE} is out of the 64-bit range (-9223372036854775808 to"
        " 18446744073709551615) and would lose digits; send it as a string" in stderr
    )
    assert f"eventbus: line 3: data.ids[1]: the integer {-(2**63) - 1} is out of the 64-bit range" in stderr
    assert "published 2 event(s) to t; 2 line(s) rejected" in stderr
    assert [e["data"] for e in events_in(tmp_path, "t")] == [lines[1]["data"], lines[3]["data"]]

    typed = publish("typed", "--type", "n", cwd=tmp_path, env=subprocess_env, stdin=f'7\n{{"n": {WIDE}}}\n')
    assert f"eventbus: line 2: n: the integer {WIDE} is out of the 64-bit range" in text(typed)
    assert [e["data"] for e in events_in(tmp_path, "typed")] == [7]


def test_an_integer_split_across_two_reads_is_still_seen_and_line_numbers_hold(
    tmp_path: Path, publisher: subprocess.Popen[bytes]
) -> None:
    filler = b"".join(b'{"type": "a", "data": %d}\r\n' % n for n in range(3000))  # longer than one read of a pipe
    write(publisher, filler + b'{"type": "a", "data": {"id": 18446744')
    time.sleep(0.3)  # the reader takes the line's beginning alone
    write(publisher, b'073709551616}}\n\xff\xfe\n{"type": "b", "data": "last, with no newline"}')
    assert publisher.stdin is not None
    publisher.stdin.close()

    code, stderr = finish(publisher)
    assert code == 1, stderr
    assert f"eventbus: line 3001: data.id: the integer {WIDE} is out of the 64-bit range" in stderr
    assert "eventbus: line 3002: not valid JSON: str is not valid UTF-8" in stderr
    assert "published 3001 event(s) to t; 2 line(s) rejected" in stderr
    events = events_in(tmp_path, "t")
    assert [e["data"] for e in events[:3000]] == list(range(3000))
    assert events[-1]["data"] == "last, with no newline"


def test_data_alongside_data_base64_is_refused_by_line(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    lines = '{"type": "a", "data": {"x": 1}, "data_base64": "aGVsbG8="}\n{"type": "a", "data_base64": "aGVsbG8="}\n'
    result = publish("t", cwd=tmp_path, env=subprocess_env, stdin=lines)
    stderr = text(result)
    assert result.returncode == 1, stderr
    assert "eventbus: line 1: data and data_base64: an event carries one or the other, not both" in stderr
    assert "published 1 event(s) to t; 1 line(s) rejected" in stderr
    assert [e.get("data_base64") for e in events_in(tmp_path, "t")] == ["aGVsbG8="]


def test_a_null_key_field_is_called_null_not_missing(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    lines = '{"order_id": null}\n{"other": 1}\n{"order_id": "o-1"}\n'
    result = publish("t", "--type", "o", "--key-field", "order_id", cwd=tmp_path, env=subprocess_env, stdin=lines)
    stderr = text(result)
    assert result.returncode == 1, stderr
    assert "eventbus: line 1: order_id: the key field is null (a partition key is a string or a number)" in stderr
    assert "eventbus: line 2: order_id: the key field is missing from the data" in stderr
    assert [e["partitionkey"] for e in events_in(tmp_path, "t")] == ["o-1"]
