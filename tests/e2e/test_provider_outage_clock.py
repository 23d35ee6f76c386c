"""The done-when of the provider-outage work at full scale, on Trio's MockClock: a 240 s APNs
outage (503 to everything) in the middle of a 1,000-device fan-out ends with every device
delivered, none failed; within 60 s of the provider's recovery its breaker has closed and
nothing waits for a later attempt.

The whole gateway runs on the mock clock (autojump: whenever every task waits, the clock jumps to
the next deadline), its wall clock injected from it, against the mock APNs over real TLS on
loopback, with the real policy (backoff 1 s to 60 s, breaker cool-down 10 s): the 240 s cost a few
real seconds. Store threads and sockets do real work while the clock jumps, so the deadlines that
could be jumped to while a real reply is on its way are generous (the store's request deadline,
the provider connect and liveness deadlines, the mock's TLS handshake), and a ticker keeps the
next deadline a millisecond away so the clock moves in small steps meanwhile. Old pushgo (at
most 8 attempts, no breaker) fails it: deliveries end failed during the outage.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
import pytest

from pushgo.app import Gateway
from pushgo.push import connection
from pushgo.testing.mock_apns import APNsNotification
from tests.conftest import make_settings
from tests.e2e.test_delivery_faults import accepted_counts, make_fleet, rows_of, settled
from tests.helpers import PASSWORD, on_mock_clock, tick
from tests.providers import Providers

FAN_OUT = 1000
OUTAGE_S = 240.0
RECOVERY_S = 60.0
TICK_S = 0.001

pytestmark = on_mock_clock()


@pytest.fixture
def generous_deadlines(monkeypatch: pytest.MonkeyPatch, providers: Providers) -> dict[str, Any]:
    monkeypatch.setattr(connection, "CONNECT_TIMEOUT_S", 3600.0)
    providers.apns.server.handshake_timeout = 3600.0
    return {"db_request_timeout_ms": 600_000, "provider_response_timeout_s": 3600.0,
            "provider_ping_timeout_s": 600.0, "provider_write_timeout_s": 600.0}


async def test_a_240_s_outage_mid_fan_out_ends_with_every_device_delivered_none_failed(
        db_url: str, providers: Providers, generous_deadlines: dict[str, Any]) -> None:
    base_ms = int(time.time() * 1000)
    settings = make_settings(db_url, **providers.settings, **generous_deadlines)
    gw = Gateway(settings, clock=lambda: base_ms + int(anyio.current_time() * 1000))
    apns = providers.apns
    outage: dict[str, float] = {}

    def start_outage_mid_fan_out(note: APNsNotification) -> None:
        if note.status == 200 and len(apns.accepted) == FAN_OUT // 4:
            apns.outage(503, "ServiceUnavailable")
            outage["start"] = anyio.current_time()

    apns.on_notification = start_outage_mid_fan_out
    async with anyio.create_task_group() as ticking:
        ticking.start_soon(tick, TICK_S)  # first: the gateway's start-up uses the store too
        async with gw.running():
            fleet = await make_fleet(gw, FAN_OUT)
            transport = httpx.ASGITransport(app=gw.asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://pushgo.test") as c:
                resp = await c.post("/message", json={"channel_id": fleet.channel_id,
                                                      "password": PASSWORD, "title": "fan-out"})
                assert resp.status_code == 200, resp.text
                with anyio.fail_after(60):
                    while "start" not in outage:
                        await anyio.sleep(0.05)
                await anyio.sleep(OUTAGE_S)
                during = {r.state for r in (await rows_of(gw.store, fleet)).values()}
                assert "failed" not in during and "queued" in during
                # Many cool-downs of opening, probing and opening again (10 s each).
                assert gw.pump.breakers["apns"].opened >= OUTAGE_S / 10 / 2
                apns.end_outage()
                recovered_ms = gw.ctx.now()
                # The breaker sees the provider back within a minute, and nothing waiting for
                # it is due later than that: the backlog goes out at once.
                with anyio.fail_after(RECOVERY_S):
                    while gw.pump.breakers["apns"].holding:
                        await anyio.sleep(0.05)
                waiting = [r.next_attempt_at for r in (await rows_of(gw.store, fleet)).values()
                           if r.state == "queued"]
                assert max(waiting, default=0) <= recovered_ms + RECOVERY_S * 1000
                rows = await settled(gw.store, fleet, within=10 * RECOVERY_S)
        ticking.cancel_scope.cancel()
    assert {r.state for r in rows.values()} == {"sent"}  # every device delivered, none failed
    assert set(accepted_counts(apns)) == set(rows)
    assert set(accepted_counts(apns).values()) == {1}
    # The breaker held the queue back: probes every cool-down, not a storm of retries.
    assert sum(1 for n in apns.notifications if n.status == 503) < 2 * FAN_OUT
