"""Web Push end to end: a browser subscription (made on MockWebPush, which keeps the browser's
private key) registered as a `web` device's `webpush` route, subscribed to a channel, receives
messages, events and things; the mock checks each request's VAPID JWT against the gateway's
public key and decrypts the body with the independent `http-ece` package. A subscription the
push service calls gone (410) or unknown (404) is retired; 429 and 503 are retried until
delivered; a too-large message goes with its body truncated; the VAPID key survives a restart
(a browser subscribed before it still receives). Trio and asyncio, SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pushgo.app import Gateway
from pushgo.testing.mock_webpush import MockSubscription, MockWebPush
from tests.api.test_metrics import parse, value
from tests.conftest import make_settings
from tests.e2e.push_services import (
    client_of,
    outcomes,
    route_of,
    routed_device,
    running_gateway,
    settings_for,
)
from tests.e2e.test_delivery import join
from tests.helpers import PASSWORD, call, fail, new_channel, pull, register

pytestmark = pytest.mark.anyio


@pytest.fixture
async def wgateway(db_url: str, push: MockWebPush, tmp_path: Path,
                   fast_backoff: None) -> AsyncIterator[Gateway]:
    async with running_gateway(db_url, push, tmp_path) as gw:
        yield gw


@pytest.fixture
async def wclient(wgateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(wgateway) as c:
        yield c


async def browser(client: httpx.AsyncClient, push: MockWebPush) -> MockSubscription:
    """What the subscribe page does in a browser: subscribe with the gateway's key."""
    key = (await call(client, "/webpush/vapid-public-key"))["application_server_key"]
    return push.subscribe(application_server_key=key)


async def web_device(client: httpx.AsyncClient, sub: MockSubscription) -> str:
    return await routed_device(client, "web", "webpush", sub.token)


async def test_a_browser_receives_messages_events_and_things_decrypted(wclient, wgateway, push):
    sub = await browser(wclient, push)
    key = await web_device(wclient, sub)
    channel_type, token = await route_of(wgateway, key)
    assert channel_type == "webpush"
    # Stored canonical: the endpoint and the keys, nothing else of what the browser sent.
    assert json.loads(token or "") == {"endpoint": sub.endpoint, "keys": {
        "auth": sub.json["keys"]["auth"], "p256dh": sub.p256dh}}
    other = await web_device(wclient, await browser(wclient, push))
    cid = await new_channel(wclient, key)
    await join(wclient, other, cid)
    ttl = int(time.time()) + 86400
    sent = await call(wclient, "/message", {
        "channel_id": cid, "password": PASSWORD, "title": "Disk", "body": "/var at 91%",
        "url": "https://status.example.com/disk", "severity": "high", "ttl": ttl,
        "tags": ["ops"]})
    event = await call(wclient, "/event/create", {
        "channel_id": cid, "password": PASSWORD, "title": "Door open", "status": "Open",
        "message": "Rear door open", "severity": "low", "event_time": int(time.time())})
    thing = await call(wclient, "/thing/create", {
        "channel_id": cid, "password": PASSWORD, "title": "Pump A",
        "observed_at": int(time.time())})
    notes = await push.wait_for(6, lambda m: m.accepted)
    assert await outcomes(wgateway, "webpush", 6) == [("sent", None)] * 6

    mine = [m for m in notes if m.subscription == sub.id]
    by_type = {m.data["entity_type"]: m for m in mine}
    assert sorted(by_type) == ["event", "message", "thing"] and len(mine) == 3
    message, ev, th = by_type["message"], by_type["event"], by_type["thing"]
    assert message.data["message_id"] == sent["message_id"]
    assert (message.data["title"], message.data["body"]) == ("Disk", "/var at 91%")
    assert message.data["url"] == "https://status.example.com/disk"
    assert message.data["op_id"] == sent["op_id"] and message.data["channel_id"] == cid
    assert ev.data["event_id"] == event["event_id"] and th.data["thing_id"] == thing["thing_id"]
    # The decrypted document is the operation's payload as the device would pull it.
    pulled = {item["delivery_id"]: item["payload"] for item in await pull(wclient, key)}
    for note in mine:
        assert note.data == pulled[note.data["delivery_id"]]
    # RFC 8030 headers: Urgency from the severity, a Topic for events and things, the TTL.
    # (as for WNS priority: events and things deliver at normal)
    assert message.headers["urgency"] == "high" and ev.headers["urgency"] == "normal"
    assert "topic" not in message.headers
    assert ev.headers["topic"] and th.headers["topic"] and ev.headers["topic"] != th.headers["topic"]
    assert 86400 - 120 <= int(message.headers["ttl"]) <= 86400
    # RFC 8292: the JWT the mock verified names the push service's origin and the contact.
    assert message.claims is not None
    assert message.claims["aud"] == push.origin
    assert message.claims["sub"] == "mailto:postmaster@localhost"
    assert time.time() < message.claims["exp"] <= time.time() + 24 * 3600
    m = parse((await wclient.get("/metrics")).text)
    assert value(m, "pushgo_deliveries_sent_total", route="webpush") == 6


async def test_an_event_update_reuses_its_topic(wclient, wgateway, push):
    sub = await browser(wclient, push)
    key = await web_device(wclient, sub)
    cid = await new_channel(wclient, key)
    base = {"channel_id": cid, "password": PASSWORD, "title": "Door", "status": "Open",
            "message": "open", "severity": "normal", "event_time": int(time.time())}
    ev = await call(wclient, "/event/create", base)
    await call(wclient, "/event/update", {**base, "event_id": ev["event_id"],
                                          "status": "Closing", "event_time": int(time.time())})
    first, second = await push.wait_for(2, lambda m: m.accepted)
    assert first.headers["topic"] == second.headers["topic"]
    assert first.data["event_id"] == second.data["event_id"] == ev["event_id"]


@pytest.mark.parametrize("gone", ["expire", "forget"])
async def test_a_gone_subscription_is_retired_and_gets_nothing_more(wclient, wgateway, push,
                                                                    gone):
    sub = await browser(wclient, push)
    key = await web_device(wclient, sub)
    cid = await new_channel(wclient, key)
    getattr(push, gone)(sub)
    first = await call(wclient, "/message", {"channel_id": cid, "password": PASSWORD,
                                             "title": "a"})
    reason = "SubscriptionGone" if gone == "expire" else "SubscriptionNotFound"
    assert await outcomes(wgateway, "webpush", 1) == [("failed", reason)]
    # As a dead APNs token: the route loses its subscription, the device can still pull.
    assert await route_of(wgateway, key) == ("webpush", None)
    assert [i["payload"]["message_id"] for i in await pull(wclient, key)] == \
        [first["message_id"]]
    await call(wclient, "/message", {"channel_id": cid, "password": PASSWORD, "title": "b"})
    # The page subscribes the browser again: Web Push delivers again.
    fresh = await browser(wclient, push)
    await call(wclient, "/channel/device", {"device_key": key, "channel_type": "webpush",
                                            "provider_token": fresh.token})
    third = await call(wclient, "/message", {"channel_id": cid, "password": PASSWORD,
                                             "title": "c"})
    [note] = await push.wait_for(1, lambda m: m.accepted)
    assert note.data["message_id"] == third["message_id"] and note.subscription == fresh.id
    assert [m.status for m in push.messages] == [410 if gone == "expire" else 404, 201]


async def test_429_and_503_are_retried_until_delivered(wclient, wgateway, push):
    key = await web_device(wclient, await browser(wclient, push))
    cid = await new_channel(wclient, key)
    push.fail_next(2, 429, retry_after=0)
    push.fail_next(1, 503)
    await call(wclient, "/message", {"channel_id": cid, "password": PASSWORD, "title": "a"})
    [note] = await push.wait_for(1, lambda m: m.accepted)
    assert note.data["title"] == "a"
    assert await outcomes(wgateway, "webpush", 1) == [("sent", None)]
    assert [m.status for m in push.messages] == [429, 429, 503, 201]
    m = parse((await wclient.get("/metrics")).text)
    assert value(m, "pushgo_delivery_retries_total", route="webpush",
                 reason="TooManyRequests") == 2
    assert value(m, "pushgo_delivery_retries_total", route="webpush",
                 reason="ServiceUnavailable") == 1


async def test_a_payload_the_push_service_refuses_as_too_large_ends_the_delivery(
        wclient, wgateway, push):
    sub = await browser(wclient, push)
    key = await web_device(wclient, sub)
    cid = await new_channel(wclient, key)
    push.answer(sub, 413)
    await call(wclient, "/message", {"channel_id": cid, "password": PASSWORD, "title": "a"})
    await push.wait_for(2)  # the full document, then the wake-up one
    assert await outcomes(wgateway, "webpush", 1) == [("failed", "PayloadTooLarge")]
    first, second = list(push.messages)[:2]
    assert first.status == second.status == 413
    assert await route_of(wgateway, key) != ("webpush", None)  # not a dead subscription


async def test_a_large_message_goes_with_its_body_truncated_to_4096_bytes(wclient, wgateway,
                                                                          push):
    key = await web_device(wclient, await browser(wclient, push))
    cid = await new_channel(wclient, key)
    big = "é" * 5000
    sent = await call(wclient, "/message", {"channel_id": cid, "password": PASSWORD,
                                            "title": "big", "body": big})
    [note] = await push.wait_for(1)
    assert note.status == 201 and len(note.body) <= 4096
    assert note.data["truncated"] == "1" and note.data["message_id"] == sent["message_id"]
    assert big.startswith(note.data["body"]) and len(note.data["body"]) > 1000
    items = await pull(wclient, key)
    assert items[0]["payload"]["body"] == big


async def test_the_vapid_key_survives_a_restart(db_url, push, tmp_path, fast_backoff):
    settings = settings_for(db_url, push, tmp_path)
    first = Gateway(settings)
    async with first.running(), client_of(first) as c:
        sub = await browser(c, push)
        app_key = sub.application_server_key
        key = await web_device(c, sub)
        cid = await new_channel(c, key)
    again = Gateway(settings)
    async with again.running(), client_of(again) as c:
        answer = await call(c, "/webpush/vapid-public-key")
        assert app_key is not None and answer["application_server_key"] == _b64(app_key)
        await call(c, "/message", {"channel_id": cid, "password": PASSWORD, "title": "after"})
        [note] = await push.wait_for(1)
        # The mock refuses (403) a message signed by any other key than the one subscribed to.
        assert note.status == 201 and note.data["title"] == "after"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def test_bad_subscriptions_are_refused_with_clear_codes(wclient, push):
    web = await register(wclient, "web")
    good = push.subscribe().json

    async def refused(token: object, code: str = "invalid_webpush_subscription",
                      device: str = web) -> None:
        body = {"device_key": device, "channel_type": "webpush",
                "provider_token": token if isinstance(token, str) else json.dumps(token)}
        await fail(wclient, "/channel/device", body, 400, code)

    await refused("not json at all")
    await refused({**good, "endpoint": good["endpoint"].replace("https:", "http:")})
    await refused({**good, "endpoint": "https://user:pw@push.example.com/x"})
    await refused({**good, "keys": {**good["keys"], "p256dh": "AAAA"}})
    await refused({**good, "keys": {**good["keys"], "auth": "c2hvcnQ"}})
    await refused({"endpoint": good["endpoint"]})
    ios = await register(wclient, "ios")
    await refused(good, "webpush_channel_requires_web_platform", ios)
    # A web device takes no other provider route.
    await fail(wclient, "/channel/device", {"device_key": web, "channel_type": "fcm",
                                            "provider_token": "x" * 40}, 400,
               "fcm_channel_requires_android_platform")


async def test_without_the_loopback_setting_local_endpoints_are_refused(db_url, push):
    gw = Gateway(make_settings(db_url))
    async with gw.running(), client_of(gw) as c:
        web = await register(c, "web")
        for endpoint in (push.subscribe().endpoint, "https://localhost/push/x",
                         "https://10.1.2.3/push/x", "https://[::1]:8443/push/x"):
            token = json.dumps({**push.subscribe().json, "endpoint": endpoint})
            await fail(c, "/channel/device", {"device_key": web, "channel_type": "webpush",
                                              "provider_token": token}, 400,
                       "invalid_webpush_subscription")
        public = json.dumps({**push.subscribe().json,
                             "endpoint": "https://fcm.googleapis.com/fcm/send/abc"})
        await call(c, "/channel/device", {"device_key": web, "channel_type": "webpush",
                                          "provider_token": public})


async def test_with_web_push_off_there_is_no_route_nor_key(db_url):
    gw = Gateway(make_settings(db_url, webpush_enabled=False))
    async with gw.running(), client_of(gw) as c:
        assert (await c.get("/webpush/vapid-public-key")).status_code == 404
        assert (await c.get("/webpush/subscribe")).status_code == 404
        assert "webpush" not in gw.senders
