"""Provider outages end to end: a gateway against the mock APNs and FCM over TLS.

Transient failures (5xx, refused or broken connections) never end a delivery: it is tried again
until its TTL, and the provider's circuit breaker holds deliveries back while it is down and lets
them all go when it is back. Delivery status and /metrics say why deliveries wait. A permanent
answer still ends a delivery at once.

The done-when at full scale, on Trio's MockClock, is tests/e2e/test_provider_outage_clock.py.
Here the policy is scaled down 100-fold (backoff from 10 ms capped at 50 ms instead of 1 s capped at
60 s; a breaker cool-down of 100 ms instead of 10 s; the connection pool's connect backoff
likewise), so an outage longer than old pushgo's whole retry budget (8 attempts, about
127-254 s at full scale, 1.3-2.5 s here) runs in a few real seconds. The outage is ended by what
happened during it, never by a timer: it lasts until the breaker has opened 30 times, each a
whole cool-down after the last (at least "300 s" at full scale).
"""

from __future__ import annotations

import re
import time
from typing import Any

import anyio
import httpx
import pytest

from pushgo import commands
from pushgo.delivery import breaker, pump
from pushgo.push import pool
from pushgo.testing.mock_apns import APNsNotification
from tests.api.test_metrics import scrape, value
from tests.e2e.test_delivery_faults import (
    SETTLE_S,
    Fleet,
    accepted_counts,
    fcm_token,
    make_fleet,
    settled,
)
from tests.helpers import PASSWORD

FAN_OUT = 1000
COOLDOWN_S = 0.1
OUTAGE_OPENINGS = 30  # x COOLDOWN_S: 3 s here, 300 s at full scale


@pytest.fixture(autouse=True)
def scaled_policy(monkeypatch: pytest.MonkeyPatch, fast_backoff: None) -> None:
    monkeypatch.setattr(pump, "BACKOFF_BASE_S", 0.01)
    monkeypatch.setattr(pump, "BACKOFF_MAX_S", 0.05)
    monkeypatch.setattr(breaker, "COOLDOWN_S", COOLDOWN_S)
    monkeypatch.setattr(breaker, "WINDOW_S", 0.2)
    monkeypatch.setattr(pool, "BACKOFF_MIN_S", 0.01)
    monkeypatch.setattr(pool, "BACKOFF_MAX_S", 0.05)


async def post_message(client: httpx.AsyncClient, fleet: Fleet, title: str) -> str:
    resp = await client.post("/message", json={"channel_id": fleet.channel_id,
                                               "password": PASSWORD, "title": title})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["data"]["op_id"])


async def status(client: httpx.AsyncClient, op_id: str) -> dict[str, Any]:
    resp = await client.get(f"/deliveries/{op_id}")
    assert resp.status_code == 200, resp.text
    doc: dict[str, Any] = resp.json()["data"]
    return doc


async def wait_status(client: httpx.AsyncClient, op_id: str, ok: Any) -> dict[str, Any]:
    with anyio.fail_after(SETTLE_S):
        while True:
            doc = await status(client, op_id)
            if ok(doc):
                return doc
            await anyio.sleep(0.02)


async def test_a_provider_outage_mid_fan_out_longer_than_the_old_retry_budget_fails_nothing(
        pclient, pgateway, providers):
    """The done-when: a "240 s" APNs outage (503 to everything) in the middle of a
    1,000-device fan-out ends with every device delivered, none failed."""
    apns = providers.apns
    fleet = await make_fleet(pgateway, FAN_OUT)
    apns_breaker = pgateway.pump.breakers["apns"]

    def start_outage_mid_fan_out(note: APNsNotification) -> None:
        if note.status == 200 and len(apns.accepted) == FAN_OUT // 4:
            apns.outage(503, "ServiceUnavailable")

    apns.on_notification = start_outage_mid_fan_out
    op_id = await post_message(pclient, fleet, "fan-out")
    # Down until the breaker has opened OUTAGE_OPENINGS times: each opening follows a whole
    # cool-down after the one before, so the outage lasted at least OUTAGE_OPENINGS cool-downs
    # ("300 s" at full scale: longer than main's 127-254 s retry budget, and than 240 s).
    with anyio.fail_after(SETTLE_S * 2):
        while apns_breaker.opened < OUTAGE_OPENINGS:
            await anyio.sleep(0.02)
    during = await status(pclient, op_id)
    assert during["states"]["failed"] == 0 and not during["done"]
    assert during["states"]["sent"] < FAN_OUT  # the outage came in the middle
    assert during["retrying"] >= during["states"]["queued"] - 3  # probes may be on the wire
    assert during["waiting"]["apns"]["state"] == "provider_unavailable"
    assert during["waiting"]["apns"]["last_error"] == "ServiceUnavailable"
    m = await scrape(pclient)
    assert value(m, "pushgo_provider_breaker_state", provider="apns") in (1, 2)
    assert value(m, "pushgo_provider_breaker_state", provider="fcm") == 0
    assert value(m, "pushgo_provider_last_error_info", provider="apns",
                 reason="ServiceUnavailable") == 1
    # The breaker holds the queue back: the provider saw probes, not a storm of retries.
    refused = sum(1 for n in apns.notifications if n.status == 503)
    assert refused < FAN_OUT * 2

    apns.end_outage()
    rows = await settled(pgateway.store, fleet, within=60)
    assert {r.state for r in rows.values()} == {"sent"}  # none failed
    assert set(accepted_counts(apns)) == set(rows)
    assert set(accepted_counts(apns).values()) == {1}
    after = await wait_status(pclient, op_id, lambda d: d["done"])
    assert after["states"] == {"queued": 0, "sent": FAN_OUT, "failed": 0, "expired": 0}
    assert "waiting" not in after and after["retrying"] == 0
    assert apns_breaker.state is breaker.State.CLOSED


async def test_a_provider_down_then_up_says_why_while_other_routes_flow(
        pclient, pgateway, providers, capsys):
    apns, fcm = providers.apns, providers.fcm
    ios = await make_fleet(pgateway, 40)
    android = await make_fleet(pgateway, 20, platform="android", route="fcm", token=fcm_token)
    apns.go_down()  # connections cut and new ones closed before TLS: connects fail
    op_id = await post_message(pclient, ios, "while down")
    down = await wait_status(pclient, op_id, lambda d: d.get("waiting", {}).get("apns", {})
                             .get("state") == "provider_unavailable")
    reason = down["waiting"]["apns"]["last_error"]
    assert reason in {"TLSError", "ConnectionClosed", "ConnectionRefused"}, reason
    assert isinstance(down["waiting"]["apns"]["since"], int)
    assert down["waiting"]["apns"]["deliveries"] == 40
    assert down["states"]["queued"] == 40 and down["states"]["failed"] == 0
    # Given back unsent by the open breaker: each one waits for another attempt.
    held = await wait_status(pclient, op_id, lambda d: d["retrying"] >= 39)
    commands._summary(held)  # what `pushgo deliveries` prints of it
    printed = capsys.readouterr().out
    assert re.search(rf"^waiting\s+apns unavailable \({reason}\) since \d{{4}}-.*: 40$",
                     printed, re.M), printed
    assert re.search(r"^retrying\s+(39|40)$", printed, re.M), printed
    m = await scrape(pclient)
    assert value(m, "pushgo_provider_breaker_state", provider="apns") in (1, 2)
    assert value(m, "pushgo_provider_last_error_info", provider="apns", reason=reason) == 1
    assert value(m, "pushgo_provider_connect_failures_total", provider="apns") >= 2

    # FCM is not held back by APNs being down.
    await post_message(pclient, android, "fcm flows")
    fcm_rows = await settled(pgateway.store, android)
    assert {r.state for r in fcm_rows.values()} == {"sent"}
    assert len(fcm.messages) == 20
    assert pgateway.pump.breakers["apns"].holding  # still down meanwhile
    assert not apns.accepted

    apns.come_up()
    rows = await settled(pgateway.store, ios)
    assert {r.state for r in rows.values()} == {"sent"}
    assert set(accepted_counts(apns)) == set(rows)
    assert max(r.attempts for r in rows.values()) <= 2  # waiting spent no attempts
    after = await wait_status(pclient, op_id, lambda d: d["done"])
    assert "waiting" not in after and after["states"]["sent"] == 40
    m = await scrape(pclient)
    assert value(m, "pushgo_provider_breaker_state", provider="apns") == 0


async def test_a_permanent_rejection_still_fails_at_once(pclient, pgateway, providers):
    fleet = await make_fleet(pgateway, 6)
    bad, gone, *_ = fleet.tokens.values()
    providers.apns.reject(bad, 400, "BadDeviceToken")
    providers.apns.unregister(gone)
    await post_message(pclient, fleet, "bad apples")
    rows = await settled(pgateway.store, fleet)
    by_token = {fleet.tokens[r.device_key]: r for r in rows.values()}
    assert (by_token[bad].state, by_token[bad].attempts, by_token[bad].last_error) == (
        "failed", 1, "BadDeviceToken")
    assert (by_token[gone].state, by_token[gone].attempts, by_token[gone].last_error) == (
        "failed", 1, "Unregistered")
    assert {r.state for t, r in by_token.items() if t not in (bad, gone)} == {"sent"}
    assert [n.status for n in providers.apns.notifications if n.token == bad] == [400]
    assert not pgateway.pump.breakers["apns"].holding


async def test_deliveries_whose_ttl_ends_while_their_provider_is_down_end_expired(
        pclient, pgateway, providers):
    fleet = await make_fleet(pgateway, 5)
    providers.apns.go_down()
    resp = await pclient.post("/message", json={
        "channel_id": fleet.channel_id, "password": PASSWORD, "title": "short-lived",
        "ttl": int(time.time()) + 3})  # 2-3 s from now
    assert resp.status_code == 200, resp.text
    op_id = resp.json()["data"]["op_id"]
    await wait_status(pclient, op_id, lambda d: "waiting" in d)
    # Still down: the TTL alone ends them, nothing waits for the provider to come back.
    done = await wait_status(pclient, op_id, lambda d: d["done"])
    assert done["states"] == {"queued": 0, "sent": 0, "failed": 0, "expired": 5}
    assert pgateway.pump.breakers["apns"].holding
    assert not providers.apns.notifications
