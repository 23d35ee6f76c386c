"""Channels and subscriptions. Plain functions of a Connection; run them through Store.run."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pushgo.store.prepared import Prepared
from pushgo.store.schema import channels, deliveries, subscriptions


class SubscriberLimitReached(Exception):
    pass


# Every send with a password reads one of these: built once, executed with a parameter.
_GET = sa.select(channels).where(channels.c.channel_id == sa.bindparam("channel_id"))
_PASSWORD_HASH = sa.select(channels.c.password_hash).where(
    channels.c.channel_id == sa.bindparam("channel_id"))


def get(conn: Connection, channel_id: str) -> sa.Row[Any] | None:
    return conn.execute(_GET, {"channel_id": channel_id}).first()


_RUN_PASSWORD_HASH = Prepared(_PASSWORD_HASH)  # on the driver: see pushgo.store.prepared


def password_hash(conn: Connection, channel_id: str) -> str | None:
    row = _RUN_PASSWORD_HASH.first(conn, {"channel_id": channel_id})
    return str(row[0]) if row is not None else None


def create(conn: Connection, channel_id: str, name: str, password_hash: str, now: int) -> None:
    conn.execute(channels.insert().values(channel_id=channel_id, channel_name=name,
                                          password_hash=password_hash, created_at=now,
                                          updated_at=now))


def rename(conn: Connection, channel_id: str, name: str, now: int) -> None:
    conn.execute(channels.update().where(channels.c.channel_id == channel_id)
                 .values(channel_name=name, updated_at=now))


def is_subscribed(conn: Connection, channel_id: str, device_key: str) -> bool:
    return conn.execute(
        sa.select(sa.literal(1)).where(subscriptions.c.channel_id == channel_id,
                                       subscriptions.c.device_key == device_key)
    ).first() is not None


def subscriber_count(conn: Connection, channel_id: str) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(subscriptions)
                        .where(subscriptions.c.channel_id == channel_id)).scalar_one()


def subscribe(conn: Connection, channel_id: str, device_key: str, now: int, limit: int) -> bool:
    """Subscribe; True if newly subscribed. Raises SubscriberLimitReached when full."""
    if is_subscribed(conn, channel_id, device_key):
        return False
    if subscriber_count(conn, channel_id) >= limit:
        raise SubscriberLimitReached(channel_id)
    conn.execute(subscriptions.insert().values(channel_id=channel_id, device_key=device_key,
                                               created_at=now))
    return True


def unsubscribe(conn: Connection, channel_id: str, device_key: str) -> bool:
    removed = conn.execute(subscriptions.delete().where(
        subscriptions.c.channel_id == channel_id, subscriptions.c.device_key == device_key
    )).rowcount > 0
    # What the device no longer wants is no longer waiting for it.
    conn.execute(deliveries.update().where(
        deliveries.c.device_key == device_key, deliveries.c.channel_id == channel_id,
        deliveries.c.inbox.is_(True),
    ).values(inbox=False))
    return removed


def subscribed_channels(conn: Connection, device_key: str) -> list[str]:
    rows = conn.execute(sa.select(subscriptions.c.channel_id)
                        .where(subscriptions.c.device_key == device_key))
    return [r[0] for r in rows]
