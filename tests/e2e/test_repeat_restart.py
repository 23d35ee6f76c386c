"""Repeats live in the database: a ``pushgo serve`` killed with SIGKILL after the first send of
two repeating messages; one of them is acknowledged while that gateway is down (through
another gateway on the same database, its clock not yet at the next round); a gateway started
on the same database when the next round is due sends the other one again, and not the
acknowledged one.

The restarted gateways run in process on an injected clock (the test moves it), so the 30 s
between rounds cost no real time.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import anyio
import httpx

from pushgo.app import Gateway
from pushgo.testing.mock_apns import APNsNotification
from tests.conftest import make_settings
from tests.e2e.test_repeat import ManualClock
from tests.helpers import PASSWORD, call, eventually
from tests.live import ServerProcess
from tests.providers import Providers

EVERY_S = 30


@asynccontextmanager
async def gateway_at(db_url: str, providers: Providers, ms: int
                     ) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    gw = Gateway(make_settings(db_url, **providers.settings), clock=ManualClock(ms))
    async with gw.running():
        transport = httpx.ASGITransport(app=gw.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://pushgo.test") as api:
            yield gw, api


def notes(providers: Providers, op_id: str) -> list[APNsNotification]:
    return [n for n in providers.apns.accepted if n.payload.get("op_id") == op_id]


async def test_a_repeat_survives_kill_9_and_stops_on_an_ack_made_while_it_was_down(
        db_url: str, providers: Providers, tmp_path: Path) -> None:
    env = {"PUSHGO_DB_URL": db_url, "PUSHGO_LOG_LEVEL": "warning",
           **{"PUSHGO_" + k.upper(): str(v) for k, v in providers.settings.items()}}
    srv = ServerProcess(env, str(tmp_path / "serve.log"))
    token = secrets.token_hex(32)
    try:
        await anyio.to_thread.run_sync(srv.start)
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as api:
            phone = (await call(api, "/device/register", {"platform": "ios"}))["device_key"]
            await call(api, "/channel/device", {"device_key": phone, "channel_type": "apns",
                                                "provider_token": token})
            app = (await call(api, "/device/register", {"platform": "android"}))["device_key"]
            await call(api, "/channel/device", {"device_key": app, "channel_type": "private"})
            cid = (await call(api, "/channel/subscribe", {
                "device_key": phone, "channel_name": "on-call", "password": PASSWORD,
            }))["channel_id"]
            await call(api, "/channel/subscribe", {"device_key": app, "channel_id": cid,
                                                   "password": PASSWORD})
            for op_id in ("kept", "acked"):
                await call(api, "/message", {
                    "channel_id": cid, "password": PASSWORD, "title": op_id, "op_id": op_id,
                    "repeat": {"every_s": EVERY_S, "max": 5}})
            await eventually(lambda: _sent_once(providers), timeout=20)
            sent_at = (await call(api, "/receipts/kept"))["created_at"]
        await anyio.to_thread.run_sync(srv.kill9)

        # Down: the private device acknowledges "acked" through another gateway on the same
        # database, whose clock is still before the next round.
        async with gateway_at(db_url, providers, sent_at) as (_gw, api):
            page = await call(api, "/v2/messages/pull", {"device_key": app})
            ids = [i["delivery_id"] for i in page["items"] if i["payload"]["op_id"] == "acked"]
            await call(api, "/v2/messages/ack", {"device_key": app, "delivery_ids": ids})
        assert len(notes(providers, "kept")) == len(notes(providers, "acked")) == 1

        # Up again when the next round is due: "kept" goes out again, "acked" does not.
        async with gateway_at(db_url, providers, sent_at + (EVERY_S + 10) * 1000) as (gw, api):
            await eventually(lambda: _sent(providers, "kept", 2), timeout=20)
            kept = await call(api, "/receipts/kept")
            acked = await call(api, "/receipts/acked")
            assert gw.repeats.last_pass_at is not None  # the pass that made the round
        assert (kept["sends"], kept["stopped"]) == (2, False)
        assert (acked["sends"], acked["stopped_reason"], acked["acked_via"]) == (
            1, "acked", "v2_messages_ack")
        assert len(notes(providers, "acked")) == 1
    finally:
        srv.stop()


async def _sent_once(providers: Providers) -> bool:
    return all(len(notes(providers, op)) >= 1 for op in ("kept", "acked"))


async def _sent(providers: Providers, op_id: str, count: int) -> bool:
    return len(notes(providers, op_id)) >= count


async def test_two_processes_on_one_postgresql_make_each_round_once(
        pg_schema_url: str, providers: Providers) -> None:
    """Two gateways share the outbox; both see the round due, one makes it."""
    token = secrets.token_hex(32)
    start = 1_800_000_000_000
    async with gateway_at(pg_schema_url, providers, start) as (gw_a, api), \
            gateway_at(pg_schema_url, providers, start) as (gw_b, _api_b):
        phone = (await call(api, "/device/register", {"platform": "ios"}))["device_key"]
        await call(api, "/channel/device", {"device_key": phone, "channel_type": "apns",
                                            "provider_token": token})
        cid = (await call(api, "/channel/subscribe", {
            "device_key": phone, "channel_name": "on-call", "password": PASSWORD,
        }))["channel_id"]
        await call(api, "/message", {"channel_id": cid, "password": PASSWORD, "title": "x",
                                     "op_id": "shared-round",
                                     "repeat": {"every_s": EVERY_S, "max": 5}})
        await eventually(lambda: _sent(providers, "shared-round", 1), timeout=20)
        for rounds in (1, 2, 3):
            target = start + rounds * EVERY_S * 1000
            for gw in (gw_a, gw_b):
                gw.ctx.clock.ms = target  # type: ignore[attr-defined]
                gw.repeats.wake()
            await eventually(partial(_both_saw, gw_a, gw_b, target), timeout=20)
            await eventually(partial(_sent, providers, "shared-round", rounds + 1), timeout=20)
        receipt = await call(api, "/receipts/shared-round")
    assert receipt["sends"] == 4
    assert len(notes(providers, "shared-round")) == 4


async def _both_saw(a: Gateway, b: Gateway, ms: int) -> bool:
    return all(gw.repeats.last_pass_at is not None and gw.repeats.last_pass_at >= ms
               for gw in (a, b))
