"""One database handle for every component: SQLite or PostgreSQL, never on the reactor.

Components (the gateway core, chatd, hosts, ...) own their tables. Each declares
its schema as a list of :class:`Migration` steps under its own component name;
:meth:`Database.migrate` applies the missing steps in order, each in its own
transaction, and records the version in ``schema_versions``. A restart with a
newer release therefore upgrades the schema on start.

SQL is written once with ``?`` placeholders; the PostgreSQL driver sees ``%s``.
DDL may use ``{pk}`` (an auto-increment integer primary key), ``{blob}`` and
``{bigint}`` which :class:`Dialect` fills in for each engine.

All work runs in a thread pool (one thread for SQLite - a single writer in WAL
mode is both correct and fastest there; ``pool_size`` threads, one connection
each, for PostgreSQL) and comes back as a Deferred. A PostgreSQL connection
that was lost (server restarted, backend terminated) is replaced and the
interaction retried once when the failure happened before the commit; a failure
during the commit itself is reported, never retried (it may have been applied).

Every interaction is one transaction on both engines: SQLite connections run in
autocommit mode and each interaction is wrapped in an explicit ``BEGIN IMMEDIATE``
... ``COMMIT``, so that migrations' DDL is transactional too and several
processes sharing one file (the gateway and an admin command) serialize their
writes instead of failing.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorCore, IReactorThreads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

log = Logger()
T = TypeVar("T")


@dataclass(frozen=True)
class Dialect:
    """The few places where SQLite and PostgreSQL SQL differ."""

    name: str
    pk: str
    blob: str
    bigint: str
    placeholder: str
    explicit_begin: bool = False

    def ddl(self, statement: str) -> str:
        return statement.format(pk=self.pk, blob=self.blob, bigint=self.bigint)


SQLITE = Dialect("sqlite", "INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB", "INTEGER", "?", explicit_begin=True)
POSTGRESQL = Dialect("postgresql", "BIGSERIAL PRIMARY KEY", "BYTEA", "BIGINT", "%s")


@dataclass(frozen=True)
class Migration:
    """Step *version* of *component*'s schema: DDL/DML statements, or a callable."""

    component: str
    version: int
    statements: Sequence[str] = ()
    apply: Callable[[Transaction], None] | None = None


class Transaction(Protocol):
    """What an interaction function receives (a thin DB-API cursor)."""

    dialect: Dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def fetchone(self) -> tuple[Any, ...] | None: ...
    def fetchall(self) -> list[tuple[Any, ...]]: ...
    @property
    def rowcount(self) -> int: ...


class _Cursor:
    """Adapts a DB-API cursor: ``?`` placeholders for both engines."""

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self._cursor = cursor
        self.dialect = dialect

    def _sql(self, sql: str) -> str:
        if self.dialect.placeholder == "?":
            return sql
        return sql.replace("%", "%%").replace("?", "%s")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(self._sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cursor.executemany(self._sql(sql), [tuple(r) for r in rows])

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._cursor.fetchall()]

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)


class Database:
    """A pool of connections to one database, used from the reactor thread.

    Create with :func:`open_sqlite` or :func:`open_postgresql`, call
    :meth:`start`, then :meth:`migrate` with each component's migrations.
    """

    def __init__(self, dialect: Dialect, connect: Callable[[], Any], threads_: int,
                 reactor: Any = None, retry_errors: tuple[type[BaseException], ...] = ()) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self.dialect = dialect
        self._connect = connect
        self._reactor: IReactorThreads = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=threads_, name=f"db-{dialect.name}")
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        self._retry_errors = retry_errors
        self._started = False
        self._migrate_lock = defer.DeferredLock()
        self.description = dialect.name

    # life cycle -------------------------------------------------------------

    def start(self) -> None:
        if not self._started:
            self._pool.start()
            self._started = True

    def close(self) -> defer.Deferred[None]:
        """Close every connection and stop the threads (waits for running work)."""
        if not self._started:
            return defer.succeed(None)
        self._started = False

        def stop() -> None:
            self._pool.stop()
            with self._lock:
                for conn in self._connections:
                    try:
                        conn.close()
                    except Exception:  # closing a dead connection may fail; nothing to do
                        pass
                self._connections.clear()

        # ThreadPool.stop joins the workers: do it in a throwaway thread.
        return threads.deferToThread(stop)

    # work ------------------------------------------------------------------------

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._lock:
                if conn in self._connections:
                    self._connections.remove(conn)
            try:
                conn.close()
            except Exception:  # already broken
                pass

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        for attempt in (1, 2):
            try:
                conn = self._connection()
            except self._retry_errors:
                if attempt == 2:
                    raise
                continue
            cursor = conn.cursor()
            try:
                if self.dialect.explicit_begin:
                    # IMMEDIATE: take the write lock up front, so that another process
                    # writing the same file makes us wait (busy timeout) instead of
                    # failing a read-then-write transaction with SQLITE_BUSY.
                    cursor.execute("BEGIN IMMEDIATE")
                result = fn(_Cursor(cursor, self.dialect), *args, **kwargs)
            except self._retry_errors as exc:
                # Nothing was committed: the server rolls back a transaction whose
                # connection died, so running the interaction again is safe.
                self._rollback_or_drop(conn, force_drop=self._is_broken(conn))
                if attempt == 2:
                    raise
                log.warn("database connection lost ({error}); reconnecting and retrying once", error=exc)
                continue
            except BaseException:
                self._rollback_or_drop(conn)
                raise
            finally:
                try:
                    cursor.close()
                except Exception:  # a dead connection's cursor
                    pass
            try:
                conn.commit()
            except BaseException:
                # The commit may or may not have been applied: never retried.
                self._rollback_or_drop(conn, force_drop=self._is_broken(conn))
                raise
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _is_broken(conn: Any) -> bool:
        return bool(getattr(conn, "broken", False) or getattr(conn, "closed", False))

    def _rollback_or_drop(self, conn: Any, force_drop: bool = False) -> None:
        if not force_drop:
            try:
                conn.rollback()
                return
            except Exception:  # the connection is unusable: replace it
                pass
        self._drop_connection()

    def run_interaction(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> defer.Deferred[T]:
        """Run ``fn(txn, *args, **kwargs)`` in one transaction, in a pool thread.

        An exception rolls the transaction back and fails the Deferred. After a
        lost PostgreSQL connection *fn* runs a second time on a new connection,
        so it should touch nothing but *txn*.
        """
        if not self._started:
            return defer.fail(RuntimeError("database is not started"))
        return threads.deferToThreadPool(self._reactor, self._pool, self._run, fn, args, kwargs)  # type: ignore[arg-type]

    def run_query(self, sql: str, params: Sequence[Any] = ()) -> defer.Deferred[list[tuple[Any, ...]]]:
        """Run one SELECT; the rows as tuples."""
        def query(txn: Transaction) -> list[tuple[Any, ...]]:
            txn.execute(sql, params)
            return txn.fetchall()
        return self.run_interaction(query)

    def run_operation(self, sql: str, params: Sequence[Any] = ()) -> defer.Deferred[int]:
        """Run one INSERT/UPDATE/DELETE; the number of rows it touched."""
        def operation(txn: Transaction) -> int:
            txn.execute(sql, params)
            return txn.rowcount
        return self.run_interaction(operation)

    # schema -----------------------------------------------------------------------

    def migrate(self, migrations: Sequence[Migration]) -> defer.Deferred[dict[str, int]]:
        """Apply the missing *migrations* in one transaction; the resulting version per component.

        Migrations of different components started at the same time run one after
        the other (and, on PostgreSQL, under an advisory lock against other processes).
        """
        steps = list(migrations)
        return self._migrate_lock.run(self.run_interaction, self._migrate, steps)

    def schema_versions(self) -> defer.Deferred[dict[str, int]]:
        """The recorded schema version of every component (empty before any migration)."""
        def read(txn: Transaction) -> dict[str, int]:
            self._ensure_versions_table(txn)
            txn.execute("SELECT component, version FROM schema_versions")
            return {c: int(v) for c, v in txn.fetchall()}
        return self._migrate_lock.run(self.run_interaction, read)

    def _ensure_versions_table(self, txn: Transaction) -> None:
        if self.dialect.name == "postgresql":
            # Serializes concurrent migrations from several processes (and the racy
            # CREATE TABLE IF NOT EXISTS in the catalog); released at commit.
            txn.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK_ID,))
        txn.execute("CREATE TABLE IF NOT EXISTS schema_versions (component VARCHAR(64) PRIMARY KEY, "
                    "version INTEGER NOT NULL)")

    def _migrate(self, txn: Transaction, migrations: list[Migration]) -> dict[str, int]:
        self._ensure_versions_table(txn)
        txn.execute("SELECT component, version FROM schema_versions")
        versions = {c: int(v) for c, v in txn.fetchall()}
        for step in sorted(migrations, key=lambda m: (m.component, m.version)):
            current = versions.get(step.component, 0)
            if step.version <= current:
                continue
            if step.version != current + 1:
                raise RuntimeError(f"migration {step.component} v{step.version} follows v{current}: a step is missing")
            for statement in step.statements:
                txn.execute(self.dialect.ddl(statement))
            if step.apply is not None:
                step.apply(txn)
            if current == 0:
                txn.execute("INSERT INTO schema_versions (component, version) VALUES (?, ?)",
                            (step.component, step.version))
            else:
                txn.execute("UPDATE schema_versions SET version = ? WHERE component = ?",
                            (step.version, step.component))
            versions[step.component] = step.version
            log.info("schema {component} migrated to v{version}", component=step.component, version=step.version)
        return versions


_MIGRATION_LOCK_ID = 0x7472616E73  # "trans": an arbitrary, fixed advisory lock key


def open_sqlite(path: str | Path, reactor: IReactorCore | None = None) -> Database:
    """A SQLite database in one file (WAL mode), or ``:memory:``."""
    target = str(path)
    if target != ":memory:":
        Path(target).parent.mkdir(parents=True, exist_ok=True)

    def connect() -> sqlite3.Connection:
        if target != ":memory:":
            # The file holds legacy passwords: readable by the service's user only
            # (SQLite gives the -wal and -shm files the mode of the database file).
            os.close(os.open(target, os.O_RDWR | os.O_CREAT, 0o600))
        # isolation_level=None: the driver does not open transactions by itself;
        # Database._run wraps each interaction in BEGIN ... COMMIT.
        conn = sqlite3.connect(target, check_same_thread=False, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    db = Database(SQLITE, connect, 1, reactor)
    db.description = f"sqlite:{target}"
    return db


def open_postgresql(conninfo: str, pool_size: int = 4, reactor: IReactorCore | None = None) -> Database:
    """A PostgreSQL database through psycopg 3, *pool_size* connections."""
    import psycopg

    def connect() -> Any:
        return psycopg.connect(conninfo, connect_timeout=10)

    db = Database(POSTGRESQL, connect, pool_size, reactor,
                  retry_errors=(psycopg.OperationalError, psycopg.InterfaceError))
    db.description = "postgresql"
    return db


def open_from_config(config: Any, reactor: IReactorCore | None = None) -> Database:
    """The database the ``[database]`` section describes."""
    section = config["database"]
    if section["type"] in ("sqlite3", "sqlite"):
        name = section["database"]
        path = name if name == ":memory:" else config.resolve_path(name, config.state_dir)
        return open_sqlite(path, reactor)
    return open_postgresql(postgresql_conninfo(section), section["pool_size"], reactor)


def postgresql_conninfo(section: Any) -> str:
    """The libpq conninfo for a ``[database]`` section of type postgresql.

    ``database`` is a database name (then ``server``, ``port``, ``user`` and
    ``password`` apply) or already a full conninfo (``key=value ...``) / URI
    (``postgresql://...``), used as it is.
    """
    from psycopg.conninfo import make_conninfo

    name = str(section["database"])
    if "=" in name or "://" in name:
        return name
    params: dict[str, Any] = {"dbname": name}
    for key, opt in (("server", "host"), ("port", "port"), ("user", "user"), ("password", "password")):
        if section[key]:
            params[opt] = section[key]
    return make_conninfo(**params)
