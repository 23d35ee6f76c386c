"""Why the database failed, in a few words: ``connection refused``, ``authentication failed``,
``database does not exist``, ``read-only``, ``timeout``, ``disk full``…

The reason goes into the 503's message, the log line and the start-up error, so it is built
only from fixed texts picked by the driver's error class, SQLSTATE or SQLite result code and
by known phrases of libpq's connection errors: never the driver's message itself, which may
carry the host, the user or (in a DSN echoed back) the password.
Pure: imports nothing from pushgo.
"""

from __future__ import annotations

#: PostgreSQL SQLSTATE codes (and classes, two characters) → reason.
_SQLSTATE = {
    "28P01": "authentication failed",
    "28000": "authentication failed",
    "3D000": "database does not exist",
    "25006": "read-only",
    "57014": "timeout",  # query_canceled: statement_timeout or a caller's deadline
    "55P03": "timeout",  # lock_not_available: lock_timeout
    "53100": "disk full",
    "53200": "out of memory",
    "53300": "too many connections",
    "57P01": "database shutting down",
    "57P02": "database shutting down",
    "57P03": "database starting up",
    "40001": "serialization failure",
    "40P01": "deadlock",
    "08": "connection lost",
    "58": "database i/o error",
}

#: Phrases of libpq's connection errors (which carry no SQLSTATE) → reason; first match wins.
_PHRASES = (
    ("password authentication failed", "authentication failed"),
    ("no password supplied", "authentication failed"),
    ("authentication failed", "authentication failed"),
    ("no pg_hba.conf entry", "authentication failed"),
    ("role \"", "role does not exist"),
    ("database \"", "database does not exist"),
    ("connection refused", "connection refused"),
    ("timeout expired", "timeout"),
    ("timed out", "timeout"),
    ("could not translate host name", "host not found"),
    ("failed to resolve host", "host not found"),
    ("name or service not known", "host not found"),
    ("no route to host", "host unreachable"),
    ("network is unreachable", "host unreachable"),
    ("the database system is starting up", "database starting up"),
    ("the database system is shutting down", "database shutting down"),
    ("too many clients", "too many connections"),
    ("remaining connection slots", "too many connections"),
    ("server closed the connection", "connection lost"),
    ("consuming input failed", "connection lost"),
    ("connection is closed", "connection lost"),
    ("connection is lost", "connection lost"),
    ("connection reset", "connection lost"),
    ("broken pipe", "connection lost"),
    ("no such file or directory", "connection refused"),  # a Unix socket with no server
    ("ssl", "tls error"),
)

#: SQLite extended result code names (``sqlite3.Error.sqlite_errorname``) → reason; the
#: primary code is the name up to its second underscore.
_SQLITE = {
    "SQLITE_BUSY": "database locked",
    "SQLITE_LOCKED": "database locked",
    "SQLITE_FULL": "disk full",
    "SQLITE_READONLY": "read-only",
    "SQLITE_CANTOPEN": "cannot open database file",
    "SQLITE_IOERR": "disk i/o error",
    "SQLITE_CORRUPT": "database corrupt",
    "SQLITE_NOTADB": "not a database",
    "SQLITE_INTERRUPT": "timeout",
    "SQLITE_PERM": "permission denied",
    "SQLITE_AUTH": "permission denied",
    "SQLITE_NOMEM": "out of memory",
}

_SQLITE_PHRASES = (
    ("database is locked", "database locked"),
    ("database or disk is full", "disk full"),
    ("readonly database", "read-only"),
    ("unable to open database", "cannot open database file"),
    ("disk i/o error", "disk i/o error"),
    ("interrupted", "timeout"),
)

#: Reasons that mean "the store cannot serve now, try again": a 503, not a 500.
UNAVAILABLE = frozenset(
    {r for r in _SQLSTATE.values() if r not in ("serialization failure", "deadlock")}
    | {r for _, r in _PHRASES} | set(_SQLITE.values()) | {"connection lost"})


def reason_of(exc: BaseException) -> str:
    """A short fixed text naming why ``exc`` (a driver error, SQLAlchemy's wrapper of one, or
    a deadline's TimeoutError) happened; ``database error (ClassName)`` when none fits."""
    orig = getattr(exc, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's error
    err: BaseException = orig if isinstance(orig, BaseException) else exc
    if isinstance(err, TimeoutError):
        return "timeout"
    sqlite_name = getattr(err, "sqlite_errorname", None)
    if isinstance(sqlite_name, str):
        primary = "_".join(sqlite_name.split("_", 2)[:2])
        if primary in _SQLITE:
            return _SQLITE[primary]
    sqlstate = getattr(err, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        found = _SQLSTATE.get(sqlstate) or _SQLSTATE.get(sqlstate[:2])
        if found:
            return found
    text = str(err).lower()
    phrases = _SQLITE_PHRASES if type(err).__module__.startswith("sqlite3") else _PHRASES
    for phrase, reason in phrases:
        if phrase in text:
            return reason
    if type(err).__name__ == "CancellationTimeout":
        return "timeout"
    return f"database error ({type(err).__name__})"


def is_unavailable(reason: str) -> bool:
    return reason in UNAVAILABLE
