"""Web Push through a SIGKILL: ``pushgo serve`` fanning one message out to a few hundred
browser subscriptions on MockWebPush (slow, and answering 503 at first, so deliveries are queued,
waiting out a backoff or the breaker, and in flight) is killed mid fan-out and started again on
the same database and address. Every subscription's message is then decrypted by the mock and
every delivery is sent: none lost, none failed, and only the ones the push service accepted
while the dead process had not yet written them down arrive twice. The VAPID key the process
signs with (the JWT's ``k=``) is the same before and after the restart. SQLite and PostgreSQL;
the process on Trio and on asyncio."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest

from pushgo.push.http1 import MAX_IN_FLIGHT
from pushgo.store import Store
from pushgo.testing.mock_webpush import MockWebPush, WebPushMessage
from tests.e2e.test_delivery_faults import (
    Fleet,
    _expire_leases,
    fleet_writer,
    rows_of,
    settled,
)
from tests.helpers import PASSWORD
from tests.live import ServerProcess

pytestmark = pytest.mark.slow

DEVICES = 300
#: The first messages are answered 503 (transient: retried, and the breaker opens).
UNAVAILABLE = 40
#: Accepted by the push service before the kill.
ACCEPTED_BEFORE_KILL = 60


def vapid_key(note: WebPushMessage) -> str:
    """The ``k=`` of the message's VAPID authorization."""
    _, _, params = note.headers["authorization"].partition(" ")
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    return fields["k"]


def accepted(mock: MockWebPush) -> Counter[str]:
    """How many times the push service took (and decrypted) each delivery."""
    return Counter(m.data["delivery_id"] for m in mock.accepted)


async def test_kill_9_mid_web_push_fan_out_then_restart_delivers_each_subscription(
        db_url: str, anyio_backend: str, tmp_path: Path) -> None:
    mock = MockWebPush()
    async with mock.serving():
        fleet, work = fleet_writer(DEVICES, platform="web", route="webpush",
                                   token=lambda: mock.subscribe().token)
        store = Store(db_url)
        try:
            await anyio.to_thread.run_sync(store.migrate)
            await store.run(work)
            env = {**mock.env(str(mock.tls.write_ca_file(tmp_path / "ca.pem"))),
                   "PUSHGO_DB_URL": db_url, "PUSHGO_ASYNC_BACKEND": anyio_backend}
            server = ServerProcess(env, str(tmp_path / "server.log"))
            try:
                await _kill_and_restart(server, mock, store, fleet)
            finally:
                server.stop()
        finally:
            await anyio.to_thread.run_sync(store.dispose)


async def _kill_and_restart(server: ServerProcess, mock: MockWebPush, store: Store,
                            fleet: Fleet) -> None:
    mock.fail_next(UNAVAILABLE, 503)
    mock.delay = 0.05  # a slow push service: the fan-out is still going when the process dies
    await anyio.to_thread.run_sync(server.start)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        resp = await client.post("/message", json={
            "channel_id": fleet.channel_id, "password": PASSWORD, "title": "fan-out"})
    assert resp.status_code == 200, resp.text
    await mock.wait_for(ACCEPTED_BEFORE_KILL, lambda m: m.accepted, within=60)
    await anyio.to_thread.run_sync(server.kill9)
    # The mock answers nothing more once every connection of the dead process is closed.
    with anyio.fail_after(10):
        while not all(c.closed for c in mock.server.connections):
            await anyio.sleep(0.01)
    before = accepted(mock)
    key_before = {vapid_key(m) for m in mock.messages if "authorization" in m.headers}
    rows = await rows_of(store, fleet)
    recorded = {d for d, r in rows.items() if r.state == "sent"}
    assert [m.status for m in list(mock.messages)[:UNAVAILABLE]] == [503] * UNAVAILABLE
    assert recorded <= set(before)
    assert len(before) < DEVICES, "the fan-out finished before the kill"
    assert {r.state for d, r in rows.items() if d not in recorded} == {"queued"}
    # Taken by the push service, not yet written down by the dead process: these alone may
    # arrive twice (at least once). Nothing else is repeated.
    unknown = set(before) - recorded

    mock.delay = 0.0
    if store.dialect == "postgresql":
        # Leases another process left are never released at start; fast-forward their end.
        await store.run(_expire_leases, int(time.time() * 1000))
    await anyio.to_thread.run_sync(server.start)
    final = await settled(store, fleet, within=90)

    assert len(final) == DEVICES
    assert {r.state for r in final.values()} == {"sent"}
    counts = accepted(mock)
    assert set(counts) == set(final)  # every subscription's message decrypted by the mock
    twice = {d for d, n in counts.items() if n > 1}
    assert twice <= unknown and all(counts[d] == 2 for d in twice)
    # In flight at the kill: the client's requests, plus results waiting for their batch write.
    assert len(unknown) <= 2 * MAX_IN_FLIGHT
    assert {m.data["title"] for m in mock.accepted} == {"fan-out"}
    # Every message, before and after the restart, is signed with the one stored VAPID key.
    keys = {vapid_key(m) for m in mock.messages if "authorization" in m.headers}
    assert len(key_before) == 1 and keys == key_before
    assert not [m for m in mock.messages if m.status in (401, 403)]
