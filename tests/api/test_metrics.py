"""GET /metrics: Prometheus text whose counters match what the mock providers received."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from pushgo.app import Gateway
from pushgo.metrics import merge
from pushgo.store.schema import deliveries
from tests.conftest import make_settings
from tests.e2e.test_delivery import apns_token, device, fcm_token, join
from tests.helpers import PASSWORD, call, eventually, new_channel


async def provider_states(gateway: Gateway) -> list[tuple[str, str | None]]:
    query = sa.select(deliveries.c.state, deliveries.c.last_error).where(
        deliveries.c.route != "private")
    return await gateway.store.read(lambda conn: [tuple(r) for r in conn.execute(query)])


async def settled(gateway: Gateway, n: int) -> list[tuple[str, str | None]]:
    """Wait until ``n`` provider deliveries exist and none is queued."""
    with anyio.fail_after(10):
        while True:
            got = await provider_states(gateway)
            if len(got) >= n and all(s != "queued" for s, _ in got):
                return got
            await anyio.sleep(0.02)


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(client: httpx.AsyncClient, **kw: Any) -> dict[Any, float]:
    resp = await client.get("/metrics", **kw)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(resp.text)


async def test_counters_match_what_the_mock_providers_received(pclient, pgateway, providers):
    good = [apns_token() for _ in range(5)]
    dead, rejected = apns_token(), apns_token()
    fcm_good = fcm_token()
    providers.apns.unregister(dead)
    providers.apns.reject(rejected, 400, "TopicDisallowed")
    keys = [await device(pclient, "ios", "apns", t) for t in [*good, dead, rejected]]
    keys.append(await device(pclient, "android", "fcm", fcm_good))
    cid = await new_channel(pclient, keys[0])
    for key in keys[1:]:
        await join(pclient, key, cid)
    settled_so_far = 0
    for i in range(3):
        sent = await call(pclient, "/message", {"channel_id": cid, "password": PASSWORD,
                                                "title": f"m{i}"})
        # One at a time: the first 410 removes the dead token, so later fan-outs skip it.
        settled_so_far += 8 if i == 0 else 7
        await settled(pgateway, settled_so_far)
        assert sent["accepted"] is True

    m = await scrape(pclient)
    apns_ok = len(providers.apns.accepted)
    fcm_ok = len(providers.fcm.accepted)
    assert apns_ok == 15 and fcm_ok == 3
    db = await provider_states(pgateway)
    assert len(db) == 22
    assert sum(1 for s, _ in db if s == "sent") == apns_ok + fcm_ok
    assert value(m, "pushgo_deliveries_sent_total", route="apns") == apns_ok
    assert value(m, "pushgo_deliveries_sent_total", route="fcm") == fcm_ok
    assert value(m, "pushgo_operations_accepted_total", kind="message") == 3
    assert value(m, "pushgo_deliveries_enqueued_total") == 8 + 7 + 7
    assert value(m, "pushgo_deliveries_failed_total", route="apns",
                 reason="TopicDisallowed") == 3
    assert value(m, "pushgo_deliveries_failed_total", route="apns", reason="Unregistered") == 1
    rejected_by_mock = len(providers.apns.notifications.matching(lambda n: not n.accepted))
    assert value(m, "pushgo_send_latency_seconds_count", provider="apns") == \
        apns_ok + rejected_by_mock
    assert value(m, "pushgo_send_latency_seconds_bucket", provider="apns", le="+Inf") == \
        apns_ok + rejected_by_mock
    assert value(m, "pushgo_send_latency_seconds_sum", provider="apns") > 0
    assert value(m, "pushgo_provider_connections", provider="apns") >= 1
    assert value(m, "pushgo_provider_streams_in_flight", provider="apns") == 0
    assert value(m, "pushgo_queue_depth", route="apns") == 0
    assert value(m, "pushgo_http_requests_total", method="POST", route="/message",
                 status="200") == 3
    assert value(m, "pushgo_http_requests_total", method="POST", route="/channel/subscribe",
                 status="200") == len(keys)
    assert {k: v for k, v in m.items() if k[0] == "pushgo_deliveries_failed_total"} == {
        ("pushgo_deliveries_failed_total", (("reason", "TopicDisallowed"), ("route", "apns"))): 3,
        ("pushgo_deliveries_failed_total", (("reason", "Unregistered"), ("route", "apns"))): 1,
    }


async def test_retries_are_counted_by_reason_and_queue_depth_shows_waiting_work(
        pclient, pgateway, providers):
    tok = apns_token()
    key = await device(pclient, "ios", "apns", tok)
    cid = await new_channel(pclient, key)
    providers.apns.fail_next(2, 503, "ServiceUnavailable")
    await call(pclient, "/message", {"channel_id": cid, "password": PASSWORD, "title": "x"})
    await settled(pgateway, 1)
    m = await scrape(pclient)
    assert value(m, "pushgo_delivery_retries_total", route="apns",
                 reason="ServiceUnavailable") == 2
    assert value(m, "pushgo_deliveries_sent_total", route="apns") == 1
    assert len(providers.apns.accepted) == 1

    # Private-route work waits in the outbox until the device fetches it.
    private = await call(pclient, "/device/register", {"platform": "android"})
    await join(pclient, private["device_key"], cid)
    await call(pclient, "/message", {"channel_id": cid, "password": PASSWORD, "title": "y"})

    async def one_private_waiting() -> bool:
        return value(await scrape(pclient), "pushgo_queue_depth", route="private") == 1

    await eventually(one_private_waiting, timeout=10, interval=0.02)


async def test_http_requests_are_counted_by_route_template_and_status(client):
    await client.get("/healthz")
    await client.get("/channel/exists", params={"channel_id": "nope"})
    await client.get("/no/such/route")
    await client.delete("/healthz")
    m = await scrape(client)
    assert value(m, "pushgo_http_requests_total", method="GET", route="/healthz",
                 status="200") == 1
    assert value(m, "pushgo_http_requests_total", method="GET", route="/channel/exists",
                 status="400") == 1
    assert value(m, "pushgo_http_requests_total", method="GET", route="unmatched",
                 status="404") == 1
    assert value(m, "pushgo_http_requests_total", method="DELETE", route="/healthz",
                 status="405") == 1
    # The scrape that answered is counted once it ends.
    m = await scrape(client)
    assert value(m, "pushgo_http_requests_total", method="GET", route="/metrics",
                 status="200") >= 1


async def test_metrics_need_the_gateway_token_when_one_is_set(db_url):
    gw = Gateway(make_settings(db_url, token="s3cret-token"))
    async with gw.running():
        transport = httpx.ASGITransport(app=gw.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as c:
            resp = await c.get("/metrics")
            assert resp.status_code == 401
            assert resp.json()["error_code"] == "authentication_failed"
            m = await scrape(c, headers={"authorization": "Bearer s3cret-token"})
            assert value(m, "pushgo_http_requests_total", method="GET", route="/metrics",
                         status="401") == 1
            bad = await c.get("/metrics", params={"scope": "everything"},
                              headers={"authorization": "Bearer s3cret-token"})
            assert bad.status_code == 400 and bad.json()["error_code"] == "invalid_query"


def test_merging_workers_sums_counters_and_histograms_but_not_the_shared_queue_depth():
    one = (b"# TYPE pushgo_deliveries_sent_total counter\n"
           b'pushgo_deliveries_sent_total{route="apns"} 3.0\n'
           b"# TYPE pushgo_queue_depth gauge\n"
           b'pushgo_queue_depth{route="apns"} 7.0\n'
           b"# TYPE pushgo_send_latency_seconds histogram\n"
           b'pushgo_send_latency_seconds_bucket{le="0.01",provider="apns"} 2.0\n'
           b'pushgo_send_latency_seconds_bucket{le="+Inf",provider="apns"} 3.0\n'
           b'pushgo_send_latency_seconds_count{provider="apns"} 3.0\n'
           b'pushgo_send_latency_seconds_sum{provider="apns"} 0.03\n')
    two = one.replace(b"} 3.0\n", b"} 4.0\n").replace(b"} 7.0", b"} 6.0")
    m = parse(merge([one, two]).decode())
    assert value(m, "pushgo_deliveries_sent_total", route="apns") == 7
    assert value(m, "pushgo_queue_depth", route="apns") == 7
    assert value(m, "pushgo_send_latency_seconds_bucket", provider="apns", le="0.01") == 4
    assert value(m, "pushgo_send_latency_seconds_bucket", provider="apns", le="+Inf") == 7
    assert value(m, "pushgo_send_latency_seconds_count", provider="apns") == 7
