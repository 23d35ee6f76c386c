"""Live Activities: iOS devices register their push-to-start token and each activity's update
token; the send pipeline (``service/send.py``) then turns an event's APNs deliveries into Live
Activity pushes (``store/liveactivities.py``), which the outbox pump sends like any other.

What a device gets for an event operation:

- ``create``: a push-to-start (``event: start``, with an alert) when it registered a
  push-to-start token, else its usual notification;
- ``update``: an ``event: update`` to the activity's update token when it registered one for
  the event, else its usual notification (so nothing is lost on a device whose activity
  did not start or was dismissed);
- ``close``: an ``event: end`` to that token, else its usual notification. The activity's
  registration ends with the event.

A dead token (410, BadDeviceToken) retires that token alone. The device's inbox keeps every
payload either way.

The PushGo iOS app also starts an activity itself when it shows an event's notification, and
registers that activity's update token with ``POST /v1/activity/register`` by
``activity_key`` (``event:<event_id>``) and the event's channel, without a device key. Such a
token gets ``update`` and ``end`` pushes of the event in addition to the devices' usual
notifications (there is no device to replace them on); ``/v1/activity/unregister`` forgets it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from pushgo.errors import Conflict, InvalidInput, NotFound, codes
from pushgo.protocol import fields as field_rules
from pushgo.protocol import liveactivity as LA
from pushgo.service.context import Context
from pushgo.service.devices import require_device
from pushgo.store import entities as entity_store
from pushgo.store import liveactivities as live_store


def _require_ios_apns(conn: Connection, device_key: str) -> Any:
    row = require_device(conn, device_key)
    if row.platform != "ios" or row.channel_type != "apns":
        raise InvalidInput(codes.LIVE_ACTIVITY_REQUIRES_IOS_APNS,
                           "Live Activities need an ios device on the apns route")
    return row


def _token(raw: str) -> str:
    if not raw.strip():
        raise InvalidInput(codes.PROVIDER_TOKEN_REQUIRED, "token is required")
    return field_rules.provider_token(raw, "ios")


def _event_ids(channel_id: str, event_id: str) -> tuple[str, str]:
    cid = field_rules.channel_id(channel_id)
    eid = field_rules.token_id(event_id, "event_id", field_rules.ENTITY_ID_MAX, required=True)
    return cid, str(eid)  # required: never None


class LiveActivities:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def set_start_token(self, req: LA.StartTokenIn) -> LA.TokenOut:
        key = field_rules.device_key(req.device_key)
        token = _token(req.token)
        now = self.ctx.now()

        def work(conn: Connection) -> None:
            _require_ios_apns(conn, key)
            live_store.set_start_token(conn, key, token, now)

        await self.ctx.store.run(work)
        return LA.TokenOut(device_key=key, registered=True)

    async def clear_start_token(self, req: LA.StartTokenDeleteIn) -> LA.TokenOut:
        key = field_rules.device_key(req.device_key)

        def work(conn: Connection) -> None:
            require_device(conn, key)
            live_store.clear_start_token(conn, key)

        await self.ctx.store.run(work)
        return LA.TokenOut(device_key=key, registered=False)

    async def set_activity_token(self, req: LA.ActivityTokenIn) -> LA.TokenOut:
        key = field_rules.device_key(req.device_key)
        cid, eid = _event_ids(req.channel_id, req.event_id)
        token = _token(req.token)
        now = self.ctx.now()

        def work(conn: Connection) -> None:
            _require_ios_apns(conn, key)
            event = entity_store.get_event(conn, cid, eid)
            if event is None:
                raise NotFound(codes.EVENT_NOT_FOUND, "event not found")
            if event.state == "CLOSED":
                raise Conflict(codes.EVENT_CLOSED, "event is closed")
            live_store.set_activity_token(conn, key, cid, eid, token, now)

        await self.ctx.store.run(work)
        return LA.TokenOut(device_key=key, registered=True, channel_id=cid, event_id=eid)

    async def clear_activity_token(self, req: LA.ActivityTokenDeleteIn) -> LA.TokenOut:
        key = field_rules.device_key(req.device_key)
        cid, eid = _event_ids(req.channel_id, req.event_id)

        def work(conn: Connection) -> None:
            require_device(conn, key)
            live_store.clear_activity(conn, key, cid, eid)

        await self.ctx.store.run(work)
        return LA.TokenOut(device_key=key, registered=False, channel_id=cid, event_id=eid)

    async def register_keyed(self, req: LA.ActivityRegisterIn) -> LA.ActivityKeyOut:
        eid = _keyed_event(req.activity_key, req.platform, req.schema_version)
        cid = None if req.channel_id is None or not req.channel_id.strip() \
            else field_rules.channel_id(req.channel_id)
        token = _token(req.token)
        now = self.ctx.now()
        limit = self.ctx.settings.channel_subscriber_limit

        def work(conn: Connection) -> str:
            found: list[tuple[str, str]]
            if cid is not None:
                event = entity_store.get_event(conn, cid, eid)
                found = [] if event is None else [(cid, event.state)]
            else:
                found = live_store.event_channels(conn, eid)
                if len(found) > 1:  # the one still open, if only one is
                    found = [f for f in found if f[1] != "CLOSED"] or found[:1]
            if not found:
                raise NotFound(codes.EVENT_NOT_FOUND, "event not found")
            if len(found) > 1:
                raise Conflict(codes.ACTIVITY_EVENT_AMBIGUOUS,
                               "the event id is open in several channels: send channel_id")
            channel, state = found[0]
            if state == "CLOSED":
                raise Conflict(codes.EVENT_CLOSED, "event is closed")
            # At most one activity per possible subscriber of the channel, as for devices.
            if not live_store.set_keyed_token(conn, channel, eid, token, now, limit):
                raise InvalidInput(codes.ACTIVITY_LIMIT_EXCEEDED,
                                   "the event has as many activities as the channel may have "
                                   "subscribers")
            return channel

        channel = await self.ctx.store.run(work)
        return LA.ActivityKeyOut(activity_key=LA.activity_key(eid), registered=True,
                                 channel_id=channel, event_id=eid)

    async def unregister_keyed(self, req: LA.ActivityUnregisterIn) -> LA.ActivityKeyOut:
        eid = _keyed_event(req.activity_key, req.platform, req.schema_version)
        token = None if req.token is None or not req.token.strip() else _token(req.token)

        def work(conn: Connection) -> int:
            return live_store.clear_keyed(conn, eid, token)

        removed = await self.ctx.store.run(work)
        return LA.ActivityKeyOut(activity_key=LA.activity_key(eid), registered=False,
                                 event_id=eid, removed=removed)


def _keyed_event(key: str, platform: str, schema_version: int) -> str:
    """The event id of an app registration's ``activity_key``, its ``platform`` and
    ``schema_version`` checked."""
    if platform.strip().lower() != "ios":
        raise InvalidInput(codes.LIVE_ACTIVITY_REQUIRES_IOS_APNS,
                           "Live Activities need platform ios")
    if schema_version != LA.ACTIVITY_SCHEMA_VERSION:
        raise InvalidInput(codes.UNSUPPORTED_SCHEMA_VERSION,
                           f"schema_version {LA.ACTIVITY_SCHEMA_VERSION} is the one supported")
    raw = LA.event_of_key(key)
    if raw is None:
        raise InvalidInput(codes.INVALID_ACTIVITY_KEY, "activity_key must be event:<event_id>")
    eid = field_rules.token_id(raw, "event_id", field_rules.ENTITY_ID_MAX, required=True)
    return str(eid)
