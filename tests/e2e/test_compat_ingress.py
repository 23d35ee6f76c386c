"""PushGo Gateway v1.2.9's bench scenario ``compat_ingress`` against a real ``pushgo serve``.

The scenario seeds one private iOS device subscribed to one channel (POST /device/register,
/channel/device, /channel/subscribe with the bench password), then sends round-robin: ntfy
(POST /ntfy/{key}?title&priority=4&tags&op_id, a text/plain markdown body), ServerChan
(GET /serverchan/{key}?title&desp&op_id), Bark v1 (GET /bark/{key}/Bench%20body
?level=timeSensitive&tags&op_id) and Bark v2 (POST /bark/push JSON, level active), the key's
"/" written %2F, every request with the gateway token; a request succeeds when its status is
2xx. Here: its 40 requests, each a success, and the device holds the 40 messages.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.live import ServerProcess

TOKEN = "bench-gateway-token-1"
PASSWORD = "bench-password-2026"
REQUESTS = 40
PAYLOAD_SIZE = 1024


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess({"PUSHGO_DB_URL": f"sqlite:///{tmp_path}/pushgo.db",
                         "PUSHGO_TOKEN": TOKEN}, str(tmp_path / "server.log"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def markdown(size: int, seed: str) -> str:
    """A markdown body of ``size`` characters (the scenario's payload shape)."""
    text = f"# PushGo benchmark {seed}\n\n- gateway ingress\n- dispatch queue\n\n"
    filler = "A paragraph of mock incident details and operator notes for load generation.\n"
    while len(text) < size:
        text += filler
    return text[:size]


def ok(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()["data"]
    return data


def seed(http: httpx.Client) -> tuple[str, str]:
    device = ok(http.post("/device/register",
                          json={"device_key": "bench-device-compat_ingress-0",
                                "platform": "ios"}))["device_key"]
    ok(http.post("/channel/device", json={"device_key": device, "channel_type": "private",
                                          "platform": "ios"}))
    channel = ok(http.post("/channel/subscribe", json={
        "device_key": device, "password": PASSWORD,
        "channel_name": "bench-channel-compat_ingress-0"}))["channel_id"]
    return device, channel


def request(http: httpx.Client, i: int, key: str) -> httpx.Response:
    """The scenario's i-th request."""
    encoded = key.replace("/", "%2F")
    stamp = int(time.time() * 1000)
    choice = i % 4
    if choice == 0:
        query = urlencode({"title": f"ntfy bench {i}", "priority": "4", "tags": "bench,ntfy",
                           "op_id": f"bench-ntfy-{i}-{stamp}"})
        return http.post(f"/ntfy/{encoded}?{query}", content=markdown(PAYLOAD_SIZE, "ntfy"),
                         headers={"content-type": "text/plain"})
    if choice == 1:
        query = urlencode({"title": f"serverchan bench {i}",
                           "desp": markdown(PAYLOAD_SIZE, "serverchan"),
                           "op_id": f"bench-serverchan-{i}-{stamp}"})
        return http.get(f"/serverchan/{encoded}?{query}")
    if choice == 2:
        query = urlencode({"level": "timeSensitive", "tags": "bench,bark",
                           "op_id": f"bench-bark-{i}-{stamp}"})
        return http.get(f"/bark/{encoded}/Bench%20body?{query}")
    return http.post("/bark/push", json={
        "device_key": key, "title": f"bark v2 bench {i}", "body": markdown(PAYLOAD_SIZE, "bark"),
        "level": "active", "tags": ["bench", "bark"], "op_id": f"bench-bark-v2-{i}-{stamp}"})


def test_the_compat_ingress_bench_scenario_succeeds_against_pushgo_serve(server):
    headers = {"authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as http:
        device, channel = seed(http)
        key = f"{channel}:{PASSWORD}"
        answers = [request(http, i, key) for i in range(REQUESTS)]
        failed = [(i, a.status_code, a.text[:200]) for i, a in enumerate(answers)
                  if not 200 <= a.status_code < 300]
        assert not failed, f"{len(failed)} of {REQUESTS} failed: {failed[:4]}"
        assert all(a.json()["data"]["accepted"] is True for a in answers)
        items = ok(http.post("/messages/pull", json={"device_key": device}))["items"]
        payloads = {p["message_id"]: p for p in (item["payload"] for item in items)}
        assert set(payloads) == {a.json()["data"]["message_id"] for a in answers}
        by_kind = [payloads[a.json()["data"]["message_id"]] for a in answers[:4]]
        assert [(p["title"], p["severity"]) for p in by_kind] == [
            ("ntfy bench 0", "critical"), ("serverchan bench 1", "normal"),
            ("Notification", "normal"), ("bark v2 bench 3", "critical")]
        assert by_kind[2]["body"] == "Bench body"
        # Without the gateway token the compat routes are refused like every other route.
        anonymous = httpx.post(f"{server.url}/ntfy/{key}", content=b"x", timeout=10)
        assert anonymous.status_code == 401
    # The compat key carries the channel password in the path: no log line holds it.
    with open(server.log_path, encoding="utf-8", errors="replace") as f:
        log = f.read()
    assert '"path":"/ntfy/{topic}"' in log.replace(" ", "")
    assert PASSWORD not in log
