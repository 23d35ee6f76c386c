"""Versioned schema migrations, applied in order at start inside one transaction.

Version 1 is the schema of ``schema.py`` as first released. A later change appends a function
here (never edits an old one) and bumps nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pushgo.store.schema import (
    LIVE_ACTIVITY_TABLES,
    OAUTH_TABLES,
    api_keys,
    apps,
    audit_log,
    deliveries,
    devices,
    live_activity_keys,
    metadata,
    operations,
    provider_health,
    quota_usage,
    repeats,
    schema_info,
    webpush_keys,
)


def _add_column(conn: Connection, column: sa.Column[Any]) -> None:
    """Add ``column`` to its table unless it is there (a database made by a newer schema.py
    already has it)."""
    table = column.table
    if column.name not in {c["name"] for c in sa.inspect(conn).get_columns(table.name)}:
        extra = ""
        default = column.server_default
        if isinstance(default, sa.DefaultClause) and isinstance(default.arg, str):
            # A NOT NULL column needs its default given with it (rows already there).
            extra = f" DEFAULT '{default.arg}'" + ("" if column.nullable else " NOT NULL")
        conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} "
                             f"{column.type.compile(dialect=conn.dialect)}{extra}")


def _v1(conn: Connection, _dialect: str) -> None:
    metadata.create_all(conn)


def _v2(conn: Connection, _dialect: str) -> None:
    """Direct sends and delivery status: ``deliveries.provider_token`` and an index of
    operations by op_id (a database made by v1 of a newer schema.py already has both)."""
    _add_column(conn, deliveries.c.provider_token)
    for index in operations.indexes:
        if index.name == "ix_operations_op_id":
            index.create(conn, checkfirst=True)


def _v3(conn: Connection, _dialect: str) -> None:
    """The OAuth authorization server's tables (created by v1 on a database made with a
    schema.py that already had them)."""
    for table in OAUTH_TABLES:
        table.create(conn, checkfirst=True)


def _v4(conn: Connection, _dialect: str) -> None:
    """``provider_health``: each provider's breaker state, shared by the processes of one
    outbox (delivery status says why deliveries wait)."""
    provider_health.create(conn, checkfirst=True)


def _v5(conn: Connection, _dialect: str) -> None:
    """``deliveries.lease_owner``: which process identity holds a lease (a database made by
    v1 of a newer schema.py already has it). Leases taken before it have no owner: they run
    out as before."""
    _add_column(conn, deliveries.c.lease_owner)


def _v6(conn: Connection, _dialect: str) -> None:
    """``operations.deliver_at`` and the index of scheduled deliveries: scheduled sends (a
    database made by v1 of a newer schema.py already has both)."""
    _add_column(conn, operations.c.deliver_at)
    for index in deliveries.indexes:
        if index.name == "ix_deliveries_scheduled":
            index.create(conn, checkfirst=True)


def _v7(conn: Connection, _dialect: str) -> None:
    """Live Activities: ``deliveries.push_type`` and the tables of push-to-start and activity
    tokens (a database made by v1 of a newer schema.py already has them)."""
    _add_column(conn, deliveries.c.push_type)
    for table in LIVE_ACTIVITY_TABLES:
        table.create(conn, checkfirst=True)


def _v8(conn: Connection, _dialect: str) -> None:
    """``webpush_keys``: the gateway's VAPID key for Web Push."""
    webpush_keys.create(conn, checkfirst=True)


def _v9(conn: Connection, _dialect: str) -> None:
    """``repeats``: sends repeated until acknowledged, and their receipts (created by v1 on
    a database made with a schema.py that already had it)."""
    repeats.create(conn, checkfirst=True)


def _v10(conn: Connection, _dialect: str) -> None:
    """The PushGo iOS app's own Live Activity tokens, keyed by event (``/v1/activity/*``; a
    database made by v1 of a newer schema.py already has the table)."""
    live_activity_keys.create(conn, checkfirst=True)


def _v11(conn: Connection, _dialect: str) -> None:
    """Scoped API keys, the audit log and ``operations.sender`` (the key an operation was
    accepted under; a database made by v1 of a newer schema.py already has them)."""
    api_keys.create(conn, checkfirst=True)
    audit_log.create(conn, checkfirst=True)
    _add_column(conn, operations.c.sender)


def _v12(conn: Connection, _dialect: str) -> None:
    """Daily quota counters (``quota_usage``)."""
    quota_usage.create(conn, checkfirst=True)


def _v13(conn: Connection, _dialect: str) -> None:
    """Apps: the ``apps`` table, ``devices.app`` and ``deliveries.app`` (a direct send's)."""
    apps.create(conn, checkfirst=True)
    _add_column(conn, devices.c.app)
    _add_column(conn, deliveries.c.app)


def _v14(conn: Connection, _dialect: str) -> None:
    """``deliveries.sender`` and its index: the dispatcher's fair shares among senders (a
    database made by v1 of a newer schema.py already has both). Deliveries written before it
    count as the root key's, or as their operation's sender when it is known."""
    _add_column(conn, deliveries.c.sender)
    conn.execute(deliveries.update().where(
        deliveries.c.state.in_(("queued", "scheduled")),
    ).values(sender=sa.func.coalesce(
        sa.select(operations.c.sender).where(operations.c.op_pk == deliveries.c.op_pk)
        .scalar_subquery(), "root")))
    for index in deliveries.indexes:
        if index.name == "ix_deliveries_sender_due":
            index.create(conn, checkfirst=True)


MIGRATIONS: list[Callable[[Connection, str], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8, _v9,
                                                       _v10, _v11, _v12, _v13, _v14]
LATEST = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    pass


def current_version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table(schema_info.name):
        return 0
    return conn.execute(sa.select(schema_info.c.version).where(schema_info.c.id == 1)).scalar() or 0


def migrate(conn: Connection, dialect: str, now_ms: int | None = None) -> int:
    """Bring the schema to LATEST, stamped ``now_ms`` (wall clock when not given); returns the
    version found before."""
    if dialect == "postgresql":
        # Two processes starting at once must not both create tables.
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7215330001)")
    found = current_version(conn)
    if found > LATEST:
        raise SchemaTooNew(f"database schema version {found} is newer than this pushgo ({LATEST})")
    for version in range(found + 1, LATEST + 1):
        MIGRATIONS[version - 1](conn, dialect)
    if found != LATEST:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if found == 0:
            conn.execute(schema_info.insert().values(id=1, version=LATEST, migrated_at=now))
        else:
            conn.execute(schema_info.update().where(schema_info.c.id == 1)
                         .values(version=LATEST, migrated_at=now))
    return found
