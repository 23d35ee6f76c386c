"""Quotas through HTTP: channel rates and daily quotas with the gateway token (its answers'
``Retry-After`` and ``RateLimit-*`` fields, midnight UTC on the gateway's clock), bulk lines
refused one by one, a key's request rate at the front door, and the refusals in /metrics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from pushgo.app import Gateway
from pushgo.service.principal import PRINCIPAL, Principal
from pushgo.service.quotas import DAY_MS, day_of
from tests.api.test_metrics import parse, value
from tests.conftest import make_settings
from tests.helpers import PASSWORD, assert_error, register, stored_channel
from tests.service.support import Clock

pytestmark = pytest.mark.anyio

TOKEN = "quota-test-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@asynccontextmanager
async def gateway(db_url: str, clock: Clock, **overrides: Any,
                  ) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    gw = Gateway(make_settings(db_url, token=TOKEN, **overrides), clock=clock)
    async with gw.running():
        transport = httpx.ASGITransport(app=gw.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://pushgo.test",
                                     headers=AUTH) as client:
            yield gw, client


async def post(client: httpx.AsyncClient, cid: str) -> httpx.Response:
    return await client.post("/message", json={"channel_id": cid, "password": PASSWORD,
                                               "title": "hi"})


def limits(resp: httpx.Response) -> tuple[str, ...]:
    return tuple(resp.headers.get(f"ratelimit-{f}", "") for f in
                 ("limit", "remaining", "reset", "policy"))


async def test_a_channels_rate_refuses_with_retry_after_and_ratelimit_fields(db_url):
    clock = Clock()
    async with gateway(db_url, clock, channel_rate_per_s=2) as (_gw, client):
        cid = await stored_channel(_gw, await register(client))
        first = await post(client, cid)
        assert first.status_code == 200
        assert limits(first) == ("2", "1", "1", "2;w=1")
        assert limits(await post(client, cid)) == ("2", "0", "1", "2;w=1")
        refused = await post(client, cid)
        assert_error(refused, 429, "quota_exceeded")
        assert refused.headers["retry-after"] == "1"
        assert limits(refused) == ("2", "0", "1", "2;w=1")
        # Another channel is not held back.
        other = await stored_channel(_gw, name="other")
        assert (await post(client, other)).status_code == 200
        clock.advance(1000)
        assert (await post(client, cid)).status_code == 200
        # A request that used no limit answers without the fields.
        plain = await client.get("/healthz")
        assert "ratelimit-limit" not in plain.headers


async def test_a_channels_daily_quota_resets_at_midnight_utc(db_url):
    clock = Clock()
    clock.now = day_of(clock.now) * DAY_MS + DAY_MS - 3_600_000  # 23:00 UTC
    async with gateway(db_url, clock, channel_daily_notifications=2) as (gw, client):
        cid = await stored_channel(gw, await register(client))
        assert limits(await post(client, cid)) == ("2", "1", "3600", "2;w=86400")
        assert limits(await post(client, cid)) == ("2", "0", "3600", "2;w=86400")
        clock.advance(1_000)
        refused = await post(client, cid)
        assert_error(refused, 429, "quota_exceeded")
        assert refused.headers["retry-after"] == "3599"
        assert limits(refused) == ("2", "0", "3599", "2;w=86400")
        clock.advance(3_599_000)  # 00:00 UTC
        assert limits(await post(client, cid)) == ("2", "1", "86400", "2;w=86400")
        text = (await client.get("/metrics")).text
        assert value(parse(text), "pushgo_quota_rejections_total", kind="daily",
                     subject="channel") == 1
        assert value(parse(text), "pushgo_quota_rejections_total", kind="rate",
                     subject="key") == 0


async def test_bulk_lines_over_the_daily_quota_fail_alone(db_url):
    clock = Clock()
    async with gateway(db_url, clock, channel_daily_notifications=2) as (gw, client):
        device_key = await register(client)
        cid = await stored_channel(gw, device_key)
        lines = [{"channel_id": cid, "title": f"n{i}"} for i in range(4)]
        body = "\n".join(json.dumps(line) for line in lines).encode()
        resp = await client.post("/messages/bulk", content=body,
                                 headers={"content-type": "application/x-ndjson"})
        results = [json.loads(line) for line in resp.text.splitlines()]
        assert [(r["index"], r["ok"]) for r in results] == [
            (0, True), (1, True), (2, False), (3, False)]
        assert {(r["error_code"], r["status"]) for r in results[2:]} == {
            ("quota_exceeded", 429)}
        pulled = await client.post("/messages/pull",
                                   json={"device_key": device_key})
        assert [m["payload"]["title"] for m in pulled.json()["data"]["items"]] == ["n0", "n1"]


def as_key(app: Any, principal: Principal) -> Any:
    """The gateway's front door serving every request as ``principal`` (what an API key's
    resolution sets)."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        token = PRINCIPAL.set(principal)
        try:
            await app(scope, receive, send)
        finally:
            PRINCIPAL.reset(token)

    return asgi


async def test_a_keys_rate_is_taken_at_the_front_door(db_url):
    clock = Clock()
    async with gateway(db_url, clock) as (gw, _client):
        limited = Principal("k1", "ci", frozenset({"send", "status"}), rate_per_s=1)
        transport = httpx.ASGITransport(app=as_key(gw.asgi, limited))
        async with httpx.AsyncClient(transport=transport, base_url="http://pushgo.test",
                                     headers=AUTH) as client:
            first = await client.get("/healthz")
            assert first.status_code == 200
            assert limits(first) == ("1", "0", "1", "1;w=1")
            refused = await client.get("/healthz")
            assert_error(refused, 429, "quota_exceeded")
            assert refused.headers["retry-after"] == "1"
            clock.advance(1000)
            assert (await client.get("/healthz")).status_code == 200
        text = (await _client.get("/metrics")).text
        assert value(parse(text), "pushgo_quota_rejections_total", kind="rate",
                     subject="key") == 1
