"""The store's engine and executor: every store operation is a plain function of a SQLAlchemy
``Connection`` that runs on the store's own bounded pool of threads (``pushgo.store.threads``),
unchanged on Trio and asyncio.

Owns: engine creation for SQLite (file, WAL) and PostgreSQL (psycopg 3), the worker threads
sized to the connection pool, write vs read transactions, the schema migration at start, and
the store's deadlines: every ``run`` carries one (``PUSHGO_DB_REQUEST_TIMEOUT_MS``); past it the
caller gets StoreUnavailable("store unavailable: timeout") and the query is cancelled on its
connection (which is then dropped), so a frozen database answers 503s, not hangs.
Must not import: anyio-free callers only ever see ``Store.run``; nothing here imports
pushgo.service, pushgo.api or starlette.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import anyio
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from pushgo.errors import StoreUnavailable, codes
from pushgo.store.reasons import is_unavailable, reason_of
from pushgo.store.threads import Batch, StoreCall, StoreThreads, current_call

if TYPE_CHECKING:
    from pushgo.settings import Settings

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger("pushgo.store")

#: statement_timeout for PostgreSQL sessions (``PUSHGO_DB_STATEMENT_TIMEOUT_MS``).
STATEMENT_TIMEOUT_MS = 30_000
#: The deadline of one store call (``PUSHGO_DB_REQUEST_TIMEOUT_MS``), in seconds.
REQUEST_TIMEOUT_S = 5.0
#: libpq's connect_timeout (``PUSHGO_DB_CONNECT_TIMEOUT_S``).
CONNECT_TIMEOUT_S = 10
#: SQLite's busy_timeout (``PUSHGO_DB_BUSY_TIMEOUT_MS``).
BUSY_TIMEOUT_MS = 30_000
#: The Retry-After of a 503 for a store that cannot serve now.
RETRY_AFTER_S = 1
#: The same reason is logged at most once in this many seconds (a frozen database fails every
#: request: one line says so, not one per request).
LOG_EVERY_S = 10.0


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

    def __init__(self, url: str, *, pool_size: int = 8, pg_options: str | None = None,
                 request_timeout_s: float = REQUEST_TIMEOUT_S,
                 statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
                 connect_timeout_s: int = CONNECT_TIMEOUT_S,
                 busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.dialect, sa_url = normalize_url(url)
        self.url = url
        self.request_timeout_s = request_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._logged: dict[str, float] = {}  # reason → when it was last logged
        if self.dialect == "sqlite":
            path = _sqlite_path(sa_url)
            if path:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self.engine = sa.create_engine(
                sa_url,
                pool_size=pool_size + 2,  # the readers' threads, the writer's, the probe's
                max_overflow=0,
                connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
            )
            _configure_sqlite(self.engine, busy_timeout_ms)
            # SQLite has one writer; a small pool of readers is still useful under WAL.
        else:
            options = f"-c statement_timeout={statement_timeout_ms}"
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
                # The threads', the health probe's and the one holding the instance lock.
                pool_size=pool_size + 2,
                max_overflow=0,
                pool_pre_ping=True,
                connect_args={"options": options, "connect_timeout": connect_timeout_s},
            )
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None
        self._held_locks: list[Connection] = []  # sessions holding an advisory lock
        # One thread per pooled connection: a store call never waits for a connection.
        self.threads = StoreThreads(pool_size)
        # The health probe's own thread: a probe stuck on a frozen database holds no thread
        # of the requests', and the next probe waits behind it (and times out) instead of
        # taking another.
        self.probe = StoreThreads(1, limit=1, name="pushgo-store-probe")
        # SQLite writes one transaction at a time anyway: one thread owns the writes and
        # commits those queued together in one transaction (group commit: a commit writes
        # every page it touched, and sends in a row share most of theirs).
        self.writer: StoreThreads | None = None
        self._writer_conn: Connection | None = None  # the writer thread's own
        if self.dialect == "sqlite":
            self.writer = StoreThreads(1, name="pushgo-store-writer", limit=MAX_WRITE_BATCH * 2,
                                       batch=self._write_batch, max_batch=MAX_WRITE_BATCH)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Store:
        """A store with the deadlines of ``settings`` (the PUSHGO_DB_* timeouts)."""
        return cls(settings.db_url, request_timeout_s=settings.db_request_timeout_ms / 1000,
                   statement_timeout_ms=settings.db_statement_timeout_ms,
                   connect_timeout_s=settings.db_connect_timeout_s,
                   busy_timeout_ms=settings.db_busy_timeout_ms, **kwargs)

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
            job = current_call()  # run by StoreThreads for a caller with a deadline?
            if job is not None and not job.set_cancel(self._canceller(conn)):
                raise TimeoutError("the caller's deadline passed")
            try:
                with conn.begin():
                    result = fn(conn, *args)
                    if job is not None and job.abandoned:
                        # Its caller answered 503: roll back rather than commit behind it.
                        raise TimeoutError("the caller's deadline passed")
                    return result
            finally:
                if job is not None:
                    job.set_cancel(None)
                    if job.abandoned:  # a cancel may still be on its way: drop the connection
                        conn.invalidate()

    def _canceller(self, conn: Connection) -> Callable[[], None]:
        driver: Any = conn.connection.driver_connection
        if self.dialect == "sqlite":
            return driver.interrupt  # type: ignore[no-any-return]
        timeout = self.connect_timeout_s

        def cancel() -> None:
            driver.cancel_safe(timeout=timeout)

        return cancel

    async def run(self, fn: Callable[..., T], *args: Any, write: bool = True,
                  deadline_s: float | None = None) -> T:
        """Run ``fn(conn, *args)`` in its own transaction on one of the store's threads
        (``StoreThreads``: as many as pooled connections; a cancelled caller never leaves a
        transaction half done). SQLite writes go to the writer thread, which may commit it
        together with other writes queued at the same time: each in its own savepoint, so
        one that raises is rolled back alone, and none is answered before the commit.

        The call has a deadline, ``deadline_s`` seconds (default: the store's request timeout)
        from now, the wait for a thread included: past it StoreUnavailable (reason
        ``timeout``) is raised, and a query still running is cancelled and rolled back."""
        deadline = anyio.current_time() + (self.request_timeout_s if deadline_s is None
                                           else deadline_s)
        try:
            if write and self.writer is not None:
                return await self.writer.run(fn, *args, deadline=deadline)
            return await self.threads.run(self._run_job, fn, args, write, deadline=deadline)
        except TimeoutError as exc:
            raise self._failed("timeout", getattr(fn, "__name__", "call")) from exc
        except StoreDown as exc:
            self._log_failure(exc.reason, getattr(fn, "__name__", "call"))
            raise

    def _failed(self, reason: str, what: str) -> StoreDown:
        self._log_failure(reason, what)
        return StoreDown(reason)

    def _log_failure(self, reason: str, what: str) -> None:
        now = time.monotonic()
        if now - self._logged.get(reason, -LOG_EVERY_S) < LOG_EVERY_S:
            return
        self._logged[reason] = now
        log.warning("store unavailable", extra={"fields": {"reason": reason, "call": what}})

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

    async def health(self, deadline_s: float | None = None) -> str | None:
        """None when the database answers (and takes writes) within ``deadline_s`` (default:
        the request timeout); else the reason it does not. Runs on the probe's own thread."""
        deadline = anyio.current_time() + (self.request_timeout_s if deadline_s is None
                                           else deadline_s)
        try:
            return await self.probe.run(self._run_job, self._probe, (), False,
                                        deadline=deadline)
        except TimeoutError:
            return "timeout"
        except StoreDown as exc:
            return exc.reason
        except Exception as exc:
            return reason_of(exc)

    def _probe(self, conn: Connection) -> str | None:
        if self.dialect == "sqlite":
            conn.exec_driver_sql("SELECT 1").scalar()
            return None
        read_only = conn.exec_driver_sql("SHOW transaction_read_only").scalar()
        return "read-only" if read_only == "on" else None

    async def ping(self) -> bool:
        return await self.health() is None

    def hold_session_lock(self, key: int) -> bool:
        """PostgreSQL: take the session advisory lock ``key`` on a connection of its own and
        hold it until ``dispose`` (or until that session ends: the process died, the database
        restarted). False when another session holds it. Never waits for the lock; the
        connect and the query have the store's connect and statement timeouts."""
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            taken = bool(conn.exec_driver_sql("SELECT pg_try_advisory_lock(%(k)s)",
                                              {"k": key}).scalar())
        except BaseException:
            conn.close()
            raise
        if not taken:
            conn.close()
            return False
        self._held_locks.append(conn)
        return True

    def dispose(self) -> None:
        for conn in self._held_locks:
            try:
                conn.invalidate()  # the session ends and its locks with it
            except Exception:  # noqa: S110 - a broken connection is gone anyway
                pass
        self._held_locks.clear()
        if self.writer is not None:
            self.writer.close()  # its thread is gone: its connection can be closed here
            self._close_writer_connection()
        self.threads.close()
        self.probe.close(timeout=1.0)
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


class StoreDown(StoreUnavailable):
    """The 503 for a database that cannot serve now, naming why: ``reason`` is a fixed short
    text (see :mod:`pushgo.store.reasons`), never the driver's message."""

    def __init__(self, reason: str) -> None:
        super().__init__(codes.STORE_UNAVAILABLE, f"store unavailable: {reason}")
        self.reason = reason
        self.retry_after = RETRY_AFTER_S


def _unavailable(exc: DBAPIError) -> BaseException:
    """What a caller sees of a database error: StoreUnavailable naming the reason when the
    database is unreachable, refuses, is read-only or full, or the connection was lost; the
    error itself otherwise (a constraint, a bug)."""
    reason = reason_of(exc)
    if is_unavailable(reason) or isinstance(exc, OperationalError):
        return StoreDown(reason)
    if exc.connection_invalidated:
        return StoreDown("connection lost")
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
            raise StoreDown(reason_of(exc)) from exc

    for job in jobs:
        sql("SAVEPOINT pushgo_write")
        try:
            job.result = job.context.run(job.fn, conn, *job.args)
            if job.abandoned:  # its caller answered 503: its write is not kept
                raise TimeoutError("the caller's deadline passed")
        except BaseException as exc:  # this job's failure alone
            sql("ROLLBACK TO pushgo_write")
            job.result, job.error = None, exc
        sql("RELEASE pushgo_write")


def _configure_sqlite(engine: Engine, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
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
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("pushgo_write", True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
