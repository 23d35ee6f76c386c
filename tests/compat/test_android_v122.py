"""The PushGo Android app v1.2.2 (AldenClark/pushgo-android at v1.2.2,
``data/ChannelSubscriptionService.kt`` and ``ChannelSubscriptionRepository.kt``): org.json
bodies, ``optString``/``optBoolean`` reads of the envelope's ``data``, payload values turned
into strings. It pulls destructively (``/messages/pull``) and closes events without
``event_time``."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from tests.compat.client_shapes import data_of, problem_of, string_map
from tests.helpers import PASSWORD

HEADERS = {"content-type": "application/json; charset=utf-8", "accept": "application/json",
           "accept-language": "en-US"}
FCM_TOKEN = "fcm-" + "x" * 60


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    return await client.post(path, json=body, headers=HEADERS)


async def registered(client: httpx.AsyncClient) -> str:
    data = data_of(await post(client, "/device/register", {"platform": "android"}))
    assert data["device_key"].strip()
    return str(data["device_key"])


async def test_device_route_and_token_retire(client, gateway):
    key = await registered(client)
    assert data_of(await post(client, "/device/register",
                              {"device_key": key, "platform": "android"}))["device_key"] == key
    route = data_of(await post(client, "/channel/device", {
        "device_key": key, "platform": "android", "channel_type": "fcm",
        "provider_token": FCM_TOKEN}))
    assert route["device_key"] == key
    data_of(await post(client, "/channel/device/delete",
                       {"device_key": key, "channel_type": "fcm"}))
    data_of(await post(client, "/channel/device", {
        "device_key": key, "platform": "android", "channel_type": "fcm",
        "provider_token": FCM_TOKEN}))
    data_of(await post(client, "/channel/device/provider-token/retire",
                       {"platform": "android", "provider_token": FCM_TOKEN}))


async def test_channels_pull_and_ack(client, gateway):
    key = await registered(client)
    sub = data_of(await post(client, "/channel/subscribe", {
        "device_key": key, "channel_name": "Ops", "password": PASSWORD}))
    cid = sub["channel_id"]
    assert (sub["created"], sub["subscribed"], sub["channel_name"]) == (True, True, "Ops")
    exists = data_of(await client.get(f"/channel/exists?channel_id={cid}", headers=HEADERS))
    assert exists["exists"] is True and exists["channel_name"] == "Ops"
    sync = data_of(await post(client, "/channel/sync", {
        "device_key": key, "channels": [{"channel_id": cid, "password": PASSWORD}]}))
    assert (sync["success"], sync["failed"]) == (1, 0)
    assert sync["channels"][0]["channel_id"] == cid and sync["channels"][0]["subscribed"]
    for title in ("a", "b"):
        data_of(await client.post("/message", json={"channel_id": cid, "password": PASSWORD,
                                                    "title": title}))
    items = data_of(await post(client, "/messages/pull", {"device_key": key}))["items"]
    assert [string_map(i["payload"])["title"] for i in items] == ["a", "b"]
    assert all(i["delivery_id"] for i in items)
    assert data_of(await post(client, "/messages/pull", {"device_key": key}))["items"] == []
    ack = data_of(await post(client, "/messages/ack", {
        "device_key": key, "delivery_id": items[0]["delivery_id"]}))
    assert ack["removed"] is False  # already taken by the destructive pull
    renamed = data_of(await post(client, "/channel/rename", {
        "channel_id": cid, "channel_name": "Ops2", "password": PASSWORD}))
    assert renamed["channel_name"] == "Ops2"
    gone = data_of(await post(client, "/channel/unsubscribe",
                              {"device_key": key, "channel_id": cid}))
    assert gone["removed"] is True


async def test_event_close_without_event_time(client, gateway):
    key = await registered(client)
    cid = data_of(await post(client, "/channel/subscribe", {
        "device_key": key, "channel_name": "Ops", "password": PASSWORD}))["channel_id"]
    thing_id = data_of(await client.post("/thing/create", json={
        "channel_id": cid, "password": PASSWORD, "title": "Pump",
        "observed_at": 1_767_225_600}))["thing_id"]
    for thing in (None, thing_id):
        event_id = data_of(await client.post("/event/create", json={
            "channel_id": cid, "password": PASSWORD, "title": "Leak", "status": "open",
            "message": "open", "severity": "high", "event_time": 1_767_225_600,
            **({"thing_id": thing} if thing else {})}))["event_id"]
        body: dict[str, Any] = {"channel_id": cid, "password": PASSWORD,
                                "op_id": secrets.token_hex(16), "event_id": event_id,
                                "status": "closed", "message": "closed", "severity": "normal"}
        path = "/event/close"
        if thing:
            body["thing_id"] = thing
            path = f"/thing/{thing}/event/close"
        data = data_of(await post(client, path, body))
        # eventToChannel: event_id non-empty, accepted true, thing_id optional
        assert data["event_id"] == event_id and data["accepted"] is True
        assert data.get("thing_id", "") == (thing or "")


async def test_errors_carry_what_the_app_maps(client, gateway):
    key = await registered(client)
    resp = await post(client, "/channel/subscribe", {
        "device_key": key, "channel_id": "0" * 26, "password": PASSWORD})
    assert resp.status_code == 404 and problem_of(resp)["code"] == "channel_not_found"
