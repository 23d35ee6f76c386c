"""The PushGo Android app v1.3.0's gateway contract. The official v1.3.0 source is not
stored here (the stored AldenClark/pushgo-android is v1.2.2); its v1.3 contract is read from
Self-Command/pushgo-android-hms, an Android build on it (``ChannelSubscriptionService.kt``):
``/v2/messages/pull`` first, falling back to ``/messages/pull`` only on 404
``route_not_found``; ``/v2/messages/ack`` with distinct sorted ids, checking ``requested_count``
equals their number and ``removed_count`` lies in 0..requested (both JSON integers); the token
retire naming ``device_key`` and ``channel_type``."""

from __future__ import annotations

from typing import Any

import httpx

from tests.compat.client_shapes import data_of, string_map
from tests.helpers import PASSWORD

HEADERS = {"content-type": "application/json; charset=utf-8", "accept": "application/json",
           "accept-language": "zh-CN"}


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    return await client.post(path, json=body, headers=HEADERS)


def strict_int(value: Any) -> int:
    """``strictInt``: a JSON number with an integral value (a bool or string is not)."""
    assert isinstance(value, int) and not isinstance(value, bool), value
    return value


async def test_pull_pages_and_batch_ack(client, gateway):
    key = data_of(await post(client, "/device/register", {"platform": "android"}))["device_key"]
    cid = data_of(await post(client, "/channel/subscribe", {
        "device_key": key, "channel_name": "Ops", "password": PASSWORD}))["channel_id"]
    for i in range(205):
        data_of(await client.post("/message", json={"channel_id": cid, "password": PASSWORD,
                                                    "title": f"m{i}"}))
    seen: list[str] = []
    while True:
        page = data_of(await post(client, "/v2/messages/pull", {"device_key": key}))
        items = [(i["delivery_id"].strip(), string_map(i["payload"])) for i in page["items"]]
        if not items:
            assert page["has_more"] is False
            break
        seen += [p["title"] for _, p in items]
        ids = sorted({d for d, _ in items})
        assert 0 < len(ids) <= 200
        ack = data_of(await post(client, "/v2/messages/ack",
                                 {"device_key": key, "delivery_ids": ids}))
        requested, removed = strict_int(ack["requested_count"]), strict_int(ack["removed_count"])
        assert requested == len(ids) and 0 <= removed <= requested and removed == len(ids)
        if not page["has_more"]:
            break
    assert seen == [f"m{i}" for i in range(205)]


async def test_retire_names_the_route_it_leaves(client, gateway):
    key = data_of(await post(client, "/device/register", {"platform": "android"}))["device_key"]
    token = "fcm-" + "y" * 60
    data_of(await post(client, "/channel/device", {
        "device_key": key, "platform": "android", "channel_type": "fcm",
        "provider_token": token}))
    # retireProviderToken(platform, provider_token, device_key, channel_type)
    data_of(await post(client, "/channel/device/provider-token/retire", {
        "platform": "android", "provider_token": token, "device_key": key,
        "channel_type": "fcm"}))
    route = data_of(await post(client, "/channel/device", {
        "device_key": key, "platform": "android", "channel_type": "private"}))
    assert route["device_key"] == key


async def test_metadata_cards_up_to_16_kib(client, gateway):
    key = data_of(await post(client, "/device/register", {"platform": "android"}))["device_key"]
    cid = data_of(await post(client, "/channel/subscribe", {
        "device_key": key, "channel_name": "Ops", "password": PASSWORD}))["channel_id"]
    card = "任务" * 2000  # 12,000 UTF-8 bytes
    data_of(await client.post("/message", json={"channel_id": cid, "password": PASSWORD,
                                                "title": "t", "metadata": {"task_card": card}}))
    (item,) = data_of(await post(client, "/v2/messages/pull", {"device_key": key}))["items"]
    assert '"task_card":"' + card + '"' in string_map(item["payload"])["metadata"]
