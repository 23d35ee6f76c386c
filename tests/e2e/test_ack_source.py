"""A direct provider push carries what a v1.3 app needs to acknowledge it: ``base_url`` (from
PUSHGO_PUBLIC_BASE_URL, when set) and ``provider_device_key`` (the device the route belongs
to). The iOS app's notification service reads both from the payload, then sends
``POST /messages/ack {device_key: provider_device_key, delivery_id}`` and expects
``removed: true``; the delivery must then be gone from its /v2/messages/pull."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from tests.helpers import PASSWORD, call, new_channel, register

BASE = "https://gateway.example.test"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"public_base_url": BASE + "/"}


async def device(client: Any, platform: str, route: str, token: str) -> str:
    key = await register(client, platform)
    await call(client, "/channel/device", {"device_key": key, "channel_type": route,
                                           "provider_token": token})
    return key


async def test_a_direct_apns_push_names_its_ack_source_and_the_ack_removes_it(
        pclient, pgateway, providers):
    ios = await device(pclient, "ios", "apns", secrets.token_hex(32))
    cid = await new_channel(pclient, ios)
    await call(pclient, "/message", {"channel_id": cid, "password": PASSWORD, "title": "t"})
    [note] = await providers.apns.wait_for(1)
    payload = note.payload
    assert "aps" in payload and payload["title"] == "t"
    assert payload["base_url"] == BASE  # trailing slash dropped, as v1.2.9/v1.3
    assert payload["provider_device_key"] == ios
    delivery_id = payload["delivery_id"]
    pulled = await call(pclient, "/v2/messages/pull", {"device_key": ios})
    assert [i["delivery_id"] for i in pulled["items"]] == [delivery_id]  # kept until acked
    # what the iOS app sends after a direct push (ProviderDeliveryAckFailureStore: legacySingle)
    ack = await call(pclient, "/messages/ack", {"device_key": payload["provider_device_key"],
                                                "delivery_id": delivery_id})
    assert ack == {"removed": True}
    assert (await call(pclient, "/v2/messages/pull", {"device_key": ios}))["items"] == []


async def test_a_direct_fcm_push_names_its_ack_source(pclient, pgateway, providers):
    android = await device(pclient, "android", "fcm", "fcm-" + secrets.token_urlsafe(40))
    cid = await new_channel(pclient, android)
    await call(pclient, "/message", {"channel_id": cid, "password": PASSWORD, "title": "t"})
    [msg] = await providers.fcm.messages.wait_for(1)
    data = msg.message["data"]
    assert (data["base_url"], data["provider_device_key"]) == (BASE, android)
    batch = await call(pclient, "/v2/messages/ack",
                       {"device_key": android, "delivery_ids": [data["delivery_id"]]})
    assert batch == {"requested_count": 1, "removed_count": 1}


async def test_a_wakeup_push_names_no_device(pclient, pgateway, providers):
    """Past 4 KiB the push is a wake-up; the app pulls with its own device key (v1.3 keeps the
    ack source out of wake-ups)."""
    ios = await device(pclient, "ios", "apns", secrets.token_hex(32))
    cid = await new_channel(pclient, ios)
    await call(pclient, "/message", {"channel_id": cid, "password": PASSWORD, "title": "t",
                                     "metadata": {"card": "x" * 8000}})
    [note] = await providers.apns.wait_for(1)
    assert note.payload["provider_wakeup"] == "1"
    assert "provider_device_key" not in note.payload
    (item,) = (await call(pclient, "/v2/messages/pull", {"device_key": ios}))["items"]
    assert item["delivery_id"] == note.payload["delivery_id"]
    assert len(item["payload"]["metadata"]) > 8000
