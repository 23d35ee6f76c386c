"""Scheduled sends end to end, on a gateway whose clock the test moves: ``deliver_at`` on the
send routes, bulk items and the v1.3 status; nothing reaches the mock APNs or a private
device's inbox before then (a later immediate send overtakes it), everything at that time,
once; cancellation before it; the bad values refused with their codes."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from pushgo.app import Gateway
from pushgo.protocol import warplink as W
from pushgo.store.schema import deliveries
from pushgo.testing.warplink_client import connect
from tests.conftest import make_settings
from tests.e2e.test_delivery import apns_token, device, join
from tests.helpers import PASSWORD, call, eventually, fail, new_channel, pull, rows
from tests.live import hypercorn_server
from tests.providers import Providers
from tests.service.support import Clock

MINUTE_MS = 60_000


@pytest.fixture
def clock() -> Clock:
    return Clock(int(time.time() * 1000))


@pytest.fixture
async def sgateway(db_url: str, providers: Providers, fast_backoff: None,
                   clock: Clock) -> AsyncIterator[Gateway]:
    gw = Gateway(make_settings(db_url, **providers.settings), clock=clock)
    async with gw.running():
        yield gw


@pytest.fixture
async def api(sgateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=sgateway.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://pushgo.test") as c:
        yield c


async def phone_and_private(api: httpx.AsyncClient) -> tuple[str, str, str]:
    """(apns token, private device key, channel id): an iPhone on APNs and a private device
    subscribed to one channel."""
    token = apns_token()
    ios = await device(api, "ios", "apns", token)
    private = await device(api, "android", "private", None)
    cid = await new_channel(api, ios)
    await join(api, private, cid)
    return token, private, cid


async def overtaken(api: httpx.AsyncClient, providers: Providers, cid: str, private: str,
                    sent_before: int) -> None:
    """An immediate send made now reaches APNs and the private device: whatever was due
    before it would have been claimed and visible first."""
    now = await call(api, "/message", {"channel_id": cid, "password": PASSWORD,
                                       "title": "right now"})
    await providers.apns.wait_for(sent_before + 1)
    items = await pull(api, private)
    assert [i["payload"]["op_id"] for i in items] == [now["op_id"]]


async def test_a_scheduled_message_goes_out_at_deliver_at_once_to_apns_and_a_private_device(
        api: httpx.AsyncClient, sgateway: Gateway, providers: Providers, clock: Clock) -> None:
    token, private, cid = await phone_and_private(api)
    at = (clock.now // 1000) * 1000 + 10 * MINUTE_MS  # given in seconds
    sent = await call(api, "/message", {"channel_id": cid, "password": PASSWORD,
                                        "title": "Stand-up", "body": "in the big room",
                                        "deliver_at": at // 1000})
    assert sent["deliver_at"] == at
    status = await call(api, f"/deliveries/{sent['op_id']}")
    assert status["state"] == "scheduled" and status["deliver_at"] == at
    assert status["states"]["scheduled"] == 2 and status["done"] is False
    v13 = await call(api, f"/send_status/{sent['op_id']}")
    assert (v13["status"], v13["reason"], v13["scheduled"]) == ("scheduled", "deliver_at", 2)
    assert (await call(api, "/v2/messages/pull", {"device_key": private}))["items"] == []

    sgateway.scheduler.wake()
    await overtaken(api, providers, cid, private, 0)
    assert len(providers.apns.notifications) == 1  # the immediate one only

    clock.advance(10 * MINUTE_MS)
    sgateway.scheduler.wake()
    [_, note] = await providers.apns.wait_for(2)
    assert note.token == token and note.payload["aps"]["alert"]["title"] == "Stand-up"
    assert note.payload["sent_at"] == str(at)
    # Its TTL counts from deliver_at, not from when it was accepted.
    default_ttl_ms = sgateway.settings.private_ttl_s * 1000
    assert int(note.headers["apns-expiration"]) == (at + default_ttl_ms) // 1000
    items = await eventually(lambda: pull(api, private))
    assert [i["payload"]["op_id"] for i in items] == [sent["op_id"]]
    assert items[0]["payload"]["sent_at"] == str(at)

    async def done() -> dict[str, Any]:
        doc = await call(api, f"/deliveries/{sent['op_id']}")
        return doc if doc["done"] else {}

    status = await eventually(done)
    assert status["states"] == {"queued": 0, "sent": 2, "failed": 0, "expired": 0}
    assert "state" not in status and status["deliver_at"] == at
    assert (await call(api, f"/send_status/{sent['op_id']}"))["status"] == "sent"
    # Once: one delivery per device, nothing more for anyone.
    assert len(await rows(sgateway, deliveries, channel_id=cid)) == 4
    await overtaken(api, providers, cid, private, 2)
    assert len(providers.apns.notifications) == 3


async def test_cancel_stops_what_has_not_gone_out_and_is_idempotent(
        api: httpx.AsyncClient, sgateway: Gateway, providers: Providers, clock: Clock) -> None:
    _token, private, cid = await phone_and_private(api)
    at = clock.now + MINUTE_MS
    sent = await call(api, "/event/create", {
        "channel_id": cid, "password": PASSWORD, "op_id": "maint-window",
        "title": "Maintenance", "status": "Planned", "message": "DB upgrade",
        "severity": "normal", "event_time": at // 1000, "deliver_at": at})
    path = "/operations/maint-window/cancel"
    await fail(api, path, {"channel_id": cid, "password": "wrong-pass-1"}, 403,
               "password_mismatch")
    await fail(api, path, {"channel_id": cid}, 400, "password_required")
    await fail(api, "/operations/nope/cancel", {"channel_id": cid, "password": PASSWORD},
               404, "operation_not_found")
    first = await call(api, path, {"channel_id": cid, "password": PASSWORD})
    assert first == {"op_id": "maint-window", "outcome": "cancelled", "cancelled": 2,
                     "total": 2, "states": {"cancelled": 2}, "repeat_stopped": False}
    again = await call(api, path, {"channel_id": cid, "password": PASSWORD})
    assert again["outcome"] == "already_cancelled" and again["cancelled"] == 0

    clock.advance(2 * MINUTE_MS)
    sgateway.scheduler.wake()
    await overtaken(api, providers, cid, private, 0)
    assert len(providers.apns.notifications) == 1  # the cancelled event never went
    status = await call(api, f"/deliveries/{sent['op_id']}")
    assert status["done"] is True and status["states"]["cancelled"] == 2
    v13 = await call(api, f"/send_status/{sent['op_id']}")
    assert (v13["status"], v13["cancelled"]) == ("cancelled", 2)

    # After everything went out, a cancel says so and changes nothing.
    now = await call(api, "/message", {"channel_id": cid, "password": PASSWORD, "title": "x",
                                       "op_id": "gone"})
    await providers.apns.wait_for(2)
    await pull(api, private)

    async def all_sent() -> bool:
        return bool((await call(api, f"/deliveries/{now['op_id']}"))["done"])

    await eventually(all_sent)
    late = await call(api, "/operations/gone/cancel", {"channel_id": cid, "password": PASSWORD})
    assert late == {"op_id": "gone", "outcome": "already_done", "cancelled": 0, "total": 2,
                    "states": {"sent": 2}, "repeat_stopped": False}


async def test_bad_deliver_at_values_are_refused_with_their_codes(
        api: httpx.AsyncClient, clock: Clock) -> None:
    cid = await new_channel(api)
    base = {"channel_id": cid, "password": PASSWORD, "title": "t"}
    day_ms = 24 * 60 * MINUTE_MS
    cases: list[tuple[dict[str, Any], str]] = [
        ({"deliver_at": clock.now - 1000}, "deliver_at_in_past"),
        ({"deliver_at": clock.now}, "deliver_at_in_past"),
        ({"deliver_at": clock.now + 31 * day_ms}, "deliver_at_too_far"),
        ({"deliver_at": "next tuesday"}, "invalid_deliver_at"),
        ({"deliver_at": clock.now + day_ms, "ttl": clock.now + day_ms - 1}, "ttl_before_deliver_at"),
    ]
    for extra, code in cases:
        await fail(api, "/message", {**base, **extra}, 400, code)
    await fail(api, "/thing/create", {"channel_id": cid, "password": PASSWORD,
                                      "observed_at": clock.now, "deliver_at": clock.now - 1},
               400, "deliver_at_in_past")
    # Up to 30 days ahead is fine; a GET /message takes it as text.
    ok = await call(api, "/message", {**base, "deliver_at": clock.now + 30 * day_ms})
    assert ok["deliver_at"] == clock.now + 30 * day_ms
    resp = await api.get("/message", params={**base, "deliver_at": str(clock.now + day_ms)})
    assert resp.status_code == 200 and resp.json()["data"]["deliver_at"] == clock.now + day_ms
    # Without deliver_at nothing changes: no field in the answer.
    assert "deliver_at" not in await call(api, "/message", base)


async def test_a_bulk_item_with_deliver_at_waits_while_the_others_go(
        api: httpx.AsyncClient, sgateway: Gateway, providers: Providers, clock: Clock) -> None:
    token, private, cid = await phone_and_private(api)
    at = clock.now + 5 * MINUTE_MS
    lines = [{"channel_id": cid, "password": PASSWORD, "title": "later", "op_id": "b-later",
              "deliver_at": at},
             {"channel_id": cid, "password": PASSWORD, "title": "now", "op_id": "b-now"},
             {"channel_id": cid, "password": PASSWORD, "title": "bad", "op_id": "b-bad",
              "deliver_at": clock.now - 5}]
    resp = await api.post("/messages/bulk", content="\n".join(json.dumps(x) for x in lines),
                          headers={"content-type": "application/x-ndjson"})
    assert resp.status_code == 200, resp.text
    results = [json.loads(line) for line in resp.text.splitlines() if line.strip()]
    by_op = {r.get("op_id"): r for r in results}
    assert by_op["b-later"]["deliver_at"] == at
    assert by_op["b-bad"]["error_code"] == "deliver_at_in_past"
    [note] = await providers.apns.wait_for(1)
    assert note.payload["op_id"] == "b-now"
    items = await pull(api, private)
    assert [i["payload"]["op_id"] for i in items] == ["b-now"]
    assert (await call(api, "/deliveries/b-later"))["state"] == "scheduled"

    clock.advance(5 * MINUTE_MS)
    sgateway.scheduler.wake()
    [_, late] = await providers.apns.wait_for(2)
    assert late.payload["op_id"] == "b-later" and late.token == token
    items = await eventually(lambda: pull(api, private))
    assert [i["payload"]["op_id"] for i in items] == ["b-later"]


async def test_an_open_sse_stream_and_a_warp_link_session_get_it_after_later_deliveries(
        api: httpx.AsyncClient, sgateway: Gateway, clock: Clock) -> None:
    """Both read their inbox after the last sequence they sent: a scheduled delivery released
    after an immediate one was streamed must still reach them."""
    sse_key = await device(api, "android", "private", None)
    link_key = await device(api, "android", "private", None)
    cid = await new_channel(api, sse_key)
    await join(api, link_key, cid)
    later = await call(api, "/message", {"channel_id": cid, "password": PASSWORD,
                                         "title": "later", "deliver_at": clock.now + MINUTE_MS})
    async with hypercorn_server(sgateway) as base, \
            httpx.AsyncClient(base_url=base, timeout=10) as http, \
            http.stream("GET", "/private/stream", params={"device_key": sse_key}) as resp, \
            connect(base.replace("http://", "ws://") + "/private/ws") as link:
        texts = resp.aiter_text()
        seen = ""

        async def streamed(needle: str) -> None:
            nonlocal seen
            with anyio.fail_after(10):
                while needle not in seen:
                    seen += await texts.__anext__()

        with anyio.fail_after(10):
            assert isinstance(await link.hello(link_key), W.ServerWelcome)
        now = await call(api, "/message", {"channel_id": cid, "password": PASSWORD,
                                           "title": "now"})
        await streamed(now["op_id"])
        with anyio.fail_after(10):
            frame = await link.next_frame()
        assert isinstance(frame, W.Deliver)
        assert W.decode_payload(frame.payload)[1]["op_id"] == now["op_id"]
        await link.ack(frame)
        assert later["op_id"] not in seen

        clock.advance(MINUTE_MS)
        sgateway.scheduler.wake()
        await streamed(later["op_id"])
        with anyio.fail_after(10):
            frame = await link.next_frame()
        assert isinstance(frame, W.Deliver)
        assert W.decode_payload(frame.payload)[1]["op_id"] == later["op_id"]


async def test_on_postgresql_a_release_by_one_process_wakes_a_stream_on_another(
        pg_schema_url: str, clock: Clock) -> None:
    """B's clock never reaches deliver_at: A releases the send, and B's open stream gets it
    at once (its keep-alive re-read is 15 s away), woken by A's notice."""
    a = Gateway(make_settings(pg_schema_url), clock=clock)
    b = Gateway(make_settings(pg_schema_url), clock=Clock(clock.now))
    async with a.running(), b.running(), hypercorn_server(b) as base, \
            httpx.AsyncClient(base_url=base, timeout=10) as http:
        key = await device(http, "android", "private", None)
        cid = await new_channel(http, key)
        later = await call(http, "/message", {"channel_id": cid, "password": PASSWORD,
                                              "title": "later",
                                              "deliver_at": clock.now + MINUTE_MS})
        async with http.stream("GET", "/private/stream", params={"device_key": key}) as resp:
            texts = resp.aiter_text()
            with anyio.fail_after(10):
                seen = await texts.__anext__()  # the stream's opening comment
                clock.advance(MINUTE_MS)
                a.scheduler.wake()
                while later["op_id"] not in seen:
                    seen += await texts.__anext__()
    assert "keep-alive" not in seen
