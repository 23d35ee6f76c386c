"""Versioned schema migrations, applied in order at start inside one transaction.

Version 1 is the schema of ``schema.py`` as first released. A later change appends a function
here (never edits an old one) and bumps nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pushgo.store.schema import metadata, schema_info


def _v1(conn: Connection, _dialect: str) -> None:
    metadata.create_all(conn)


MIGRATIONS: list[Callable[[Connection, str], None]] = [_v1]
LATEST = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    pass


def current_version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table(schema_info.name):
        return 0
    return conn.execute(sa.select(schema_info.c.version).where(schema_info.c.id == 1)).scalar() or 0


def migrate(conn: Connection, dialect: str) -> int:
    """Bring the schema to LATEST; returns the version found before."""
    if dialect == "postgresql":
        # Two processes starting at once must not both create tables.
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7215330001)")
    found = current_version(conn)
    if found > LATEST:
        raise SchemaTooNew(f"database schema version {found} is newer than this pushgo ({LATEST})")
    for version in range(found + 1, LATEST + 1):
        MIGRATIONS[version - 1](conn, dialect)
    if found != LATEST:
        now = int(time.time() * 1000)
        if found == 0:
            conn.execute(schema_info.insert().values(id=1, version=LATEST, migrated_at=now))
        else:
            conn.execute(schema_info.update().where(schema_info.c.id == 1)
                         .values(version=LATEST, migrated_at=now))
    return found
