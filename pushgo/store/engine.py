"""The store's engine and executor: every store operation is a plain function of a SQLAlchemy
``Connection`` that runs on the store's own bounded pool of threads (``pushgo.store.threads``),
unchanged on Trio and asyncio.

Owns: engine creation for SQLite (file, WAL) and PostgreSQL (psycopg 3), the worker threads
sized to the connection pool, write vs read transactions, the schema migration at start.
Must not import: anyio-free callers only ever see ``Store.run``; nothing here imports
pushgo.service, pushgo.api or starlette.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from pushgo.errors import StoreUnavailable
from pushgo.store.threads import Batch, StoreCall, StoreThreads

P = ParamSpec("P")
T = TypeVar("T")

#: statement_timeout for PostgreSQL sessions: no single store call may hang the gateway.
STATEMENT_TIMEOUT_MS = 30_000


def normalize_url(url: str) -> tuple[str, str]:
    """Return (dialect, SQLAlchemy URL) for a PUSHGO_DB_URL value."""
    scheme, _, rest = url.partition("://")
    base = scheme.split("+", 1)[0].lower()
    if base in ("postgresql", "postgres"):
        return "postgresql", "postgresql+psycopg://" + rest
    if base == "sqlite":
        return "sqlite", "sqlite+pysqlite://" + rest
    raise ValueError(f"unsupported database URL scheme {scheme!r}")


def _sqlite_path(sa_url: str) -> str | None:
    path = sa.engine.make_url(sa_url).database
    return path if path and path != ":memory:" else None


class Store:
    """Owns the engine; ``run`` executes one store function in one transaction off the loop."""

    def __init__(self, url: str, *, pool_size: int = 8, pg_options: str | None = None) -> None:
        self.dialect, sa_url = normalize_url(url)
        self.url = url
        if self.dialect == "sqlite":
            path = _sqlite_path(sa_url)
            if path:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self.engine = sa.create_engine(
                sa_url,
                pool_size=pool_size + 1,  # the readers' threads and the writer's
                max_overflow=0,
                connect_args={"check_same_thread": False, "timeout": 30},
            )
            _configure_sqlite(self.engine)
            # SQLite has one writer; a small pool of readers is still useful under WAL.
        else:
            options = f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"
            url_obj = sa.engine.make_url(sa_url)
            # connect_args would replace an ``options`` given in the URL: carry it over.
            if "options" in url_obj.query:
                options += " " + str(url_obj.query["options"])
                sa_url = url_obj.difference_update_query(["options"]).render_as_string(
                    hide_password=False)
            if pg_options:
                options += " " + pg_options
            self.engine = sa.create_engine(
                sa_url,
                pool_size=pool_size,
                max_overflow=0,
                pool_pre_ping=True,
                connect_args={"options": options, "connect_timeout": 10},
            )
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None
        # One thread per pooled connection: a store call never waits for a connection.
        self.threads = StoreThreads(pool_size)
        # SQLite writes one transaction at a time anyway: one thread owns the writes and
        # commits those queued together in one transaction (group commit: a commit writes
        # every page it touched, and sends in a row share most of theirs).
        self.writer: StoreThreads | None = None
        self._writer_conn: Connection | None = None  # the writer thread's own
        if self.dialect == "sqlite":
            self.writer = StoreThreads(1, name="pushgo-store-writer", limit=MAX_WRITE_BATCH * 2,
                                       batch=self._write_batch, max_batch=MAX_WRITE_BATCH)

    # -- running store functions -------------------------------------------------------------

    def run_sync(self, fn: Callable[..., T], *args: Any, write: bool = True) -> T:
        """Run ``fn(conn, *args)`` in one transaction on the calling thread."""
        try:
            if self._write_lock is not None and write:
                # One writer at a time in-process: SQLite would otherwise make concurrent
                # writers wait on busy_timeout and fail on lock upgrades.
                with self._write_lock:
                    return self._transact(fn, args, write)
            return self._transact(fn, args, write)
        except DBAPIError as exc:
            raise _unavailable(exc) from exc

    def _transact(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn = conn.execution_options(pushgo_write=write)
            with conn.begin():
                return fn(conn, *args)

    async def run(self, fn: Callable[..., T], *args: Any, write: bool = True) -> T:
        """Run ``fn(conn, *args)`` in its own transaction on one of the store's threads
        (``StoreThreads``: as many as pooled connections; a cancelled caller never leaves a
        transaction half done). SQLite writes go to the writer thread, which may commit it
        together with other writes queued at the same time: each in its own savepoint, so
        one that raises is rolled back alone, and none is answered before the commit."""
        if write and self.writer is not None:
            return await self.writer.run(fn, *args)
        return await self.threads.run(self._run_job, fn, args, write)

    def _write_batch(self, batch: Batch) -> None:
        """The writer thread: ``job.fn(conn, *job.args)`` for every job of the batch (those
        queued while it runs join it), each in a savepoint, one transaction."""
        assert self._write_lock is not None
        try:
            with self._write_lock:
                conn = self._writer_connection()
                try:
                    with conn.begin():
                        _run_in_savepoints(conn, batch)
                finally:
                    if conn.invalidated or conn.in_transaction():
                        self._close_writer_connection()  # a fresh one for the next batch
        except BaseException as exc:  # nothing committed: every job fails
            for job in batch.jobs:
                if job.error is None:
                    job.result, job.error = None, exc
        for job in batch.jobs:
            if isinstance(job.error, DBAPIError):
                failure = _unavailable(job.error)
                if failure is not job.error:
                    failure.__cause__ = job.error
                    job.error = failure

    def _writer_connection(self) -> Connection:
        # The writer keeps one connection: its page cache stays warm (on a connection taken
        # from the pool in turn, another connection's commit had emptied it).
        if self._writer_conn is None:
            conn = self.engine.connect().execution_options(pushgo_write=True)
            try:
                driver = conn.connection.driver_connection  # no transaction yet: set on it
                assert driver is not None
                driver.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
                # Savepoint and statement journals in memory, not in a temporary file: a
                # batch writes each job in a savepoint (a file made that several writes
                # per job).
                driver.execute("PRAGMA temp_store=MEMORY")
            except BaseException:
                conn.close()
                raise
            self._writer_conn = conn
        return self._writer_conn

    def _close_writer_connection(self) -> None:
        conn, self._writer_conn = self._writer_conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: S110 - a broken connection is dropped anyway
                pass

    def _run_job(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        return self.run_sync(fn, *args, write=write)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.run(fn, *args, write=False)

    # -- lifecycle ---------------------------------------------------------------------------

    def migrate(self, now_ms: int | None = None) -> int:
        """Bring the schema to the latest version; ``now_ms`` (the gateway's clock) stamps it."""
        from pushgo.store.migrations import migrate

        return self.run_sync(migrate, self.dialect, now_ms)

    async def ping(self) -> bool:
        try:
            await self.read(lambda conn: conn.exec_driver_sql("SELECT 1").scalar())
        except Exception:
            return False
        return True

    def dispose(self) -> None:
        if self.writer is not None:
            self.writer.close()  # its thread is gone: its connection can be closed here
            self._close_writer_connection()
        self.threads.close()
        if self.dialect == "sqlite":
            # Fold the WAL back into the main file so a copied data dir is self-contained.
            try:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            except Exception:  # noqa: S110 - best effort at shutdown
                pass
        self.engine.dispose()


#: At most this many writes share a SQLite transaction.
MAX_WRITE_BATCH = 64
#: The SQLite writer connection's page cache (KiB; SQLite's default is 2 MiB).
WRITER_CACHE_KIB = 16 * 1024


def _unavailable(exc: DBAPIError) -> BaseException:
    """What a caller sees of a database error: StoreUnavailable when the database is
    unreachable or the connection was lost; the error itself otherwise."""
    if isinstance(exc, OperationalError):
        return StoreUnavailable(f"store unavailable: {type(exc.orig).__name__}")
    if exc.connection_invalidated:
        return StoreUnavailable("store connection lost")
    return exc


def _run_in_savepoints(conn: Connection, jobs: Iterable[StoreCall]) -> None:
    # Plain SQL savepoints on the driver connection (SQLAlchemy's nested transactions cost
    # more than the writes they wrap); a job's own begin_nested() nests inside its one.
    driver = conn.connection.driver_connection
    assert driver is not None

    def sql(statement: str) -> None:
        try:
            driver.execute(statement)
        except sqlite3.Error as exc:  # e.g. the transaction is gone: nothing will commit
            raise StoreUnavailable(f"store unavailable: {type(exc).__name__}") from exc

    for job in jobs:
        sql("SAVEPOINT pushgo_write")
        try:
            job.result = job.context.run(job.fn, conn, *job.args)
        except BaseException as exc:  # this job's failure alone
            sql("ROLLBACK TO pushgo_write")
            job.result, job.error = None, exc
        sql("RELEASE pushgo_write")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event decide how each transaction starts.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # NORMAL under WAL survives a process crash (kill -9); only an OS crash could lose
        # the last commits.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("pushgo_write", True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
