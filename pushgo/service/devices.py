"""Devices: register (issue keys), set or clear the route, retire a dead provider token."""

from __future__ import annotations

from functools import partial
from typing import Any

from sqlalchemy.engine import Connection

from pushgo.errors import Forbidden, InvalidInput, codes
from pushgo.protocol import fields as field_rules
from pushgo.protocol import webpush as webpush_rules
from pushgo.protocol import wire
from pushgo.protocol.apps import DEFAULT_APP
from pushgo.service.apps import Apps
from pushgo.service.context import Context, new_hex_id
from pushgo.service.principal import current
from pushgo.store import devices as device_store

_PLATFORM_FOR_TYPE = {"apns": field_rules.APPLE, "fcm": ("android",), "wns": ("windows",),
                      "webpush": ("web",)}
_TYPE_PLATFORM_CODE = {
    "apns": (codes.APNS_CHANNEL_REQUIRES_APPLE_PLATFORM, "channel_type apns requires apple platform"),
    "fcm": (codes.FCM_CHANNEL_REQUIRES_ANDROID_PLATFORM, "channel_type fcm requires android platform"),
    "wns": (codes.WNS_CHANNEL_REQUIRES_WINDOWS_PLATFORM, "channel_type wns requires windows platform"),
    "webpush": (codes.WEBPUSH_CHANNEL_REQUIRES_WEB_PLATFORM,
                "channel_type webpush requires web platform"),
}


def webpush_subscription(raw: str, *, allow_local: bool) -> str:
    """A Web Push subscription sent as the provider token (the JSON of the browser's
    ``PushSubscription``) in its canonical form, the one stored."""
    try:
        return webpush_rules.parse_token(raw, allow_local=allow_local).token()
    except webpush_rules.SubscriptionError as exc:
        raise InvalidInput(codes.INVALID_WEBPUSH_SUBSCRIPTION,
                           f"invalid web push subscription: {exc}") from None


def _name(app: object) -> str | None:
    return app if isinstance(app, str) else None


def device_not_found() -> InvalidInput:
    return InvalidInput(codes.DEVICE_KEY_NOT_FOUND, "device_key not found")


def require_device(conn: Connection, device_key: str) -> Any:
    row = device_store.get(conn, device_key)
    if row is None:
        raise device_not_found()
    return row


_UNCHANGED = object()


class Devices:
    def __init__(self, ctx: Context, apps: Apps) -> None:
        self.ctx = ctx
        self.apps = apps

    async def _app(self, raw: str | None) -> object:
        """The app a request names, as stored (None: ``default``), or _UNCHANGED when it
        names none; ``app_not_found``, or ``app_not_allowed`` for a key limited to others."""
        if raw is None:
            return _UNCHANGED
        name = raw.strip() or DEFAULT_APP
        principal = current()
        if not principal.may_use_app(name):
            raise Forbidden(codes.APP_NOT_ALLOWED, f"this key may not use app {name!r}")
        return await self.apps.resolve(name)

    async def require(self, device_key: str) -> None:
        """Nothing when the device is registered; ``device_key_not_found`` otherwise."""
        await self.ctx.store.read(require_device, device_key)

    async def register(self, req: wire.DeviceRegisterIn) -> wire.DeviceRegisterOut:
        platform = field_rules.platform(req.platform)
        given = field_rules.blank_to_none(req.device_key)
        app = await self._app(req.app)
        now = self.ctx.now()

        def work(conn: Connection) -> wire.DeviceRegisterOut:
            if given is not None:
                row = device_store.get(conn, given)
                if row is not None and row.platform == platform:
                    if app is not _UNCHANGED:
                        device_store.set_app(conn, given, _name(app), now)
                    return wire.DeviceRegisterOut(device_key=given, issued_new_key=False)
                if row is not None:
                    device_store.delete(conn, given, now)
                    reason = "platform_mismatch"
                else:
                    reason = "device_key_not_found"
            else:
                reason = "device_key_missing"
            key = new_hex_id()
            device_store.create(conn, key, platform, now,
                                None if app is _UNCHANGED else _name(app))
            return wire.DeviceRegisterOut(device_key=key, issued_new_key=True, issue_reason=reason)

        return await self.ctx.store.run(work)

    async def set_route(self, req: wire.DeviceRouteIn) -> wire.DeviceRouteOut:
        key = field_rules.device_key(req.device_key)
        ctype = field_rules.channel_type(req.channel_type)
        platform_raw = field_rules.blank_to_none(req.platform)
        asked_platform = field_rules.platform(platform_raw) if platform_raw is not None else None
        token_raw = field_rules.blank_to_none(req.provider_token)
        allow_local = self.ctx.settings.webpush_allow_loopback
        app = await self._app(req.app)
        now = self.ctx.now()

        def work(conn: Connection) -> wire.DeviceRouteOut:
            row = require_device(conn, key)
            if app is not _UNCHANGED:
                device_store.set_app(conn, key, _name(app), now)
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
                if ctype == "webpush":
                    token = webpush_subscription(token_raw, allow_local=allow_local)
                else:
                    token = field_rules.provider_token(token_raw, row.platform)
            if (row.channel_type, row.provider_token) != (ctype, token):
                if token is not None:
                    # One token, one device: an older identity holding it is merged in.
                    for other in device_store.holders_of_token(conn, row.platform, token, exclude=key):
                        device_store.merge_into(conn, other, key, now)
                device_store.set_route(conn, key, ctype, token, now)
            return wire.DeviceRouteOut(device_key=key, channel_type=ctype, provider_token=token,
                                    issued_new_key=False)

        out = await self.ctx.store.run(work)
        self.ctx.subscriptions_changed(key)
        return out

    async def clear_route(self, req: wire.DeviceRouteDeleteIn) -> wire.DeviceRouteOut:
        key = field_rules.device_key(req.device_key)
        ctype = field_rules.channel_type(req.channel_type)
        now = self.ctx.now()

        def work(conn: Connection) -> wire.DeviceRouteOut:
            row = require_device(conn, key)
            if row.channel_type != ctype:
                raise InvalidInput(codes.CHANNEL_TYPE_MISMATCH,
                                   "channel_type does not match current device route")
            if row.provider_token is not None:
                device_store.set_route(conn, key, ctype, None, now)
            return wire.DeviceRouteOut(device_key=key, channel_type=ctype, issued_new_key=False)

        return await self.ctx.store.run(work)

    async def retire_token(self, req: wire.TokenRetireIn) -> wire.TokenRetireOut:
        platform = field_rules.platform(req.platform)
        if not req.provider_token.strip():
            raise InvalidInput(codes.PROVIDER_TOKEN_REQUIRED, "provider_token is required")
        if platform == "web":
            token = webpush_subscription(req.provider_token,
                                         allow_local=self.ctx.settings.webpush_allow_loopback)
        else:
            token = field_rules.provider_token(req.provider_token, platform)
        # v1.3: the route the app retires the token from. Blank counts as absent (older
        # requests); a retire naming another device or route type than the token's holder
        # changes nothing and answers retired: false.
        key = req.device_key.strip() if req.device_key else ""
        kind = req.channel_type.strip() if req.channel_type else ""
        now = self.ctx.now()
        n = await self.ctx.store.run(
            partial(device_store.retire_token,
                    device_key=field_rules.device_key(key) if key else None,
                    channel_type=field_rules.channel_type(kind) if kind else None),
            platform, token, now)
        return wire.TokenRetireOut(retired=n > 0 or not (key or kind))
