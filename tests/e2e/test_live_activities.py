"""Live Activities driven by events, end to end: devices register their push-to-start and
activity tokens through the HTTP API; an event's create, update and close reach the validating
TLS mock APNs as liveactivity start, update and end pushes (and FCM devices as one tagged
ongoing notification); devices without tokens get their usual notifications; a dead activity
token is retired alone."""

from __future__ import annotations

import time
from typing import Any

import anyio
import sqlalchemy as sa

from pushgo.protocol import liveactivity as LA
from pushgo.store.schema import (
    deliveries,
    devices,
    live_activities,
    live_activity_start_tokens,
    operations,
)
from pushgo.testing.mock_apns import APNsNotification
from tests.e2e.test_delivery import apns_token, device, fcm_token, join
from tests.helpers import PASSWORD, call, fail, new_channel, rows
from tests.providers import TOPIC

LIVE_TOPIC = TOPIC + ".push-type.liveactivity"
T0 = 1_710_000_000


async def event(client, cid: str, action: str, **fields: Any) -> dict[str, Any]:
    body = {"channel_id": cid, "password": PASSWORD, "event_time": T0, "message": "m",
            "severity": "normal", **fields}
    return await call(client, f"/event/{action}", body)


def to(token: str):
    return lambda n: n.token == token


async def one(providers, token: str, n: int) -> APNsNotification:
    """The ``n``-th (1-based) push the mock answered for ``token``."""
    got: list[APNsNotification] = await providers.apns.wait_for(n, to(token))
    return got[n - 1]


async def settled(gateway, op_id: str, n: int) -> dict[str, tuple[str, str | None]]:
    """The provider deliveries of ``op_id`` per device once ``n`` of them left the queue."""
    def q(conn):
        found = conn.execute(
            sa.select(deliveries.c.device_key, deliveries.c.state, deliveries.c.last_error)
            .select_from(deliveries.join(operations, operations.c.op_pk == deliveries.c.op_pk))
            .where(operations.c.op_id == op_id, deliveries.c.route != "private"))
        return {r.device_key: (r.state, r.last_error) for r in found}

    with anyio.fail_after(10):
        while True:
            got: dict[str, tuple[str, str | None]] = await gateway.store.read(q)
            if sum(1 for s, _ in got.values() if s != "queued") >= n:
                return got
            await anyio.sleep(0.02)


def assert_live(note: APNsNotification, event_name: str) -> dict[str, Any]:
    assert note.status == 200, note.reason
    assert note.headers["apns-push-type"] == "liveactivity"
    assert note.headers["apns-topic"] == LIVE_TOPIC
    aps: dict[str, Any] = note.payload["aps"]
    assert aps["event"] == event_name
    assert isinstance(aps["timestamp"], int) and abs(aps["timestamp"] - time.time()) < 3600
    return aps


async def test_an_event_drives_a_live_activity_and_an_ongoing_fcm_notification(
        pclient, pgateway, providers):
    start_tok, plain_tok, and_tok = apns_token(), apns_token(), fcm_token()
    live = await device(pclient, "ios", "apns", apns_token())
    plain = await device(pclient, "ios", "apns", plain_tok)
    android = await device(pclient, "android", "fcm", and_tok)
    cid = await new_channel(pclient, live)
    await join(pclient, plain, cid)
    await join(pclient, android, cid)
    await call(pclient, "/device/liveactivity/start-token",
               {"device_key": live, "token": start_tok})

    created = await event(pclient, cid, "create", title="Door open", status="Open",
                          message="Rear door open", severity="high")
    eid = created["event_id"]
    aps = assert_live(await one(providers, start_tok, 1), "start")
    assert aps["attributes-type"] == "PushGoEventActivityAttributes"
    assert aps["attributes"] == {"eventID": eid, "channelID": cid}
    assert aps["alert"] == {"title": "Door open", "body": "Rear door open"}
    assert aps["content-state"]["state"] == "ONGOING"
    assert aps["content-state"]["status"] == "Open"
    [op] = await rows(pgateway, operations, op_id=created["op_id"])
    assert aps["stale-date"] == op.expires_at // 1000  # the event's TTL
    assert "dismissal-date" not in aps
    # The device without Live Activity tokens gets today's alert.
    alert = await one(providers, plain_tok, 1)
    assert alert.headers["apns-push-type"] == "alert" and alert.headers["apns-topic"] == TOPIC
    assert alert.payload["event_id"] == eid
    [fcm_start] = await providers.fcm.messages.wait_for(1)
    tag = LA.fcm_tag(cid, eid)
    assert fcm_start.message["data"]["live_activity"] == "start"
    assert fcm_start.message["data"]["live_tag"] == tag
    assert fcm_start.message["data"]["live_ongoing"] == "1"
    assert await settled(pgateway, created["op_id"], 3) == {
        live: ("sent", None), plain: ("sent", None), android: ("sent", None)}

    # The app started the activity and registers its update token.
    update_tok = apns_token()
    await call(pclient, "/device/liveactivity/token",
               {"device_key": live, "channel_id": cid, "event_id": eid, "token": update_tok})
    updated = await event(pclient, cid, "update", event_id=eid, status="Closing",
                          message="Someone is on it", severity="normal")
    aps = assert_live(await one(providers, update_tok, 1), "update")
    assert aps["content-state"]["status"] == "Closing"
    assert aps["content-state"]["body"] == "Someone is on it"
    assert "attributes" not in aps and "alert" not in aps  # a quiet update
    await one(providers, plain_tok, 2)
    fcm_update = (await providers.fcm.messages.wait_for(2))[1]
    assert fcm_update.message["data"]["live_activity"] == "update"
    assert fcm_update.message["data"]["live_tag"] == tag
    await settled(pgateway, updated["op_id"], 3)

    closed = await event(pclient, cid, "close", event_id=eid, status="Closed",
                         message="Door shut")
    aps = assert_live(await one(providers, update_tok, 2), "end")
    assert aps["content-state"]["state"] == "CLOSED"
    assert aps["dismissal-date"] == aps["timestamp"] + LA.DISMISS_AFTER_S
    assert "stale-date" not in aps
    await one(providers, plain_tok, 3)
    fcm_end = (await providers.fcm.messages.wait_for(3))[2]
    assert fcm_end.message["data"]["live_activity"] == "end"
    assert fcm_end.message["data"]["live_ongoing"] == "0"
    assert await settled(pgateway, closed["op_id"], 3) == {
        live: ("sent", None), plain: ("sent", None), android: ("sent", None)}
    # The activity ended with its event; the push-to-start token stays for the next one.
    assert await rows(pgateway, live_activities, device_key=live) == []
    assert len(await rows(pgateway, live_activity_start_tokens, device_key=live)) == 1
    assert [n.payload["aps"]["event"] for n in providers.apns.live_activities] == [
        "start", "update", "end"]
    # Every payload stays in the device's inbox, Live Activity or not.
    items = (await call(pclient, "/messages/pull", {"device_key": live}))["items"]
    assert [i["payload"]["op_id"] for i in items] == [
        created["op_id"], updated["op_id"], closed["op_id"]]


async def test_an_update_without_an_activity_token_is_the_usual_alert(
        pclient, pgateway, providers):
    device_tok, start_tok = apns_token(), apns_token()
    key = await device(pclient, "ios", "apns", device_tok)
    cid = await new_channel(pclient, key)
    await call(pclient, "/device/liveactivity/start-token", {"device_key": key, "token": start_tok})
    created = await event(pclient, cid, "create", title="Backup", status="Running")
    assert_live(await one(providers, start_tok, 1), "start")
    await event(pclient, cid, "update", event_id=created["event_id"], status="Slow")
    note = await one(providers, device_tok, 1)
    assert note.headers["apns-push-type"] == "alert"
    assert note.payload["status"] == "Slow"
    # Without a push-to-start token, a new event is an alert too.
    await call(pclient, "/device/liveactivity/start-token/delete", {"device_key": key})
    await event(pclient, cid, "create", title="Restore", status="Running")
    second = await one(providers, device_tok, 2)
    assert second.headers["apns-push-type"] == "alert"
    assert len(providers.apns.live_activities) == 1


async def test_a_dead_activity_token_is_retired_alone(pclient, pgateway, providers):
    device_tok, start_tok, update_tok = apns_token(), apns_token(), apns_token()
    key = await device(pclient, "ios", "apns", device_tok)
    cid = await new_channel(pclient, key)
    await call(pclient, "/device/liveactivity/start-token", {"device_key": key, "token": start_tok})
    created = await event(pclient, cid, "create", title="Deploy", status="Started")
    eid = created["event_id"]
    await one(providers, start_tok, 1)
    await call(pclient, "/device/liveactivity/token",
               {"device_key": key, "channel_id": cid, "event_id": eid, "token": update_tok})
    providers.apns.unregister(update_tok)  # the activity was dismissed: 410 Unregistered
    updated = await event(pclient, cid, "update", event_id=eid, status="Halfway")
    refused = await one(providers, update_tok, 1)
    assert (refused.status, refused.reason) == (410, "Unregistered")
    assert await settled(pgateway, updated["op_id"], 1) == {key: ("failed", "Unregistered")}
    # That token alone went: the device keeps its route and its push-to-start token ...
    assert await rows(pgateway, live_activities, device_key=key) == []
    [dev] = await rows(pgateway, devices, device_key=key)
    assert (dev.channel_type, dev.provider_token) == ("apns", device_tok)
    assert len(await rows(pgateway, live_activity_start_tokens, device_key=key)) == 1
    # ... and the next update is its usual alert.
    await event(pclient, cid, "update", event_id=eid, status="Done soon")
    note = await one(providers, device_tok, 1)
    assert note.headers["apns-push-type"] == "alert" and note.payload["status"] == "Done soon"


async def test_a_dead_push_to_start_token_is_retired_and_the_route_stays(
        pclient, pgateway, providers):
    device_tok, start_tok = apns_token(), apns_token()
    key = await device(pclient, "ios", "apns", device_tok)
    cid = await new_channel(pclient, key)
    await call(pclient, "/device/liveactivity/start-token", {"device_key": key, "token": start_tok})
    providers.apns.reject(start_tok, 400, "BadDeviceToken")
    created = await event(pclient, cid, "create", title="Deploy", status="Started")
    assert await settled(pgateway, created["op_id"], 1) == {key: ("failed", "BadDeviceToken")}
    assert await rows(pgateway, live_activity_start_tokens, device_key=key) == []
    [dev] = await rows(pgateway, devices, device_key=key)
    assert dev.provider_token == device_tok
    await event(pclient, cid, "create", title="Deploy 2", status="Started")
    note = await one(providers, device_tok, 1)
    assert note.headers["apns-push-type"] == "alert"


async def test_token_routes_refuse_what_cannot_have_a_live_activity(pclient, pgateway):
    ios = await device(pclient, "ios", "apns", apns_token())
    android = await device(pclient, "android", "fcm", fcm_token())
    private_ios = await device(pclient, "ios", "private", None)
    cid = await new_channel(pclient, ios)
    created = await event(pclient, cid, "create", title="Door", status="Open")
    eid = created["event_id"]
    good = "ab" * 32
    start = "/device/liveactivity/start-token"
    token = "/device/liveactivity/token"
    await fail(pclient, start, {"device_key": android, "token": good}, 400,
               "live_activity_requires_ios_apns")
    await fail(pclient, start, {"device_key": private_ios, "token": good}, 400,
               "live_activity_requires_ios_apns")
    await fail(pclient, start, {"device_key": "0" * 32, "token": good}, 400,
               "device_key_not_found")
    await fail(pclient, start, {"device_key": ios, "token": "not-hex"}, 400,
               "invalid_provider_token")
    await fail(pclient, start, {"device_key": ios, "token": " "}, 400, "provider_token_required")
    await fail(pclient, start, {"device_key": ios}, 400, "invalid_json_data")
    activity = {"device_key": ios, "channel_id": cid, "token": good}
    await fail(pclient, token, {**activity, "event_id": "nope"}, 404, "event_not_found")
    await fail(pclient, token, {**activity, "event_id": "bad id!"}, 400, "invalid_event_id")
    await fail(pclient, token, {**activity, "channel_id": "x", "event_id": eid}, 400,
               "invalid_channel_id")
    await event(pclient, cid, "close", event_id=eid, status="Shut")
    await fail(pclient, token, {**activity, "event_id": eid}, 409, "event_closed")
    assert await rows(pgateway, live_activities) == []
    assert await rows(pgateway, live_activity_start_tokens) == []
