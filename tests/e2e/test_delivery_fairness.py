"""The dispatcher is fair across senders, end to end: a bulk direct send of thousands of
tokens accepted under one key, then one message from another sender, through the real pump to
the mock APNs — the second sender's notification reaches APNs while most of the bulk is still
waiting, although the bulk was due first. Both are accepted before the gateway's pump starts,
so the whole backlog is due at its first claim and first come, first served would send the
lone message last. On SQLite and PostgreSQL, Trio and asyncio."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa

from pushgo.app import Gateway
from pushgo.service.principal import ALL_SCOPES, PRINCIPAL, ROOT_ID, Principal
from pushgo.store.schema import deliveries
from pushgo.testing.mock_apns import APNsNotification
from tests.conftest import make_settings
from tests.e2e.test_delivery import apns_token, device
from tests.helpers import PASSWORD, call, new_channel
from tests.providers import Providers
from tests.service.support import Clock

pytestmark = pytest.mark.anyio

BULK = 10_000
PER_ITEM = 1000  # tokens a bulk item may carry
BULK_KEY = "a1" * 8
TOKEN = "fairness-gateway-token"  # direct sends need a gateway with a token


@pytest.fixture
def clock() -> Clock:
    return Clock(int(time.time() * 1000))


@pytest.fixture
async def fgateway(db_url: str, providers: Providers, fast_backoff: None,
                   clock: Clock) -> AsyncIterator[Gateway]:
    """A gateway whose store is ready but whose background work (the pump) is not started:
    the test runs it (``running()``) once the backlog is in."""
    gw = Gateway(make_settings(db_url, **providers.settings, token=TOKEN), clock=clock)
    await anyio.to_thread.run_sync(gw.store.migrate, clock.now)
    try:
        yield gw
    finally:
        gw.store.dispose()


@pytest.fixture
async def api(fgateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=fgateway.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://pushgo.test",
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


async def bulk_as(gateway: Gateway, key_id: str, tokens: list[str]) -> None:
    """A bulk direct send of ``tokens`` accepted under the key ``key_id``."""
    lines = [json.dumps({"route": "apns", "tokens": tokens[i:i + PER_ITEM],
                         "title": "newsletter"}).encode()
             for i in range(0, len(tokens), PER_ITEM)]

    async def frames() -> AsyncIterator[list[Any]]:
        yield lines

    answers: list[bytes] = []
    token = PRINCIPAL.set(Principal(key_id, "bulk sender", ALL_SCOPES))
    try:
        assert await gateway.bulk.run(frames(), answers.append) == len(lines)
    finally:
        PRINCIPAL.reset(token)
    results = [json.loads(line) for line in b"".join(answers).splitlines()]
    assert [r["ok"] for r in results] == [True] * len(lines), results


async def test_a_lone_alert_overtakes_another_senders_bulk_backlog(
        api: httpx.AsyncClient, fgateway: Gateway, providers: Providers, clock: Clock) -> None:
    alert_token = apns_token()
    cid = await new_channel(api, await device(api, "ios", "apns", alert_token))
    bulk_tokens = [apns_token() for _ in range(BULK)]
    await bulk_as(fgateway, BULK_KEY, bulk_tokens)
    clock.advance(1000)  # the alert comes a second after the whole bulk
    await call(api, "/message", {"channel_id": cid, "password": PASSWORD, "title": "disk full",
                                 "severity": "critical"})

    def senders(conn: Any) -> dict[str, int]:
        return {str(s): int(n) for s, n in conn.execute(
            sa.select(deliveries.c.sender, sa.func.count()).where(deliveries.c.route == "apns")
            .group_by(deliveries.c.sender))}

    assert await fgateway.store.read(senders) == {BULK_KEY: BULK, ROOT_ID: 1}
    seen: list[str] = []
    providers.apns.on_notification = lambda note: seen.append(note.token)
    async with fgateway.running():
        notes: list[APNsNotification] = await providers.apns.wait_for(
            1, lambda note: note.token == alert_token, within=30)
    assert notes[0].payload["aps"]["alert"]["title"] == "disk full"
    ahead = seen.index(alert_token)
    # Fair shares put it in the first claim; in order of due time it would have come after
    # all BULK of them.
    assert ahead < BULK // 2, ahead
