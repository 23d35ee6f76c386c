"""Database failures named in a few fixed words (pushgo/store/reasons.py), from the driver's
error class, SQLSTATE or SQLite result code and libpq's connection phrases — never its text."""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg
from sqlalchemy.exc import InternalError, OperationalError

from pushgo.errors import StoreUnavailable
from pushgo.store.engine import StoreDown, _unavailable
from pushgo.store.reasons import is_unavailable, reason_of

SECRET_DSN = "postgresql://pushgo:Hunter2-secret@db.internal:5432/pushgo"


def connect_error(detail: str) -> psycopg.OperationalError:
    return psycopg.OperationalError(
        f'connection failed: connection to server at "10.0.0.5", port 5432 failed: {detail}')


def sqlite_error(kind: type[sqlite3.Error], name: str, text: str) -> sqlite3.Error:
    err = kind(text)
    err.sqlite_errorname = name
    return err


@pytest.mark.parametrize(("error", "reason"), [
    (connect_error("Connection refused\n\tIs the server running on that host?"),
     "connection refused"),
    (connect_error('FATAL:  password authentication failed for user "pushgo"'),
     "authentication failed"),
    (connect_error("fe_sendauth: no password supplied"), "authentication failed"),
    (connect_error('FATAL:  database "pushgo" does not exist'), "database does not exist"),
    (connect_error('FATAL:  role "pushgo" does not exist'), "role does not exist"),
    (connect_error("timeout expired"), "timeout"),
    (psycopg.OperationalError("failed to resolve host 'db.internal': Name or service not known"),
     "host not found"),
    (connect_error("FATAL:  sorry, too many clients already"), "too many connections"),
    (connect_error("FATAL:  the database system is starting up"), "database starting up"),
    (psycopg.OperationalError("server closed the connection unexpectedly"), "connection lost"),
    (pg.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"), "read-only"),
    (pg.DiskFull("could not extend file: No space left on device"), "disk full"),
    (pg.QueryCanceled("canceling statement due to statement timeout"), "timeout"),
    (pg.InvalidPassword("password authentication failed"), "authentication failed"),
    (pg.InvalidCatalogName('database "x" does not exist'), "database does not exist"),
    (pg.AdminShutdown("terminating connection due to administrator command"),
     "database shutting down"),
    (pg.TooManyConnections("too many"), "too many connections"),
    (sqlite_error(sqlite3.OperationalError, "SQLITE_BUSY", "database is locked"),
     "database locked"),
    (sqlite_error(sqlite3.OperationalError, "SQLITE_FULL", "database or disk is full"),
     "disk full"),
    (sqlite_error(sqlite3.OperationalError, "SQLITE_READONLY_DBMOVED",
                  "attempt to write a readonly database"), "read-only"),
    (sqlite_error(sqlite3.OperationalError, "SQLITE_IOERR_WRITE", "disk I/O error"),
     "disk i/o error"),
    (sqlite_error(sqlite3.OperationalError, "SQLITE_CANTOPEN",
                  "unable to open database file"), "cannot open database file"),
    (sqlite_error(sqlite3.OperationalError, "SQLITE_INTERRUPT", "interrupted"), "timeout"),
    (sqlite3.OperationalError("database is locked"), "database locked"),
    (TimeoutError(), "timeout"),
])
def test_each_failure_is_named_by_a_short_fixed_reason(error: BaseException, reason: str):
    assert reason_of(error) == reason
    assert is_unavailable(reason)


def test_an_unknown_error_is_named_by_its_class_only():
    err = psycopg.ProgrammingError(f"weird failure near {SECRET_DSN}")
    assert reason_of(err) == "database error (ProgrammingError)"
    assert not is_unavailable(reason_of(err))


@pytest.mark.parametrize("text", [
    f"connection to {SECRET_DSN} failed: Connection refused",
    f'password authentication failed for user "pushgo" ({SECRET_DSN})',
    f"unexpected failure at {SECRET_DSN}",
])
def test_a_reason_never_carries_the_drivers_text(text: str):
    reason = reason_of(psycopg.OperationalError(text))
    assert "Hunter2" not in reason and "db.internal" not in reason and "pushgo" not in reason


def wrapped(kind: Any, orig: BaseException) -> Any:
    return kind("SELECT 1", {}, orig)


def test_sqlalchemy_errors_become_a_503_naming_the_reason():
    down = _unavailable(wrapped(OperationalError, connect_error("Connection refused")))
    assert isinstance(down, StoreDown) and isinstance(down, StoreUnavailable)
    assert (down.status, down.code) == (503, "store_unavailable")
    assert down.message == "store unavailable: connection refused"
    assert down.retry_after == 1
    # Read-only is an InternalError for the driver, yet a store that cannot serve writes now.
    read_only = _unavailable(wrapped(InternalError, pg.ReadOnlySqlTransaction("read-only")))
    assert isinstance(read_only, StoreDown) and read_only.reason == "read-only"
    # A bug stays itself (a 500 with its traceback in the log), not a 503.
    other = wrapped(InternalError, pg.InternalError_("something else"))
    assert _unavailable(other) is other
