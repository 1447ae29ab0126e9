"""transport.storage.database on both engines (the ``database`` fixture: SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from tests.peers.postgres import PostgresServer
from transport.storage.database import Database, Migration, Transaction, open_postgresql

pytestmark = pytest.mark.integration

V1 = Migration("widgets", 1, (
    "CREATE TABLE widgets (id {pk}, name VARCHAR(100) NOT NULL UNIQUE, weight {bigint} NOT NULL)",
))


def _fill_colour(txn: Transaction) -> None:
    txn.execute("SELECT id, weight FROM widgets")
    for wid, weight in txn.fetchall():
        txn.execute("UPDATE widgets SET colour = ? WHERE id = ?", ("heavy" if weight > 10 else "light", wid))


V2 = Migration("widgets", 2, ("ALTER TABLE widgets ADD COLUMN colour VARCHAR(20) NOT NULL DEFAULT ''",),
               apply=_fill_colour)
V3 = Migration("widgets", 3, ("CREATE TABLE widget_blobs (widget_id {bigint} NOT NULL, data {blob} NOT NULL)",))


@pytest_twisted.inlineCallbacks
def test_query_operation_and_placeholders(database: Database) -> Any:
    yield database.migrate([V1])
    count = yield database.run_operation("INSERT INTO widgets (name, weight) VALUES (?, ?)", ("50% off ✓", 2 ** 40))
    assert count == 1
    rows = yield database.run_query("SELECT name, weight FROM widgets WHERE name LIKE '50%'")
    assert rows == [("50% off ✓", 2 ** 40)]
    yield database.migrate([V1, V2, V3])
    yield database.run_operation("INSERT INTO widget_blobs (widget_id, data) VALUES (?, ?)", (1, b"\x00\xff\x01"))
    rows = yield database.run_query("SELECT data FROM widget_blobs")
    assert [bytes(r[0]) for r in rows] == [b"\x00\xff\x01"]


@pytest_twisted.inlineCallbacks
def test_interaction_is_one_transaction(database: Database) -> Any:
    yield database.migrate([V1])

    def fails_halfway(txn: Transaction) -> None:
        txn.execute("INSERT INTO widgets (name, weight) VALUES (?, ?)", ("a", 1))
        txn.execute("INSERT INTO widgets (name, weight) VALUES (?, ?)", ("a", 2))  # UNIQUE violation

    with pytest.raises(Exception):  # noqa: B017 - each engine has its own IntegrityError
        yield database.run_interaction(fails_halfway)
    rows = yield database.run_query("SELECT name FROM widgets")
    assert rows == []
    # the connection is still usable after the rollback
    yield database.run_operation("INSERT INTO widgets (name, weight) VALUES (?, ?)", ("b", 1))
    rows = yield database.run_query("SELECT name FROM widgets")
    assert rows == [("b",)]


@pytest_twisted.inlineCallbacks
def test_migrations_idempotent_and_versions_recorded(database: Database) -> Any:
    versions = yield database.schema_versions()
    assert versions == {}
    versions = yield database.migrate([V1])
    assert versions["widgets"] == 1
    again = yield database.migrate([V1])
    assert again["widgets"] == 1
    rows = yield database.run_query("SELECT component, version FROM schema_versions WHERE component = ?",
                                    ("widgets",))
    assert rows == [("widgets", 1)]


@pytest_twisted.inlineCallbacks
def test_upgrade_v1_to_v2_applies_on_start(database: Database) -> Any:
    """A database made by an older release (v1) is upgraded with its data when the new release starts."""
    yield database.migrate([V1])
    for name, weight in (("feather", 1), ("anvil", 50)):
        yield database.run_operation("INSERT INTO widgets (name, weight) VALUES (?, ?)", (name, weight))
    versions = yield database.migrate([V2, V1, V3])  # order of the list does not matter
    assert versions["widgets"] == 3
    rows = yield database.run_query("SELECT name, colour FROM widgets ORDER BY weight")
    assert rows == [("feather", "light"), ("anvil", "heavy")]
    recorded = yield database.schema_versions()
    assert recorded["widgets"] == 3


@pytest_twisted.inlineCallbacks
def test_failed_migration_leaves_nothing_behind(database: Database) -> Any:
    broken = Migration("broken", 1, ("CREATE TABLE half_done (x INTEGER)", "THIS IS NOT SQL"))
    with pytest.raises(Exception):  # noqa: B017 - the engine's syntax error
        yield database.migrate([broken])
    versions = yield database.schema_versions()
    assert "broken" not in versions
    # DDL is transactional on both engines: the first table was rolled back too
    fixed = Migration("broken", 1, ("CREATE TABLE half_done (x INTEGER)",))
    versions = yield database.migrate([fixed])
    assert versions["broken"] == 1


@pytest_twisted.inlineCallbacks
def test_missing_step_is_refused(database: Database) -> Any:
    with pytest.raises(RuntimeError, match="a step is missing"):
        yield database.migrate([V1, V3])
    versions = yield database.schema_versions()
    assert "widgets" not in versions


@pytest_twisted.inlineCallbacks
def test_concurrent_migrations_of_several_components(database: Database) -> Any:
    components = [Migration(f"part{i}", 1, (f"CREATE TABLE part{i} (x INTEGER)",)) for i in range(8)]
    results = yield defer.gatherResults([database.migrate([m]) for m in components] +
                                        [database.migrate([V1]) for _ in range(4)], consumeErrors=True)
    assert all(r["widgets"] == 1 for r in results[8:])
    versions = yield database.schema_versions()
    assert {f"part{i}" for i in range(8)} | {"widgets"} <= set(versions)


@pytest_twisted.inlineCallbacks
def test_many_interactions_at_once(database: Database) -> Any:
    yield database.migrate([V1])
    yield database.run_operation("INSERT INTO widgets (name, weight) VALUES (?, ?)", ("counter", 0))
    n = 200
    inserts = [database.run_operation("INSERT INTO widgets (name, weight) VALUES (?, ?)", (f"w{i}", i))
               for i in range(n)]
    bumps = [database.run_operation("UPDATE widgets SET weight = weight + 1 WHERE name = ?", ("counter",))
             for _ in range(n)]
    reads = [database.run_query("SELECT COUNT(*) FROM widgets") for _ in range(50)]
    done = yield defer.gatherResults(inserts + bumps, consumeErrors=True)
    assert done == [1] * (2 * n)
    counts = yield defer.gatherResults(reads, consumeErrors=True)
    assert all(1 <= c[0][0] <= n + 1 for c in counts)
    rows = yield database.run_query("SELECT weight FROM widgets WHERE name = ?", ("counter",))
    assert rows == [(n,)]
    rows = yield database.run_query("SELECT COUNT(DISTINCT id), COUNT(*) FROM widgets")
    assert rows == [(n + 1, n + 1)]


@pytest_twisted.inlineCallbacks
def test_reactor_never_blocked(database: Database) -> Any:
    """A slow interaction runs in the pool: the call returns an unfired Deferred and the reactor keeps going."""
    release = threading.Event()
    entered = threading.Event()

    def slow(txn: Transaction) -> int:
        entered.set()
        assert release.wait(30), "never released"
        txn.execute("SELECT 1")
        row = txn.fetchone()
        assert row is not None
        return int(row[0])

    d = database.run_interaction(slow)
    assert not d.called
    quick = database.run_query("SELECT 2")
    assert not quick.called
    # The reactor runs timed calls while the interaction is still blocked in its thread.
    ticks = 0
    for _ in range(3):
        yield task.deferLater(reactor, 0, lambda: None)
        ticks += 1
    assert ticks == 3 and not d.called
    release.set()
    result = yield d
    assert result == 1
    rows = yield quick
    assert rows == [(2,)]
    assert entered.is_set()


@pytest_twisted.inlineCallbacks
def test_not_started_fails() -> Any:
    from transport.storage.database import open_sqlite

    db = open_sqlite(":memory:")
    with pytest.raises(RuntimeError, match="not started"):
        yield db.run_query("SELECT 1")


@pytest_twisted.inlineCallbacks
def test_postgresql_connection_loss_reconnects(postgresql_server: PostgresServer) -> Any:
    name = postgresql_server.create_database()
    db = open_postgresql(postgresql_server.conninfo(name), pool_size=4)
    db.start()
    try:
        yield db.migrate([V1])
        # open all four pool connections
        yield defer.gatherResults([db.run_interaction(_hold_briefly) for _ in range(8)], consumeErrors=True)
        killed = postgresql_server.terminate_connections(name)
        assert killed >= 1
        rows = yield db.run_query("SELECT COUNT(*) FROM widgets")
        assert rows == [(0,)]
        # every (dead) pool connection is replaced, concurrently
        postgresql_server.terminate_connections(name)
        results = yield defer.gatherResults(
            [db.run_operation("INSERT INTO widgets (name, weight) VALUES (?, ?)", (f"x{i}", i)) for i in range(16)],
            consumeErrors=True)
        assert results == [1] * 16
        rows = yield db.run_query("SELECT COUNT(*) FROM widgets")
        assert rows == [(16,)]
    finally:
        yield db.close()
        postgresql_server.drop_database(name)


def _hold_briefly(txn: Transaction) -> None:
    txn.execute("SELECT pg_sleep(0.05)")


@pytest_twisted.inlineCallbacks
def test_postgresql_server_down_then_error(postgresql_server: PostgresServer) -> Any:
    """A database that cannot be reached fails the call (after one retry) instead of hanging."""
    import psycopg

    db = open_postgresql(postgresql_server.conninfo("no_such_database"), pool_size=1)
    db.start()
    try:
        with pytest.raises(psycopg.OperationalError):
            yield db.run_query("SELECT 1")
    finally:
        yield db.close()


@pytest_twisted.inlineCallbacks
def test_two_handles_on_one_sqlite_file(tmp_path: Any) -> Any:
    """Two handles (as the gateway and an admin command would have) read-modify-write without losing updates."""
    from transport.storage.database import open_sqlite

    path = tmp_path / "shared.sqlite3"
    first, second = open_sqlite(path), open_sqlite(path)
    first.start()
    second.start()
    try:
        yield first.migrate([V1])
        yield first.run_operation("INSERT INTO widgets (name, weight) VALUES (?, ?)", ("counter", 0))

        def bump(txn: Transaction) -> None:
            txn.execute("SELECT weight FROM widgets WHERE name = ?", ("counter",))
            row = txn.fetchone()
            assert row is not None
            time.sleep(0.002)  # in the worker thread: widens the read-then-write window
            txn.execute("UPDATE widgets SET weight = ? WHERE name = ?", (row[0] + 1, "counter"))

        yield defer.gatherResults([db.run_interaction(bump) for _ in range(40) for db in (first, second)],
                                  consumeErrors=True)
        rows = yield second.run_query("SELECT weight FROM widgets WHERE name = ?", ("counter",))
        assert rows == [(80,)]
    finally:
        yield first.close()
        yield second.close()


@pytest_twisted.inlineCallbacks
def test_sqlite_file_readable_by_owner_only(tmp_path: Any) -> Any:
    """The database holds legacy passwords: a new file (and its WAL) is mode 0600 whatever the umask."""
    import os
    import stat

    from transport.storage.database import open_sqlite

    path = tmp_path / "private.sqlite3"
    old_umask = os.umask(0o022)
    db = open_sqlite(path)
    db.start()
    try:
        yield db.migrate([V1])
        yield db.run_operation("INSERT INTO widgets (name, weight) VALUES (?, ?)", ("secret", 1))
        for name in ("private.sqlite3", "private.sqlite3-wal"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    finally:
        os.umask(old_umask)
        yield db.close()
