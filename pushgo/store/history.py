"""Read-only views of a channel's persisted history for MCP resources: channel info, recent
messages, open events and things. Plain functions of a Connection.

Never selects ``channels.password_hash``: every column read here is named.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pushgo.store.schema import channels, events, messages, subscriptions, things


def _load(text: str | None) -> Any:
    return json.loads(text) if text else None


def _drop_none(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if v is not None}


def channel_info(conn: Connection, channel_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(channels.c.channel_id, channels.c.channel_name,
                                 channels.c.created_at, channels.c.updated_at)
                       .where(channels.c.channel_id == channel_id)).first()
    if row is None:
        return None
    count = conn.execute(sa.select(sa.func.count()).select_from(subscriptions)
                         .where(subscriptions.c.channel_id == channel_id)).scalar_one()
    return {"channel_id": row.channel_id, "channel_name": row.channel_name,
            "created_at": row.created_at, "updated_at": row.updated_at,
            "subscribers": int(count)}


def recent_messages(conn: Connection, channel_id: str, limit: int) -> list[dict[str, Any]]:
    m = messages.c
    rows = conn.execute(
        sa.select(m.message_id, m.thing_id, m.title, m.body, m.severity, m.url, m.tags,
                  m.occurred_at, m.created_at)
        .where(m.channel_id == channel_id)
        .order_by(m.created_at.desc(), m.message_id.desc()).limit(limit)).all()
    return [_drop_none({
        "message_id": r.message_id, "title": r.title, "body": r.body, "severity": r.severity,
        "url": r.url, "tags": _load(r.tags), "thing_id": r.thing_id,
        "occurred_at": r.occurred_at, "created_at": r.created_at,
    }) for r in rows]


def open_events(conn: Connection, channel_id: str, limit: int) -> list[dict[str, Any]]:
    e = events.c
    rows = conn.execute(
        sa.select(e.event_id, e.thing_id, e.state, e.title, e.description, e.status, e.message,
                  e.severity, e.tags, e.images, e.attrs, e.started_at, e.event_time,
                  e.created_at, e.updated_at)
        .where(e.channel_id == channel_id, e.state != "CLOSED")
        .order_by(e.updated_at.desc(), e.event_id).limit(limit)).all()
    return [_drop_none({
        "event_id": r.event_id, "state": r.state, "title": r.title,
        "description": r.description, "status": r.status, "message": r.message,
        "severity": r.severity, "tags": _load(r.tags), "images": _load(r.images),
        "attrs": _load(r.attrs), "thing_id": r.thing_id, "started_at": r.started_at,
        "event_time": r.event_time, "created_at": r.created_at, "updated_at": r.updated_at,
    }) for r in rows]


def live_things(conn: Connection, channel_id: str, limit: int) -> list[dict[str, Any]]:
    t = things.c
    rows = conn.execute(
        sa.select(t.thing_id, t.state, t.title, t.description, t.tags, t.primary_image,
                  t.images, t.external_ids, t.location_type, t.location_value, t.attrs,
                  t.observed_at, t.created_at, t.updated_at, t.archived_at)
        .where(t.channel_id == channel_id, t.state != "deleted")
        .order_by(t.updated_at.desc(), t.thing_id).limit(limit)).all()
    return [_drop_none({
        "thing_id": r.thing_id, "state": r.state, "title": r.title,
        "description": r.description, "tags": _load(r.tags), "primary_image": r.primary_image,
        "images": _load(r.images), "external_ids": _load(r.external_ids),
        "location": ({"type": r.location_type, "value": r.location_value}
                     if r.location_type else None),
        "attrs": _load(r.attrs), "observed_at": r.observed_at, "created_at": r.created_at,
        "updated_at": r.updated_at, "archived_at": r.archived_at,
    }) for r in rows]


def channel_overview(conn: Connection, channel_id: str, *, messages_limit: int = 20,
                     events_limit: int = 50, things_limit: int = 50) -> dict[str, Any] | None:
    """Everything the ``pushgo://channels/{channel_id}`` resource shows, or None."""
    info = channel_info(conn, channel_id)
    if info is None:
        return None
    return {"channel": info,
            "recent_messages": recent_messages(conn, channel_id, messages_limit),
            "open_events": open_events(conn, channel_id, events_limit),
            "things": live_things(conn, channel_id, things_limit)}
