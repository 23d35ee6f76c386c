"""Live Activity tokens: each iOS device's push-to-start token, each activity's update token
and the event it shows, and the turning of an event operation's APNs deliveries into Live
Activity pushes. Plain functions of a Connection.

An event operation's fan-out writes one delivery per device as for any operation;
``route_event`` then points the APNs deliveries of devices holding a matching token at that
token (``provider_token``) with ``push_type = 'liveactivity'``: the outbox, its retries, leases
and breaker carry them like any other delivery, and the device's inbox keeps the payload.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pushgo.protocol.liveactivity import PUSH_TYPE
from pushgo.store.schema import deliveries, live_activities, live_activity_start_tokens

_START = live_activity_start_tokens
_ACT = live_activities


def _upsert(conn: Connection, table: sa.Table, keys: dict[str, str], token: str,
            now: int) -> None:
    where = [table.c[k] == v for k, v in keys.items()]
    changed = conn.execute(table.update().where(*where)
                           .values(token=token, updated_at=now)).rowcount
    if not changed:
        conn.execute(table.insert().values(**keys, token=token, created_at=now, updated_at=now))


def set_start_token(conn: Connection, device_key: str, token: str, now: int) -> None:
    _upsert(conn, _START, {"device_key": device_key}, token, now)


def clear_start_token(conn: Connection, device_key: str) -> bool:
    return bool(conn.execute(_START.delete().where(_START.c.device_key == device_key)).rowcount)


def set_activity_token(conn: Connection, device_key: str, channel_id: str, event_id: str,
                       token: str, now: int) -> None:
    _upsert(conn, _ACT, {"device_key": device_key, "channel_id": channel_id,
                         "event_id": event_id}, token, now)


def clear_activity(conn: Connection, device_key: str, channel_id: str, event_id: str) -> bool:
    return bool(conn.execute(_ACT.delete().where(
        _ACT.c.device_key == device_key, _ACT.c.channel_id == channel_id,
        _ACT.c.event_id == event_id)).rowcount)


def start_token(conn: Connection, device_key: str) -> str | None:
    return conn.execute(sa.select(_START.c.token)
                        .where(_START.c.device_key == device_key)).scalar()


def activity_token(conn: Connection, device_key: str, channel_id: str,
                   event_id: str) -> str | None:
    return conn.execute(sa.select(_ACT.c.token).where(
        _ACT.c.device_key == device_key, _ACT.c.channel_id == channel_id,
        _ACT.c.event_id == event_id)).scalar()


def route_event(conn: Connection, op_pk: int, channel_id: str, event_id: str,
                live_event: str) -> int:
    """Point this event operation's APNs deliveries at the devices' Live Activity tokens:
    ``start`` at their push-to-start token, ``update`` and ``end`` at the event's activity
    token. Devices without one keep their usual notification. On ``end`` the activities of
    the event are forgotten (the pushes carry their tokens). Returns how many deliveries."""
    d = deliveries
    if live_event == "start":
        token = (sa.select(_START.c.token).where(_START.c.device_key == d.c.device_key)
                 .scalar_subquery())
        holders = sa.select(_START.c.device_key)
    else:
        scope = (_ACT.c.channel_id == channel_id, _ACT.c.event_id == event_id)
        token = (sa.select(_ACT.c.token).where(_ACT.c.device_key == d.c.device_key, *scope)
                 .scalar_subquery())
        holders = sa.select(_ACT.c.device_key).where(*scope)
    n = conn.execute(d.update().where(
        d.c.op_pk == op_pk, d.c.route == "apns", d.c.device_key.in_(holders),
    ).values(provider_token=token, push_type=PUSH_TYPE)).rowcount
    if live_event == "end":
        conn.execute(_ACT.delete().where(_ACT.c.channel_id == channel_id,
                                         _ACT.c.event_id == event_id))
    return int(n)


def retire_token(conn: Connection, device_key: str, token: str) -> int:
    """APNs says a Live Activity token is dead (410, BadDeviceToken): that token alone goes,
    the device's route and its other tokens stay."""
    n = conn.execute(_START.delete().where(_START.c.device_key == device_key,
                                           _START.c.token == token)).rowcount
    n += conn.execute(_ACT.delete().where(_ACT.c.device_key == device_key,
                                          _ACT.c.token == token)).rowcount
    return int(n)
