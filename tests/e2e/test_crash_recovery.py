"""Restart recovery on PostgreSQL: a ``pushgo serve`` killed with SIGKILL in the middle of a
fan-out and started again (same address, so the same identity) sends what it had claimed at
once — while the 600 s lease it had taken is still far from running out — and never takes the
claims of another live process sharing the outbox.

Two processes, each signing with its own APNs key (the mock tells their requests apart), one
mock APNs that answers B never (until the end) and A only for its first requests before the
kill: B holds its claims the whole time; A is killed with its claims in flight and queued.
The same for ``pushgo serve --workers 2``: the worker killed is replaced in its slot, and the
replacement sends what the killed one had claimed.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
import sqlalchemy as sa

from pushgo.service.outbox import instance_identity
from pushgo.settings import Settings
from pushgo.store.engine import Store
from pushgo.store.schema import deliveries
from pushgo.testing.exchange import Outcome, Request
from pushgo.testing.mock_apns import APNsKey, MockAPNs
from pushgo.testing.tls import LocalCA
from tests.e2e.test_scaleout import PASSWORD, TOPIC, Supervised, _kid, _seed
from tests.helpers import eventually
from tests.live import ServerProcess

pytestmark = pytest.mark.slow

#: A's fan-out; B holds a bigger one (more than its sender takes: its claiming stops there).
DEVICES_A, DEVICES_B = 2000, 3000
#: A is answered this many times, then no more until it is killed.
ANSWERED_BEFORE_KILL = 300
LEASE_S = 600


@pytest.fixture
def anyio_backend() -> str:
    return "trio"  # the processes under test are what matter; one backend drives them


class GatedAPNs(MockAPNs):
    """Answers a key's requests past its allowance only once that key's gate is open."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allowance: dict[str, int] = {}
        self.gates: dict[str, anyio.Event] = {}
        self.seen: Counter[str] = Counter()
        self._kids: dict[str, str] = {}

    def kid(self, authorization: str) -> str:
        return _kid(authorization, self._kids)

    async def _handle(self, req: Request) -> Outcome:
        kid = self.kid(req.header("authorization") or "")
        self.seen[kid] += 1
        if self.seen[kid] > self.allowance.get(kid, self.seen[kid]):
            await self.gates[kid].wait()
        return await super()._handle(req)


@pytest.fixture
async def apns(tmp_path: Path) -> AsyncIterator[tuple[GatedAPNs, str]]:
    ca = LocalCA()
    # Ten streams per connection: a process's claims mostly wait in its sender's queue.
    mock = GatedAPNs(topic=TOPIC, tls=ca, initial_max_concurrent_streams=10,
                     max_concurrent_streams=10)
    async with mock.serving():
        yield mock, str(ca.write_ca_file(tmp_path / "ca.pem"))


def _rows(conn: Any) -> dict[str, tuple[str, str, str | None, int | None]]:
    """delivery_id → (channel, state, lease owner, lease until)."""
    d = deliveries
    rows = conn.execute(sa.select(d.c.delivery_id, d.c.channel_id, d.c.state, d.c.lease_owner,
                                  d.c.lease_until))
    return {r.delivery_id: (r.channel_id, r.state, r.lease_owner, r.lease_until) for r in rows}


async def test_a_restarted_process_sends_its_own_claims_at_once_and_leaves_the_others(
        pg_schema_url: str, apns: tuple[GatedAPNs, str], tmp_path: Path) -> None:
    mock, ca_file = apns
    store = Store(pg_schema_url, pool_size=2)
    cid_a = await anyio.to_thread.run_sync(_seed, store, DEVICES_A)
    cid_b = await anyio.to_thread.run_sync(_seed, store, DEVICES_B)
    key_a, key_b = APNsKey.generate(), APNsKey.generate()
    for key in (key_a, key_b):
        mock.trust_key(key.key_id, key.team_id, key.public_key())
        mock.gates[key.key_id] = anyio.Event()
    mock.allowance = {key_a.key_id: ANSWERED_BEFORE_KILL, key_b.key_id: 0}

    def env(key: APNsKey, name: str) -> dict[str, str]:
        return {
            "PUSHGO_DB_URL": pg_schema_url, "PUSHGO_LOG_LEVEL": "warning",
            "PUSHGO_APNS_ENDPOINT": mock.origin, "PUSHGO_APNS_TOPIC": TOPIC,
            "PUSHGO_PROVIDER_CA_FILE": ca_file,
            "PUSHGO_APNS_KEY_FILE": str(key.write(tmp_path / f"{name}.p8")),
            "PUSHGO_APNS_KEY_ID": key.key_id, "PUSHGO_APNS_TEAM_ID": key.team_id,
            "PUSHGO_DELIVERY_LEASE_SECONDS": str(LEASE_S),
            # B's requests stay unanswered for the whole test: not a dead connection.
            "PUSHGO_PROVIDER_RESPONSE_TIMEOUT_S": "3600", "PUSHGO_PROVIDER_PING_TIMEOUT_S": "600",
        }

    a = ServerProcess(env(key_a, "a"), str(tmp_path / "a.log"))
    b = ServerProcess(env(key_b, "b"), str(tmp_path / "b.log"))
    owner_a, owner_b = (instance_identity(Settings(http_port=p.port), 0) for p in (a, b))

    async def post(srv: ServerProcess, cid: str) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            resp = await client.post(srv.url + "/message", json={
                "channel_id": cid, "password": PASSWORD, "title": "fleet-wide"})
        assert resp.status_code == 200, resp.text

    async def rows() -> dict[str, tuple[str, str, str | None, int | None]]:
        return await store.read(_rows)

    try:
        await anyio.to_thread.run_sync(b.start)
        await post(b, cid_b)

        async def b_holds_all_of_its_fan_out() -> bool:
            return sum(1 for c, s, o, _ in (await rows()).values()
                       if c == cid_b and s == "queued" and o == owner_b) == DEVICES_B

        # B's sender is full: its claiming stops until the mock answers it.
        await eventually(b_holds_all_of_its_fan_out, timeout=30, interval=0.05)

        await anyio.to_thread.run_sync(a.start)
        await post(a, cid_a)
        # A has been answered, and has more requests waiting on the mock: mid fan-out.
        with anyio.fail_after(30):
            while mock.seen[key_a.key_id] <= ANSWERED_BEFORE_KILL:
                await anyio.sleep(0.01)
        await anyio.to_thread.run_sync(a.kill9)
        at_kill = await rows()
        claimed_by_a = {d for d, (c, s, o, _) in at_kill.items()
                        if c == cid_a and s == "queued" and o == owner_a}
        assert claimed_by_a, "A finished before the kill"
        b_held = {d: lease for d, (c, _, _, lease) in at_kill.items() if c == cid_b}
        assert {at_kill[d][1:3] for d in b_held} == {("queued", owner_b)}

        mock.gates[key_a.key_id].set()
        await anyio.to_thread.run_sync(a.start)  # the same address: the same identity

        async def a_is_done() -> bool:
            return all(s == "sent" for c, s, _, _ in (await rows()).values() if c == cid_a)

        # Completion within a minute proves A took its claims back: their leases run for ten.
        await eventually(a_is_done, timeout=60, interval=0.05)
        after = await rows()
        # B's claims were left alone: still B's, under the same lease, nothing sent for them.
        assert {d: after[d][1:] for d in b_held} == {
            d: ("queued", owner_b, lease) for d, lease in b_held.items()}
        assert b_held.keys().isdisjoint(
            n.headers["apns-id"].replace("-", "") for n in mock.notifications.items)

        mock.gates[key_b.key_id].set()

        async def all_sent() -> bool:
            return all(s == "sent" for _, s, _, _ in (await rows()).values())

        await eventually(all_sent, timeout=60, interval=0.05)
        final = await rows()
    finally:
        await anyio.to_thread.run_sync(a.stop)
        await anyio.to_thread.run_sync(b.stop)
        await anyio.to_thread.run_sync(store.dispose)

    notes = mock.notifications.items
    assert all(n.accepted for n in notes)
    times = Counter(n.headers["apns-id"].replace("-", "") for n in notes)
    assert set(times) == set(final), "a delivery never reached the provider"
    assert max(times.values()) <= 2
    # A duplicate is one A had in flight when it was killed: claimed, answered or not, its
    # outcome not yet recorded.
    twice = {d for d, n in times.items() if n == 2}
    assert twice <= claimed_by_a
    by_kid = Counter(mock.kid(n.headers["authorization"]) for n in notes)
    assert by_kid[key_b.key_id] == DEVICES_B
    assert by_kid[key_a.key_id] == DEVICES_A + len(twice)
    print(f"\nA: {DEVICES_A} devices, {len(claimed_by_a)} claimed and unsent at the kill, "
          f"{len(twice)} sent twice; B held {DEVICES_B} throughout")


async def test_a_worker_replaced_in_its_slot_sends_what_the_killed_one_had_claimed(
        pg_schema_url: str, apns: tuple[GatedAPNs, str], tmp_path: Path) -> None:
    mock, ca_file = apns
    store = Store(pg_schema_url, pool_size=2)
    cid = await anyio.to_thread.run_sync(_seed, store, DEVICES_A)
    key = APNsKey.generate()
    mock.trust_key(key.key_id, key.team_id, key.public_key())
    mock.gates[key.key_id] = anyio.Event()
    mock.allowance = {key.key_id: ANSWERED_BEFORE_KILL}
    sup = Supervised({
        "PUSHGO_DB_URL": pg_schema_url, "PUSHGO_LOG_LEVEL": "info",
        "PUSHGO_APNS_ENDPOINT": mock.origin, "PUSHGO_APNS_TOPIC": TOPIC,
        "PUSHGO_PROVIDER_CA_FILE": ca_file,
        "PUSHGO_APNS_KEY_FILE": str(key.write(tmp_path / "k.p8")),
        "PUSHGO_APNS_KEY_ID": key.key_id, "PUSHGO_APNS_TEAM_ID": key.team_id,
        "PUSHGO_DELIVERY_LEASE_SECONDS": str(LEASE_S),
    }, tmp_path / "sup.log", workers=2)
    slots = [instance_identity(Settings(http_port=sup.port), i) for i in (0, 1)]

    async def rows() -> dict[str, tuple[str, str, str | None, int | None]]:
        return await store.read(_rows)

    try:
        await anyio.to_thread.run_sync(sup.start)
        async with httpx.AsyncClient(timeout=30) as client:
            resp = await client.post(sup.url + "/message", json={
                "channel_id": cid, "password": PASSWORD, "title": "fleet-wide"})
        assert resp.status_code == 200, resp.text
        with anyio.fail_after(30):
            while mock.seen[key.key_id] <= ANSWERED_BEFORE_KILL:
                await anyio.sleep(0.01)
        # Kill the worker holding the most claims (both may hold some).
        held = Counter(o for _, s, o, _ in (await rows()).values() if s == "queued")
        slot = max((0, 1), key=lambda i: held[slots[i]])
        assert held[slots[slot]] > 0 and set(held) <= {*slots, None}
        pid = _worker_pid(sup, slot)
        os.kill(pid, signal.SIGKILL)
        at_kill = await rows()
        claimed = {d for d, (_, s, o, _) in at_kill.items() if s == "queued" and o == slots[slot]}
        mock.gates[key.key_id].set()

        async def all_sent() -> bool:
            return all(s == "sent" for _, s, _, _ in (await rows()).values())

        # Within a minute, though the killed worker's leases run for ten: its replacement
        # (same slot, same identity) took them back at start.
        await eventually(all_sent, timeout=60, interval=0.05)
        assert _worker_pid(sup, slot) != pid
    finally:
        await anyio.to_thread.run_sync(sup.stop)
        await anyio.to_thread.run_sync(store.dispose)

    times = Counter(n.headers["apns-id"].replace("-", "") for n in mock.notifications.items)
    assert set(times) == set(at_kill) and max(times.values()) <= 2
    assert {d for d, n in times.items() if n == 2} <= claimed
    taken_back = [doc for doc in sup.lines() if doc.get("msg") == "delivery leases"
                  and doc.get("identity") == slots[slot]]
    assert len(taken_back) == 2 and taken_back[-1]["taken_back"] > 0


def _worker_pid(sup: Supervised, slot: int) -> int:
    """The pid of the live worker in ``slot``, from the supervisor's log."""
    pids = [doc["pid"] for doc in sup.lines()
            if doc.get("msg") == "worker started" and doc.get("worker") == slot]
    return int(pids[-1])
