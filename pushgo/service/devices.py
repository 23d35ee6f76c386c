"""Devices: register (issue keys), set or clear the route, retire a dead provider token."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from pushgo.errors import InvalidInput, codes
from pushgo.protocol import fields as F
from pushgo.protocol import wire as W
from pushgo.service.context import Context, new_hex_id
from pushgo.store import devices as D

_PLATFORM_FOR_TYPE = {"apns": F.APPLE, "fcm": ("android",), "wns": ("windows",)}
_TYPE_PLATFORM_CODE = {
    "apns": (codes.APNS_CHANNEL_REQUIRES_APPLE_PLATFORM, "channel_type apns requires apple platform"),
    "fcm": (codes.FCM_CHANNEL_REQUIRES_ANDROID_PLATFORM, "channel_type fcm requires android platform"),
    "wns": (codes.WNS_CHANNEL_REQUIRES_WINDOWS_PLATFORM, "channel_type wns requires windows platform"),
}


def device_not_found() -> InvalidInput:
    return InvalidInput(codes.DEVICE_KEY_NOT_FOUND, "device_key not found")


def require_device(conn: Connection, device_key: str) -> Any:
    row = D.get(conn, device_key)
    if row is None:
        raise device_not_found()
    return row


class Devices:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def require(self, device_key: str) -> None:
        """Nothing when the device is registered; ``device_key_not_found`` otherwise."""
        await self.ctx.store.read(require_device, device_key)

    async def register(self, req: W.DeviceRegisterIn) -> W.DeviceRegisterOut:
        platform = F.platform(req.platform)
        given = F.blank_to_none(req.device_key)
        now = self.ctx.now()

        def work(conn: Connection) -> W.DeviceRegisterOut:
            if given is not None:
                row = D.get(conn, given)
                if row is not None and row.platform == platform:
                    return W.DeviceRegisterOut(device_key=given, issued_new_key=False)
                if row is not None:
                    D.delete(conn, given, now)
                    reason = "platform_mismatch"
                else:
                    reason = "device_key_not_found"
            else:
                reason = "device_key_missing"
            key = new_hex_id()
            D.create(conn, key, platform, now)
            return W.DeviceRegisterOut(device_key=key, issued_new_key=True, issue_reason=reason)

        return await self.ctx.store.run(work)

    async def set_route(self, req: W.DeviceRouteIn) -> W.DeviceRouteOut:
        key = F.device_key(req.device_key)
        ctype = F.channel_type(req.channel_type)
        platform_raw = F.blank_to_none(req.platform)
        asked_platform = F.platform(platform_raw) if platform_raw is not None else None
        token_raw = F.blank_to_none(req.provider_token)
        now = self.ctx.now()

        def work(conn: Connection) -> W.DeviceRouteOut:
            row = require_device(conn, key)
            if asked_platform is not None and asked_platform != row.platform:
                raise InvalidInput(codes.PLATFORM_MISMATCH,
                                   "platform does not match device identity")
            token: str | None = None
            if ctype == "private":
                if token_raw is not None:
                    raise InvalidInput(codes.PROVIDER_TOKEN_FORBIDDEN_FOR_PRIVATE_CHANNEL,
                                       "provider_token is not allowed for private channel")
            else:
                if token_raw is None:
                    raise InvalidInput(codes.PROVIDER_TOKEN_REQUIRED,
                                       "provider_token required for provider channel")
                if row.platform not in _PLATFORM_FOR_TYPE[ctype]:
                    code, msg = _TYPE_PLATFORM_CODE[ctype]
                    raise InvalidInput(code, msg)
                token = F.provider_token(token_raw, row.platform)
            if (row.channel_type, row.provider_token) != (ctype, token):
                if token is not None:
                    # One token, one device: an older identity holding it is merged in.
                    for other in D.holders_of_token(conn, row.platform, token, exclude=key):
                        D.merge_into(conn, other, key, now)
                D.set_route(conn, key, ctype, token, now)
            return W.DeviceRouteOut(device_key=key, channel_type=ctype, provider_token=token,
                                    issued_new_key=False)

        out = await self.ctx.store.run(work)
        self.ctx.subscriptions_changed(key)
        return out

    async def clear_route(self, req: W.DeviceRouteDeleteIn) -> W.DeviceRouteOut:
        key = F.device_key(req.device_key)
        ctype = F.channel_type(req.channel_type)
        now = self.ctx.now()

        def work(conn: Connection) -> W.DeviceRouteOut:
            row = require_device(conn, key)
            if row.channel_type != ctype:
                raise InvalidInput(codes.CHANNEL_TYPE_MISMATCH,
                                   "channel_type does not match current device route")
            if row.provider_token is not None:
                D.set_route(conn, key, ctype, None, now)
            return W.DeviceRouteOut(device_key=key, channel_type=ctype, issued_new_key=False)

        return await self.ctx.store.run(work)

    async def retire_token(self, req: W.TokenRetireIn) -> W.TokenRetireOut:
        platform = F.platform(req.platform)
        if not req.provider_token.strip():
            raise InvalidInput(codes.PROVIDER_TOKEN_REQUIRED, "provider_token is required")
        token = F.provider_token(req.provider_token, platform)
        now = self.ctx.now()
        await self.ctx.store.run(D.retire_token, platform, token, now)
        return W.TokenRetireOut(retired=True)
