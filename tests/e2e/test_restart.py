"""`pushgo serve` as a real process: what it accepted survives kill -9 and a restart; SIGTERM
shuts it down cleanly with exit 0."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pushgo.protocol.sse import SSEParser
from tests.live import ServerProcess

PASSWORD = "secret-pass-1"

pytestmark = pytest.mark.slow


@pytest.fixture(params=["trio", "asyncio"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(db_url: str, backend: str, tmp_path) -> Iterator[ServerProcess]:
    srv = ServerProcess({"PUSHGO_DB_URL": db_url, "PUSHGO_ASYNC_BACKEND": backend},
                        str(tmp_path / "server.log"))
    try:
        yield srv
    finally:
        srv.stop()


def post(srv: ServerProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.post(srv.url + path, json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()["data"]
    return data


def first_stream_event(srv: ServerProcess, key: str) -> dict[str, Any]:
    parser = SSEParser()
    with httpx.stream("GET", srv.url + "/private/stream", params={"device_key": key},
                      timeout=10) as resp:
        for chunk in resp.iter_bytes():
            for event in parser.feed(chunk):
                doc: dict[str, Any] = json.loads(event.data)
                return doc
    raise AssertionError("stream ended without an event")


def test_a_message_accepted_right_before_kill_9_is_delivered_after_restart(server):
    server.start()
    key = post(server, "/device/register", {"platform": "android"})["device_key"]
    cid = post(server, "/channel/subscribe",
               {"device_key": key, "channel_name": "crash", "password": PASSWORD})["channel_id"]
    sent = post(server, "/message", {"channel_id": cid, "password": PASSWORD,
                                     "title": "survives", "op_id": "op-crash-1"})
    assert sent["accepted"] is True
    server.kill9()
    server.start()
    got = first_stream_event(server, key)
    assert got["message_id"] == sent["message_id"]
    assert got["title"] == "survives"
    # The op_id registry survived too: a retry sends nothing new.
    again = post(server, "/message", {"channel_id": cid, "password": PASSWORD,
                                      "title": "survives", "op_id": "op-crash-1"})
    assert again["message_id"] == sent["message_id"]
    items = post(server, "/messages/pull", {"device_key": key})["items"]
    assert [i["payload"]["message_id"] for i in items] == [sent["message_id"]]


def test_sigterm_exits_zero_and_state_persists_across_restart(server):
    server.start()
    key = post(server, "/device/register", {"platform": "ios"})["device_key"]
    cid = post(server, "/channel/subscribe",
               {"device_key": key, "channel_name": "keep", "password": PASSWORD})["channel_id"]
    post(server, "/event/create", {"channel_id": cid, "password": PASSWORD, "title": "deploy",
                                   "status": "running", "message": "step 1", "severity": "normal",
                                   "event_time": 1_700_000_000})
    assert server.terminate() == 0
    server.start()
    exists = httpx.get(server.url + "/channel/exists", params={"channel_id": cid}).json()["data"]
    assert exists == {"channel_id": cid, "exists": True, "channel_name": "keep"}
    again = post(server, "/device/register", {"platform": "ios", "device_key": key})
    assert again == {"device_key": key, "issued_new_key": False}
    assert server.terminate() == 0
