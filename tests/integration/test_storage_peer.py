"""The PostgreSQL test peer itself, and a full server restart under a running Database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_twisted

from tests.peers.postgres import PostgresServer
from transport.storage.database import open_postgresql

pytestmark = pytest.mark.integration


def test_missing_binary_is_an_error_not_a_skip(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="PostgreSQL is not installed"):
        PostgresServer(bindir=tmp_path)


@pytest_twisted.inlineCallbacks
def test_server_restart_and_cleanup() -> Any:
    server = PostgresServer()
    server.start()
    try:
        assert server.process is not None
        pid = server.process.pid
        name = server.create_database()
        db = open_postgresql(server.conninfo(name), pool_size=2)
        db.start()
        try:
            yield db.run_operation("CREATE TABLE t (x INTEGER)")
            yield db.run_operation("INSERT INTO t (x) VALUES (?)", (1,))
            server.stop()
            with pytest.raises(psycopg.OperationalError):  # down: fails, does not hang
                yield db.run_query("SELECT x FROM t")
            server.restart()
            rows = yield db.run_query("SELECT x FROM t")  # back: reconnects by itself
            assert rows == [(1,)]
            yield db.run_operation("INSERT INTO t (x) VALUES (?)", (2,))
            rows = yield db.run_query("SELECT x FROM t ORDER BY x")
            assert rows == [(1,), (2,)]
        finally:
            yield db.close()
    finally:
        server.cleanup()
    assert server.process is None and not server.root.exists()
    assert pid > 0 and _processes_mentioning(str(server.root)) == []


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(cmdline.parent.name)
        except OSError:  # the process ended meanwhile
            pass
    return found
