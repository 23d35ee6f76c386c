"""The operator console's routes: the page needs no credential and its data routes do (the
gateway token; a key without the admin scope gets 403 scope_required from the service), the
newest operations with their deliveries by state, the queue depth and sends sampled into the
last hour's history (the sampler's own loop on a MockClock), provider health and the last
hour's failures by reason. Trio and asyncio, SQLite and PostgreSQL; deliveries through the
mock APNs and FCM."""

from __future__ import annotations

import secrets
from typing import Any

import anyio
import httpx
import pytest

from pushgo.app import Gateway
from pushgo.errors import Forbidden, codes
from pushgo.service.console import HISTORY_SAMPLES, SAMPLE_S, History, Sample
from pushgo.service.principal import PRINCIPAL, Principal, Scope
from tests.conftest import make_settings
from tests.helpers import PASSWORD, assert_error, call, eventually, on_mock_clock, register, tick

pytestmark = pytest.mark.anyio

TOKEN = "console-token-1"
AUTH = {"authorization": f"Bearer {TOKEN}"}


async def apns_device(client: httpx.AsyncClient, token: str | None = None) -> str:
    key = await register(client, "ios")
    await call(client, "/channel/device", {"device_key": key, "channel_type": "apns",
                                           "provider_token": token or secrets.token_hex(32)})
    return key


async def channel_of(client: httpx.AsyncClient, *keys: str, name: str = "ops") -> str:
    made = await call(client, "/channel/create", {"channel_name": name, "password": PASSWORD})
    for key in keys:
        await call(client, "/channel/subscribe", {"device_key": key,
                                                  "channel_id": made["channel_id"],
                                                  "password": PASSWORD})
    return str(made["channel_id"])


async def get(client: httpx.AsyncClient, path: str) -> Any:
    """The ``data`` of a GET (a list or a document)."""
    return await call(client, path)


async def message(client: httpx.AsyncClient, cid: str, op_id: str) -> None:
    await call(client, "/message", {"channel_id": cid, "password": PASSWORD, "title": "hi",
                                    "op_id": op_id})


async def test_the_page_is_public_and_its_data_needs_the_token(db_url):
    gw = Gateway(make_settings(db_url, token=TOKEN))
    async with gw.running():
        transport = httpx.ASGITransport(app=gw.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://pushgo.test") as c:
            page = await c.get("/console")
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assert "connect-src 'self'" in page.headers["content-security-policy"]
            assert "sessionStorage" in page.text and "<script src" not in page.text
            for path in ("/admin/console/operations", "/admin/console/stats",
                         "/admin/console/providers", "/admin/console/failures"):
                assert_error(await c.get(path), 401, codes.AUTHENTICATION_FAILED.code)
                assert_error(await c.get(path, headers={"authorization": "Bearer nope"}),
                             401, codes.AUTHENTICATION_FAILED.code)
                assert (await c.get(path, headers=AUTH)).status_code == 200


async def test_a_key_without_the_admin_scope_is_refused(gateway):
    console = gateway.services.console
    scopes = frozenset(s.value for s in Scope if s is not Scope.ADMIN)
    token = PRINCIPAL.set(Principal("0123456789abcdef", "sender", scopes))
    try:
        for read in (console.operations, console.stats, console.providers, console.failures):
            with pytest.raises(Forbidden) as refused:
                await read()
            assert refused.value.code == codes.SCOPE_REQUIRED.code
            assert refused.value.status == 403
    finally:
        PRINCIPAL.reset(token)
    admin = PRINCIPAL.set(Principal("fedcba9876543210", "ops", frozenset({Scope.ADMIN.value})))
    try:
        assert await console.operations() == []
    finally:
        PRINCIPAL.reset(admin)


async def test_bad_queries_are_400(client):
    for path in ("/admin/console/operations?limit=0", "/admin/console/operations?limit=201",
                 "/admin/console/operations?limit=x", "/admin/console/stats?x=1",
                 "/admin/console/providers?limit=3", "/admin/console/failures?since=1"):
        assert_error(await client.get(path), 400, codes.INVALID_QUERY.code)


async def test_operations_newest_first_with_their_deliveries_by_state(client, gateway):
    # No provider is configured here: the pump fails the APNs deliveries.
    one, two = await apns_device(client), await apns_device(client)
    private = await register(client, "ios")
    first = await channel_of(client, one, private, name="first")
    second = await channel_of(client, one, two, name="second")
    await message(client, first, "op-a")
    await message(client, second, "op-b")
    await call(client, "/messages/pull", {"device_key": private})  # op-a's private one

    async def settled() -> Any:
        ops = await get(client, "/admin/console/operations")
        return ops if all(o["done"] for o in ops) and ops[-1]["states"]["sent"] else None

    ops = await eventually(settled)
    assert [o["op_id"] for o in ops] == ["op-b", "op-a"]
    b, a = ops
    assert (b["kind"], b["channel_id"], b["channel_name"], b["sender"]) == \
        ("message", second, "second", "root")
    assert (b["total"], b["operations"], b["states"]["failed"]) == (2, 1, 2)
    assert (a["total"], a["states"]["sent"], a["states"]["failed"]) == (2, 1, 1)
    assert set(a["states"]) == {"queued", "scheduled", "sent", "failed", "expired",
                                "cancelled"}
    assert [o["op_id"] for o in await get(client, "/admin/console/operations?limit=1")] \
        == ["op-b"]
    stats = await call(client, "/admin/console/stats")
    assert (stats["queued"], stats["due"]) == (0, 0)
    assert stats["interval_s"] == SAMPLE_S and stats["capacity"] == HISTORY_SAMPLES
    failures = await call(client, "/admin/console/failures")
    assert failures["total"] == 3 and [r["route"] for r in failures["reasons"]] == ["apns"]


async def test_samples_count_the_queue_and_the_sends_of_this_process(pclient, pgateway,
                                                                     providers):
    keys = [await apns_device(pclient) for _ in range(3)]
    cid = await channel_of(pclient, *keys)
    before = await pgateway.sampler.sample()
    assert before is not None and before.sent == 0
    await message(pclient, cid, "op-sent")
    await providers.apns.wait_for(3)

    async def done() -> bool:
        return bool((await call(pclient, "/deliveries/op-sent"))["done"])

    await eventually(done)
    taken = await pgateway.sampler.sample()
    assert taken is not None and (taken.queued, taken.due, taken.sent) == (0, 0, 3)
    stats = await call(pclient, "/admin/console/stats")
    assert [s["sent"] for s in stats["samples"]][-2:] == [0, 3]
    assert stats["samples"][-1]["at"] >= stats["samples"][-2]["at"]


async def test_failures_by_reason_and_provider_health(pclient, pgateway, providers):
    bad = [secrets.token_hex(32) for _ in range(2)]
    for token in bad:
        providers.apns.reject(token, 400, "BadDeviceToken")
    keys = [await apns_device(pclient, t) for t in bad] + [await apns_device(pclient)]
    cid = await channel_of(pclient, *keys)
    await message(pclient, cid, "op-fail")

    async def failed() -> Any:
        doc = await call(pclient, "/admin/console/failures")
        return doc if doc["total"] == 2 else None

    doc = await eventually(failed)
    assert doc["reasons"] == [{"route": "apns", "reason": "BadDeviceToken", "count": 2}]
    assert doc["since"] <= pgateway.ctx.now() - 3_600_000 + 60_000
    health = {p["route"]: p for p in await get(pclient, "/admin/console/providers")}
    assert {"apns", "fcm"} <= set(health)
    apns = health["apns"]
    assert (apns["configured"], apns["state"], apns["local"]["state"]) == (True, "closed",
                                                                           "closed")


async def test_a_provider_down_shows_its_breaker_open(pclient, pgateway, providers):
    providers.apns.outage()
    keys = [await apns_device(pclient) for _ in range(3)]
    cid = await channel_of(pclient, *keys)
    breaker = pgateway.pump.breakers["apns"]
    breaker.threshold = 1  # the first 503 opens it
    await message(pclient, cid, "op-down")

    async def opened() -> Any:
        health = {p["route"]: p for p in await get(pclient, "/admin/console/providers")}
        apns = health["apns"]
        # this process's breaker, then the row it writes for the others
        return apns if apns["state"] == "open" and apns["shared"] else None

    apns = await eventually(opened)
    stats = await call(pclient, "/admin/console/stats")
    assert stats["queued"] == 3 and 0 <= stats["due"] <= 3  # held back, not lost
    assert apns["local"]["opened"] >= 1
    assert apns["shared"]["state"] == "open" and apns["shared_fresh"] is True
    assert "ServiceUnavailable" in (apns["local"]["last_error"] or "")


def test_the_history_keeps_the_last_hour():
    history = History()
    for i in range(HISTORY_SAMPLES + 40):
        history.add(Sample(at=i, queued=i, due=0, sent=1))
    samples = history.samples()
    assert len(samples) == HISTORY_SAMPLES == 3600 / SAMPLE_S
    assert samples[0].at == 40 and samples[-1].at == HISTORY_SAMPLES + 39


@on_mock_clock()
async def test_the_sampler_takes_a_sample_every_ten_seconds(db_url):
    # Store threads do real work while the clock jumps: a generous store deadline, and a
    # ticker keeps the clock moving in small steps meanwhile.
    gw = Gateway(make_settings(db_url, db_request_timeout_ms=600_000))
    async with anyio.create_task_group() as ticking:
        ticking.start_soon(tick, 0.001)
        start = anyio.current_time()  # the sampler starts inside running()
        async with gw.running():
            with anyio.fail_after(3600):
                while len(gw.services.console.history.samples()) < 3:
                    await anyio.sleep(1)
            # (not before three intervals; real store work may let virtual time run on)
            assert anyio.current_time() - start >= 3 * SAMPLE_S
            assert all(s.sent == 0 and s.queued == 0 for s in
                       gw.services.console.history.samples())
        ticking.cancel_scope.cancel()
