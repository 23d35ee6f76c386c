"""POST /v2/messages/pull and /v2/messages/ack: the v1.3 inbox contract (non-destructive pages
of at most 200 with ``has_more``, acknowledged by ``delivery_ids``), beside v1's destructive
/messages/pull, which stays as it was."""

from __future__ import annotations

from typing import Any

from pushgo.store.schema import deliveries
from tests.helpers import call, fail, pull, register, rows, send, stored_channel


async def setup(gateway: Any, client: Any) -> tuple[str, str]:
    key = await register(client)
    return key, await stored_channel(gateway, key)


async def pull_v2(client: Any, key: str, delivery_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"device_key": key}
    if delivery_id is not None:
        body["delivery_id"] = delivery_id
    data = await call(client, "/v2/messages/pull", body)
    assert set(data) == {"items", "has_more"} and isinstance(data["has_more"], bool)
    for item in data["items"]:
        # what the apps decode: the outer delivery_id and a flat string → string payload
        assert set(item) == {"delivery_id", "payload"}
        assert all(isinstance(v, str) for v in item["payload"].values())
        assert item["payload"]["delivery_id"] == item["delivery_id"]
    return data


async def ack_v2(client: Any, key: str, ids: list[str]) -> dict[str, Any]:
    data = await call(client, "/v2/messages/ack", {"device_key": key, "delivery_ids": ids})
    assert set(data) == {"requested_count", "removed_count"}
    return data


async def test_pull_v2_leaves_items_until_they_are_acknowledged(client, gateway):
    key, cid = await setup(gateway, client)
    sent = [await send(client, cid, title=f"m{i}") for i in range(3)]
    first = await pull_v2(client, key)
    assert [i["payload"]["message_id"] for i in first["items"]] == [s["message_id"] for s in sent]
    assert first["has_more"] is False
    again = await pull_v2(client, key)
    assert again["items"] == first["items"]  # not destructive
    ids = [i["delivery_id"] for i in first["items"]]
    assert await ack_v2(client, key, ids[:2]) == {"requested_count": 2, "removed_count": 2}
    assert [i["delivery_id"] for i in (await pull_v2(client, key))["items"]] == ids[2:]
    (row,) = [r for r in await rows(gateway, deliveries, device_key=key)
              if r.delivery_id == ids[0]]
    assert (row.inbox, row.state) == (False, "sent")  # a private delivery the device has


async def test_pages_hold_200_and_say_when_more_wait(client, gateway):
    key, cid = await setup(gateway, client)
    for i in range(201):
        await send(client, cid, title=f"m{i}")
    page = await pull_v2(client, key)
    assert len(page["items"]) == 200 and page["has_more"] is True
    assert page["items"][0]["payload"]["title"] == "m0"
    ids = [i["delivery_id"] for i in page["items"]]
    assert await ack_v2(client, key, ids) == {"requested_count": 200, "removed_count": 200}
    last = await pull_v2(client, key)
    assert [i["payload"]["title"] for i in last["items"]] == ["m200"]
    assert last["has_more"] is False


async def test_ack_counts_distinct_ids_and_removes_only_the_devices_own(client, gateway):
    key, cid = await setup(gateway, client)
    other = await register(client)
    await send(client, cid)
    (item,) = (await pull_v2(client, key))["items"]
    did = item["delivery_id"]
    assert await ack_v2(client, other, [did]) == {"requested_count": 1, "removed_count": 0}
    assert await ack_v2(client, key, [did, f" {did} ", "f" * 32]) == {
        "requested_count": 2, "removed_count": 1}
    assert await ack_v2(client, key, [did]) == {"requested_count": 1, "removed_count": 0}
    assert (await pull_v2(client, key))["items"] == []


async def test_pull_v2_one_delivery_id(client, gateway):
    key, cid = await setup(gateway, client)
    for i in range(2):
        await send(client, cid, title=f"m{i}")
    first = (await pull_v2(client, key))["items"]
    only = await pull_v2(client, key, first[1]["delivery_id"])
    assert only == {"items": [first[1]], "has_more": False}


async def test_v1_pull_stays_destructive_beside_v2(client, gateway):
    key, cid = await setup(gateway, client)
    await send(client, cid)
    assert len((await pull_v2(client, key))["items"]) == 1
    assert len(await pull(client, key)) == 1
    assert (await pull_v2(client, key))["items"] == []


async def test_bad_acks_and_pulls_are_refused(client, gateway):
    key = await register(client)
    await fail(client, "/v2/messages/ack", {"device_key": key, "delivery_ids": []}, 400,
               "invalid_delivery_ids")
    await fail(client, "/v2/messages/ack", {"device_key": key, "delivery_ids": [" "]}, 400,
               "invalid_delivery_ids")
    await fail(client, "/v2/messages/ack",
               {"device_key": key, "delivery_ids": [f"{i:032x}" for i in range(201)]}, 400,
               "invalid_delivery_ids")
    await fail(client, "/v2/messages/ack", {"device_key": " ", "delivery_ids": ["a"]}, 400,
               "device_key_required")
    await fail(client, "/v2/messages/pull", {"device_key": key, "delivery_id": " "}, 400,
               "delivery_id_required")
    await fail(client, "/v2/messages/pull", {"device_key": key, "cursor": "x"}, 400,
               "invalid_json_data")
