"""Repeat until acknowledged, end to end: a send with ``repeat`` reaches an APNs device (the
validating mock APNs over TLS) again each round until any subscribed device acknowledges it
(the inbox acks, ``POST /receipts/ack``), its event closes, ``max`` sends were made or its TTL
ends; ``GET /receipts/{op_id}`` says which.

The gateway runs on an injected wall clock the test moves forward; after each move the
repeat driver is woken and the test waits for a pass made after it (``RepeatDriver.passes``),
never for time.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from pushgo.app import Gateway
from pushgo.protocol.ids import redact
from pushgo.store.schema import deliveries, operations
from pushgo.testing.mock_apns import APNsNotification
from tests.conftest import make_settings
from tests.helpers import PASSWORD, call, eventually, register
from tests.providers import Providers

T0 = 1_800_000_000_000
EVERY_S = 60


class ManualClock:
    """The gateway's wall clock (ms), moved only by the test."""

    def __init__(self, start: int = T0) -> None:
        self.ms = start

    def __call__(self) -> int:
        return self.ms


@dataclass
class Rig:
    gw: Gateway
    clock: ManualClock
    api: httpx.AsyncClient
    providers: Providers
    cid: str
    apns_key: str
    apns_token: str
    private_key: str

    async def advance(self, seconds: float) -> None:
        """Move the clock, and wait for a repeat pass that began at that time or later."""
        self.clock.ms += int(seconds * 1000)
        self.gw.repeats.wake()
        await eventually(lambda: _saw(self.gw, self.clock.ms))

    def notes(self, op_id: str) -> list[APNsNotification]:
        return [n for n in self.providers.apns.accepted
                if n.token == self.apns_token and n.payload.get("op_id") == op_id]

    async def wait_notes(self, op_id: str, count: int) -> list[APNsNotification]:
        async def enough() -> list[APNsNotification]:
            got = self.notes(op_id)
            return got if len(got) >= count else []

        return await eventually(enough, timeout=10)

    async def receipt(self, op_id: str) -> dict[str, Any]:
        return await call(self.api, f"/receipts/{op_id}")

    async def provider_rows(self, op_id: str) -> list[Any]:
        def q(conn: Any) -> list[Any]:
            return list(conn.execute(sa.select(deliveries.c.state, deliveries.c.device_key)
                                     .join(operations, operations.c.op_pk == deliveries.c.op_pk)
                                     .where(operations.c.op_id == op_id,
                                            deliveries.c.route == "apns")))

        return await self.gw.store.read(q)

    async def settled(self, op_id: str) -> list[Any]:
        """The op's APNs deliveries once none is queued any more."""
        async def done() -> list[Any]:
            rows = await self.provider_rows(op_id)
            return rows if rows and all(r.state != "queued" for r in rows) else []

        return await eventually(done, timeout=10)


async def _saw(gw: Gateway, ms: int) -> bool:
    seen = gw.repeats.last_pass_at
    return seen is not None and seen >= ms


@pytest.fixture
async def rig(db_url: str, providers: Providers, fast_backoff: None) -> AsyncIterator[Rig]:
    clock = ManualClock()
    gw = Gateway(make_settings(db_url, **providers.settings), clock=clock)
    async with gw.running():
        transport = httpx.ASGITransport(app=gw.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://pushgo.test") as api:
            token = secrets.token_hex(32)
            apns_key = await register(api, "ios")
            await call(api, "/channel/device", {"device_key": apns_key, "channel_type": "apns",
                                                "provider_token": token})
            private_key = await register(api, "android")
            await call(api, "/channel/device", {"device_key": private_key,
                                                "channel_type": "private"})
            cid = (await call(api, "/channel/subscribe", {
                "device_key": apns_key, "channel_name": "on-call", "password": PASSWORD,
            }))["channel_id"]
            await call(api, "/channel/subscribe", {"device_key": private_key,
                                                   "channel_id": cid, "password": PASSWORD})
            yield Rig(gw, clock, api, providers, cid, apns_key, token, private_key)


async def send(rig: Rig, op_id: str, *, every_s: int = EVERY_S, max_sends: int = 10,
               **fields: Any) -> dict[str, Any]:
    return await call(rig.api, "/message", {
        "channel_id": rig.cid, "password": PASSWORD, "title": "disk full", "op_id": op_id,
        "severity": "critical", "repeat": {"every_s": every_s, "max": max_sends}, **fields})


async def test_an_apns_device_gets_it_each_round_until_a_private_device_acks(rig: Rig):
    await send(rig, "page-1")
    (first,) = await rig.wait_notes("page-1", 1)
    # What a notification action needs to acknowledge it: the op, the delivery, the path.
    assert first.payload["op_id"] == "page-1"
    assert first.payload["receipt"] == "/receipts/ack"
    assert first.payload["delivery_id"]
    receipt = await rig.receipt("page-1")
    assert receipt["repeat"] == {"every_s": EVERY_S, "max": 10}
    assert (receipt["sends"], receipt["next_send_at"]) == (1, T0 + EVERY_S * 1000)
    assert receipt["acknowledged"] is False and receipt["stopped"] is False
    for n in (2, 3):
        await rig.advance(EVERY_S)
        notes = await rig.wait_notes("page-1", n)
        assert len({note.payload["delivery_id"] for note in notes}) == n  # a new delivery each
    # The private device acknowledges what its inbox holds (v1.3 pull, ack by id).
    page = await call(rig.api, "/v2/messages/pull", {"device_key": rig.private_key})
    ids = [item["delivery_id"] for item in page["items"]]
    assert len(ids) == 1  # rounds go to provider devices: the private inbox holds it once
    acked_at = rig.clock.ms
    await call(rig.api, "/v2/messages/ack", {"device_key": rig.private_key, "delivery_ids": ids})
    receipt = await rig.receipt("page-1")
    assert receipt["acknowledged"] is True
    assert receipt["acked_by"] == redact(rig.private_key) != rig.private_key
    assert (receipt["acked_at"], receipt["acked_via"]) == (acked_at, "v2_messages_ack")
    assert (receipt["stopped_reason"], receipt["next_send_at"], receipt["sends"]) == (
        "acked", None, 3)
    for _ in range(3):
        await rig.advance(EVERY_S)
    rows = await rig.settled("page-1")
    assert len(rows) == 3 and len(rig.notes("page-1")) == 3  # no more after the ack
    assert (await rig.receipt("page-1"))["sends"] == 3


async def test_a_notification_action_acks_with_post_receipts_ack(rig: Rig):
    await send(rig, "page-2")
    await rig.advance(EVERY_S)
    notes = await rig.wait_notes("page-2", 2)
    delivery_id = notes[-1].payload["delivery_id"]
    # A device may only acknowledge what was delivered to it.
    stranger = await register(rig.api, "ios")
    refused = await call(rig.api, "/receipts/ack", {"device_key": stranger, "op_id": "page-2"},
                         expect=404)
    assert refused["error_code"] == "receipt_not_found"
    wrong = await call(rig.api, "/receipts/ack", {"device_key": rig.apns_key, "op_id": "page-2",
                                                  "delivery_id": "0" * 32}, expect=404)
    assert wrong["error_code"] == "receipt_not_found"
    assert (await rig.receipt("page-2"))["acknowledged"] is False
    done = await call(rig.api, "/receipts/ack", {"device_key": rig.apns_key, "op_id": "page-2",
                                                 "delivery_id": delivery_id})
    assert done["acknowledged"] is True
    assert done["receipt"]["acked_via"] == "receipts_ack"
    assert done["receipt"]["stopped_reason"] == "acked"
    again = await call(rig.api, "/receipts/ack", {"device_key": rig.apns_key,
                                                  "op_id": "page-2"})
    assert again["acknowledged"] is False  # the first acknowledgement stays
    assert again["receipt"]["acked_at"] == done["receipt"]["acked_at"]
    await rig.advance(EVERY_S)
    await rig.advance(EVERY_S)
    assert len(await rig.settled("page-2")) == 2 and len(rig.notes("page-2")) == 2


async def test_max_sends_then_no_more(rig: Rig):
    await send(rig, "page-3", max_sends=3)
    for _ in range(5):
        await rig.advance(EVERY_S)
    await rig.wait_notes("page-3", 3)
    assert len(await rig.settled("page-3")) == 3 and len(rig.notes("page-3")) == 3
    receipt = await rig.receipt("page-3")
    assert (receipt["sends"], receipt["stopped_reason"], receipt["next_send_at"]) == (
        3, "max_reached", None)
    # A late acknowledgement is still recorded; the reason it stopped stays.
    await call(rig.api, "/receipts/ack", {"device_key": rig.apns_key, "op_id": "page-3"})
    receipt = await rig.receipt("page-3")
    assert receipt["acknowledged"] is True and receipt["stopped_reason"] == "max_reached"


async def test_the_ttl_ends_it(rig: Rig):
    await send(rig, "page-4", ttl=(T0 + 100_000) // 1000)
    await rig.advance(EVERY_S)
    await rig.wait_notes("page-4", 2)
    await rig.advance(EVERY_S)
    receipt = await rig.receipt("page-4")
    assert (receipt["sends"], receipt["stopped_reason"]) == (2, "expired")
    assert len(await rig.settled("page-4")) == 2


async def test_closing_the_event_stops_its_repeats(rig: Rig):
    base = {"channel_id": rig.cid, "password": PASSWORD, "status": "Down",
            "message": "api down", "severity": "critical", "event_time": T0 // 1000}
    ev = await call(rig.api, "/event/create", {**base, "title": "API", "op_id": "ev-open",
                                               "repeat": {"every_s": EVERY_S, "max": 10}})
    await rig.advance(EVERY_S)
    await rig.wait_notes("ev-open", 2)
    await call(rig.api, "/event/close", {**base, "event_id": ev["event_id"], "status": "Up",
                                         "message": "back", "op_id": "ev-close"})
    receipt = await rig.receipt("ev-open")
    assert (receipt["stopped_reason"], receipt["entity_id"]) == ("event_closed", ev["event_id"])
    await rig.advance(EVERY_S)
    await rig.advance(EVERY_S)
    assert len(await rig.settled("ev-open")) == 2 and len(rig.notes("ev-open")) == 2
    await rig.wait_notes("ev-close", 1)


async def test_stop_is_the_service_method_a_cancel_calls(rig: Rig):
    await send(rig, "page-5")
    assert await rig.gw.services.receipts.stop("page-5", "cancelled") == 1
    assert await rig.gw.services.receipts.stop("page-5", "cancelled") == 0
    await rig.advance(EVERY_S)
    receipt = await rig.receipt("page-5")
    assert (receipt["stopped_reason"], receipt["sends"]) == ("cancelled", 1)
    assert len(await rig.settled("page-5")) == 1


async def test_a_cancel_of_the_operation_stops_its_repeats(rig: Rig):
    await send(rig, "page-6")
    await rig.wait_notes("page-6", 1)
    cancelled = await call(rig.api, "/operations/page-6/cancel",
                           {"channel_id": rig.cid, "password": PASSWORD})
    assert (cancelled["outcome"], cancelled["repeat_stopped"]) == ("cancelled", True)
    await rig.advance(EVERY_S)
    receipt = await rig.receipt("page-6")
    assert (receipt["stopped_reason"], receipt["sends"]) == ("cancelled", 1)
    assert len(await rig.settled("page-6")) == 1 and len(rig.notes("page-6")) == 1
    again = await call(rig.api, "/operations/page-6/cancel",
                       {"channel_id": rig.cid, "password": PASSWORD})
    # the private device's unread copy was cancelled the first time
    assert (again["outcome"], again["repeat_stopped"]) == ("already_cancelled", False)


async def test_a_scheduled_repeating_send_rounds_after_its_deliver_at(rig: Rig):
    at_s = T0 // 1000 + 600
    await send(rig, "page-7", deliver_at=at_s)
    receipt = await rig.receipt("page-7")
    assert (receipt["sends"], receipt["next_send_at"]) == (1, (at_s + EVERY_S) * 1000)
    await rig.advance(EVERY_S)  # a round's time, were it counted from the send: nothing yet
    assert rig.notes("page-7") == [] and (await rig.receipt("page-7"))["sends"] == 1
    rig.clock.ms = at_s * 1000
    await rig.wait_notes("page-7", 1)  # the scheduler releases the first send
    await rig.advance(EVERY_S)
    await rig.wait_notes("page-7", 2)
    assert (await rig.receipt("page-7"))["sends"] == 2


async def test_the_inbox_ack_of_v1_and_the_receipt_of_an_op_id_on_two_channels(rig: Rig):
    other = (await call(rig.api, "/channel/subscribe", {
        "device_key": rig.private_key, "channel_name": "second", "password": PASSWORD,
    }))["channel_id"]
    await send(rig, "shared")
    await call(rig.api, "/message", {"channel_id": other, "password": PASSWORD, "title": "b",
                                     "op_id": "shared", "repeat": {"every_s": 30, "max": 2}})
    items = await call(rig.api, "/v2/messages/pull", {"device_key": rig.private_key})
    theirs = [i for i in items["items"] if i["payload"]["channel_id"] == other]
    await call(rig.api, "/messages/ack", {"device_key": rig.private_key,
                                          "delivery_id": theirs[0]["delivery_id"]})
    second = await call(rig.api, f"/receipts/shared?channel_id={other}")
    first = await call(rig.api, f"/receipts/shared?channel_id={rig.cid}")
    assert (second["acked_via"], second["stopped_reason"]) == ("messages_ack", "acked")
    assert first["acknowledged"] is False and first["stopped"] is False
    missing = await call(rig.api, "/receipts/nothing-here", expect=404)
    assert missing["error_code"] == "receipt_not_found"


@pytest.mark.parametrize("repeat", [
    {"every_s": 29, "max": 3}, {"every_s": 86_401, "max": 3}, {"every_s": 60, "max": 0},
    {"every_s": 60, "max": 101},
])
async def test_repeat_out_of_bounds_is_400_invalid_repeat(rig: Rig, repeat: dict[str, int]):
    body = {"channel_id": rig.cid, "password": PASSWORD, "title": "t", "repeat": repeat}
    doc = await call(rig.api, "/message", body, expect=400)
    assert doc["error_code"] == "invalid_repeat"
    event = {"channel_id": rig.cid, "password": PASSWORD, "title": "t", "status": "s",
             "message": "m", "severity": "high", "event_time": T0 // 1000, "repeat": repeat}
    doc = await call(rig.api, "/event/create", event, expect=400)
    assert doc["error_code"] == "invalid_repeat"


async def test_bulk_items_take_repeat(rig: Rig):
    lines = [
        {"channel_id": rig.cid, "password": PASSWORD, "title": "bulk", "op_id": "bulk-r",
         "repeat": {"every_s": 60, "max": 2}},
        {"channel_id": rig.cid, "password": PASSWORD, "title": "bad", "op_id": "bulk-bad",
         "repeat": {"every_s": 1, "max": 2}},
    ]
    resp = await rig.api.post("/messages/bulk", content="\n".join(json.dumps(x) for x in lines),
                              headers={"content-type": "application/x-ndjson"})
    assert resp.status_code == 200, resp.text
    results = [json.loads(line) for line in resp.text.splitlines() if line.strip()]
    by_op = {r.get("op_id"): r for r in results}
    assert by_op["bulk-r"]["ok"] is True, results
    assert by_op["bulk-bad"]["error_code"] == "invalid_repeat", results
    await rig.advance(EVERY_S)
    await rig.wait_notes("bulk-r", 2)
    assert (await rig.receipt("bulk-r"))["stopped_reason"] == "max_reached"
