"""PushGo Gateway v1.3 routes and rules: GET /send_status/{op_id}, POST
/thing/{thing_id}/event/close, an event close without event_time, and the route a v1.3 app
names when it retires a provider token."""

from __future__ import annotations

import time
from typing import Any

from pushgo.store.schema import devices, events
from tests.helpers import (
    PASSWORD,
    call,
    eventually,
    fail,
    pull,
    register,
    rows,
    send,
    stored_channel,
)

T0 = 1_710_000_000
APNS_TOKEN = "ab" * 32


async def setup(gateway: Any, client: Any) -> tuple[str, str]:
    key = await register(client)
    return key, await stored_channel(gateway, key)


async def send_status(client: Any, op_id: str) -> dict[str, Any]:
    data = await call(client, f"/send_status/{op_id}")
    assert {"op_id", "status", "reason", "total", "sent", "failed", "queued"} <= set(data)
    return data


async def test_send_status_follows_a_private_delivery(client, gateway):
    key, cid = await setup(gateway, client)
    op_id = (await send(client, cid))["op_id"]
    waiting = await send_status(client, op_id)
    assert (waiting["status"], waiting["reason"]) == ("accepted", "private_pending")
    assert (waiting["op_id"], waiting["channel_id"], waiting["total"]) == (op_id, cid, 1)
    await pull(client, key)

    async def sent() -> dict[str, Any] | None:  # status documents are shared for 0.25 s
        doc = await send_status(client, op_id)
        return doc if doc["status"] != "accepted" else None

    done = await eventually(sent)
    assert done is not None
    assert (done["status"], done["reason"], done["sent"], done["queued"]) == (
        "sent", "provider_success", 1, 0)


async def test_send_status_of_a_failed_provider_delivery_and_of_no_recipients(client, gateway):
    ios = await register(client)
    await call(client, "/channel/device", {"device_key": ios, "channel_type": "apns",
                                           "provider_token": APNS_TOKEN})
    cid = await stored_channel(gateway, ios)
    op_id = (await send(client, cid))["op_id"]

    async def settled() -> dict[str, Any] | None:
        doc = await send_status(client, op_id)
        return doc if doc["status"] != "provider_queued" else None

    doc = await eventually(settled)  # no APNs configured here: the delivery fails
    assert doc is not None
    assert (doc["status"], doc["reason"], doc["failed"]) == ("failed", "provider_failed", 1)
    empty = await stored_channel(gateway)
    nobody = await send_status(client, (await send(client, empty))["op_id"])
    assert (nobody["status"], nobody["reason"], nobody["total"]) == (
        "accepted", "no_recipients", 0)


async def test_send_status_of_an_unknown_operation_is_404(client, gateway):
    resp = await client.get(f"/send_status/{'f' * 32}")
    assert resp.status_code == 404 and resp.json()["error_code"] == "operation_not_found"


async def close_body(cid: str, event_id: str, **fields: Any) -> dict[str, Any]:
    return {"channel_id": cid, "password": PASSWORD, "event_id": event_id,
            "status": "closed", "message": "closed", "severity": "normal", **fields}


async def test_the_thing_scoped_close_closes_the_things_event(client, gateway):
    key, cid = await setup(gateway, client)
    thing_id = (await call(client, "/thing/create", {
        "channel_id": cid, "password": PASSWORD, "title": "Door", "observed_at": T0}))["thing_id"]
    event_id = (await call(client, "/event/create", {
        "channel_id": cid, "password": PASSWORD, "thing_id": thing_id, "title": "Open",
        "status": "open", "message": "open", "severity": "high", "event_time": T0}))["event_id"]
    await pull(client, key)
    # the iOS app's body: event_time in seconds, empty attrs, the thing id in body and path
    data = await call(client, f"/thing/{thing_id}/event/close", await close_body(
        cid, event_id, thing_id=thing_id, event_time=T0 + 60, attrs={}, op_id="c" * 32))
    assert (data["accepted"], data["event_id"], data["thing_id"]) == (True, event_id, thing_id)
    (row,) = await rows(gateway, events, event_id=event_id)
    assert (row.state, row.thing_id, row.ended_at) == ("CLOSED", thing_id, (T0 + 60) * 1000)
    (item,) = await pull(client, key)
    assert (item["payload"]["event_state"], item["payload"]["thing_id"]) == ("CLOSED", thing_id)


async def test_the_thing_scoped_close_refuses_a_body_naming_another_thing(client, gateway):
    _key, cid = await setup(gateway, client)
    await fail(client, "/thing/t1/event/close",
               await close_body(cid, "e1", thing_id="t2", event_time=T0), 400,
               "thing_id_mismatch")


async def test_a_close_without_event_time_happened_now(client, gateway):
    _key, cid = await setup(gateway, client)
    event_id = (await call(client, "/event/create", {
        "channel_id": cid, "password": PASSWORD, "title": "Open", "status": "open",
        "message": "open", "severity": "high", "event_time": T0}))["event_id"]
    before = int(time.time() * 1000)
    # the Android app's body: no event_time, no attrs
    await call(client, "/event/close", await close_body(cid, event_id, op_id="d" * 32))
    after = int(time.time() * 1000)
    (row,) = await rows(gateway, events, event_id=event_id)
    assert row.state == "CLOSED" and before <= row.ended_at <= after
    assert before <= row.event_time <= after
    await fail(client, "/event/update", await close_body(cid, event_id), 400,
               "event_time_required")  # only a close defaults it


async def route_of(gateway: Any, key: str) -> tuple[str, str | None]:
    (row,) = await rows(gateway, devices, device_key=key)
    return row.channel_type, row.provider_token


async def test_a_retire_naming_the_route_retires_only_that_route(client, gateway):
    key = await register(client, "android")
    token = "fcm-" + "1" * 40
    await call(client, "/channel/device", {"device_key": key, "channel_type": "fcm",
                                           "platform": "android", "provider_token": token})
    # a late retire for another device or another route type leaves this route alone
    for other in ({"device_key": await register(client, "android"), "channel_type": "fcm"},
                  {"device_key": key, "channel_type": "private"}):
        data = await call(client, "/channel/device/provider-token/retire",
                          {"platform": "android", "provider_token": token, **other})
        assert data == {"retired": False}
        assert await route_of(gateway, key) == ("fcm", token)
    data = await call(client, "/channel/device/provider-token/retire", {
        "platform": "android", "provider_token": token, "device_key": key,
        "channel_type": "fcm"})
    assert data == {"retired": True}
    assert await route_of(gateway, key) == ("private", None)


async def test_a_retire_without_the_route_works_as_in_v1_2_9(client, gateway):
    key = await register(client, "android")
    token = "fcm-" + "2" * 40
    await call(client, "/channel/device", {"device_key": key, "channel_type": "fcm",
                                           "platform": "android", "provider_token": token})
    data = await call(client, "/channel/device/provider-token/retire",
                      {"platform": "android", "provider_token": token, "device_key": "",
                       "channel_type": ""})
    assert data == {"retired": True}
    assert await route_of(gateway, key) == ("private", None)
    await fail(client, "/channel/device/provider-token/retire",
               {"platform": "android", "provider_token": token, "channel_type": "pigeon"}, 400,
               "invalid_channel_type")
