"""Live Activity pushes live in the outbox: a ``pushgo serve`` killed with SIGKILL while an
event's start, update and end pushes for many devices are in flight at a slow mock APNs (and
some were refused with 503 and wait for their retry), then started again, delivers every
device's start, update and end and every app-registered activity's update and end: none lost,
each once except those the killed process had in flight. On SQLite and PostgreSQL.

The mock answers the first requests, refuses some with 503, then holds every request unanswered
until after the kill: the process dies with claims in its sender's queue and streams open.
Real short times here: the process runs on the wall clock."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
import sqlalchemy as sa

from pushgo.store.engine import Store
from pushgo.store.schema import (
    deliveries,
    live_activities,
    live_activity_keys,
    live_activity_start_tokens,
)
from pushgo.testing.exchange import Outcome, Request
from pushgo.testing.mock_apns import MockAPNs
from pushgo.testing.tls import LocalCA
from tests.e2e.test_scaleout import PASSWORD, TOPIC, _seed
from tests.helpers import eventually
from tests.live import ServerProcess

pytestmark = pytest.mark.slow

#: Devices of the channel, each with a push-to-start token and then an activity token.
DEVICES = 150
#: Activities the app registered by activity_key (no device key).
APP_ACTIVITIES = 40
#: Requests answered before the mock holds the rest; of them, these many get 503 first.
ANSWERED_BEFORE_KILL = 120
REFUSED = 15


@pytest.fixture
def anyio_backend() -> str:
    return "trio"  # the process under test is what matters; one backend drives it


class HeldAPNs(MockAPNs):
    """Answers ``allowance`` requests, then holds each one until ``gate`` opens."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allowance = ANSWERED_BEFORE_KILL
        self.gate = anyio.Event()
        self.seen = 0

    async def _handle(self, req: Request) -> Outcome:
        self.seen += 1
        if self.seen > self.allowance:
            await self.gate.wait()
        return await super()._handle(req)


@pytest.fixture
async def apns(tmp_path: Path) -> AsyncIterator[HeldAPNs]:
    # Ten streams a connection: most claims wait in the sender's queue at the kill.
    mock = HeldAPNs(topic=TOPIC, tls=LocalCA(), validate=True,
                    initial_max_concurrent_streams=10, max_concurrent_streams=10)
    async with mock.serving():
        yield mock


def _start_tokens(store: Store, cid: str) -> dict[str, str]:
    """A push-to-start token for every device of the channel: device key → token."""
    from pushgo.store.schema import subscriptions

    now = int(time.time() * 1000)

    def work(conn: Any) -> dict[str, str]:
        keys = list(conn.execute(sa.select(subscriptions.c.device_key)
                                 .where(subscriptions.c.channel_id == cid)).scalars())
        tokens = {k: secrets.token_hex(32) for k in keys}
        conn.execute(live_activity_start_tokens.insert(), [
            {"device_key": k, "token": t, "created_at": now, "updated_at": now}
            for k, t in tokens.items()])
        return tokens

    return store.run_sync(work)


def _deliveries(conn: Any) -> dict[str, tuple[str, str | None, str | None]]:
    """delivery_id → (state, push_type, lease owner) of the provider deliveries."""
    d = deliveries
    return {r.delivery_id: (r.state, r.push_type, r.lease_owner) for r in conn.execute(
        sa.select(d.c.delivery_id, d.c.state, d.c.push_type, d.c.lease_owner)
        .where(d.c.route == "apns"))}


async def test_live_activity_pushes_survive_kill_9_each_once_but_those_in_flight(
        db_url: str, apns: HeldAPNs, tmp_path: Path) -> None:
    store = Store(db_url, pool_size=2)
    cid = await anyio.to_thread.run_sync(_seed, store, DEVICES)
    start = await anyio.to_thread.run_sync(_start_tokens, store, cid)
    srv = ServerProcess({
        **apns.env(tmp_path / "apns.p8"), "PUSHGO_DB_URL": db_url,
        "PUSHGO_LOG_LEVEL": "warning", "PUSHGO_DELIVERY_LEASE_SECONDS": "600",
        # Held requests stay unanswered until after the kill: not a dead connection.
        "PUSHGO_PROVIDER_RESPONSE_TIMEOUT_S": "3600", "PUSHGO_PROVIDER_PING_TIMEOUT_S": "600",
    }, str(tmp_path / "server.log"))

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=30) as client:
            resp = await client.post(srv.url + path, json=body)
        assert resp.status_code == 200, resp.text
        return resp.json()["data"]  # type: ignore[no-any-return]

    async def op(action: str, **fields: Any) -> str:
        data = await post(f"/event/{action}", {
            "channel_id": cid, "password": PASSWORD, "title": "Rollout", "message": action,
            "severity": "normal", "event_time": int(time.time()), **fields})
        return str(data["event_id"])

    activity = {k: secrets.token_hex(32) for k in start}
    app = [secrets.token_hex(32) for _ in range(APP_ACTIVITIES)]
    try:
        await anyio.to_thread.run_sync(srv.start)
        apns.fail_next(REFUSED, 503, "ServiceUnavailable")  # retried after their backoff
        eid = await op("create", status="started")
        # The activities started: the devices and the app register their update tokens.
        for key, token in activity.items():
            await post("/device/liveactivity/token", {"device_key": key, "channel_id": cid,
                                                      "event_id": eid, "token": token})
        for token in app:
            await post("/v1/activity/register", {"activity_key": f"event:{eid}", "token": token,
                                                 "platform": "ios", "schema_version": 1})
        await op("update", event_id=eid, status="halfway")
        await op("close", event_id=eid, status="done")
        with anyio.fail_after(60):  # the mock answered its allowance and holds more
            while apns.seen <= ANSWERED_BEFORE_KILL:
                await anyio.sleep(0.01)
        await anyio.to_thread.run_sync(srv.kill9)
        at_kill = await store.read(_deliveries)
        claimed = {d for d, (s, _, owner) in at_kill.items() if s == "queued" and owner}
        unsent = {d for d, (s, _, _) in at_kill.items() if s == "queued"}
        assert len(at_kill) == DEVICES * 3 + APP_ACTIVITIES * 2
        # Claimed: in flight at the mock or waiting in the sender's queue (the process may
        # have claimed all that is due); the rest waits in the outbox or for its retry.
        assert claimed, "the process finished before the kill"

        apns.gate.set()
        await anyio.to_thread.run_sync(srv.start)  # the same address: the same identity

        async def all_sent() -> bool:
            return all(s == "sent" for s, _, _ in (await store.read(_deliveries)).values())

        # Within a minute: the restarted process took its own claims back (leases of 600 s).
        await eventually(all_sent, timeout=60, interval=0.05)
        left = await store.read(lambda conn: [
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (live_activities, live_activity_keys)])
        assert left == [0, 0]  # the close ended every registration
    finally:
        await anyio.to_thread.run_sync(srv.stop)
        await anyio.to_thread.run_sync(store.dispose)

    notes = [n for n in apns.notifications.items if n.status == 200]
    assert all(n.headers["apns-push-type"] == "liveactivity" for n in notes)
    got = Counter((n.token, n.payload["aps"]["event"]) for n in notes)
    want = Counter({**{(t, "start"): 1 for t in start.values()},
                    **{(t, e): 1 for t in [*activity.values(), *app] for e in ("update", "end")}})
    assert set(got) == set(want), "a push never arrived (or one that should not)"
    assert max(got.values()) <= 2
    # A second arrival is a push the killed process had in flight: claimed, answered or not,
    # its outcome not written.
    times = Counter(n.headers["apns-id"].replace("-", "") for n in notes)
    twice = {d for d, c in times.items() if c == 2}
    assert twice <= claimed
    assert sum(got.values()) == sum(want.values()) + len(twice)
    assert sum(1 for n in apns.notifications.items if n.status == 503) == REFUSED
    print(f"\n{len(at_kill)} pushes: {len(unsent)} unsent at the kill, {len(claimed)} of them "
          f"claimed, {len(twice)} sent twice")
