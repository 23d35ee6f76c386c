"""pushgo.service.inbox: a device's inbox. Pull is destructive and oldest first, skips what
expired and takes at most 512; ack takes one delivery; the private stream pages through it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pushgo.protocol import wire
from pushgo.service import Services
from pushgo.service.inbox import PULL_LIMIT
from pushgo.store import status as status_store
from tests.service.support import APNS_TOKEN, PASSWORD, channel, device, fails, message

pytestmark = pytest.mark.anyio


async def pull(svc: Services, key: str, delivery_id: str | None = None) -> list[dict[str, Any]]:
    out = await svc.inbox.pull(wire.PullIn(device_key=key, delivery_id=delivery_id))
    docs = [json.loads(bytes(item.payload)) for item in out.items]
    assert [d["delivery_id"] for d in docs] == [item.delivery_id for item in out.items]
    return docs


async def ack(svc: Services, key: str, delivery_id: str) -> bool:
    return (await svc.inbox.ack(wire.AckIn(device_key=key, delivery_id=delivery_id))).removed


async def send(svc: Services, cid: str, *titles: str, **fields: Any) -> None:
    for title in titles:
        await svc.publisher.send(message(cid, title=title, **fields), PASSWORD)


async def states(svc: Services, op_id: str) -> dict[str, int]:
    """Read from the store (``Status.get`` may answer from its short-lived cache)."""
    doc = await svc.ctx.store.read(status_store.status, op_id, None)
    assert doc is not None
    return dict(doc["states"])


async def test_pull_returns_the_inbox_oldest_first_with_each_delivery_id(svc):
    key = await device(svc)
    cid = await channel(svc, key)
    await send(svc, cid, "one", "two", "three")
    docs = await pull(svc, key)
    assert [d["title"] for d in docs] == ["one", "two", "three"]
    assert len({d["delivery_id"] for d in docs}) == 3
    assert all(d["channel_id"] == cid for d in docs)


async def test_pull_is_destructive(svc):
    key = await device(svc)
    await send(svc, await channel(svc, key), "one")
    assert len(await pull(svc, key)) == 1
    assert await pull(svc, key) == []


async def test_a_pulled_private_delivery_counts_as_sent(svc):
    key = await device(svc)
    cid = await channel(svc, key)
    await svc.publisher.send(message(cid, op_id="m-1"), PASSWORD)
    assert (await states(svc, "m-1"))["queued"] == 1
    await pull(svc, key)
    assert (await states(svc, "m-1"))["sent"] == 1


async def test_each_device_has_its_own_inbox(svc):
    a, b = await device(svc), await device(svc)
    await send(svc, await channel(svc, a, b), "one")
    assert len(await pull(svc, a)) == 1
    assert len(await pull(svc, b)) == 1


async def test_pull_of_one_delivery_id_takes_only_that_one(svc):
    key = await device(svc)
    await send(svc, await channel(svc, key), "one", "two")
    _one, two = await svc.inbox.page(key, 0, 10)
    assert [d["title"] for d in await pull(svc, key, f" {two.delivery_id} ")] == ["two"]
    assert [d["title"] for d in await pull(svc, key)] == ["one"]


async def test_an_unknown_device_has_an_empty_inbox(svc):
    assert await pull(svc, "0" * 32) == []


@pytest.mark.parametrize(("key", "delivery_id", "code"), [
    ("  ", None, "device_key_required"),
    ("k" * 129, None, "invalid_device_key"),
    ("0" * 32, "  ", "delivery_id_required"),
])
async def test_pull_checks_its_fields(svc, key, delivery_id, code):
    with fails(code):
        await svc.inbox.pull(wire.PullIn(device_key=key, delivery_id=delivery_id))


async def test_expired_deliveries_are_not_pulled(svc, clock):
    key = await device(svc)
    cid = await channel(svc, key)
    await send(svc, cid, "short", ttl=(clock.now + 60_000) // 1000)
    await send(svc, cid, "default")
    clock.advance(61_000)
    assert [d["title"] for d in await pull(svc, key)] == ["default"]


@pytest.mark.parametrize("settings_overrides", [{"private_ttl_seconds": 60}])
async def test_the_default_ttl_is_the_private_ttl_setting(svc, clock):
    key = await device(svc)
    await send(svc, await channel(svc, key), "one")
    clock.advance(60_000)
    assert await pull(svc, key) == []


async def test_pull_takes_at_most_512_and_leaves_the_rest_for_the_next(svc):
    key = await device(svc)
    cid = await channel(svc, key)
    await svc.publisher.accept_many([svc.publisher.prepare(message(cid, title=f"m{i}"))
                                     for i in range(PULL_LIMIT + 3)])
    assert len(await pull(svc, key)) == PULL_LIMIT == 512
    assert [d["title"] for d in await pull(svc, key)] == [
        f"m{i}" for i in range(PULL_LIMIT, PULL_LIMIT + 3)]


async def test_ack_removes_one_delivery_once(svc):
    key = await device(svc)
    await send(svc, await channel(svc, key), "one", "two")
    one, two = await svc.inbox.page(key, 0, 10)
    assert await ack(svc, key, one.delivery_id) is True
    assert await ack(svc, key, one.delivery_id) is False
    assert [d["delivery_id"] for d in await pull(svc, key)] == [two.delivery_id]


async def test_ack_of_another_devices_delivery_removes_nothing(svc):
    a, b = await device(svc), await device(svc)
    await send(svc, await channel(svc, a, b), "one")
    [theirs] = await svc.inbox.page(a, 0, 10)
    assert await ack(svc, b, theirs.delivery_id) is False
    assert len(await pull(svc, a)) == 1


async def test_an_acked_provider_delivery_leaves_the_inbox_but_stays_queued_for_its_provider(
        svc):
    key = await device(svc, "ios", "apns", APNS_TOKEN)
    cid = await channel(svc, key)
    await svc.publisher.send(message(cid, op_id="m-1"), PASSWORD)
    [item] = await svc.inbox.page(key, 0, 10)
    assert await ack(svc, key, item.delivery_id) is True
    assert await pull(svc, key) == []
    assert (await states(svc, "m-1"))["queued"] == 1


async def test_ack_requires_a_delivery_id(svc):
    with fails("delivery_id_required"):
        await svc.inbox.ack(wire.AckIn(device_key="0" * 32, delivery_id=" "))


async def test_pages_follow_the_inbox_order_from_a_cursor(svc):
    key = await device(svc)
    await send(svc, await channel(svc, key), "a", "b", "c")
    first = await svc.inbox.page(key, 0, 2)
    rest = await svc.inbox.page(key, first[-1].seq, 2)
    assert len(first) == 2 and len(rest) == 1
    assert [i.seq for i in first + rest] == sorted(i.seq for i in first + rest)
    assert await svc.inbox.cursor_after(key, first[-1].delivery_id) == first[-1].seq


async def test_a_cursor_from_nothing_or_an_unknown_delivery_starts_at_the_beginning(svc):
    key = await device(svc)
    assert await svc.inbox.cursor_after(key, None) == 0
    assert await svc.inbox.cursor_after(key, "") == 0
    assert await svc.inbox.cursor_after(key, "f" * 32) == 0


async def test_pages_reads_several_devices_each_after_its_cursor_up_to_its_limit(svc):
    a, b, c = await device(svc), await device(svc), await device(svc)
    cid = await channel(svc, a, b)
    await send(svc, cid, "one", "two", "three")
    first = await svc.inbox.page(a, 0, 10)
    pages = await svc.inbox.pages([(a, first[0].seq, 10), (b, 0, 2), (c, 0, 10)])
    assert [i.seq for i in pages[a]] == [i.seq for i in first[1:]]
    assert [i.seq for i in pages[b]] == [i.seq for i in (await svc.inbox.page(b, 0, 2))]
    assert c not in pages  # nothing waits for it
    assert [json.loads(i.payload_json)["title"] for i in pages[b]] == ["one", "two"]


async def test_ack_link_takes_each_devices_own_deliveries_in_one_write(svc):
    a, b = await device(svc), await device(svc)
    cid = await channel(svc, a, b)
    await send(svc, cid, "one")
    [da], [db] = await svc.inbox.page(a, 0, 10), await svc.inbox.page(b, 0, 10)
    # b cannot acknowledge a's delivery; an unknown id and a repeat are no-ops
    assert await svc.inbox.ack_link([(a, da.delivery_id), (b, da.delivery_id),
                                     (b, "nope")]) == [True, False, False]
    assert await svc.inbox.ack_link([(a, da.delivery_id), (b, db.delivery_id)]) == [False, True]
    assert await svc.inbox.page(a, 0, 10) == [] and await svc.inbox.page(b, 0, 10) == []
