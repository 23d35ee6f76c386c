"""Sending: the one pipeline behind POST /message, /event/*, /thing/*, /messages/bulk, the MCP
send tools and the CLI. Validate (done by the caller into an OpSpec), verify the channel password, apply
op_id idempotency, then one transaction: operation row + entity state + one delivery per
subscribed device; then wake whoever streams them.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from pushgo.errors import Conflict, GatewayError, StoreUnavailable, codes
from pushgo.protocol import fields as field_rules
from pushgo.protocol import wire
from pushgo.protocol.liveactivity import live_event
from pushgo.protocol.operations import OpSpec
from pushgo.protocol.payload import Rendered, render
from pushgo.service.channels import Channels, channel_not_found
from pushgo.service.context import Context, new_time_ordered_id
from pushgo.service.keys import require_channel
from pushgo.service.passwords import normalize_password
from pushgo.service.principal import ROOT_ID, current
from pushgo.service.quotas import Charge, Quotas, Refusal
from pushgo.service.throttle import current_client
from pushgo.store import channels as channel_store
from pushgo.store import entities as entity_store
from pushgo.store import liveactivities as live_store
from pushgo.store import outbox as outbox_store
from pushgo.store import repeats as repeat_store
from pushgo.store import schedule as schedule_store
from pushgo.store.direct import insert_direct


@dataclass(frozen=True)
class Accepted:
    channel_id: str
    op_id: str
    route: str
    entity_id: str
    thing_id: str | None
    recipients: int
    duplicate: bool
    deliver_at: int | None = None  # a scheduled send

    def wire(self) -> wire.SendOut:
        kind = self.route.partition(".")[0]
        out = wire.SendOut(channel_id=self.channel_id, op_id=self.op_id, accepted=True,
                        thing_id=self.thing_id, deliver_at=self.deliver_at)
        if kind == "message":
            out.message_id = self.entity_id
        elif kind == "event":
            out.event_id = self.entity_id
        else:
            out.thing_id = self.entity_id
        return out


class Publisher:
    def __init__(self, ctx: Context, channels: Channels, quotas: Quotas) -> None:
        self.ctx = ctx
        self.channels = channels
        #: Channel rates taken before a send, daily quotas counted in its transaction.
        self.quotas = quotas

    async def send(self, spec: OpSpec, password: str) -> Accepted:
        """Send with the channel password (HTTP API, legacy MCP)."""
        require_channel(spec.channel_id)
        password = normalize_password(password)
        # A throttled client is refused before the cache too: a hit there would tell it
        # which guess is right.
        self.ctx.throttle.check(spec.channel_id, current_client(), self.ctx.now())
        stored = self.ctx.verifier.remembered(spec.channel_id, password)
        if stored is not None:
            # Verified recently: the write transaction checks the channel still has that
            # hash — one store call instead of a read, the KDF (cached) and a write.
            # The channel's rate is taken once the password is known right, never before.
            self.quotas.take_channel(spec.channel_id)
            accepted = await self._accept_checked(spec, stored)
            if accepted is not None:
                return accepted
        await self.channels.authorize(spec.channel_id, password)
        if stored is None:
            self.quotas.take_channel(spec.channel_id)
        return await self._accept(spec)

    async def send_granted(self, spec: OpSpec) -> Accepted:
        """Send for a caller already granted the channel (OAuth MCP): the channel must exist."""
        require_channel(spec.channel_id)
        self.quotas.take_channel(spec.channel_id)
        accepted = await self._accept_checked(spec, None)
        if accepted is not None:
            return accepted
        if await self.ctx.store.read(channel_store.get, spec.channel_id) is None:
            raise channel_not_found()
        return await self._accept(spec)

    async def _accept(self, spec: OpSpec) -> Accepted:
        prepared = self.prepare(spec)
        try:
            try:
                result = await self.ctx.store.run(prepared.write)
            except IntegrityError:
                # A concurrent request with the same op_id committed first: answer as it did.
                result = await self.ctx.store.run(prepared.write)
        except Refusal as exc:
            self.quotas.refused(exc)
            raise
        self._accepted(prepared, result)
        return result

    async def _accept_checked(self, spec: OpSpec, stored: str | None) -> Accepted | None:
        """Check the channel (it exists; its password hash is still ``stored`` unless None)
        and write, in one transaction. None when the caller must take the long way: the
        password changed, or preparing failed (its error then comes after the channel's
        checks, as on the long way)."""
        try:
            prepared = self.prepare(spec)
        except GatewayError:
            return None
        try:
            try:
                result = await self.ctx.store.run(_write_checked, prepared, stored)
            except IntegrityError:
                # A concurrent request with the same op_id committed first: answer as it did.
                result = await self.ctx.store.run(_write_checked, prepared, stored)
        except _PasswordChanged:
            return None
        except Refusal as exc:
            self.quotas.refused(exc)
            raise
        self._accepted(prepared, result)
        return result

    def prepare(self, spec: OpSpec, direct: Direct | None = None) -> Prepared:
        """Ids, time and the rendered payload of one operation; nothing is written yet.
        ``direct``: a message to provider tokens instead of a channel's subscribers (its
        ``spec.channel_id`` is then the key made by the bulk protocol, not a channel)."""
        if direct is None:
            require_channel(spec.channel_id)  # a key limited to other channels: 403
        now = self.ctx.now()
        field_rules.deliver_at(spec.deliver_at, spec.ttl_ms, now)
        op_id = spec.op_id or new_time_ordered_id(now)
        entity_id = spec.entity_id or new_time_ordered_id(now)
        rendered = render(spec, op_id=op_id, entity_id=entity_id, now_ms=now,
                          default_ttl_ms=self.ctx.default_ttl_ms,
                          base_url=self.ctx.settings.public_base_url)
        if direct is not None:
            # No channel: the payload names none, and its notifications share one thread.
            rendered.data.pop("channel_id", None)
            rendered = replace(rendered, thread_id="message|direct")
        principal = current()
        return Prepared(spec, op_id, entity_id, rendered, spec.fingerprint(), now, direct,
                        principal.key_id, self.quotas.charge(
                            principal, None if direct is not None else spec.channel_id, now))

    async def accept_many(self, items: Sequence[Prepared]) -> list[Accepted | GatewayError]:
        """Write several prepared operations in one transaction; one that fails (op_id
        conflict, closed event, …) is rolled back alone (a savepoint each, once a failure
        shows up) and comes back as its error, in the place of its result."""
        # In (channel, op_id) order: two batches naming the same op_ids then take their locks
        # in the same order, so on PostgreSQL neither waits on the other in a cycle.
        order = sorted(range(len(items)),
                       key=lambda i: (items[i].spec.channel_id, items[i].spec.op_id or ""))
        batch = [items[i] for i in order]
        # Optimistic first: no savepoints (two statements an item) while nothing fails; the
        # first failure rolls the whole batch back and it is written again item by item.
        write: Callable[[Connection, list[Prepared]], list[Accepted | GatewayError]]
        write = _write_all
        results: list[Accepted | GatewayError] = []
        for attempt in range(WRITE_TRIES):
            try:
                results = await self.ctx.store.run(write, batch)
                break
            except _ItemFailed:
                write = _write_each
            except StoreUnavailable as exc:
                # A PostgreSQL deadlock with another transaction (one that locks rows this
                # batch touches in another order): this one was rolled back whole; again,
                # item by item.
                if not _rolled_back_for_a_peer(exc) or attempt == WRITE_TRIES - 1:
                    raise
                write = _write_each
        else:  # pragma: no cover - the last try returns or raises
            raise AssertionError("unreachable")
        out: list[Accepted | GatewayError] = list(results)
        for position, result in zip(order, results, strict=True):
            out[position] = result
            if isinstance(result, Accepted):
                self._accepted(items[position], result)
            elif isinstance(result, Refusal):
                self.quotas.refused(result)
        return out

    def _accepted(self, prepared: Prepared, result: Accepted) -> None:
        if not result.duplicate:
            self.ctx.counts.accepted(prepared.kind, result.recipients)
            if prepared.quota is not None:
                self.quotas.accepted(prepared.quota)
        if not result.duplicate and result.recipients:
            self.ctx.accepted(result.channel_id)


@dataclass(frozen=True)
class Direct:
    """A message straight to provider tokens of one route (no channel, no devices)."""

    route: str
    tokens: tuple[str, ...]
    app: str | None = None  # None: the default app


@dataclass(frozen=True)
class Prepared:
    """One operation ready to write; ``write`` is its part of a transaction."""

    spec: OpSpec
    op_id: str
    entity_id: str
    rendered: Rendered
    fingerprint: str
    now: int
    direct: Direct | None = None
    # The key it is sent under (pushgo.service.principal), taken when it was prepared.
    sender: str = ROOT_ID
    # The daily quotas it counts against (pushgo.service.quotas), None: none.
    quota: Charge | None = None

    @property
    def kind(self) -> str:
        return self.spec.route.partition(".")[0]

    def write(self, conn: Connection) -> Accepted:
        spec, op_id, entity_id, now = self.spec, self.op_id, self.entity_id, self.now
        rendered = self.rendered
        kind, _, action = spec.route.partition(".")
        thing_id = entity_id if kind == "thing" else spec.thing_id
        if spec.op_id is not None:
            seen = outbox_store.find_operation(conn, spec.channel_id, op_id)
            if seen is not None:
                if seen.fingerprint != self.fingerprint or seen.route != spec.route:
                    raise Conflict(codes.OP_ID_CONFLICT,
                                   "op_id was already used with a different payload")
                return Accepted(spec.channel_id, op_id, seen.route, seen.entity_id,
                                seen.thing_id, seen.recipients, duplicate=True,
                                deliver_at=spec.deliver_at)
        _check_lifecycle(conn, spec, kind, action)
        if self.quota is not None:
            self.quota.check(conn)
        op_pk = outbox_store.insert_operation(
            conn, channel_id=spec.channel_id, op_id=op_id, route=spec.route,
            entity_type=kind, entity_id=entity_id, thing_id=thing_id,
            fingerprint=self.fingerprint, severity=spec.severity,
            payload=rendered.payload_json(), alert=rendered.alert_json(), created_at=now,
            expires_at=rendered.expires_at,
            **({"sender": self.sender} if self.sender != ROOT_ID else {}),
            **({"recipients": len(self.direct.tokens)} if self.direct is not None else {}),
            **({"deliver_at": spec.deliver_at} if spec.deliver_at is not None else {}),
        )
        if self.direct is not None:
            # No channel history: the operation row keeps the payload, the deliveries the rest.
            recipients = insert_direct(conn, op_pk, spec.channel_id, self.direct.route,
                                       self.direct.tokens, now, rendered.expires_at,
                                       self.sender, self.direct.app)
            if spec.deliver_at is not None:
                schedule_store.schedule(conn, op_pk, spec.deliver_at)
            if self.quota is not None:
                self.quota.count(conn, recipients)
            return Accepted(spec.channel_id, op_id, spec.route, entity_id, thing_id,
                            recipients, duplicate=False, deliver_at=spec.deliver_at)
        if kind == "message":
            entity_store.insert_message(conn, message_id=entity_id, channel_id=spec.channel_id,
                             op_pk=op_pk, thing_id=spec.thing_id, fields=spec.fields,
                             severity=spec.severity,
                             occurred_at=int(rendered.data["occurred_at"]), now=now,
                             expires_at=rendered.expires_at)
        elif kind == "event":
            entity_store.apply_event(conn, channel_id=spec.channel_id, event_id=entity_id,
                          action=action, thing_id=spec.thing_id, fields=spec.fields, now=now)
        else:
            entity_store.apply_thing(conn, channel_id=spec.channel_id, thing_id=entity_id,
                          action=action, fields=spec.fields, now=now)
        recipients = outbox_store.fan_out(conn, op_pk, spec.channel_id, now, rendered.expires_at)
        live = live_event(spec.route)
        if live is not None:  # an event: Live Activity pushes where devices registered one
            live_store.route_event(conn, op_pk, spec.channel_id, entity_id, live)
            # and to the activities the app registered by event (/v1/activity/register)
            live_store.add_keyed_pushes(conn, op_pk, spec.channel_id, entity_id, live, now,
                                        rendered.expires_at, self.sender)
        if spec.deliver_at is not None:  # after every delivery of the operation is written
            schedule_store.schedule(conn, op_pk, spec.deliver_at)
        if kind == "event" and action == "close":
            repeat_store.stop_event(conn, spec.channel_id, entity_id, now)
        if spec.repeat is not None:
            repeat_store.insert(conn, op_pk=op_pk, channel_id=spec.channel_id, op_id=op_id,
                                entity_type=kind, entity_id=entity_id,
                                every_s=spec.repeat.every_s, max_sends=spec.repeat.max,
                                now=now, expires_at=rendered.expires_at,
                                first_at=spec.deliver_at)
        if self.quota is not None:
            self.quota.count(conn, recipients)
        return Accepted(spec.channel_id, op_id, spec.route, entity_id, thing_id, recipients,
                        duplicate=False, deliver_at=spec.deliver_at)


#: Tries of one bulk batch: optimistic, item by item, and again after a deadlock.
WRITE_TRIES = 4


class _ItemFailed(Exception):
    pass


class _PasswordChanged(Exception):
    """The channel's password hash is no longer the one a cached check verified."""


def _write_checked(conn: Connection, prepared: Prepared, stored: str | None) -> Accepted:
    current = channel_store.password_hash(conn, prepared.spec.channel_id)
    if current is None:
        raise channel_not_found()
    if stored is not None and not hmac.compare_digest(current, stored):
        raise _PasswordChanged
    return prepared.write(conn)


def _rolled_back_for_a_peer(exc: StoreUnavailable) -> bool:
    """A PostgreSQL deadlock or serialization failure: the transaction surely rolled back."""
    orig = getattr(exc.__cause__, "orig", None)
    return getattr(orig, "sqlstate", None) in ("40P01", "40001")


def _write_all(conn: Connection, items: list[Prepared]) -> list[Accepted | GatewayError]:
    try:
        return [item.write(conn) for item in items]
    except (GatewayError, IntegrityError):
        raise _ItemFailed from None


def _write_each(conn: Connection, items: list[Prepared]) -> list[Accepted | GatewayError]:
    return [_write_one(conn, item) for item in items]


def _write_one(conn: Connection, item: Prepared) -> Accepted | GatewayError:
    for attempt in range(2):
        try:
            with conn.begin_nested():
                return item.write(conn)
        except GatewayError as exc:
            return exc
        except IntegrityError:
            # A concurrent request with the same op_id committed first: the second try
            # answers as it did.
            if attempt:
                break
    return Conflict(codes.STORE_CONFLICT,
                    "the operation could not be stored (a concurrent send collided with it)")


def _check_lifecycle(conn: Connection, spec: OpSpec, kind: str, action: str) -> None:
    """Persisted state only moves forward: a closed event stays closed, a deleted thing gone."""
    if kind == "event" and action in ("update", "close") and spec.entity_id:
        row: Any = entity_store.get_event(conn, spec.channel_id, spec.entity_id)
        if row is not None and row.state == "CLOSED" and action == "update":
            raise Conflict(codes.EVENT_CLOSED, "event is closed")
    if kind == "thing" and action != "create" and spec.entity_id:
        row = entity_store.get_thing(conn, spec.channel_id, spec.entity_id)
        if row is not None and row.state == "deleted":
            raise Conflict(codes.THING_DELETED, "thing is deleted")
