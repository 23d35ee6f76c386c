"""Live Activity tokens: each iOS device's push-to-start token, each activity's update token
and the event it shows, and the turning of an event operation's APNs deliveries into Live
Activity pushes. Plain functions of a Connection.

An event operation's fan-out writes one delivery per device as for any operation;
``route_event`` then points the APNs deliveries of devices holding a matching token at that
token (``provider_token``) with ``push_type = 'liveactivity'``: the outbox, its retries, leases
and breaker carry them like any other delivery, and the device's inbox keeps the payload.
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pushgo.protocol.bulk import DIRECT_DEVICE_KEY
from pushgo.protocol.liveactivity import PUSH_TYPE
from pushgo.store.schema import (
    deliveries,
    events,
    live_activities,
    live_activity_keys,
    live_activity_start_tokens,
)

_START = live_activity_start_tokens
_ACT = live_activities
_KEY = live_activity_keys


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
    the device's route and its other tokens stay. A push to a token the app registered by
    event (``add_keyed_pushes``) carries no device: its token goes from every event."""
    if device_key == DIRECT_DEVICE_KEY:
        return int(conn.execute(_KEY.delete().where(_KEY.c.token == token)).rowcount)
    n = conn.execute(_START.delete().where(_START.c.device_key == device_key,
                                           _START.c.token == token)).rowcount
    n += conn.execute(_ACT.delete().where(_ACT.c.device_key == device_key,
                                          _ACT.c.token == token)).rowcount
    return int(n)


# --------------------------------------------------------------------------- tokens by event


def event_channels(conn: Connection, event_id: str) -> list[tuple[str, str]]:
    """``(channel_id, state)`` of every event with this id (at most a few: ids are per
    channel)."""
    return [(r.channel_id, r.state) for r in conn.execute(
        sa.select(events.c.channel_id, events.c.state).where(events.c.event_id == event_id)
        .order_by(events.c.channel_id).limit(8))]


def set_keyed_token(conn: Connection, channel_id: str, event_id: str, token: str,
                    now: int, limit: int) -> bool:
    """Register an update token for the event's activity (again: its time is renewed); False
    when it is new and the event already has ``limit`` tokens."""
    keys = (_KEY.c.channel_id == channel_id, _KEY.c.event_id == event_id, _KEY.c.token == token)
    if conn.execute(_KEY.update().where(*keys).values(updated_at=now)).rowcount:
        return True
    held = conn.execute(sa.select(sa.func.count()).select_from(_KEY).where(
        _KEY.c.channel_id == channel_id, _KEY.c.event_id == event_id)).scalar_one()
    if held >= limit:
        return False
    conn.execute(_KEY.insert().values(channel_id=channel_id, event_id=event_id, token=token,
                                      created_at=now, updated_at=now))
    return True


def clear_keyed(conn: Connection, event_id: str, token: str | None) -> int:
    """Forget ``token`` for the event's activity (in every channel with that event id), or
    every token of the event when None. Returns how many."""
    where = [_KEY.c.event_id == event_id]
    if token is not None:
        where.append(_KEY.c.token == token)
    return int(conn.execute(_KEY.delete().where(*where)).rowcount)


def keyed_tokens(conn: Connection, channel_id: str, event_id: str) -> list[str]:
    return list(conn.execute(sa.select(_KEY.c.token).where(
        _KEY.c.channel_id == channel_id, _KEY.c.event_id == event_id)
        .order_by(_KEY.c.token)).scalars())


def add_keyed_pushes(conn: Connection, op_pk: int, channel_id: str, event_id: str,
                     live_event: str, now: int, expires_at: int, sender: str) -> int:
    """One Live Activity push of this event operation (``update`` or ``end``) per token the
    app registered for the event, as direct deliveries (no device, no inbox: the devices'
    usual notifications carry the payload there). On ``end`` the tokens are forgotten (the
    pushes carry them). Returns how many deliveries."""
    if live_event not in ("update", "end"):
        return 0  # an activity the app starts has its token only after the event's create
    tokens = keyed_tokens(conn, channel_id, event_id)
    if tokens:
        conn.execute(deliveries.insert(), [
            {"delivery_id": secrets.token_hex(16), "op_pk": op_pk, "channel_id": channel_id,
             "device_key": DIRECT_DEVICE_KEY, "route": "apns", "state": "queued",
             "inbox": False, "attempts": 0, "next_attempt_at": now, "created_at": now,
             "updated_at": now, "expires_at": expires_at, "provider_token": token,
             "push_type": PUSH_TYPE, "sender": sender} for token in tokens])
    if live_event == "end":
        conn.execute(_KEY.delete().where(_KEY.c.channel_id == channel_id,
                                         _KEY.c.event_id == event_id))
    return len(tokens)
