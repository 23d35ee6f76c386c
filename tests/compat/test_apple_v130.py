"""The PushGo apps v1.3.0 for iOS, macOS and watchOS (AldenClark/pushgo,
``Shared/Services/ChannelSubscriptionService.swift``, the ``AppEnvironment`` event close, the
watchOS notification service). Swift's Codable omits nil optionals, sends ``Accept-Language``
and ``Authorization: Bearer`` when a token is set, and decodes the envelope's ``data`` into the
Structs named below; a required field missing or of the wrong type fails the whole call."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from tests.compat.client_shapes import data_of, problem_of, string_map
from tests.helpers import PASSWORD

HEADERS = {"accept": "application/json", "accept-language": "zh-CN, en"}
APNS_TOKEN = "a1" * 32


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    return await client.post(path, json=body, headers=HEADERS)


async def registered(client: httpx.AsyncClient, platform: str = "ios") -> str:
    # DeviceRegisterRequest(deviceKey: nil, platform:) → DeviceRegisterPayload.device_key
    data = data_of(await post(client, "/device/register", {"platform": platform}))
    assert isinstance(data["device_key"], str) and data["device_key"].strip()
    return str(data["device_key"])


async def subscribed(client: httpx.AsyncClient, key: str) -> str:
    # SubscribeRequest → SubscribePayload: channel_id, channel_name, created, subscribed
    data = data_of(await post(client, "/channel/subscribe", {
        "device_key": key, "channel_name": "Home", "password": PASSWORD}))
    assert isinstance(data["channel_id"], str) and data["channel_name"] == "Home"
    assert data["created"] is True and data["subscribed"] is True
    return str(data["channel_id"])


async def send(client: httpx.AsyncClient, cid: str, title: str) -> None:
    data_of(await client.post("/message", json={"channel_id": cid, "password": PASSWORD,
                                                "title": title}))


async def test_device_and_route_lifecycle(client, gateway):
    for platform in ("ios", "macos", "watchos"):
        key = await registered(client, platform)
        again = data_of(await post(client, "/device/register",
                                   {"device_key": key, "platform": platform}))
        assert again["device_key"] == key
        # DeviceChannelUpsertRequest → DeviceChannelPayload (device_key, channel_type?, …)
        route = data_of(await post(client, "/channel/device", {
            "device_key": key, "platform": platform, "channel_type": "apns",
            "provider_token": APNS_TOKEN if platform == "ios" else secrets.token_hex(32)}))
        assert route["device_key"] == key and route["channel_type"] == "apns"
        # DeviceChannelDeleteRequest → EmptyPayload
        data_of(await post(client, "/channel/device/delete",
                           {"device_key": key, "channel_type": "apns"}))
        private = data_of(await post(client, "/channel/device", {
            "device_key": key, "platform": platform, "channel_type": "private"}))
        assert private["device_key"] == key and private.get("provider_token") is None
    # ProviderTokenRetireRequest(platform, provider_token) → EmptyPayload
    data_of(await post(client, "/channel/device/provider-token/retire",
                       {"platform": "ios", "provider_token": APNS_TOKEN}))


async def test_channel_management(client, gateway):
    key = await registered(client)
    cid = await subscribed(client, key)
    # ExistsPayload: channel_id, exists, channel_name?
    exists = data_of(await client.get("/channel/exists", params={"channel_id": cid},
                                      headers=HEADERS))
    assert (exists["channel_id"], exists["exists"], exists["channel_name"]) == (cid, True, "Home")
    # RenamePayload: channel_id, channel_name
    renamed = data_of(await post(client, "/channel/rename", {
        "channel_id": cid, "channel_name": "House", "password": PASSWORD}))
    assert (renamed["channel_id"], renamed["channel_name"]) == (cid, "House")
    # SyncPayload: success, failed (Int), channels[SyncResult: channel_id, channel_name?,
    # subscribed, error?, error_code?]
    sync = data_of(await post(client, "/channel/sync", {"device_key": key, "channels": [
        {"channel_id": cid, "password": PASSWORD},
        {"channel_id": cid, "password": "wrong-password-1"}]}))
    assert (sync["success"], sync["failed"]) == (1, 1)
    ok, bad = sync["channels"]
    assert (ok["channel_id"], ok["subscribed"], ok["channel_name"]) == (cid, True, "House")
    assert bad["subscribed"] is False and bad["error_code"] == "password_mismatch"
    # UnsubscribePayload: channel_id, removed
    gone = data_of(await post(client, "/channel/unsubscribe",
                              {"device_key": key, "channel_id": cid}))
    assert (gone["channel_id"], gone["removed"]) == (cid, True)


async def test_v2_pull_and_batch_ack(client, gateway):
    key = await registered(client)
    cid = await subscribed(client, key)
    for i in range(3):
        await send(client, cid, f"m{i}")
    # PullRequest(device_key, delivery_id: nil) → PullResponse: items[PullItem], has_more?
    page = data_of(await post(client, "/v2/messages/pull", {"device_key": key}))
    assert page["has_more"] is False
    items = page["items"]
    assert [string_map(i["payload"])["title"] for i in items] == ["m0", "m1", "m2"]
    ids = [i["delivery_id"] for i in items]
    # the watchOS service pulls one delivery id
    one = data_of(await post(client, "/v2/messages/pull", {"device_key": key,
                                                           "delivery_id": ids[1]}))
    assert [i["delivery_id"] for i in one["items"]] == [ids[1]]
    # BatchAckRequest(device_key, delivery_ids) → BatchAckResponse (Int, Int); the
    # notification service requires removed_count == 1 for a fresh single-id ack
    ack = data_of(await post(client, "/v2/messages/ack", {"device_key": key,
                                                          "delivery_ids": [ids[0]]}))
    assert ack == {"requested_count": 1, "removed_count": 1}
    ack = data_of(await post(client, "/v2/messages/ack", {"device_key": key,
                                                          "delivery_ids": ids}))
    assert ack == {"requested_count": 3, "removed_count": 2}
    empty = data_of(await post(client, "/v2/messages/pull", {"device_key": key}))
    assert empty == {"items": [], "has_more": False}


async def test_legacy_single_ack_and_the_v2_fallback_signal(client, gateway):
    key = await registered(client)
    cid = await subscribed(client, key)
    await send(client, cid, "direct")
    (item,) = data_of(await post(client, "/v2/messages/pull", {"device_key": key}))["items"]
    # AckRequest(device_key, delivery_id) → AckResponse.removed (the direct-push ack)
    assert data_of(await post(client, "/messages/ack", {
        "device_key": key, "delivery_id": item["delivery_id"]})) == {"removed": True}
    # the app falls back to /messages/pull only on 404 with code route_not_found
    missing = await post(client, "/v3/messages/pull", {"device_key": key})
    assert missing.status_code == 404 and problem_of(missing)["code"] == "route_not_found"


async def test_event_close_plain_and_thing_scoped(client, gateway):
    key = await registered(client)
    cid = await subscribed(client, key)
    thing_id = data_of(await client.post("/thing/create", json={
        "channel_id": cid, "password": PASSWORD, "title": "Door",
        "observed_at": 1_767_225_600}))["thing_id"]
    for scoped in (False, True):
        event = data_of(await client.post("/event/create", json={
            "channel_id": cid, "password": PASSWORD, "title": "Open", "status": "open",
            "message": "open", "severity": "high", "event_time": 1_767_225_600,
            **({"thing_id": thing_id} if scoped else {})}))
        # AppEnvironment's close payload: event_time in seconds, empty attrs, op_id hex128
        body: dict[str, Any] = {
            "channel_id": cid, "password": PASSWORD, "op_id": secrets.token_hex(16),
            "event_id": event["event_id"], "event_time": 1_767_225_660,
            "status": "closed", "message": "closed", "attrs": {}, "severity": "normal"}
        path = "/event/close"
        if scoped:
            body["thing_id"] = thing_id
            path = f"/thing/{thing_id}/event/close"
        closed = data_of(await client.post(path, json=body, headers=HEADERS))
        assert closed["accepted"] is True and closed["event_id"] == event["event_id"]
        assert closed.get("thing_id") == (thing_id if scoped else None)
