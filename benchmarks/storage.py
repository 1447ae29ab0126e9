"""Storage benchmark: GatewayStore operations per second on SQLite and PostgreSQL.

    python benchmarks/storage.py [--users 2000] [--concurrency 32]

For each engine (SQLite in a temporary file; PostgreSQL in a private server
started like the test suite's, fsync off) and with/without encryption it
measures, with *concurrency* calls in flight: registrations, get_user, buddy
upserts and get_buddies (20 buddies per user). Prints one table: operations per
second and the p50/p99 latency seen by the reactor.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twisted.internet import defer, task

from transport.storage.database import Database, open_postgresql, open_sqlite
from transport.storage.gateway import BuddyRecord, GatewayStore


async def measure(n: int, concurrency: int, op: Callable[[int], defer.Deferred[Any]]) -> tuple[float, float, float]:
    """Run op(0..n-1) with *concurrency* in flight; (ops/s, p50 ms, p99 ms)."""
    latencies: list[float] = []
    sem = defer.DeferredSemaphore(concurrency)
    gc.collect()  # leftovers of the previous step are not charged to this one

    async def one(i: int) -> None:
        await sem.acquire()
        started = time.perf_counter()
        try:
            await op(i)
        finally:
            latencies.append(time.perf_counter() - started)
            sem.release()

    began = time.perf_counter()
    await defer.gatherResults([defer.ensureDeferred(one(i)) for i in range(n)], consumeErrors=True)
    elapsed = time.perf_counter() - began
    latencies.sort()
    return n / elapsed, latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99)] * 1000


async def bench_engine(name: str, db: Database, users: int, concurrency: int, key: str) -> list[tuple[Any, ...]]:
    db.start()
    rows: list[tuple[Any, ...]] = []
    try:
        store = GatewayStore(db, key)
        await store.start()
        label = f"{name}{' +enc' if key else ''}"
        ids: list[int] = []

        async def register(i: int) -> None:
            user = await store.register_user(f"user{i}@example.org", f"legacy{i}", f"password{i}")
            ids.append(user.id)

        rows.append((label, "register_user", users, *await measure(users, concurrency,
                                                                     lambda i: defer.ensureDeferred(register(i)))))
        rnd = random.Random(1)
        rows.append((label, "get_user", users * 2, *await measure(
            users * 2, concurrency, lambda i: store.get_user(f"user{rnd.randrange(users)}@example.org"))))
        buddies = users * 20
        rows.append((label, "upsert_buddy", buddies, *await measure(
            buddies, concurrency, lambda i: store.upsert_buddy(ids[i % users], BuddyRecord(
                f"buddy{i // users}", alias=f"Buddy {i}", groups=("Friends",))))))
        rows.append((label, "get_buddies(20)", users, *await measure(
            users, concurrency, lambda i: store.get_buddies(ids[i]))))
    finally:
        await db.close()
    return rows


async def main(reactor: Any, args: argparse.Namespace) -> None:
    from tests.peers.postgres import PostgresServer

    rows: list[tuple[Any, ...]] = []
    server = PostgresServer()
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for key in ("", "benchmark key"):
                suffix = "enc" if key else "plain"
                rows += await bench_engine("sqlite", open_sqlite(Path(tmp) / f"{suffix}.sqlite3", reactor),
                                           args.users, args.concurrency, key)
                dbname = server.create_database()
                rows += await bench_engine("postgresql", open_postgresql(server.conninfo(dbname), 4, reactor),
                                           args.users, args.concurrency, key)
    finally:
        server.cleanup()
    print(f"{'engine':<18} {'operation':<16} {'n':>7} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for label, op, n, rate, p50, p99 in rows:
        print(f"{label:<18} {op:<16} {n:>7} {rate:>9.0f} {p50:>8.2f} {p99:>8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, parser.parse_args())))
