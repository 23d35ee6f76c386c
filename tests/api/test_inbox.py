"""POST /messages/pull and /messages/ack: the device inbox (PushGo Gateway v1.2.9's contract)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pushgo.store.schema import deliveries
from tests.helpers import call, fail, pull, register, rows, send, stored_channel

T0 = 1_710_000_000


async def setup(gateway: Any, client: Any, devices: int = 1) -> tuple[list[str], str]:
    keys = [await register(client) for _ in range(devices)]
    return keys, await stored_channel(gateway, *keys)


async def pull_one(client: Any, key: str, delivery_id: str) -> list[dict[str, Any]]:
    data = await call(client, "/messages/pull", {"device_key": key, "delivery_id": delivery_id})
    return list(data["items"])


async def ack(client: Any, key: str, delivery_id: str) -> bool:
    data = await call(client, "/messages/ack", {"device_key": key, "delivery_id": delivery_id})
    assert set(data) == {"removed"}
    return bool(data["removed"])


async def test_pulling_returns_every_waiting_item_oldest_first(client, gateway):
    (key,), cid = await setup(gateway, client)
    sent = [await send(client, cid, title=f"m{i}") for i in range(3)]
    items = await pull(client, key)
    assert [i["payload"]["message_id"] for i in items] == [s["message_id"] for s in sent]
    assert [i["payload"]["title"] for i in items] == ["m0", "m1", "m2"]
    assert all(set(i) == {"delivery_id", "payload"} for i in items)
    assert all(i["payload"]["delivery_id"] == i["delivery_id"] for i in items)


async def test_pulling_is_destructive(client, gateway):
    (key,), cid = await setup(gateway, client)
    await send(client, cid)
    assert len(await pull(client, key)) == 1
    assert await pull(client, key) == []
    (row,) = await rows(gateway, deliveries, device_key=key)
    assert (row.inbox, row.state) == (False, "sent")


async def test_a_device_pulls_only_its_own_items(client, gateway):
    (a, b), cid = await setup(gateway, client, 2)
    await send(client, cid)
    (item_a,) = await pull(client, a)
    assert await pull_one(client, b, item_a["delivery_id"]) == []
    assert await ack(client, b, item_a["delivery_id"]) is False
    assert len(await pull(client, b)) == 1


async def test_an_unknown_device_pulls_an_empty_inbox(client, gateway):
    assert await pull(client, "0" * 32) == []


async def test_pulling_one_delivery_id_takes_only_that_item(client, gateway):
    (key,), cid = await setup(gateway, client)
    for i in range(3):
        await send(client, cid, title=f"m{i}")
    ids = [r.delivery_id for r in sorted(await rows(gateway, deliveries, device_key=key),
                                         key=lambda r: r.seq)]
    (item,) = await pull_one(client, key, f" {ids[1]} ")
    assert item["delivery_id"] == ids[1]
    assert item["payload"]["title"] == "m1"
    assert await pull_one(client, key, ids[1]) == []
    assert [i["delivery_id"] for i in await pull(client, key)] == [ids[0], ids[2]]


async def test_pulling_an_unknown_delivery_id_returns_nothing(client, gateway):
    (key,), cid = await setup(gateway, client)
    await send(client, cid)
    assert await pull_one(client, key, "f" * 32) == []
    assert len(await pull(client, key)) == 1


async def test_acking_removes_an_item_once(client, gateway):
    (key,), cid = await setup(gateway, client)
    await send(client, cid, title="first")
    await send(client, cid, title="second")
    first, _ = sorted(await rows(gateway, deliveries, device_key=key), key=lambda r: r.seq)
    assert await ack(client, key, first.delivery_id) is True
    assert await ack(client, key, first.delivery_id) is False
    assert [i["payload"]["title"] for i in await pull(client, key)] == ["second"]


async def test_acking_a_pulled_or_unknown_item_removes_nothing(client, gateway):
    (key,), cid = await setup(gateway, client)
    await send(client, cid)
    (item,) = await pull(client, key)
    assert await ack(client, key, item["delivery_id"]) is False
    assert await ack(client, key, "e" * 32) is False


async def test_an_acked_private_delivery_counts_as_sent(client, gateway):
    (key,), cid = await setup(gateway, client)
    await send(client, cid)
    (row,) = await rows(gateway, deliveries, device_key=key)
    assert await ack(client, key, row.delivery_id) is True
    (row,) = await rows(gateway, deliveries, device_key=key)
    assert (row.inbox, row.state) == (False, "sent")


async def test_expired_items_are_skipped(client, gateway):
    (key,), cid = await setup(gateway, client)
    await send(client, cid, title="stale", ttl=T0)
    live = await send(client, cid, title="live", ttl=int(time.time()) + 3600)
    await send(client, cid, title="stale too", ttl=str(T0 * 1000))
    items = await pull(client, key)
    assert [i["payload"]["message_id"] for i in items] == [live["message_id"]]


async def test_an_item_that_expires_while_waiting_is_no_longer_pullable(client, gateway):
    (key,), cid = await setup(gateway, client)
    await send(client, cid)
    (row,) = await rows(gateway, deliveries, device_key=key)
    gateway.ctx.clock = lambda: row.expires_at  # the moment it expires
    assert await pull(client, key) == []
    assert await pull_one(client, key, row.delivery_id) == []


@pytest.mark.parametrize("path", ["/messages/pull", "/messages/ack"])
async def test_a_blank_delivery_id_is_refused(client, gateway, path):
    key = await register(client)
    await fail(client, path, {"device_key": key, "delivery_id": "  "}, 400,
               "delivery_id_required")


@pytest.mark.parametrize("path", ["/messages/pull", "/messages/ack"])
async def test_a_blank_device_key_is_refused(client, gateway, path):
    await fail(client, path, {"device_key": " ", "delivery_id": "a" * 32}, 400,
               "device_key_required")


@pytest.mark.parametrize(("path", "body"), [
    ("/messages/pull", {"device_key": "a" * 32, "limit": 5}),
    ("/messages/pull", {}),
    ("/messages/ack", {"device_key": "a" * 32}),
    ("/messages/ack", {"device_key": "a" * 32, "delivery_id": None}),
])
async def test_malformed_inbox_requests_are_refused(client, gateway, path, body):
    await fail(client, path, body, 400, "invalid_json_data")


async def test_a_pull_returns_at_most_512_items(client, gateway):
    (key,), cid = await setup(gateway, client)
    await send(client, cid, title="template")
    (template,) = await rows(gateway, deliveries, device_key=key)
    now = gateway.ctx.now()

    def fill(conn: Any) -> None:
        conn.execute(deliveries.insert(), [{
            "delivery_id": f"{i:032x}", "op_pk": template.op_pk, "channel_id": cid,
            "device_key": key, "route": "private", "state": "queued", "inbox": True,
            "attempts": 0, "next_attempt_at": now, "created_at": now, "updated_at": now,
            "expires_at": template.expires_at,
        } for i in range(1, 513)])

    await gateway.store.run(fill)
    first = await pull(client, key)
    assert len(first) == 512
    assert first[0]["delivery_id"] == template.delivery_id
    assert first[1]["delivery_id"] == f"{1:032x}"
    second = await pull(client, key)
    assert [i["delivery_id"] for i in second] == [f"{512:032x}"]
    assert await pull(client, key) == []
