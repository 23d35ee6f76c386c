"""One failing push service does not pause Web Push for every browser: the breakers of the
WNS and Web Push routes are per push service origin. Two MockWebPush services (one CA, two
origins): A answers 503 to every message, B serves. A's breaker opens and its deliveries wait
(given back unsent, its error kept), while B's are sent at once, untouched by A's outage, and
the route's own breaker stays closed; once A serves again its probes close its breaker and
everything waiting for it is delivered. Trio and asyncio, SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from pushgo.app import Gateway
from pushgo.delivery import breaker
from pushgo.delivery import pump as P
from pushgo.protocol import webpush as WEB
from pushgo.testing.mock_webpush import MockWebPush
from pushgo.testing.tls import LocalCA
from tests.api.test_metrics import parse, value
from tests.conftest import make_settings
from tests.e2e.test_delivery_faults import Fleet, make_fleet, rows_of
from tests.helpers import send

ON_A, ON_B = 25, 3


@pytest.fixture
def short_cooldown(monkeypatch: pytest.MonkeyPatch, fast_backoff: None) -> None:
    monkeypatch.setattr(breaker, "COOLDOWN_S", 0.3)
    monkeypatch.setattr(breaker, "WINDOW_S", 0.2)


@pytest.fixture
async def services() -> AsyncIterator[tuple[MockWebPush, MockWebPush]]:
    ca = LocalCA()
    a, b = MockWebPush(tls=ca), MockWebPush(tls=ca)
    async with a.serving(), b.serving():
        yield a, b


def alternate(a: MockWebPush, b: MockWebPush) -> Iterator[str]:
    """ON_A subscriptions on A (each answered 503 for good), then ON_B on B."""
    for _ in range(ON_A):
        sub = a.subscribe()
        a.answer(sub, 503)
        yield sub.token
    for _ in range(ON_B):
        yield b.subscribe().token


@pytest.mark.anyio
async def test_a_failing_push_service_holds_back_only_its_own_deliveries(
        db_url, services, short_cooldown, tmp_path: Path):
    a, b = services
    assert a.origin != b.origin
    ca = str(a.tls.write_ca_file(tmp_path / "ca.pem"))
    gw = Gateway(make_settings(db_url, **a.settings(ca)))
    async with gw.running(), httpx.AsyncClient(transport=httpx.ASGITransport(app=gw.asgi),
                                               base_url="http://pushgo.test") as client:
        tokens = alternate(a, b)
        fleet: Fleet = await make_fleet(gw, ON_A + ON_B, platform="web", route="webpush",
                                        token=lambda: next(tokens))
        on_a = {k for k, t in fleet.tokens.items() if t.find(a.origin) >= 0}
        assert len(on_a) == ON_A

        await send(client, fleet.channel_id, title="first")
        await b.wait_for(ON_B, lambda m: m.accepted, within=15)
        key = ("webpush", a.origin)
        with anyio.fail_after(15):
            while key not in gw.pump.origin_breakers or \
                    not gw.pump.origin_breakers[key].holding:
                await anyio.sleep(0.01)
        assert gw.pump.breakers["webpush"].state is breaker.State.CLOSED
        assert ("webpush", b.origin) not in gw.pump.origin_breakers
        metrics = parse((await client.get("/metrics")).text)
        assert value(metrics, "pushgo_provider_breaker_state", provider="webpush") == 0
        assert value(metrics, "pushgo_push_service_breaker_state", provider="webpush",
                     origin=a.origin) in (1, 2)

        # A is still down: B keeps receiving, at once, nothing of it given back.
        await send(client, fleet.channel_id, title="second")
        got_b = await b.wait_for(2 * ON_B, lambda m: m.accepted, within=15)
        assert sorted(m.data["title"] for m in got_b) == ["first"] * ON_B + ["second"] * ON_B
        with anyio.fail_after(15):  # B's answers written down, A's deliveries held back
            while True:
                rows = await rows_of(gw.store, fleet)
                if (sum(r.state == "sent" for r in rows.values()) >= 2 * ON_B
                        and all(r.last_error for r in rows.values() if r.device_key in on_a)):
                    break
                await anyio.sleep(0.02)
        for row in rows.values():
            if row.device_key in on_a:
                assert row.state == "queued" and row.last_error == "ServiceUnavailable"
            else:
                assert (row.state, row.last_error, row.attempts) == ("sent", None, 1)
        assert gw.pump.origin_breakers[key].holding

        # A serves again: its probes close its breaker and everything waiting goes out.
        a.reset_behaviours()
        got_a = await a.wait_for(2 * ON_A, lambda m: m.accepted, within=30)
        assert sorted(m.data["title"] for m in got_a) == ["first"] * ON_A + ["second"] * ON_A
        with anyio.fail_after(15):
            while {r.state for r in (await rows_of(gw.store, fleet)).values()} != {"sent"}:
                await anyio.sleep(0.02)
        assert key not in gw.pump.origin_breakers
        assert len(b.messages) == 2 * ON_B  # B never saw a retry


def test_the_origin_of_a_delivery():
    point = WEB.b64url(WEB.public_point(WEB.private_key(b"\x01" * 32)))
    sub = {"endpoint": "https://push.example.com:8443/p/1",
           "keys": {"p256dh": point, "auth": WEB.b64url(b"a" * 16)}}
    assert P.origin_of("webpush", json.dumps(sub)) == "https://push.example.com:8443"
    # No https endpoint: no origin, its answers count against the route's breaker.
    assert P.origin_of("webpush", json.dumps({**sub, "endpoint": "http://a.example/p"})) is None
    assert P.origin_of("webpush", "not json") is None
    assert P.origin_of("wns", "https://db5.notify.windows.com/?token=AwY") == \
        "https://db5.notify.windows.com"
    assert P.origin_of("apns", "ab" * 32) is None
    assert P.origin_of("webpush", None) is None
