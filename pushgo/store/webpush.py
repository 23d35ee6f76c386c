"""The Web Push application server key (VAPID): one row. Plain functions of a Connection."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from pushgo.store.schema import webpush_keys

_ROW_ID = 1


def vapid_key(conn: Connection) -> str | None:
    """The key's PEM, or None before the first start created it."""
    found: str | None = conn.execute(
        sa.select(webpush_keys.c.private_pem).where(webpush_keys.c.id == _ROW_ID)).scalar()
    return found


def create_vapid_key(conn: Connection, private_pem: str, now: int) -> str:
    """Store ``private_pem`` unless a key is there already (another process sharing the
    database made one first); the key that is stored either way."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(webpush_keys)
                 .values(id=_ROW_ID, private_pem=private_pem, created_at=now)
                 .on_conflict_do_nothing(index_elements=["id"]))
    stored = vapid_key(conn)
    assert stored is not None
    return stored
