"""The backup and restore procedures of docs/storage.md, run for real."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from tests.peers.postgres import PostgresServer
from transport.storage.database import open_postgresql, open_sqlite
from transport.storage.gateway import BuddyRecord, GatewayStore

pytestmark = pytest.mark.integration


@pytest_twisted.inlineCallbacks
def fill(store: GatewayStore, n: int) -> Any:
    for i in range(n):
        user = yield store.register_user(f"u{i}@x", f"legacy{i}", f"pw{i}")
        yield store.upsert_buddy(user.id, BuddyRecord(f"buddy{i}", groups=("g",)))


@pytest_twisted.inlineCallbacks
def test_sqlite_online_backup_with_wal(tmp_path: Path) -> Any:
    sqlite_cli = shutil.which("sqlite3")
    assert sqlite_cli, "the sqlite3 command-line shell is missing (Debian package sqlite3)"
    path = tmp_path / "state" / "transport.sqlite3"
    db = open_sqlite(path)
    db.start()
    try:
        store = GatewayStore(db, "key")
        yield store.start()
        yield fill(store, 20)
        # the gateway is running and the latest writes are in the -wal file
        assert (tmp_path / "state" / "transport.sqlite3-wal").exists()
        backup_cli = tmp_path / "backup-cli.sqlite3"
        subprocess.run([sqlite_cli, str(path), f".backup '{backup_cli}'"], check=True, timeout=60)
        backup_vacuum = tmp_path / "backup-vacuum.sqlite3"
        subprocess.run([sqlite_cli, str(path), f"VACUUM INTO '{backup_vacuum}'"], check=True, timeout=60)
        backup_py = tmp_path / "backup-py.sqlite3"
        src, dst = sqlite3.connect(path), sqlite3.connect(backup_py)
        with dst:
            src.backup(dst)
        src.close()
        dst.close()
        yield fill(store, 25)  # written after the backups: not in them
    finally:
        yield db.close()
    for backup in (backup_cli, backup_vacuum, backup_py):
        restored = open_sqlite(backup)
        restored.start()
        try:
            store = GatewayStore(restored, "key")
            yield store.start()
            users = yield store.all_users()
            assert [(u.jid, u.password) for u in users] == [(f"u{i}@x", f"pw{i}") for i in range(20)]
            assert (yield store.get_buddies(users[7].id)) == [BuddyRecord("buddy7", groups=("g",))]
        finally:
            yield restored.close()


@pytest_twisted.inlineCallbacks
def test_postgresql_dump_and_restore(postgresql_server: PostgresServer, tmp_path: Path) -> Any:
    source = postgresql_server.create_database()
    db = open_postgresql(postgresql_server.conninfo(source))
    db.start()
    try:
        store = GatewayStore(db, "key")
        yield store.start()
        yield fill(store, 20)
    finally:
        yield db.close()
    dump = tmp_path / "transport.dump"
    common = ["--host", postgresql_server.host, "--port", str(postgresql_server.port),
              "--username", postgresql_server.user]
    subprocess.run([str(postgresql_server.bindir / "pg_dump"), *common, "--format=custom", f"--file={dump}", source],
                   check=True, timeout=120)
    target = postgresql_server.create_database()
    subprocess.run([str(postgresql_server.bindir / "pg_restore"), *common, "--no-owner", f"--dbname={target}",
                    str(dump)], check=True, timeout=120)
    restored = open_postgresql(postgresql_server.conninfo(target))
    restored.start()
    try:
        store = GatewayStore(restored, "key")
        yield store.start()
        users = yield store.all_users()
        assert [(u.jid, u.password) for u in users] == [(f"u{i}@x", f"pw{i}") for i in range(20)]
        # the sequence came along: new registrations get fresh ids
        new = yield store.register_user("new@x", "n", "p")
        assert new.id > max(u.id for u in users)
    finally:
        yield restored.close()
        postgresql_server.drop_database(source)
        postgresql_server.drop_database(target)
