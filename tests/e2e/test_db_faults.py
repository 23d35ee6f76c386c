"""`pushgo serve` against a PostgreSQL server of the test's own (tests/pg_instance.py) that
freezes (SIGSTOP), stops, comes back, or refuses the password.

Frozen: every request answers 503 ``store_unavailable`` with ``Retry-After`` within the store
deadline (set to 1 s here) — more requests than store threads, so none queues behind a stuck
one — /readyz turns 503 without waiting on the database, /healthz stays 200; thawed, the same
process accepts and delivers again. Stopped: 503 naming the reason, and recovery after the
database's restart. Bad credentials: the reason, never the password or the URL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from tests.live import ServerProcess
from tests.pg_instance import PASSWORD, PgInstance, own_postgres

pytestmark = pytest.mark.slow

CHANNEL_PASSWORD = "channel-pass-1"
#: More concurrent requests than the store has threads (8): none may wait behind a stuck one.
WAVE = 12
#: A client gives a request this long: far beyond the 1 s store deadline, so a timeout here
#: means the gateway hung.
CLIENT_TIMEOUT_S = 20.0


@pytest.fixture
def pg() -> Iterator[PgInstance]:
    with own_postgres() as instance:
        yield instance


def start_server(pg: PgInstance, tmp_path: Any, backend: str = "trio",
                 url: str | None = None) -> ServerProcess:
    srv = ServerProcess({"PUSHGO_DB_URL": url or pg.url(), "PUSHGO_ASYNC_BACKEND": backend,
                         "PUSHGO_DB_REQUEST_TIMEOUT_MS": "1000",
                         "PUSHGO_DB_CONNECT_TIMEOUT_S": "2"}, str(tmp_path / "server.log"))
    srv.start()
    return srv


def post(srv: ServerProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.post(srv.url + path, json=body, timeout=CLIENT_TIMEOUT_S)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()["data"]
    return data


def subscribed_device(srv: ServerProcess) -> tuple[str, str]:
    key = post(srv, "/device/register", {"platform": "android"})["device_key"]
    cid = post(srv, "/channel/subscribe", {"device_key": key, "channel_name": "db-faults",
                                           "password": CHANNEL_PASSWORD})["channel_id"]
    return key, cid


async def wave(srv: ServerProcess, key: str, cid: str) -> list[httpx.Response]:
    """WAVE requests at once, sends and pulls mixed."""
    out: list[httpx.Response] = []
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S) as client:

        async def one(i: int) -> None:
            if i % 2:
                body = {"channel_id": cid, "password": CHANNEL_PASSWORD, "title": f"t{i}"}
                out.append(await client.post(srv.url + "/message", json=body))
            else:
                out.append(await client.post(srv.url + "/messages/pull",
                                             json={"device_key": key}))

        async with anyio.create_task_group() as tg:
            for i in range(WAVE):
                tg.start_soon(one, i)
    return out


def assert_store_unavailable(resp: httpx.Response) -> str:
    assert resp.status_code == 503, resp.text
    doc = resp.json()
    assert doc["error_code"] == "store_unavailable", doc
    assert resp.headers.get("retry-after") == "1"
    return str(doc["error"])


def wait_until(predicate: Any, what: str, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def readyz(srv: ServerProcess) -> httpx.Response:
    return httpx.get(srv.url + "/readyz", timeout=CLIENT_TIMEOUT_S)


def full_log(srv: ServerProcess) -> str:
    with open(srv.log_path, encoding="utf-8", errors="replace") as f:
        return f.read()


def logged(srv: ServerProcess, msg: str) -> list[dict[str, Any]]:
    """The JSON log records whose message is ``msg``."""
    out = []
    for line in full_log(srv).splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("msg") == msg:
                out.append(record)
    return out


def pulled_titles(srv: ServerProcess, key: str) -> list[str]:
    items = post(srv, "/messages/pull", {"device_key": key})["items"]
    return [i["payload"]["title"] for i in items]


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_a_frozen_database_answers_503_in_time_and_the_gateway_resumes_by_itself(
        pg: PgInstance, tmp_path: Any, backend: str) -> None:
    srv = start_server(pg, tmp_path, backend)
    try:
        key, cid = subscribed_device(srv)
        pg.freeze()
        try:
            # Two waves: the second finds every store thread still stuck on the frozen server
            # and must not queue behind them.
            for _ in range(2):
                answers = anyio.run(wave, srv, key, cid)
                reasons = {assert_store_unavailable(r) for r in answers}
                assert reasons == {"store unavailable: timeout"}, reasons
            wait_until(lambda: readyz(srv).status_code == 503, "/readyz turns 503")
            ready = readyz(srv)
            assert ready.json()["error_code"] == "not_ready"
            assert ready.headers.get("retry-after") == "1"
            assert httpx.get(srv.url + "/healthz", timeout=CLIENT_TIMEOUT_S).status_code == 200
        finally:
            pg.thaw()
        wait_until(lambda: readyz(srv).status_code == 200, "/readyz back to 200")
        sent = post(srv, "/message", {"channel_id": cid, "password": CHANNEL_PASSWORD,
                                      "title": "after the freeze"})
        assert sent["accepted"] is True
        # Sends that timed out were rolled back or committed whole: any that reached the
        # inbox is whole; the one sent after the thaw is there.
        assert "after the freeze" in pulled_titles(srv, key)
        assert {r["reason"] for r in logged(srv, "store unavailable")} == {"timeout"}
        assert [r["reason"] for r in logged(srv, "store unhealthy")] == ["timeout"]
        assert logged(srv, "store available again")
        assert PASSWORD not in full_log(srv)
    finally:
        srv.stop()


def test_a_stopped_database_answers_503_and_the_gateway_recovers_after_its_restart(
        pg: PgInstance, tmp_path: Any) -> None:
    srv = start_server(pg, tmp_path)
    try:
        key, cid = subscribed_device(srv)
        pg.stop()
        body = {"channel_id": cid, "password": CHANNEL_PASSWORD, "title": "while down"}
        resp = httpx.post(srv.url + "/message", json=body, timeout=CLIENT_TIMEOUT_S)
        message = assert_store_unavailable(resp)
        # The pooled connection was ended by the shutdown, a new one is refused.
        assert message in ("store unavailable: connection lost",
                           "store unavailable: database shutting down",
                           "store unavailable: connection refused"), message
        resp = httpx.post(srv.url + "/messages/pull", json={"device_key": key},
                          timeout=CLIENT_TIMEOUT_S)
        assert assert_store_unavailable(resp) == "store unavailable: connection refused"
        wait_until(lambda: readyz(srv).status_code == 503, "/readyz turns 503")
        assert "connection refused" in readyz(srv).json()["error"]
        pg.start()
        wait_until(lambda: readyz(srv).status_code == 200, "/readyz back to 200")
        sent = post(srv, "/message", {"channel_id": cid, "password": CHANNEL_PASSWORD,
                                      "title": "after the restart"})
        assert sent["accepted"] is True
        assert "after the restart" in pulled_titles(srv, key)
    finally:
        srv.stop()


def test_a_password_the_database_refuses_is_named_but_never_shown(
        pg: PgInstance, tmp_path: Any) -> None:
    srv = start_server(pg, tmp_path)
    try:
        key, _cid = subscribed_device(srv)
        # The role's password changes under the running gateway, and its sessions end: every
        # new connection is refused with the old password.
        with pg.admin() as conn:
            conn.execute("ALTER ROLE pushgo PASSWORD 'another-Secret-2'")
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE usename = 'pushgo'")
        answers = [httpx.post(srv.url + "/messages/pull", json={"device_key": key},
                              timeout=CLIENT_TIMEOUT_S) for _ in range(3)]
        messages = [assert_store_unavailable(r) for r in answers]
        assert messages[-1] == "store unavailable: authentication failed", messages
        wait_until(lambda: readyz(srv).status_code == 503, "/readyz turns 503")
        assert readyz(srv).json()["error"] == "store unavailable: authentication failed"
        shown = "".join(r.text for r in answers) + readyz(srv).text + full_log(srv)
        assert "authentication failed" in {r["reason"] for r in logged(srv, "store unhealthy")}
        assert PASSWORD not in shown
        assert pg.url() not in shown
    finally:
        srv.stop()


@pytest.mark.parametrize(("password", "database", "reason"), [
    ("wrong-Secret-9", "pushgo", "authentication failed"),
    (PASSWORD, "no_such_db", "database does not exist"),
])
def test_serve_with_a_database_it_cannot_open_names_the_reason_and_exits_2(
        pg: PgInstance, tmp_path: Any, password: str, database: str, reason: str) -> None:
    url = pg.url(password, database)
    srv = ServerProcess({"PUSHGO_DB_URL": url}, str(tmp_path / "server.log"))
    with pytest.raises(RuntimeError, match="server exited 2"):
        srv.start()
    out = srv.log()
    lines = out.splitlines()
    assert lines == [f"pushgo: cannot open PUSHGO_DB_URL: {reason}"], out
    assert password not in out and url not in out
