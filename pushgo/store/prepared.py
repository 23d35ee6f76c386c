"""Hot statements run straight on the database driver: a SQLAlchemy Core statement compiled
once per dialect (and set of inserted columns), then executed with the driver's own cursor.

Why: every send runs five or six small statements. Through ``Connection.execute`` each cost
~20–40 µs of SQLAlchemy (execution context, cache key, parameter processing, result object)
around ~2–5 µs of SQLite; on a stream of sends that was most of the store's time. The
statements stay written in Core (the schema is the one source of names and types), the SQL is
what SQLAlchemy compiles for the connection's dialect, and the connection and its transaction
are SQLAlchemy's — only the per-call machinery is skipped.

Only for statements whose parameters need no bind processing (strings, integers, None: checked
when a statement is compiled) and no expanding ``IN``. Results are plain tuples (``one``,
``first``) or a row count (``rowcount``); driver errors come out as SQLAlchemy's (an
``IntegrityError`` is an ``IntegrityError``), as from ``Connection.execute``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement


class _Compiled:
    __slots__ = ("defaults", "names", "sql")

    def __init__(self, sql: str, names: tuple[str, ...] | None, defaults: dict[str, Any]) -> None:
        self.sql = sql
        self.names = names  # positional order (qmark/format); None: named (pyformat)
        self.defaults = defaults  # literal values compiled as parameters ('queued', 0, …)


class Prepared:
    """A Core statement run on the driver connection of a SQLAlchemy ``Connection``.
    ``insert=True``: an INSERT whose columns are the keys of each call's parameters (compiled
    once per set of keys), so server defaults apply to the columns left out."""

    def __init__(self, statement: ClauseElement, *, insert: bool = False) -> None:
        self.statement = statement
        self.insert = insert
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    def _compile(self, dialect: Dialect, columns: tuple[str, ...]) -> _Compiled:
        compiled = cast(SQLCompiler, self.statement.compile(
            dialect=dialect, column_keys=list(columns) if self.insert else None))
        if compiled._bind_processors:  # the check that makes skipping SQLAlchemy safe
            raise TypeError(f"statement needs bind processing: {compiled.string[:80]}")
        if "POSTCOMPILE" in compiled.string:
            raise TypeError("expanding parameters are not supported")
        defaults = {k: v for k, v in (compiled.construct_params(_check=False) or {}).items()
                    if v is not None}
        names = tuple(compiled.positiontup) if compiled.positiontup is not None else None
        if names is None and dialect.paramstyle not in ("pyformat", "named"):
            raise TypeError(f"unsupported paramstyle {dialect.paramstyle}")
        found = self._compiled[dialect.name, columns] = _Compiled(compiled.string, names,
                                                                  defaults)
        return found

    def _execute(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        dialect = conn.dialect
        columns = tuple(params) if self.insert else ()
        compiled = self._compiled.get((dialect.name, columns)) or self._compile(dialect, columns)
        values: Mapping[str, Any] = {**compiled.defaults, **params} if compiled.defaults \
            else params
        driver = conn.connection.driver_connection
        assert driver is not None
        cursor = driver.cursor()
        args: Any = tuple([values[n] for n in compiled.names]) \
            if compiled.names is not None else values
        try:
            cursor.execute(compiled.sql, args)
        except dialect.loaded_dbapi.Error as exc:
            cursor.close()
            # As Connection.execute would raise it: IntegrityError, OperationalError, … (callers
            # catch SQLAlchemy's classes), the connection invalidated if it is gone.
            lost = dialect.is_disconnect(exc, driver, None)
            if lost:
                conn.invalidate(exc)
            raise DBAPIError.instance(compiled.sql, args, exc, dialect.loaded_dbapi.Error,
                                      connection_invalidated=lost, dialect=dialect) from exc
        return cursor

    def rowcount(self, conn: Connection, params: Mapping[str, Any]) -> int:
        cursor = self._execute(conn, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        cursor = self._execute(conn, params)
        try:
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def first(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        cursor = self._execute(conn, params)
        try:
            row = cursor.fetchone()
            return tuple(row) if row is not None else None
        finally:
            cursor.close()

    def one(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, ...]:
        row = self.first(conn, params)
        if row is None:
            raise LookupError("statement returned no row")
        return row
