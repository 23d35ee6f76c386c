"""Channels: create-by-subscribing, subscribe/unsubscribe/sync, exists, rename, and the one
channel-password check every sender goes through."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy.engine import Connection

from pushgo.errors import GatewayError, InvalidInput, NotFound, PasswordMismatch, codes
from pushgo.protocol import fields as field_rules
from pushgo.protocol import wire
from pushgo.protocol.ids import encode_channel_id
from pushgo.service.context import Context
from pushgo.service.devices import require_device
from pushgo.service.keys import require_channel
from pushgo.service.passwords import normalize_password
from pushgo.service.throttle import RequestBudget, current_client
from pushgo.store import channels as channel_store
from pushgo.store.history import channel_info, channel_overview

SYNC_LIMIT = 2000


def channel_not_found() -> NotFound:
    return NotFound(codes.CHANNEL_NOT_FOUND, "channel not found")


def limit_exceeded() -> InvalidInput:
    return InvalidInput(codes.CHANNEL_SUBSCRIBER_LIMIT_EXCEEDED,
                        "channel subscriber limit exceeded")


def _join(conn: Connection, channel_id: str, device_key: str, now: int, limit: int) -> None:
    """Subscribe a (still registered) device, within the channel's subscriber limit."""
    require_device(conn, device_key)
    try:
        channel_store.subscribe(conn, channel_id, device_key, now, limit)
    except channel_store.SubscriberLimitReached:
        raise limit_exceeded() from None


def _check_route(row: Any) -> None:
    if row.channel_type != "private" and row.provider_token is None:
        raise InvalidInput(codes.PROVIDER_TOKEN_REQUIRED,
                           "device route is provider; provider_token required (switch route "
                           "to private for private channel ops)")


class Channels:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def authorize(self, channel_id: str, password: str,
                        budget: RequestBudget | None = None) -> Any:
        """The channel row if ``password`` opens it; 404 / 403 otherwise. A client with too
        many failed checks (see pushgo.service.throttle), or a request past its ``budget``,
        gets 429 rate_limited before anything is read or hashed."""
        password = normalize_password(password)
        client, throttle = current_client(), self.ctx.throttle
        throttle.check(channel_id, client, self.ctx.now())
        if budget is not None:
            budget.check()
        row = await self.ctx.store.read(channel_store.get, channel_id)
        if row is None:
            raise channel_not_found()
        spent = False

        def spend() -> None:  # only when the KDF is about to run
            nonlocal spent
            throttle.spend(channel_id, client, self.ctx.now())
            spent = True

        if not await self.ctx.verifier.verify(password, row.password_hash, spend):
            if budget is not None:
                budget.failed()
            raise PasswordMismatch()
        throttle.succeeded(channel_id, client, self.ctx.now(), spent=spent)
        self.ctx.verifier.remember(channel_id, password, row.password_hash)
        return row

    async def subscribe(self, req: wire.SubscribeIn) -> wire.SubscribeOut:
        key = field_rules.device_key(req.device_key)
        cid_raw = field_rules.blank_to_none(req.channel_id)
        name_raw = field_rules.blank_to_none(req.channel_name)
        cid = field_rules.channel_id(cid_raw) if cid_raw is not None else None
        name = field_rules.channel_name(name_raw) if name_raw is not None else None
        if (cid is None) == (name is None):
            raise InvalidInput(codes.CHANNEL_BINDING_INVALID,
                               "must provide either channel_id or channel_name")
        password = normalize_password(req.password)
        device = await self.ctx.store.read(require_device, key)
        _check_route(device)
        limit = self.ctx.settings.channel_subscriber_limit
        now = self.ctx.now()
        if name is not None:
            new_id = encode_channel_id(secrets.token_bytes(16))
            pw_hash = await self.ctx.verifier.hash(password)

            def create(conn: Connection) -> wire.SubscribeOut:
                channel_store.create(conn, new_id, name, pw_hash, now)
                _join(conn, new_id, key, now, limit)
                return wire.SubscribeOut(channel_id=new_id, channel_name=name, created=True,
                                      subscribed=True)

            out = await self.ctx.store.run(create)
        else:
            assert cid is not None
            row = await self.authorize(cid, password)

            def join(conn: Connection) -> wire.SubscribeOut:
                _join(conn, cid, key, now, limit)
                return wire.SubscribeOut(channel_id=cid, channel_name=row.channel_name,
                                      created=False, subscribed=True)

            out = await self.ctx.store.run(join)
        self.ctx.subscriptions_changed(key)
        return out

    async def unsubscribe(self, req: wire.UnsubscribeIn) -> wire.UnsubscribeOut:
        key = field_rules.device_key(req.device_key)
        cid = field_rules.channel_id(req.channel_id)

        def work(conn: Connection) -> bool:
            require_device(conn, key)
            return channel_store.unsubscribe(conn, cid, key)

        removed = await self.ctx.store.run(work)
        self.ctx.subscriptions_changed(key)
        return wire.UnsubscribeOut(channel_id=cid, removed=removed)

    async def sync(self, req: wire.SyncIn) -> wire.SyncOut:
        key = field_rules.device_key(req.device_key)
        if len(req.channels) > SYNC_LIMIT:
            raise InvalidInput(codes.CHANNELS_LIMIT_EXCEEDED,
                               f"channels exceeds max limit {SYNC_LIMIT}")
        device = await self.ctx.store.read(require_device, key)
        results: list[wire.SyncItemOut] = []
        ok_ids: list[str] = []
        budget = RequestBudget()
        limit = self.ctx.settings.channel_subscriber_limit
        for item in req.channels:
            shown = item.channel_id.strip()
            try:
                if device.channel_type != "private" and device.provider_token is None:
                    raise InvalidInput(codes.PROVIDER_TOKEN_MISSING,
                                       "provider channel requires provider_token")
                cid = field_rules.channel_id(item.channel_id) if shown else None
                if cid is None:
                    raise InvalidInput(codes.INVALID_CHANNEL_ID, "channel_id is required")
                shown = cid
                row = await self.authorize(cid, item.password, budget)
                now = self.ctx.now()

                await self.ctx.store.run(_join, cid, key, now, limit)
                ok_ids.append(cid)
                results.append(wire.SyncItemOut(channel_id=cid, channel_name=row.channel_name,
                                             subscribed=True, created=False))
            except GatewayError as exc:
                code = (codes.INVALID_CHANNEL_ID if exc.error == codes.CHANNEL_ID_REQUIRED
                        else exc.error).code
                results.append(wire.SyncItemOut(channel_id=shown, subscribed=False, created=False,
                                             error=exc.message, error_code=code))
        failed = len(results) - len(ok_ids)
        if failed == 0:
            keep = set(ok_ids)

            def reconcile(conn: Connection) -> None:
                for cid in channel_store.subscribed_channels(conn, key):
                    if cid not in keep:
                        channel_store.unsubscribe(conn, cid, key)

            await self.ctx.store.run(reconcile)
        self.ctx.subscriptions_changed(key)
        return wire.SyncOut(total=len(results), success=len(ok_ids), failed=failed,
                         channels=results)

    async def exists(self, channel_id: str) -> wire.ExistsOut:
        cid = field_rules.channel_id(channel_id)
        row = await self.ctx.store.read(channel_store.get, cid)
        return wire.ExistsOut(channel_id=cid, exists=row is not None,
                           channel_name=row.channel_name if row is not None else None)

    async def overview(self, channel_id: str) -> dict[str, Any] | None:
        """A channel's info with its recent messages, open events and things (the
        ``pushgo://channels/{channel_id}`` resource); None when there is no such channel."""
        return await self.ctx.store.read(channel_overview, channel_id)

    async def create(self, name_raw: str, password_raw: str) -> dict[str, Any]:
        """A channel with no subscribers yet (operators: ``pushgo channel create``)."""
        name = field_rules.channel_name(name_raw)
        password = normalize_password(password_raw)
        new_id = encode_channel_id(secrets.token_bytes(16))
        pw_hash = await self.ctx.verifier.hash(password)
        await self.ctx.store.run(channel_store.create, new_id, name, pw_hash, self.ctx.now())
        return {"channel_id": new_id, "channel_name": name, "created": True}

    async def info(self, channel_id: str) -> dict[str, Any]:
        """Name, times and subscriber count; never the password hash."""
        cid = field_rules.channel_id(channel_id)
        require_channel(cid)
        info = await self.ctx.store.read(channel_info, cid)
        if info is None:
            raise channel_not_found()
        return info

    async def rename(self, req: wire.RenameIn) -> wire.RenameOut:
        cid = field_rules.channel_id(req.channel_id)
        name = field_rules.channel_name(req.channel_name)
        await self.authorize(cid, req.password)
        await self.ctx.store.run(channel_store.rename, cid, name, self.ctx.now())
        return wire.RenameOut(channel_id=cid, channel_name=name)

