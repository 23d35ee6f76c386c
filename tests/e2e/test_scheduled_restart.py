"""Schedules live only in the database: a scheduled send whose ``pushgo serve`` is killed with
SIGKILL before its ``deliver_at`` goes out once the process is back, exactly once, to the mock
APNs and to a private device; on PostgreSQL another live process sharing the outbox sends it
without waiting for the dead one. ``pushgo cancel`` (the CLI, by the gateway token) stops
another one. Real short times here: the processes run on the wall clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

from pushgo.testing.mock_apns import MockAPNs
from pushgo.testing.tls import LocalCA
from tests.helpers import PASSWORD, eventually
from tests.live import ServerProcess

pytestmark = pytest.mark.slow

TOPIC = "com.example.pushgo"
TOKEN = "sched-gateway-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
#: How far ahead the send is scheduled: the kill comes right after it is accepted.
AHEAD_MS = 2500


@pytest.fixture(params=["trio", "asyncio"])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend of the processes under test (this test drives them on anyio's own)."""
    return str(request.param)


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


@pytest.fixture
async def mock(tmp_path: Path) -> AsyncIterator[tuple[MockAPNs, dict[str, str]]]:
    apns = MockAPNs(topic=TOPIC, tls=LocalCA(), validate=True)
    async with apns.serving():
        yield apns, apns.env(tmp_path / "apns.p8")


async def post(srv: ServerProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10, headers=AUTH) as client:
        resp = await client.post(srv.url + path, json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]  # type: ignore[no-any-return]


async def get(srv: ServerProcess, path: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10, headers=AUTH) as client:
        resp = await client.get(srv.url + path)
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]  # type: ignore[no-any-return]


async def phone_and_private(srv: ServerProcess) -> tuple[str, str, str]:
    """(apns token, private device key, channel id) set up through the API."""
    token = os.urandom(32).hex()
    ios = (await post(srv, "/device/register", {"platform": "ios"}))["device_key"]
    await post(srv, "/channel/device", {"device_key": ios, "channel_type": "apns",
                                        "provider_token": token})
    private = (await post(srv, "/device/register", {"platform": "android"}))["device_key"]
    await post(srv, "/channel/device", {"device_key": private, "channel_type": "private"})
    cid = (await post(srv, "/channel/subscribe", {"device_key": ios, "channel_name": "later",
                                                  "password": PASSWORD}))["channel_id"]
    await post(srv, "/channel/subscribe", {"device_key": private, "channel_id": cid,
                                           "password": PASSWORD})
    return token, private, cid


def cli(srv: ServerProcess, *args: str) -> dict[str, Any]:
    """``pushgo ARGS --json`` against ``srv``, the gateway token from the environment."""
    done = subprocess.run([sys.executable, "-m", "pushgo.cli", *args, "--url", srv.url, "--json"],
                          env={**os.environ, "PUSHGO_TOKEN": TOKEN}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


async def schedule(srv: ServerProcess, cid: str, title: str, ahead_ms: int) -> dict[str, Any]:
    at = int(time.time() * 1000) + ahead_ms
    sent = await post(srv, "/message", {"channel_id": cid, "password": PASSWORD,
                                        "title": title, "deliver_at": at})
    assert sent["deliver_at"] == at
    return sent


async def fired_once(srv: ServerProcess, apns: MockAPNs, token: str, private: str,
                     sent: dict[str, Any]) -> None:
    """It reached the phone and the private device, once each, and nothing else is due."""
    [note] = await apns.wait_for(1, within=30)
    assert note.token == token and note.payload["op_id"] == sent["op_id"]

    async def pulled() -> list[Any]:
        return list((await post(srv, "/messages/pull", {"device_key": private}))["items"])

    items = await eventually(pulled, timeout=30, interval=0.05)
    assert [i["payload"]["op_id"] for i in items] == [sent["op_id"]]

    async def done() -> dict[str, Any]:
        doc = await get(srv, f"/deliveries/{sent['op_id']}")
        return doc if doc["done"] else {}

    status = await eventually(done, timeout=30, interval=0.05)
    assert status["total"] == 2 and status["states"]["sent"] == 2
    # Overtaken by a send made now: a second copy of the scheduled one would come first.
    now = await post(srv, "/message", {"channel_id": status["channel_id"], "password": PASSWORD,
                                       "title": "now"})
    [_, last] = await apns.wait_for(2, within=30)
    assert last.payload["op_id"] == now["op_id"]
    assert [i["payload"]["op_id"] for i in await pulled()] == [now["op_id"]]


async def test_a_scheduled_send_survives_kill_9_and_fires_once_after_restart(
        db_url: str, backend: str, mock: tuple[MockAPNs, dict[str, str]],
        tmp_path: Path) -> None:
    apns, env = mock
    srv = ServerProcess({**env, "PUSHGO_DB_URL": db_url, "PUSHGO_ASYNC_BACKEND": backend,
                         "PUSHGO_TOKEN": TOKEN}, str(tmp_path / "server.log"))
    try:
        await anyio.to_thread.run_sync(srv.start)
        token, private, cid = await phone_and_private(srv)
        sent = await schedule(srv, cid, "survives", AHEAD_MS)
        later = await schedule(srv, cid, "cancelled", 3_600_000)
        await anyio.to_thread.run_sync(srv.kill9)
        assert len(apns.notifications) == 0
        await anyio.to_thread.run_sync(srv.start)
        # The other one is still scheduled after the restart, and the CLI cancels it.
        shown = await anyio.to_thread.run_sync(cli, srv, "deliveries", later["op_id"], "--no-wait")
        assert shown["state"] == "scheduled" and shown["states"]["scheduled"] == 2
        cancelled = await anyio.to_thread.run_sync(cli, srv, "cancel", later["op_id"])
        assert (cancelled["outcome"], cancelled["cancelled"]) == ("cancelled", 2)
        await fired_once(srv, apns, token, private, sent)
        again = await anyio.to_thread.run_sync(cli, srv, "cancel", sent["op_id"])
        assert again["outcome"] == "already_done" and again["states"] == {"sent": 2}
    finally:
        srv.stop()


async def test_on_postgresql_another_live_process_sends_what_a_killed_one_scheduled(
        pg_schema_url: str, mock: tuple[MockAPNs, dict[str, str]], tmp_path: Path) -> None:
    apns, env = mock
    procs = [ServerProcess({**env, "PUSHGO_DB_URL": pg_schema_url, "PUSHGO_TOKEN": TOKEN},
                           str(tmp_path / f"{name}.log")) for name in ("a", "b")]
    a, b = procs
    try:
        for srv in procs:
            await anyio.to_thread.run_sync(srv.start)
        token, private, cid = await phone_and_private(a)
        sent = await schedule(a, cid, "shared", AHEAD_MS)
        await anyio.to_thread.run_sync(a.kill9)
        assert len(apns.notifications) == 0
        await fired_once(b, apns, token, private, sent)
        await anyio.to_thread.run_sync(a.start)  # back: nothing is sent twice
        now = await post(a, "/message", {"channel_id": cid, "password": PASSWORD,
                                         "title": "after"})
        [*_, last] = await apns.wait_for(3, within=30)
        assert last.payload["op_id"] == now["op_id"]
        assert [n.payload["op_id"] for n in apns.notifications].count(sent["op_id"]) == 1
    finally:
        for srv in procs:
            srv.stop()
