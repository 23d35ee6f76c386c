"""Devices and their one route (channel_type + provider token). Plain functions of a
Connection."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pushgo.store.schema import deliveries, devices, subscriptions


def get(conn: Connection, device_key: str) -> sa.Row[Any] | None:
    return conn.execute(sa.select(devices).where(devices.c.device_key == device_key)).first()


def create(conn: Connection, device_key: str, platform: str, now: int,
           app: str | None = None) -> None:
    conn.execute(devices.insert().values(device_key=device_key, platform=platform,
                                         channel_type="private", provider_token=None,
                                         created_at=now, updated_at=now, app=app))


def set_app(conn: Connection, device_key: str, app: str | None, now: int) -> None:
    """The app whose credentials the device's provider deliveries use (None: ``default``);
    what is queued for it goes out with the new app's."""
    conn.execute(devices.update().where(devices.c.device_key == device_key,
                                        devices.c.app.is_distinct_from(app))
                 .values(app=app, updated_at=now))


def delete(conn: Connection, device_key: str, now: int) -> None:
    """Forget a device: its subscriptions go, its pending deliveries end as failed."""
    conn.execute(subscriptions.delete().where(subscriptions.c.device_key == device_key))
    conn.execute(deliveries.update().where(
        deliveries.c.device_key == device_key, deliveries.c.state == "queued"
    ).values(state="failed", last_error="device_replaced", inbox=False, updated_at=now))
    conn.execute(deliveries.update().where(
        deliveries.c.device_key == device_key, deliveries.c.inbox.is_(True)
    ).values(inbox=False))
    conn.execute(devices.delete().where(devices.c.device_key == device_key))


def set_route(conn: Connection, device_key: str, channel_type: str, token: str | None,
              now: int) -> None:
    conn.execute(devices.update().where(devices.c.device_key == device_key)
                 .values(channel_type=channel_type, provider_token=token, updated_at=now))
    # Work not yet handed to a provider follows the device to its new route.
    conn.execute(deliveries.update().where(
        deliveries.c.device_key == device_key, deliveries.c.state == "queued",
        deliveries.c.route != channel_type,
    ).values(route=channel_type, updated_at=now))


def holders_of_token(conn: Connection, platform: str, token: str,
                     exclude: str | None = None) -> list[str]:
    q = sa.select(devices.c.device_key).where(devices.c.platform == platform,
                                              devices.c.provider_token == token)
    if exclude is not None:
        q = q.where(devices.c.device_key != exclude)
    return [r[0] for r in conn.execute(q)]


def merge_into(conn: Connection, old_key: str, new_key: str, now: int) -> None:
    """Move another identity's subscriptions and pending work to ``new_key``, then drop it."""
    existing = sa.select(subscriptions.c.channel_id).where(subscriptions.c.device_key == new_key)
    conn.execute(subscriptions.update().where(
        subscriptions.c.device_key == old_key, subscriptions.c.channel_id.not_in(existing)
    ).values(device_key=new_key))
    conn.execute(subscriptions.delete().where(subscriptions.c.device_key == old_key))
    conn.execute(deliveries.update().where(
        deliveries.c.device_key == old_key, sa.or_(deliveries.c.state == "queued",
                                                   deliveries.c.inbox.is_(True))
    ).values(device_key=new_key, updated_at=now))
    conn.execute(devices.delete().where(devices.c.device_key == old_key))


def retire_token(conn: Connection, platform: str, token: str, now: int, *,
                 device_key: str | None = None, channel_type: str | None = None) -> int:
    """A provider says this token is dead: its devices fall back to the private route.
    ``device_key``/``channel_type`` narrow it to the device (and route type) the caller means,
    so a late retire does nothing to a device that has moved on."""
    q = sa.select(devices.c.device_key).where(devices.c.platform == platform,
                                              devices.c.provider_token == token)
    if device_key is not None:
        q = q.where(devices.c.device_key == device_key)
    if channel_type is not None:
        q = q.where(devices.c.channel_type == channel_type)
    keys = [r[0] for r in conn.execute(q)]
    for key in keys:
        set_route(conn, key, "private", None, now)
    return len(keys)
