"""Projection fold throughput on SQLite and on PostgreSQL, checkpoint in the same transaction as the rows, against
a hand-written batched upsert loop doing the same work, in one run.

Work: 200,000 deposit events over 10,000 accounts (3 partitions) on a SQLite log; the projection keeps one row per
account (owner, balance, count). eventbus: a `ProjectionRunner` folding until caught up. Baseline: plain sqlite3 /
psycopg code reading the same records from the log's table, parsing them with orjson, keeping rows in a dict,
upserting each batch's changed rows and a checkpoint row in one transaction. Latency is per batch (p50/p99).

usage: python benchmarks/projection_fold.py [--events N] [--repeat R] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventbus import App, Event
from eventbus.backends.base import Message
from eventbus.backends.sqlite import SQLiteLog
from eventbus.projections import View
from eventbus.projections.runner import ProjectionRunner
from eventbus.runtime import WorkerSettings
from tests.postgres_server import fresh_database, postgres_server

ACCOUNTS = 10_000
BATCH = 2000


def fill_log(path: Path, events: int) -> SQLiteLog:
    rng = random.Random(3)
    log = SQLiteLog(path)
    log.create_topic("deposits", 3)
    messages = []
    for n in range(events):
        account = f"acc-{rng.randrange(ACCOUNTS):05d}"
        attrs = {
            "specversion": "1.0",
            "id": f"e-{n}",
            "source": "/bench",
            "type": "deposited",
            "time": "2026-11-23T10:00:00.000Z",
            "partitionkey": account,
            "data": {"account": account, "owner": f"owner-{account[-3:]}", "amount": rng.randrange(1, 500)},
        }
        messages.append(Message(orjson.dumps(attrs), account.encode()))
    for begin in range(0, events, 10_000):
        log.append("deposits", messages[begin : begin + 10_000])
    return log


def bank_app(store_url: str) -> App:
    app = App("fold")
    balances = app.projection("balances", topics="deposits", store=store_url)

    @balances.on("deposited")
    def deposited(event: Event, view: View) -> None:
        data = event.data
        row = view.get(data["account"]) or {"owner": data["owner"], "balance": 0, "count": 0}
        row["balance"] += data["amount"]
        row["count"] += 1
        view[data["account"]] = row

    return app


def run_eventbus(log: SQLiteLog, store_url: str) -> dict[str, Any]:
    projection = bank_app(store_url).projections["balances"]
    runner = ProjectionRunner(projection, log, WorkerSettings(until_idle=True, max_poll_records=BATCH, idle_poll_s=0))
    started = time.perf_counter()
    folded = asyncio.run(runner.run())
    return {"elapsed_s": time.perf_counter() - started, "events": folded, "batch_s": []}


def baseline(log_path: Path, upsert: Callable[[dict[str, str], int], None], events: int) -> dict[str, Any]:
    """The hand-written loop: read a partition's records in batches, fold into a dict, upsert per batch."""
    db = sqlite3.connect(log_path)
    rows: dict[str, dict[str, Any]] = {}
    loads, dumps = orjson.loads, orjson.dumps
    batch_s = []
    done = 0
    started = time.perf_counter()
    for partition in range(3):
        position = 0
        while True:
            t0 = time.perf_counter()
            records = db.execute(
                "SELECT offset, value FROM records WHERE topic_id = (SELECT id FROM topics WHERE name = 'deposits')"
                " AND partition = ? AND offset >= ? ORDER BY offset LIMIT ?",
                (partition, position, BATCH),
            ).fetchall()
            if not records:
                break
            changed: dict[str, str] = {}
            for _, value in records:
                data = loads(value)["data"]
                row = rows.get(data["account"]) or {"owner": data["owner"], "balance": 0, "count": 0}
                row["balance"] += data["amount"]
                row["count"] += 1
                rows[data["account"]] = row
                changed[data["account"]] = dumps(row).decode()
            position = records[-1][0] + 1
            upsert(changed, partition * 10**9 + position)
            done += len(records)
            batch_s.append(time.perf_counter() - t0)
    db.close()
    return {"elapsed_s": time.perf_counter() - started, "events": done, "batch_s": batch_s}


def sqlite_upsert(path: Path) -> Callable[[dict[str, str], int], None]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE rows (key TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID")
    db.execute("CREATE TABLE checkpoint (id INTEGER PRIMARY KEY, position INTEGER)")

    def upsert(changed: dict[str, str], position: int) -> None:
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO rows VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET doc = excluded.doc", changed.items()
        )
        db.execute("INSERT OR REPLACE INTO checkpoint VALUES (1, ?)", (position,))
        db.execute("COMMIT")

    return upsert


def postgres_upsert(url: str) -> Callable[[dict[str, str], int], None]:
    import psycopg

    db = psycopg.connect(url)
    with db.transaction():
        db.execute("CREATE TABLE rows (key TEXT PRIMARY KEY, doc JSONB NOT NULL)")
        db.execute("CREATE TABLE checkpoint (id INTEGER PRIMARY KEY, position BIGINT)")

    def upsert(changed: dict[str, str], position: int) -> None:
        with db.transaction():
            db.execute(
                "INSERT INTO rows SELECT k, d::jsonb FROM unnest(%s::text[], %s::text[]) AS u(k, d)"
                " ON CONFLICT (key) DO UPDATE SET doc = excluded.doc",
                (list(changed), list(changed.values())),
            )
            db.execute(
                "INSERT INTO checkpoint VALUES (1, %s) ON CONFLICT (id) DO UPDATE SET position = %s",
                (position, position),
            )

    return upsert


def line(name: str, result: dict[str, Any]) -> str:
    rate = result["events"] / result["elapsed_s"]
    text = f"{name:<34} {rate:>10,.0f} events/s  {result['elapsed_s']:>6.2f} s"
    if result["batch_s"]:
        ordered = sorted(result["batch_s"])
        text += (
            f"  batch p50 {1000 * ordered[len(ordered) // 2]:.1f} ms"
            f"  p99 {1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]:.1f} ms"
        )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    print(f"projection fold: {args.events:,} events over {ACCOUNTS:,} accounts, 3 partitions, batch {BATCH}")
    print(
        f"on: Python {platform.python_version()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"SQLite {sqlite3.sqlite_version}, {platform.platform()}"
    )
    with tempfile.TemporaryDirectory() as tmp, postgres_server() as pg:
        log_path = Path(tmp) / "log.db"
        log = fill_log(log_path, args.events)
        best: dict[str, dict[str, Any]] = {}
        targets = [("sqlite", None)] + ([] if args.no_postgres else [("postgres", pg)])
        for run in range(args.repeat):
            for kind, server in targets:
                store_url = f"sqlite:///{tmp}/store-{run}.db" if server is None else fresh_database(server)
                results = {
                    f"eventbus on {kind}": run_eventbus(log, store_url),
                    f"hand-written loop on {kind}": baseline(
                        log_path,
                        sqlite_upsert(Path(tmp) / f"base-{run}.db")
                        if server is None
                        else postgres_upsert(fresh_database(server)),
                        args.events,
                    ),
                }
                for name, result in results.items():
                    print(f"  run {run + 1}: {line(name, result)}")
                    if name not in best or result["elapsed_s"] < best[name]["elapsed_s"]:
                        best[name] = result
        print("best of each:")
        for name, result in best.items():
            print("  " + line(name, result))
        for kind, target in (("sqlite", 100_000), ("postgres", 30_000)):
            if f"eventbus on {kind}" in best:
                ours = best[f"eventbus on {kind}"]
                theirs = best[f"hand-written loop on {kind}"]
                print(
                    f"{kind}: eventbus {ours['events'] / ours['elapsed_s']:,.0f} events/s = "
                    f"{theirs['elapsed_s'] / ours['elapsed_s']:.2f}x the hand-written loop (target >= {target:,})"
                )
        log.close()


if __name__ == "__main__":
    main()
