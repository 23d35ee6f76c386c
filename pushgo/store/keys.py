"""Scoped API keys (pushgo.service.principal has their format). Plain functions of a
Connection; ``scopes``, ``channels`` and ``apps`` are JSON arrays (``channels``/``apps``
NULL: every one)."""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pushgo.store.schema import api_keys


class KeyRow(msgspec.Struct, frozen=True):
    key_id: str
    name: str
    secret_hash: str
    scopes: list[str]
    channels: list[str] | None
    apps: list[str] | None
    rate_per_s: float | None
    daily_notifications: int | None
    weight: int
    created_at: int
    created_by: str
    last_used_at: int | None
    revoked_at: int | None


def _array(values: list[str] | None) -> str | None:
    return None if values is None else msgspec.json.encode(sorted(set(values))).decode()


def _row(row: Any) -> KeyRow:
    m = row._mapping
    return KeyRow(
        m["key_id"], m["name"], m["secret_hash"], msgspec.json.decode(m["scopes"]),
        None if m["channels"] is None else msgspec.json.decode(m["channels"]),
        None if m["apps"] is None else msgspec.json.decode(m["apps"]),
        m["rate_per_s"], m["daily_notifications"], m["weight"], m["created_at"],
        m["created_by"], m["last_used_at"], m["revoked_at"])


def insert_key(conn: Connection, *, key_id: str, name: str, secret_hash: str,
               scopes: list[str], channels: list[str] | None = None,
               apps: list[str] | None = None, rate_per_s: float | None = None,
               daily_notifications: int | None = None, weight: int = 1, created_at: int,
               created_by: str) -> None:
    conn.execute(api_keys.insert().values(
        key_id=key_id, name=name, secret_hash=secret_hash, scopes=_array(scopes),
        channels=_array(channels), apps=_array(apps), rate_per_s=rate_per_s,
        daily_notifications=daily_notifications, weight=weight, created_at=created_at,
        created_by=created_by))


def find_key(conn: Connection, key_id: str) -> KeyRow | None:
    row = conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id)).first()
    return None if row is None else _row(row)


def list_keys(conn: Connection, *, include_revoked: bool = False) -> list[KeyRow]:
    query = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id)
    if not include_revoked:
        query = query.where(api_keys.c.revoked_at.is_(None))
    return [_row(row) for row in conn.execute(query)]


def revoke_key(conn: Connection, key_id: str, now: int) -> bool:
    """Revoke a live key; False when there is none of that id (or it was revoked before)."""
    done = conn.execute(api_keys.update()
                        .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                        .values(revoked_at=now))
    return bool(done.rowcount)


def touch_key(conn: Connection, key_id: str, now: int) -> None:
    conn.execute(api_keys.update().where(api_keys.c.key_id == key_id)
                 .values(last_used_at=now))


def weights(conn: Connection) -> dict[str, int]:
    """Each live key's weight, by key id (the dispatcher's shares)."""
    rows = conn.execute(sa.select(api_keys.c.key_id, api_keys.c.weight)
                        .where(api_keys.c.revoked_at.is_(None)))
    return {key_id: int(weight) for key_id, weight in rows}
