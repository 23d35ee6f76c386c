"""The store's engine and executor: every store operation is a plain function of a SQLAlchemy
``Connection`` that runs in a bounded worker-thread pool, unchanged on Trio and asyncio.

Owns: engine creation for SQLite (file, WAL) and PostgreSQL (psycopg 3), the limiter sized to
the connection pool, write vs read transactions, the schema migration at start.
Must not import: anyio-free callers only ever see ``Store.run``; nothing here imports
pushgo.service, pushgo.api or starlette.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import anyio
import anyio.to_thread
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from pushgo.errors import StoreUnavailable

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
                pool_size=pool_size,
                max_overflow=0,
                connect_args={"check_same_thread": False, "timeout": 30},
            )
            _configure_sqlite(self.engine)
            # SQLite has one writer; a small pool of readers is still useful under WAL.
            self.limiter = anyio.CapacityLimiter(pool_size)
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
            self.limiter = anyio.CapacityLimiter(pool_size)
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None

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
        except OperationalError as exc:
            raise StoreUnavailable(f"store unavailable: {type(exc.orig).__name__}") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise StoreUnavailable("store connection lost") from exc
            raise

    def _transact(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn = conn.execution_options(pushgo_write=write)
            with conn.begin():
                return fn(conn, *args)

    async def run(self, fn: Callable[..., T], *args: Any, write: bool = True) -> T:
        """Run ``fn(conn, *args)`` in a worker thread, bounded by the pool-sized limiter."""
        call = functools.partial(self.run_sync, fn, *args, write=write)
        return await anyio.to_thread.run_sync(call, limiter=self.limiter)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.run(fn, *args, write=False)

    # -- lifecycle ---------------------------------------------------------------------------

    def migrate(self) -> int:
        from pushgo.store.migrations import migrate

        return self.run_sync(migrate, self.dialect)

    async def ping(self) -> bool:
        try:
            await self.read(lambda conn: conn.exec_driver_sql("SELECT 1").scalar())
        except Exception:
            return False
        return True

    def dispose(self) -> None:
        if self.dialect == "sqlite":
            # Fold the WAL back into the main file so a copied data dir is self-contained.
            try:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            except Exception:  # noqa: S110 - best effort at shutdown
                pass
        self.engine.dispose()


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
