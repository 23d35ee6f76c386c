"""Quotas driven through the services: a key's request rate on the gateway clock (and its
share with several worker processes), a key's daily notifications counted in the store across
the UTC day boundary and shared by two processes, and the gateway token never limited by key
quotas."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from pushgo.errors import codes
from pushgo.service import Context, Services
from pushgo.service.principal import PRINCIPAL, ROOT, Principal
from pushgo.service.quotas import DAY_MS, Quotas, Refusal, Usage, day_of
from pushgo.store import Store
from pushgo.store.schema import operations, quota_usage
from tests.conftest import make_settings
from tests.service.support import PASSWORD, Clock, channel, device, fails, message

pytestmark = pytest.mark.anyio


def key(rate: float | None = None, daily: int | None = None, key_id: str = "k1") -> Principal:
    return Principal(key_id, "ci", frozenset({"send"}), rate_per_s=rate,
                     daily_notifications=daily)


@contextmanager
def acting_as(principal: Principal) -> Iterator[None]:
    token = PRINCIPAL.set(principal)
    try:
        yield
    finally:
        PRINCIPAL.reset(token)


def headers(usage: Usage | None) -> dict[str, str]:
    assert usage is not None
    return dict(usage.headers())


async def test_a_keys_rate_is_a_bucket_on_the_gateway_clock(ctx: Context, clock: Clock) -> None:
    quotas = Quotas(ctx)
    limited = key(rate=2)
    assert headers(quotas.admit(limited)) == {
        "ratelimit-limit": "2", "ratelimit-remaining": "1", "ratelimit-reset": "1",
        "ratelimit-policy": "2;w=1"}
    assert headers(quotas.admit(limited))["ratelimit-remaining"] == "0"
    with pytest.raises(Refusal) as refused:
        quotas.admit(limited)
    assert (refused.value.code, refused.value.status) == ("quota_exceeded", 429)
    assert refused.value.retry_after == 1
    assert dict(refused.value.headers)["ratelimit-remaining"] == "0"
    clock.advance(500)  # half a second: one request back
    assert headers(quotas.admit(limited))["ratelimit-remaining"] == "0"
    with pytest.raises(Refusal):
        quotas.admit(limited)
    # Another key has its own bucket; the gateway token and unlimited keys none at all.
    assert headers(quotas.admit(key(rate=2, key_id="k2")))["ratelimit-remaining"] == "1"
    assert quotas.admit(ROOT) is None
    assert quotas.admit(key()) is None
    assert quotas.refusals == {("rate", "key"): 2}


async def test_each_of_n_worker_processes_enforces_a_share_of_the_rate(
        ctx: Context, clock: Clock) -> None:
    quotas = Quotas(ctx, processes=4)
    limited = key(rate=2)  # 0.5 a second in each of 4 processes
    assert headers(quotas.admit(limited))["ratelimit-policy"] == "1;w=2"
    with pytest.raises(Refusal) as refused:
        quotas.admit(limited)
    assert refused.value.retry_after == 2
    clock.advance(1999)
    with pytest.raises(Refusal):
        quotas.admit(limited)
    clock.advance(1)
    quotas.admit(limited)


async def test_a_keys_daily_quota_refuses_until_the_next_utc_day(
        svc: Services, clock: Clock) -> None:
    cid = await channel(svc, await device(svc), await device(svc))  # 2 deliveries a send
    clock.now = day_of(clock.now) * DAY_MS + DAY_MS - 90_000  # 23:58:30 UTC
    with acting_as(key(daily=3)):
        assert (await svc.publisher.send(message(cid), PASSWORD)).recipients == 2
        await svc.publisher.send(message(cid), PASSWORD)  # 2 < 3 before it: admitted whole
        with fails(codes.QUOTA_EXCEEDED.code, 429) as refused:
            await svc.publisher.send(message(cid), PASSWORD)
        assert refused.value.retry_after == 90
        assert dict(refused.value.headers)["ratelimit-limit"] == "3"
        clock.advance(90_000)  # 00:00 UTC
        accepted = await svc.publisher.send(message(cid, op_id="next-day"), PASSWORD)
        assert not accepted.duplicate
        # A replay of an accepted op_id is no new notification: answered, not counted.
        replay = await svc.publisher.send(message(cid, op_id="next-day"), PASSWORD)
        assert replay.duplicate
    # The gateway token is never limited by a key's quota.
    await svc.publisher.send(message(cid), PASSWORD)
    rows = await svc.ctx.store.read(
        lambda c: {(r.subject, r.day): r.used for r in c.execute(sa.select(quota_usage))})
    today = day_of(clock.now)
    assert rows == {("key:k1", today - 1): 4, ("key:k1", today): 2}
    assert svc.quotas.refusals == {("daily", "key"): 1}
    ops = await svc.ctx.store.read(
        lambda c: c.execute(sa.select(sa.func.count()).select_from(operations)).scalar())
    assert ops == 4  # the refused send wrote nothing


async def test_two_processes_share_one_daily_count(svc: Services, store: Store,
                                                   clock: Clock) -> None:
    other_store = Store(store.url, pool_size=2)
    try:
        other = Services.build(Context(make_settings(store.url), other_store, clock=clock))
        cid = await channel(svc, await device(svc))
        with acting_as(key(daily=2)):
            await svc.publisher.send(message(cid), PASSWORD)
            await other.publisher.send(message(cid), PASSWORD)
            with fails(codes.QUOTA_EXCEEDED.code, 429):
                await svc.publisher.send(message(cid), PASSWORD)
            with fails(codes.QUOTA_EXCEEDED.code, 429):
                await other.publisher.send(message(cid), PASSWORD)
        assert await other.quotas.used_today() == {"k1": 2}
    finally:
        other_store.dispose()
