"""Sending: the one pipeline behind POST /message, /event/*, /thing/*, the MCP send tools and
the CLI. Validate (done by the caller into an OpSpec), verify the channel password, apply
op_id idempotency, then one transaction: operation row + entity state + one delivery per
subscribed device; then wake whoever streams them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from pushgo.errors import Conflict
from pushgo.protocol import wire as W
from pushgo.protocol.operations import OpSpec
from pushgo.protocol.payload import render
from pushgo.service.channels import Channels, channel_not_found
from pushgo.service.context import Context, new_hex_id
from pushgo.store import channels as C
from pushgo.store import entities as E
from pushgo.store import outbox as O


@dataclass(frozen=True)
class Accepted:
    channel_id: str
    op_id: str
    route: str
    entity_id: str
    thing_id: str | None
    recipients: int
    duplicate: bool

    def wire(self) -> W.SendOut:
        kind = self.route.partition(".")[0]
        out = W.SendOut(channel_id=self.channel_id, op_id=self.op_id, accepted=True,
                        thing_id=self.thing_id)
        if kind == "message":
            out.message_id = self.entity_id
        elif kind == "event":
            out.event_id = self.entity_id
        else:
            out.thing_id = self.entity_id
        return out


class Sender:
    def __init__(self, ctx: Context, channels: Channels) -> None:
        self.ctx = ctx
        self.channels = channels

    async def send(self, spec: OpSpec, password: str) -> Accepted:
        """Send with the channel password (HTTP API, legacy MCP)."""
        await self.channels.authorize(spec.channel_id, password)
        return await self._accept(spec)

    async def send_granted(self, spec: OpSpec) -> Accepted:
        """Send for a caller already granted the channel (OAuth MCP): the channel must exist."""
        if await self.ctx.store.read(C.get, spec.channel_id) is None:
            raise channel_not_found()
        return await self._accept(spec)

    async def _accept(self, spec: OpSpec) -> Accepted:
        now = self.ctx.now()
        op_id = spec.op_id or new_hex_id()
        entity_id = spec.entity_id or new_hex_id()
        rendered = render(spec, op_id=op_id, entity_id=entity_id, now_ms=now,
                          default_ttl_ms=self.ctx.default_ttl_ms,
                          base_url=self.ctx.settings.public_base_url)
        fingerprint = spec.fingerprint()
        kind, _, action = spec.route.partition(".")
        thing_id = entity_id if kind == "thing" else spec.thing_id

        def work(conn: Connection) -> Accepted:
            if spec.op_id is not None:
                seen = O.find_operation(conn, spec.channel_id, op_id)
                if seen is not None:
                    if seen.fingerprint != fingerprint or seen.route != spec.route:
                        raise Conflict("op_id was already used with a different payload",
                                       code="op_id_conflict")
                    return Accepted(spec.channel_id, op_id, seen.route, seen.entity_id,
                                    seen.thing_id, seen.recipients, duplicate=True)
            _check_lifecycle(conn, spec, kind, action)
            op_pk = O.insert_operation(
                conn, channel_id=spec.channel_id, op_id=op_id, route=spec.route,
                entity_type=kind, entity_id=entity_id, thing_id=thing_id,
                fingerprint=fingerprint, severity=spec.severity,
                payload=rendered.payload_json(), alert=rendered.alert_json(), created_at=now,
                expires_at=rendered.expires_at,
            )
            if kind == "message":
                E.insert_message(conn, message_id=entity_id, channel_id=spec.channel_id,
                                 op_pk=op_pk, thing_id=spec.thing_id, fields=spec.fields,
                                 severity=spec.severity,
                                 occurred_at=int(rendered.data["occurred_at"]), now=now,
                                 expires_at=rendered.expires_at)
            elif kind == "event":
                E.apply_event(conn, channel_id=spec.channel_id, event_id=entity_id,
                              action=action, thing_id=spec.thing_id, fields=spec.fields, now=now)
            else:
                E.apply_thing(conn, channel_id=spec.channel_id, thing_id=entity_id,
                              action=action, fields=spec.fields, now=now)
            recipients = O.fan_out(conn, op_pk, spec.channel_id, now, rendered.expires_at)
            return Accepted(spec.channel_id, op_id, spec.route, entity_id, thing_id, recipients,
                            duplicate=False)

        try:
            result = await self.ctx.store.run(work)
        except IntegrityError:
            # A concurrent request with the same op_id committed first: answer as it did.
            result = await self.ctx.store.run(work)
        if not result.duplicate and result.recipients:
            self.ctx.accepted(spec.channel_id)
        return result


def _check_lifecycle(conn: Connection, spec: OpSpec, kind: str, action: str) -> None:
    """Persisted state only moves forward: a closed event stays closed, a deleted thing gone."""
    if kind == "event" and action in ("update", "close") and spec.entity_id:
        row: Any = E.get_event(conn, spec.channel_id, spec.entity_id)
        if row is not None and row.state == "CLOSED" and action == "update":
            raise Conflict("event is closed", code="event_closed")
    if kind == "thing" and action != "create" and spec.entity_id:
        row = E.get_thing(conn, spec.channel_id, spec.entity_id)
        if row is not None and row.state == "deleted":
            raise Conflict("thing is deleted", code="thing_deleted")
