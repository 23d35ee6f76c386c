"""The persisted state behind operations: message history, event state, thing state.

Plain functions of a Connection. JSON-shaped columns hold compact JSON text.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pushgo.store.prepared import Prepared
from pushgo.store.schema import events, messages, things


def _dump(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _patch(current: str | None, patch: dict[str, Any]) -> str:
    """Merge an attrs-style patch: a null value deletes the key."""
    doc: dict[str, Any] = json.loads(current) if current else {}
    for key, value in patch.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return _dump(doc) or "{}"


def insert_message(conn: Connection, *, message_id: str, channel_id: str, op_pk: int,
                   thing_id: str | None, fields: dict[str, Any], severity: str,
                   occurred_at: int, now: int, expires_at: int) -> None:
    # A prebuilt statement and a parameter dict: no statement construction per message.
    _RUN_INSERT_MESSAGE.rowcount(conn, {
        "message_id": message_id, "channel_id": channel_id, "op_pk": op_pk,
        "thing_id": thing_id, "title": fields["title"], "body": fields["body"],
        "severity": severity, "url": fields["url"], "tags": _dump(fields["tags"] or None),
        "occurred_at": occurred_at, "created_at": now, "expires_at": expires_at,
    })


_INSERT_MESSAGE = messages.insert()
_RUN_INSERT_MESSAGE = Prepared(_INSERT_MESSAGE, insert=True)  # on the driver: see prepared.py


def get_event(conn: Connection, channel_id: str, event_id: str) -> sa.Row[Any] | None:
    # FOR UPDATE: read-modify-write (state check, attrs patch) must not lose a concurrent one.
    return conn.execute(sa.select(events).where(events.c.channel_id == channel_id,
                                                events.c.event_id == event_id)
                        .with_for_update()).first()


def apply_event(conn: Connection, *, channel_id: str, event_id: str, action: str,
                thing_id: str | None, fields: dict[str, Any], now: int) -> None:
    """create: new row ONGOING; update: patch (row made if unknown); close: patch + CLOSED."""
    current = get_event(conn, channel_id, event_id)
    values: dict[str, Any] = {
        k: v for k, v in {
            "title": fields["title"], "description": fields["description"],
            "status": fields["status"], "message": fields["message"],
            "severity": fields["event_severity"], "tags": _dump(fields["tags"]),
            "images": _dump(fields["images"] or None), "started_at": fields["started_at"],
            "ended_at": fields["ended_at"], "thing_id": thing_id,
        }.items() if v is not None
    }
    values["state"] = "CLOSED" if action == "close" else "ONGOING"
    values["event_time"] = fields["event_time"]
    values["updated_at"] = now
    values["attrs"] = _patch(current.attrs if current else None, fields["attrs"])
    if current is None:
        conn.execute(events.insert().values(channel_id=channel_id, event_id=event_id,
                                            created_at=now, **values))
    else:
        conn.execute(events.update().where(events.c.channel_id == channel_id,
                                           events.c.event_id == event_id).values(**values))


def get_thing(conn: Connection, channel_id: str, thing_id: str) -> sa.Row[Any] | None:
    # FOR UPDATE: read-modify-write (state check, attrs patch) must not lose a concurrent one.
    return conn.execute(sa.select(things).where(things.c.channel_id == channel_id,
                                                things.c.thing_id == thing_id)
                        .with_for_update()).first()


def apply_thing(conn: Connection, *, channel_id: str, thing_id: str, action: str,
                fields: dict[str, Any], now: int) -> None:
    current = get_thing(conn, channel_id, thing_id)
    loc = fields["location"]
    values: dict[str, Any] = {
        k: v for k, v in {
            "title": fields["title"], "description": fields["description"],
            "tags": _dump(fields["tags"]), "primary_image": fields["primary_image"],
            "images": _dump(fields["images"] or None),
            "location_type": loc[0] if loc else None, "location_value": loc[1] if loc else None,
        }.items() if v is not None
    }
    values["state"] = {"archive": "archived", "delete": "deleted"}.get(action, "active")
    values["observed_at"] = fields["observed_at"]
    values["updated_at"] = now
    values["attrs"] = _patch(current.attrs if current else None, fields["attrs"])
    values["external_ids"] = _patch(current.external_ids if current else None,
                                    fields["external_ids"])
    if action == "archive":
        values["archived_at"] = fields["observed_at"]
    if action == "delete":
        values["deleted_at"] = fields["deleted_at"]
    if current is None:
        created = fields["created_at"] if fields["created_at"] is not None else fields["observed_at"]
        conn.execute(things.insert().values(channel_id=channel_id, thing_id=thing_id,
                                            created_at=created, **values))
    else:
        conn.execute(things.update().where(things.c.channel_id == channel_id,
                                           things.c.thing_id == thing_id).values(**values))
