"""A private PostgreSQL 15 server for the test suite, and a ``database`` fixture on both engines.

Fixtures (registered through ``tests/peers/fixtures.py``):

``postgresql_server`` (session scope)
    Starts ``postgres`` from the Debian package (``/usr/lib/postgresql/15/bin``, or
    ``$TRANSPORT_PG_BINDIR``) in a fresh temporary data directory, listening on
    127.0.0.1 and a free port, with its UNIX socket inside the temporary directory and
    ``fsync=off``. When the tests run as root the server runs as the ``postgres`` OS user
    (``initdb`` refuses root). Authentication is ``trust`` for the superuser
    ``postgres``. Yields a :class:`PostgresServer`:

    - ``conninfo(dbname="postgres")`` - a libpq conninfo string for one database;
    - ``create_database(name=None)`` - creates an empty database (a fresh unique name
      when *name* is None) and returns its name;
    - ``drop_database(name)``;
    - ``terminate_connections(dbname)`` - ``pg_terminate_backend`` on every other
      connection to *dbname* (simulates a lost connection); returns how many;
    - ``execute(sql, dbname="postgres")`` - one statement in autocommit as superuser;
    - ``restart()`` - stop and start again on the same port (for a private instance:
      other tests share the session server).

    The server is stopped and the directory removed at the end of the session; the
    server also gets SIGINT when the pytest process dies (parent-death signal).
    A missing PostgreSQL binary is a test failure, never a skip.

``database`` (function scope, parametrized ``sqlite`` / ``postgresql``)
    A started :class:`transport.storage.database.Database` on a fresh, empty database:
    a SQLite file in ``tmp_path``, or a new PostgreSQL database per test. Closed (and the
    PostgreSQL database dropped) afterwards. Use it to run a component's storage tests
    on both engines::

        @pytest_twisted.inlineCallbacks
        def test_something(database):
            yield database.migrate(MIGRATIONS)

``database_engine`` (function scope)
    The engine name (``"sqlite"`` or ``"postgresql"``) of the current ``database``
    parameter, for the rare test that needs to know.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from transport.storage.database import Database, open_postgresql, open_sqlite

__all__ = ["PostgresServer", "postgresql_server", "database", "database_engine"]

PG_BINDIR = Path(os.environ.get("TRANSPORT_PG_BINDIR", "/usr/lib/postgresql/15/bin"))
START_TIMEOUT = 60.0
SUPERUSER = "postgres"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One private PostgreSQL server process (see the module docstring)."""

    def __init__(self, bindir: Path = PG_BINDIR) -> None:
        for program in ("initdb", "postgres"):
            if not (bindir / program).exists():
                raise RuntimeError(f"PostgreSQL is not installed: {bindir / program} is missing "
                                   "(Debian package postgresql-15; see scripts/install-test-deps)")
        self.bindir = bindir
        self.host = "127.0.0.1"
        self.port = 0
        self.user = SUPERUSER
        self.root = Path(tempfile.mkdtemp(prefix="transport-pg-"))
        self.datadir = self.root / "data"
        self.sockdir = self.root / "sock"
        self.logfile = self.root / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._counter = itertools.count(1)
        self._as_root = os.geteuid() == 0

    # process management -------------------------------------------------------------

    def _prefix(self) -> list[str]:
        """Run as the ``postgres`` OS user when we are root, dying with our process."""
        if self._as_root:
            return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                    "--pdeathsig=SIGINT", "--"]
        return []

    def _chown(self, path: Path) -> None:
        if self._as_root:
            shutil.chown(path, "postgres", "postgres")

    def start(self) -> None:
        self.sockdir.mkdir()
        for path in (self.root, self.sockdir):
            self._chown(path)
        initdb = subprocess.run(
            self._prefix() + [str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", SUPERUSER,
                              "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.root, check=False)
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed ({initdb.returncode}):\n{initdb.stdout.decode(errors='replace')}")
        last_error = ""
        for _attempt in range(5):  # the free port may be taken between probe and bind
            self.port = _free_port()
            try:
                self._spawn()
                return
            except RuntimeError as exc:
                last_error = str(exc)
        raise RuntimeError(f"PostgreSQL did not start: {last_error}")

    def _spawn(self) -> None:
        log = open(self.logfile, "ab")
        try:
            self.process = subprocess.Popen(
                self._prefix() + [
                    str(self.bindir / "postgres"), "-D", str(self.datadir),
                    "-c", f"listen_addresses={self.host}", "-c", f"port={self.port}",
                    "-c", f"unix_socket_directories={self.sockdir}",
                    "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                    "-c", "max_connections=200", "-c", "shared_buffers=32MB",
                    "-c", "logging_collector=off", "-c", "log_min_messages=warning"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        finally:
            log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        import psycopg

        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                psycopg.connect(self.conninfo(), connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"postgres not ready after {START_TIMEOUT:.0f} s:\n{self.log_tail()}") from exc
                time.sleep(0.05)  # start-up polling in a fixture, outside the reactor

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Fast shutdown (SIGINT), SIGKILL after 20 s."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def restart(self) -> None:
        """Stop the server (fast shutdown: clients are disconnected) and start it again on the same port."""
        self.stop()
        self._spawn()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # helpers ----------------------------------------------------------------------------

    def conninfo(self, dbname: str = "postgres") -> str:
        """libpq conninfo for *dbname* on this server (TCP on 127.0.0.1)."""
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def execute(self, sql: str, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement as the superuser in autocommit; the rows, if any."""
        import psycopg

        with psycopg.connect(self.conninfo(dbname), autocommit=True, connect_timeout=10) as conn:
            cur = conn.execute(sql)
            return list(cur.fetchall()) if cur.description else []

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database; its name."""
        if name is None:
            name = f"test_{os.getpid()}_{next(self._counter)}"
        self.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\'')
        return name

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def terminate_connections(self, dbname: str) -> int:
        """Kill every other server process connected to *dbname*; how many were killed."""
        rows = self.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{dbname}' AND pid <> pg_backend_pid()")
        return sum(1 for (ok,) in rows if ok)


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL 15 server for the whole test session (see module docstring)."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_engine(request: pytest.FixtureRequest) -> str:
    """The engine of the ``database`` fixture: ``"sqlite"`` or ``"postgresql"``."""
    return str(request.param)


@pytest.fixture
def database(request: pytest.FixtureRequest, database_engine: str, tmp_path: Path) -> Iterator[Database]:
    """A started Database on a fresh empty database, on SQLite and on PostgreSQL."""
    dbname = None
    server: PostgresServer | None = None
    if database_engine == "sqlite":
        db = open_sqlite(tmp_path / "test.sqlite3")
    else:
        server = request.getfixturevalue("postgresql_server")
        dbname = server.create_database()
        db = open_postgresql(server.conninfo(dbname), pool_size=4)
        db.description = f"postgresql:{dbname}"
    db.start()
    try:
        yield db
    finally:
        pytest_twisted.blockon(db.close())
        if server is not None and dbname is not None:
            server.drop_database(dbname)
