"""Direct Web Push sends in bulk: ``POST /messages/bulk`` items ``{"route": "webpush",
"subscriptions": [{endpoint, keys}, …]}`` go through the outbox pump to MockWebPush, which
decrypts each; a subscription the push service calls gone (410) or unknown (404) fails its
delivery with that reason (and a registered web device holding it loses it); bad
subscriptions fail their item alone with a clear 400. Trio and asyncio, SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa

from pushgo.app import Gateway
from pushgo.protocol import bulk as bulk_wire
from pushgo.protocol import webpush as WEB
from pushgo.store.schema import deliveries
from pushgo.testing.mock_webpush import MockWebPush
from tests.conftest import make_settings
from tests.e2e.push_services import client_of, route_of, running_gateway
from tests.e2e.test_webpush import browser, web_device

pytestmark = pytest.mark.anyio

TOKEN = "bulk-webpush-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
NDJSON = {"content-type": "application/x-ndjson"}


@pytest.fixture
async def gateway(db_url: str, push: MockWebPush, tmp_path: Path,
                  fast_backoff: None) -> AsyncIterator[Gateway]:
    async with running_gateway(db_url, push, tmp_path, token=TOKEN) as gw:
        yield gw


@pytest.fixture
async def api(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(gateway, headers=AUTH) as c:
        yield c


async def bulk(client: httpx.AsyncClient, *items: Any) -> list[dict[str, Any]]:
    body = b"".join(json.dumps(i).encode() + b"\n" for i in items)
    resp = await client.post("/messages/bulk", content=body, headers=NDJSON)
    assert resp.status_code == 200, resp.text
    return [json.loads(line) for line in resp.text.splitlines()]


async def states(gateway: Gateway, n: int) -> dict[str, tuple[str, str | None]]:
    """Each direct Web Push delivery: token → (state, last error), once ``n`` are final."""
    def q(conn: sa.Connection) -> dict[str, tuple[str, str | None]]:
        d = deliveries
        rows = conn.execute(sa.select(d.c.provider_token, d.c.state, d.c.last_error)
                            .where(d.c.route == "webpush", d.c.device_key == "direct"))
        return {r.provider_token: (r.state, r.last_error) for r in rows}

    with anyio.fail_after(15):
        while True:
            got = await gateway.store.read(q)
            if sum(1 for state, _ in got.values() if state != "queued") >= n:
                return got
            await anyio.sleep(0.02)


def canonical(sub: Any) -> str:
    return WEB.parse_subscription(sub.json, allow_local=True).token()


async def test_a_direct_web_push_send_reaches_each_subscription_and_gone_ones_fail(
        api, gateway, push):
    alive = [await browser(api, push) for _ in range(3)]
    gone, unknown = await browser(api, push), await browser(api, push)
    push.expire(gone)
    push.forget(unknown)
    # A registered web device that holds the gone subscription too: it loses its route.
    holder = await web_device(api, gone)
    subs = [s.json for s in (*alive, gone, unknown)] + [alive[0].json]  # one listed twice
    [result] = await bulk(api, {"route": "webpush", "subscriptions": subs, "title": "Deploy",
                                "body": "v2 is out", "op_id": "web-direct-1"})
    assert result == {"index": 0, "ok": True, "op_id": "web-direct-1", "route": "webpush",
                      "message_id": result["message_id"], "recipients": 5}
    notes = await push.wait_for(3, lambda m: m.accepted)
    assert sorted(m.subscription for m in notes) == sorted(s.id for s in alive)
    for note in notes:
        assert (note.data["title"], note.data["body"]) == ("Deploy", "v2 is out")
        assert note.data["message_id"] == result["message_id"]
        assert note.data["op_id"] == "web-direct-1"
    got = await states(gateway, 5)
    assert got == {**{canonical(s): ("sent", None) for s in alive},
                   canonical(gone): ("failed", "SubscriptionGone"),
                   canonical(unknown): ("failed", "SubscriptionNotFound")}
    assert await route_of(gateway, holder) == ("webpush", None)
    status = (await api.get("/deliveries/web-direct-1")).json()["data"]
    assert status["total"] == 5
    assert {k: v for k, v in status["states"].items() if v} == {"sent": 3, "failed": 2}
    # Retried until delivered, like a registered device's: 503 is transient.
    push.fail_next(2, 503)
    [again] = await bulk(api, {"route": "webpush", "subscriptions": [alive[1].json],
                               "title": "Later", "op_id": "web-direct-2"})
    assert again["ok"] and again["recipients"] == 1
    later = await push.wait_for(4, lambda m: m.accepted)
    assert later[-1].data["title"] == "Later" and later[-1].subscription == alive[1].id


async def test_bad_web_push_items_fail_alone_with_clear_codes(api, gateway, push):
    good = push.subscribe().json
    results = await bulk(
        api,
        {"route": "webpush", "subscriptions": [good, {**good, "keys": {**good["keys"],
                                                                        "p256dh": "AAAA"}}],
         "title": "t"},
        {"route": "webpush", "subscriptions": [{"endpoint": good["endpoint"]}], "title": "t"},
        {"route": "webpush", "subscriptions": [json.dumps(good)], "title": "t"},
        {"route": "webpush",
         "subscriptions": [{**good, "endpoint": good["endpoint"].replace("https:", "http:")}],
         "title": "t"},
        {"route": "webpush", "subscriptions": [], "title": "t"},
        {"route": "webpush", "tokens": [json.dumps(good)], "title": "t"},
        {"route": "fcm", "subscriptions": [good], "title": "t"},
        {"route": "webpush", "subscriptions": [good] * (bulk_wire.MAX_TOKENS + 1),
         "title": "t"},
        {"route": "webpush", "subscriptions": [good], "title": "fine"},
    )
    assert [(r["ok"], r.get("error_code"), r.get("status")) for r in results] == [
        (False, "invalid_webpush_subscription", 400),
        (False, "invalid_webpush_subscription", 400),
        (False, "invalid_webpush_subscription", 400),
        (False, "invalid_webpush_subscription", 400),
        (False, "tokens_required", 400),
        (False, "invalid_json_data", 400),
        (False, "invalid_json_data", 400),
        (False, "too_many_tokens", 400),
        (True, None, None),
    ]
    assert results[0]["error"] == ("invalid web push subscription at position 1: keys.p256dh "
                                   "is not a P-256 public key")
    assert "keys is required" in results[1]["error"]
    assert "must be an object" in results[2]["error"]
    assert "https" in results[3]["error"]
    [note] = await push.wait_for(1, lambda m: m.accepted)
    assert note.data["title"] == "fine"


async def test_local_endpoints_are_refused_without_the_loopback_setting(db_url, push):
    gw = Gateway(make_settings(db_url, token=TOKEN))
    async with gw.running(), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=gw.asgi), base_url="http://pushgo.test",
            headers=AUTH) as c:
        [local] = await bulk(c, {"route": "webpush", "subscriptions": [push.subscribe().json],
                                 "title": "t"})
        assert (local["error_code"], local["status"]) == ("invalid_webpush_subscription", 400)
        assert "public host" in local["error"]


async def test_with_web_push_off_a_direct_web_push_send_is_refused(db_url, push):
    gw = Gateway(make_settings(db_url, token=TOKEN, webpush_enabled=False))
    async with gw.running(), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=gw.asgi), base_url="http://pushgo.test",
            headers=AUTH) as c:
        public = {**push.subscribe().json, "endpoint": "https://fcm.googleapis.com/fcm/send/a"}
        [off] = await bulk(c, {"route": "webpush", "subscriptions": [public], "title": "t"})
        assert off["error_code"] == "provider_not_configured"
