"""Scale-out on PostgreSQL: several ``pushgo serve`` processes share one outbox through leases.

Two processes (each signing with its own APNs key, so the mock tells their requests apart) fan
out one 20k-device message; one is killed with SIGKILL in the middle; the survivor takes over
its leases when they run out. Every delivery reaches the mock, at most twice, and twice only if
the killed process had sent it without recording the outcome. Also ``pushgo serve --workers``:
a supervisor sharing one socket, restarting a killed worker, refusing SQLite.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
import sqlalchemy as sa

from pushgo.protocol.ids import encode_channel_id
from pushgo.protocol.sse import SSEParser
from pushgo.service.passwords import hash_password_sync
from pushgo.store.engine import Store
from pushgo.store.schema import channels, deliveries, devices, subscriptions
from pushgo.testing.mock_apns import APNsKey, MockAPNs
from pushgo.testing.tls import LocalCA
from tests.conftest import free_port
from tests.helpers import eventually, eventually_sync
from tests.live import ServerProcess

pytestmark = pytest.mark.slow

DEVICES = 20_000
PASSWORD = "secret-pass-1"
TOPIC = "com.example.pushgo"


@pytest.fixture
def anyio_backend() -> str:
    return "trio"  # the processes under test are what matter; one backend drives them


@pytest.fixture
async def mock(tmp_path: Path) -> AsyncIterator[tuple[MockAPNs, str]]:
    """Mock APNs in this process and the CA file the gateways need to trust it."""
    ca = LocalCA()
    apns = MockAPNs(topic=TOPIC, tls=ca)
    async with apns.serving():
        yield apns, str(ca.write_ca_file(tmp_path / "ca.pem"))


def _kid(authorization: str, cache: dict[str, str]) -> str:
    kid = cache.get(authorization)
    if kid is None:
        segment = authorization.split()[-1].split(".")[0]
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        kid = cache[authorization] = header["kid"]
    return kid


def _seed(store: Store, count: int) -> str:
    """A channel with ``count`` APNs devices, written straight into the store."""
    cid = encode_channel_id(secrets.token_bytes(16))
    now = int(time.time() * 1000)

    def work(conn: Any) -> None:
        conn.execute(channels.insert().values(channel_id=cid, channel_name="fleet",
                                              password_hash=hash_password_sync(PASSWORD),
                                              created_at=now, updated_at=now))
        keys = [secrets.token_hex(16) for _ in range(count)]
        conn.execute(devices.insert(), [
            {"device_key": k, "platform": "ios", "channel_type": "apns",
             "provider_token": secrets.token_hex(32), "created_at": now, "updated_at": now}
            for k in keys])
        conn.execute(subscriptions.insert(), [
            {"channel_id": cid, "device_key": k, "created_at": now} for k in keys])

    store.migrate()
    store.run_sync(work)
    return cid


def _states(conn: Any) -> dict[str, str]:
    rows = conn.execute(sa.select(deliveries.c.delivery_id, deliveries.c.state))
    return {r.delivery_id: r.state for r in rows}


def _queued(conn: Any) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(deliveries)
                            .where(deliveries.c.state == "queued")).scalar_one())


async def test_a_process_killed_mid_fan_out_leaves_nothing_undelivered_and_nothing_sent_thrice(
        pg_schema_url: str, mock: tuple[MockAPNs, str], tmp_path: Path) -> None:
    apns, ca_file = mock
    store = Store(pg_schema_url, pool_size=2)
    cid = await anyio.to_thread.run_sync(_seed, store, DEVICES)
    key_a, key_b = APNsKey.generate(), APNsKey.generate()
    apns.trust_key(key_a.key_id, key_a.team_id, key_a.public_key())
    apns.trust_key(key_b.key_id, key_b.team_id, key_b.public_key())

    def env(key: APNsKey, name: str) -> dict[str, str]:
        return {
            "PUSHGO_DB_URL": pg_schema_url, "PUSHGO_LOG_LEVEL": "warning",
            "PUSHGO_APNS_ENDPOINT": apns.origin, "PUSHGO_APNS_TOPIC": TOPIC,
            "PUSHGO_PROVIDER_CA_FILE": ca_file,
            "PUSHGO_APNS_KEY_FILE": str(key.write(tmp_path / f"{name}.p8")),
            "PUSHGO_APNS_KEY_ID": key.key_id, "PUSHGO_APNS_TEAM_ID": key.team_id,
            # Leases run out 4 s after a process dies instead of a minute (renewed every 1.3 s
            # while held, so a busy machine does not lose them to the other process).
            "PUSHGO_DELIVERY_LEASE_SECONDS": "4",
        }

    a = ServerProcess(env(key_a, "a"), str(tmp_path / "a.log"))
    b = ServerProcess(env(key_b, "b"), str(tmp_path / "b.log"))
    kids: dict[str, str] = {}
    try:
        await anyio.to_thread.run_sync(a.start)
        await anyio.to_thread.run_sync(b.start)
        async with httpx.AsyncClient(timeout=30) as client:
            resp = await client.post(a.url + "/message", json={
                "channel_id": cid, "password": PASSWORD, "title": "fleet-wide"})
        assert resp.status_code == 200, resp.text

        # Kill A in the middle of its share of the work.
        await apns.wait_for(DEVICES // 8, lambda n: _kid(n.headers["authorization"], kids)
                            == key_a.key_id, within=60)
        await anyio.to_thread.run_sync(a.kill9)
        at_kill = await store.read(_states)
        from_a_before_kill = {n.headers["apns-id"].replace("-", "")
                              for n in apns.notifications.items
                              if _kid(n.headers["authorization"], kids) == key_a.key_id}
        assert len(at_kill) == DEVICES
        queued_at_kill = sum(1 for s in at_kill.values() if s == "queued")
        assert queued_at_kill > 0, "the fan-out finished before the kill"

        # B takes over A's leases once they run out (wall time: a lease in another process).
        async def nothing_queued() -> bool:
            return await store.read(_queued) == 0

        await eventually(nothing_queued, timeout=60, interval=0.05)
        now = await store.read(_states)
    finally:
        await anyio.to_thread.run_sync(a.stop)
        await anyio.to_thread.run_sync(b.stop)
        await anyio.to_thread.run_sync(store.dispose)

    assert set(now.values()) == {"sent"}
    notes = apns.notifications.items
    assert all(n.accepted for n in notes)
    times = Counter(n.headers["apns-id"].replace("-", "") for n in notes)
    assert set(times) == set(now), "a delivery never reached the provider"
    assert max(times.values()) <= 2
    twice = {d for d, n in times.items() if n == 2}
    # A duplicate is a delivery the killed process had sent but not yet recorded as sent.
    in_flight_at_kill = {d for d in from_a_before_kill if at_kill[d] != "sent"}
    assert twice <= in_flight_at_kill
    by_kid = Counter(_kid(n.headers["authorization"], kids) for n in notes)
    assert by_kid[key_a.key_id] >= DEVICES // 8 and by_kid[key_b.key_id] > 0
    print(f"\nfan-out {DEVICES}: sent by A {by_kid[key_a.key_id]}, by B {by_kid[key_b.key_id]}; "
          f"queued at kill {queued_at_kill}; in flight at kill {len(in_flight_at_kill)}; "
          f"sent twice {len(twice)}")


# --- pushgo serve --workers N ---------------------------------------------------------------


class Supervised:
    """``pushgo serve --workers N`` as a child process."""

    def __init__(self, env: dict[str, str], log_path: Path, workers: int) -> None:
        self.port = free_port()
        self.env = {**os.environ, **env, "PUSHGO_HTTP_ADDR": f"127.0.0.1:{self.port}"}
        self.log_path = log_path
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pushgo.cli", "serve", "--workers", str(self.workers)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.wait_ready()

    def wait_ready(self) -> None:
        """Until every worker listens and /readyz answers (polled: a child process)."""
        eventually_sync(self.ready, timeout=30, interval=0.05,
                        what=lambda: "workers did not become ready: " + self.log())

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"supervisor exited {self.proc.returncode}: {self.log()}")
        pids = self.worker_pids()
        if len(pids) != self.workers or not all(self.listening(pid) for pid in pids):
            return False
        try:
            return httpx.get(self.url + "/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def listening(self, pid: int) -> bool:
        return any(line.get("msg") == "listening" and line.get("pid") == pid
                   for line in self.lines())

    def lines(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for raw in self.log().splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue
        return out

    def worker_pids(self) -> list[int]:
        """Live worker pids, from the supervisor's log."""
        started: dict[int, int] = {}
        for doc in self.lines():
            if doc.get("msg") == "worker started":
                started[doc["worker"]] = doc["pid"]
        return [pid for pid in started.values() if _alive(pid)]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def supervised(pg_schema_url: str, tmp_path: Path) -> Iterator[Supervised]:
    sup = Supervised({"PUSHGO_DB_URL": pg_schema_url}, tmp_path / "sup.log", workers=2)
    try:
        yield sup
    finally:
        sup.stop()


def test_workers_share_the_port_a_killed_worker_is_replaced_and_sigterm_exits_0(
        supervised: Supervised) -> None:
    supervised.start()
    pids = supervised.worker_pids()
    assert len(pids) == 2
    # Both workers answer on the one port: each counts only what it served itself.
    served: set[str] = set()
    deadline = time.monotonic() + 20
    with httpx.Client(base_url=supervised.url) as c:
        while len(served) < 2 and time.monotonic() < deadline:
            with httpx.Client(base_url=supervised.url) as fresh:  # a new connection each time
                text = fresh.get("/metrics", params={"scope": "process"}).text
            worker = re.search(r'^pushgo_worker_info\{.*pid="(\d+)"', text, re.M)
            assert worker is not None, text
            served.add(worker.group(1))
        assert len(served) == 2, "one worker answered every connection"
        # The default scope adds the workers up: every /readyz the test made is there once.
        for _ in range(6):
            with httpx.Client(base_url=supervised.url) as fresh:
                assert fresh.get("/readyz").status_code == 200
        total = c.get("/metrics").text
    assert len(re.findall(r"^pushgo_worker_info\{", total, re.M)) == 2
    readyz = re.search(r'^pushgo_http_requests_total\{method="GET",route="/readyz",'
                       r'status="200"\} (\S+)$', total, re.M)
    assert readyz is not None and float(readyz.group(1)) >= 6

    os.kill(pids[0], signal.SIGKILL)

    def replaced() -> bool:
        now = supervised.worker_pids()
        return len(now) == 2 and pids[0] not in now

    eventually_sync(replaced, timeout=20, interval=0.05, what=supervised.log)
    supervised.wait_ready()
    assert httpx.get(supervised.url + "/readyz").status_code == 200

    assert supervised.proc is not None
    supervised.proc.send_signal(signal.SIGTERM)
    assert supervised.proc.wait(40) == 0
    assert not any(_alive(pid) for pid in supervised.worker_pids())
    assert "worker exited; restarting" in supervised.log()


def test_workers_refuse_sqlite_with_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "PUSHGO_DB_URL": f"sqlite:///{tmp_path}/p.db",
           "PUSHGO_HTTP_ADDR": f"127.0.0.1:{free_port()}"}
    done = subprocess.run([sys.executable, "-m", "pushgo.cli", "serve", "--workers", "2"],
                          env=env, capture_output=True, timeout=30)
    assert done.returncode == 2
    err = done.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "PostgreSQL" in err and "PUSHGO_WORKERS" in err


# --- wake-ups across processes ------------------------------------------------------------------


def test_a_private_stream_on_one_process_gets_what_another_accepts_without_waiting_for_a_keepalive(
        pg_schema_url: str, tmp_path: Path) -> None:
    a = ServerProcess({"PUSHGO_DB_URL": pg_schema_url}, str(tmp_path / "a.log"))
    b = ServerProcess({"PUSHGO_DB_URL": pg_schema_url}, str(tmp_path / "b.log"))
    try:
        a.start()
        b.start()

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            resp = httpx.post(a.url + path, json=body, timeout=10)
            assert resp.status_code == 200, resp.text
            return resp.json()["data"]  # type: ignore[no-any-return]

        key = post("/device/register", {"platform": "android"})["device_key"]
        first = post("/channel/subscribe", {"device_key": key, "channel_name": "one",
                                            "password": PASSWORD})["channel_id"]
        sender = post("/device/register", {"platform": "android"})["device_key"]
        second = post("/channel/subscribe", {"device_key": sender, "channel_name": "two",
                                             "password": PASSWORD})["channel_id"]
        steps = [
            # A message on process A for a channel the streaming device is on.
            lambda: post("/message", {"channel_id": first, "password": PASSWORD,
                                      "title": "from A"}),
            # A subscription made on A, then a message to that channel.
            lambda: (post("/channel/subscribe", {"device_key": key, "channel_id": second,
                                                 "password": PASSWORD}),
                     post("/message", {"channel_id": second, "password": PASSWORD,
                                       "title": "second channel"})),
        ]
        parser = SSEParser()
        titles: list[str] = []
        started = 0
        with httpx.stream("GET", b.url + "/private/stream", params={"device_key": key},
                          timeout=30) as resp:
            assert resp.status_code == 200
            for chunk in resp.iter_bytes():
                events = list(parser.feed(chunk))
                titles += [json.loads(e.data)["title"] for e in events]
                # Only the stream's opening comment so far: no keep-alive re-read was needed.
                assert parser.comments == 1, titles
                if len(titles) == len(steps):
                    break
                if started == len(titles):  # the previous step's event is in: the next one
                    threading.Thread(target=steps[started], daemon=True).start()
                    started += 1
        assert titles == ["from A", "second channel"]
    finally:
        a.stop()
        b.stop()
