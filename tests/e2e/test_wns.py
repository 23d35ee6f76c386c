"""WNS end to end: a Windows device on the `wns` route, its channel URI on MockWNS (real TLS,
HTTP/1.1, the client-credentials token endpoint), subscribed to a channel, receives messages,
events and things as raw notifications carrying the operation's map; a channel URI WNS calls
gone is retired (as APNs and FCM dead tokens: nothing more goes to it until the app registers
a new one); throttling (406 with Retry-After) and a 503 are retried until delivered; an
oversized message goes as the wake-up map. Trio and asyncio, SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pushgo.app import Gateway
from pushgo.testing.mock_wns import MockWNS
from tests.api.test_metrics import parse, value
from tests.conftest import make_settings
from tests.e2e.push_services import client_of, outcomes, route_of, routed_device, running_gateway
from tests.e2e.test_delivery import join
from tests.helpers import PASSWORD, call, new_channel, pull
from tests.live import serve_app

pytestmark = pytest.mark.anyio


@pytest.fixture
async def wgateway(db_url: str, wns: MockWNS, fast_backoff: None,
                   tmp_path: Path) -> AsyncIterator[Gateway]:
    async with running_gateway(db_url, wns, tmp_path) as gw:
        yield gw


@pytest.fixture
async def wclient(wgateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(wgateway) as c:
        yield c


async def windows_device(client: httpx.AsyncClient, channel_uri: str) -> str:
    return await routed_device(client, "windows", "wns", channel_uri)


async def test_a_windows_device_receives_messages_events_and_things(wclient, wgateway, wns):
    uri = wns.channel_uri()
    key = await windows_device(wclient, uri)
    assert await route_of(wgateway, key) == ("wns", uri)
    other = await windows_device(wclient, wns.channel_uri())
    cid = await new_channel(wclient, key)
    await join(wclient, other, cid)
    ttl = int(time.time()) + 86400
    sent = await call(wclient, "/message", {
        "channel_id": cid, "password": PASSWORD, "title": "Disk", "body": "/var at 91%",
        "severity": "high", "ttl": ttl, "tags": ["ops"]})
    event = await call(wclient, "/event/create", {
        "channel_id": cid, "password": PASSWORD, "title": "Door open", "status": "Open",
        "message": "Rear door open", "severity": "low", "event_time": int(time.time())})
    thing = await call(wclient, "/thing/create", {
        "channel_id": cid, "password": PASSWORD, "title": "Pump A",
        "observed_at": int(time.time())})
    notes = await wns.wait_for(6, lambda n: n.accepted)
    assert await outcomes(wgateway, "wns", 6) == [("sent", None)] * 6

    mine = [n for n in notes if n.channel == "/w/?" + uri.split("?", 1)[1]]
    by_type = {n.data["entity_type"]: n for n in mine}
    assert sorted(by_type) == ["event", "message", "thing"] and len(mine) == 3
    message, ev, th = by_type["message"], by_type["event"], by_type["thing"]
    assert message.data["message_id"] == sent["message_id"]
    assert (message.data["title"], message.data["body"]) == ("Disk", "/var at 91%")
    assert message.data["tags"] == '["ops"]' and message.data["channel_id"] == cid
    assert ev.data["event_id"] == event["event_id"] and th.data["thing_id"] == thing["thing_id"]
    # Severity → X-WNS-Priority: high 1; events and things deliver at normal, 2.
    assert message.headers["x-wns-priority"] == "1" and ev.headers["x-wns-priority"] == "2"
    assert th.headers["x-wns-priority"] == "2"
    assert 86400 - 120 <= int(message.headers["x-wns-ttl"]) <= 86400
    # The map is the operation's payload as the device would pull it, delivery id included.
    pulled = {item["delivery_id"]: item["payload"] for item in await pull(wclient, key)}
    for note in mine:
        assert note.data == pulled[note.data["delivery_id"]]
    assert len(wns.token_grants) == 1


async def test_a_gone_channel_uri_is_retired_and_gets_nothing_more(wclient, wgateway, wns):
    uri = wns.channel_uri()
    key = await windows_device(wclient, uri)
    cid = await new_channel(wclient, key)
    wns.expire(uri)
    first = await call(wclient, "/message", {"channel_id": cid, "password": PASSWORD,
                                             "title": "a"})
    assert await outcomes(wgateway, "wns", 1) == [("failed", "ChannelExpired")]
    # As for APNs and FCM dead tokens: the route loses its channel URI, the device can still
    # pull what it missed, and nothing more is sent to that URI.
    assert await route_of(wgateway, key) == ("wns", None)
    assert [i["payload"]["message_id"] for i in await pull(wclient, key)] == \
        [first["message_id"]]
    later = await call(wclient, "/message", {"channel_id": cid, "password": PASSWORD,
                                             "title": "b"})
    assert later["accepted"] is True
    # The app registers its new channel URI: WNS delivers again.
    fresh = wns.channel_uri()
    await call(wclient, "/channel/device", {"device_key": key, "channel_type": "wns",
                                            "provider_token": fresh})
    third = await call(wclient, "/message", {"channel_id": cid, "password": PASSWORD,
                                             "title": "c"})
    [note] = await wns.wait_for(1, lambda n: n.accepted)
    assert note.data["message_id"] == third["message_id"]
    assert note.channel == "/w/?" + fresh.split("?", 1)[1]
    assert [n.status for n in wns.notifications] == [410, 200]


async def test_throttling_and_a_503_are_retried_until_delivered(wclient, wgateway, wns):
    key = await windows_device(wclient, wns.channel_uri())
    cid = await new_channel(wclient, key)
    wns.throttle_next(2, retry_after=0)
    wns.fail_next(1, 503)
    await call(wclient, "/message", {"channel_id": cid, "password": PASSWORD, "title": "a"})
    await wns.wait_for(1, lambda n: n.accepted)
    assert await outcomes(wgateway, "wns", 1) == [("sent", None)]
    assert [n.status for n in wns.notifications] == [406, 406, 503, 200]
    m = parse((await wclient.get("/metrics")).text)
    assert value(m, "pushgo_delivery_retries_total", route="wns", reason="Throttled") == 2
    assert value(m, "pushgo_delivery_retries_total", route="wns",
                 reason="ServiceUnavailable") == 1
    assert value(m, "pushgo_deliveries_sent_total", route="wns") == 1


async def test_an_oversized_message_goes_as_a_wakeup_and_stays_pullable(wclient, wgateway, wns):
    key = await windows_device(wclient, wns.channel_uri())
    cid = await new_channel(wclient, key)
    big = "x" * 6000
    sent = await call(wclient, "/message", {"channel_id": cid, "password": PASSWORD,
                                            "title": "big", "body": big})
    [note] = await wns.wait_for(1)
    assert note.headers["x-wns-priority"] == "1"  # a wake-up goes at high priority
    assert note.status == 200 and len(note.body) < 5120
    assert note.data["provider_wakeup"] == "1" and note.data["message_id"] == sent["message_id"]
    items = await pull(wclient, key)
    assert items[0]["payload"]["body"] == big
    assert items[0]["delivery_id"] == note.data["delivery_id"]


async def test_without_client_credentials_the_token_service_provides_wns_tokens(
        db_url, tmp_path, wns):
    """As v1.2.9: ``GET {PUSHGO_TOKEN_SERVICE_URL}/provider/token?provider=wns``; a token WNS
    refuses is fetched again."""
    calls: list[str] = []

    async def token(request: Request) -> JSONResponse:
        calls.append(str(request.query_params.get("provider")))
        return JSONResponse({"success": True, "data": {
            "token": wns.issue_access_token(), "expires_in": 86400}})

    app = Starlette(routes=[Route("/provider/token", token)])
    async with serve_app(app) as base:
        settings = {**wns.settings(wns.tls.write_ca_file(tmp_path / "ca.pem")),
                    "token_service_url": base}
        del settings["wns_client_id"], settings["wns_client_secret"]
        gw = Gateway(make_settings(db_url, **settings))
        async with gw.running(), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=gw.asgi), base_url="http://pushgo.test") as c:
            key = await windows_device(c, wns.channel_uri())
            cid = await new_channel(c, key)
            await call(c, "/message", {"channel_id": cid, "password": PASSWORD, "title": "a"})
            await wns.wait_for(1, lambda n: n.accepted)
            wns.revoke_access_tokens()
            await call(c, "/message", {"channel_id": cid, "password": PASSWORD, "title": "b"})
            await wns.wait_for(1, lambda n: n.accepted and n.data["title"] == "b")
    assert calls == ["wns", "wns"]
    assert [n.status for n in wns.notifications] == [200, 401, 200]
    assert len(wns.token_grants) == 0
