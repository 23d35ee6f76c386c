"""A real API key's quotas through HTTP (``Authorization: Bearer pgk_…``): its request rate at
the front door and its daily notifications, with the ``RateLimit-*`` fields of its answers.
Needs the front door's resolution of API keys into the request's principal."""

from __future__ import annotations

from typing import Any

import pytest

from pushgo.app import Gateway
from pushgo.service.principal import key_hash, new_key
from pushgo.service.quotas import DAY_MS, day_of
from pushgo.store.keys import insert_key
from tests.api.test_quotas import TOKEN, gateway, limits
from tests.helpers import PASSWORD, assert_error, register, stored_channel
from tests.service.support import Clock

pytestmark = pytest.mark.anyio


async def limited_key(gw: Gateway, **quotas: Any) -> str:
    key_id, key = new_key()
    await gw.store.run(lambda c: insert_key(
        c, key_id=key_id, name="ci", secret_hash=key_hash(key), scopes=["send"],
        created_at=gw.ctx.now(), created_by="root", **quotas))
    return key


async def test_a_keys_rate_and_daily_quota_through_http(db_url):
    clock = Clock()
    clock.now = day_of(clock.now) * DAY_MS + DAY_MS - 600_000  # 23:50 UTC
    async with gateway(db_url, clock) as (gw, root):
        cid = await stored_channel(gw, await register(root))
        key = await limited_key(gw, rate_per_s=1, daily_notifications=1)
        body = {"channel_id": cid, "password": PASSWORD, "title": "hi"}
        headers = {"authorization": f"Bearer {key}"}
        first = await root.post("/message", json=body, headers=headers)
        assert first.status_code == 200, first.text
        # The key's rate (1 a second: none left) and its day (1: none left) both in the
        # policy; the fields name the one that frees up last (the day's, at 00:00 UTC).
        assert limits(first)[:3] == ("1", "0", "600")
        assert set(limits(first)[3].split(", ")) == {"1;w=1", "1;w=86400"}
        refused = await root.post("/message", json=body, headers=headers)
        assert_error(refused, 429, "quota_exceeded")
        assert refused.headers["retry-after"] == "1"
        clock.advance(1000)
        daily = await root.post("/message", json=body, headers=headers)
        assert_error(daily, 429, "quota_exceeded")
        assert daily.headers["retry-after"] == "599"
        assert limits(daily) == ("1", "0", "599", "1;w=86400")
        # The gateway token is not limited by the key's quotas.
        assert (await root.post("/message", json=body)).status_code == 200
        assert TOKEN not in daily.text
        # The admin list (and the console's keys panel) shows what the key used today.
        [listed] = (await root.get("/admin/keys")).json()["data"]["keys"]
        assert (listed["daily_notifications"], listed["notifications_today"]) == (1, 1)
