"""A :class:`Database` that runs each interaction at once, on the calling thread (fuzz harnesses only).

The real one hands work to a thread pool and answers through the reactor; a
fuzz input must run to completion inside one call, deterministically, so this
subclass keeps the real transaction code (``_run``: BEGIN IMMEDIATE, commit,
rollback) and only drops the thread hop. The database is SQLite ``:memory:``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet import defer

from transport.storage.database import SQLITE, Database

T = TypeVar("T")


class SyncDatabase(Database):
    def __init__(self) -> None:
        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(":memory:", isolation_level=None)
            conn.execute("PRAGMA foreign_keys=ON")
            return conn

        super().__init__(SQLITE, connect, 1, reactor=object())
        self.description = "sqlite::memory: (synchronous)"

    def start(self) -> None:
        self._started = True

    def close(self) -> defer.Deferred[None]:
        self._started = False
        for conn in self._connections:
            conn.close()
        self._connections.clear()
        self._local.conn = None
        return defer.succeed(None)

    def run_interaction(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> defer.Deferred[T]:
        if not self._started:
            return defer.fail(RuntimeError("database is not started"))
        try:
            return defer.succeed(self._run(fn, args, kwargs))
        except Exception:
            return defer.fail()


def started(db: SyncDatabase | None = None) -> SyncDatabase:
    db = db or SyncDatabase()
    db.start()
    return db


def result(d: defer.Deferred[T]) -> T:
    """The result of a Deferred that has already fired (raises its failure)."""
    out: list[Any] = []
    d.addBoth(out.append)
    if not out:
        raise AssertionError("the Deferred has not fired: something waited on the reactor")
    value = out[0]
    if hasattr(value, "raiseException"):
        value.raiseException()
    return value  # type: ignore[no-any-return]
