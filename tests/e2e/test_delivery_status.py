"""Delivery status: GET /deliveries/{op_id}, its SSE stream, the MCP resource
pushgo://operations/{op_id} and the MCP send tools' progress notifications — all checked
against what the mock providers actually received and answered."""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from pushgo.app import Gateway
from pushgo.protocol.sse import SSEParser
from pushgo.push import pool as pool_module
from pushgo.service import status as status_service
from tests.helpers import PASSWORD, assert_error, call, register, stored_channel
from tests.live import hypercorn_server
from tests.mcp_helpers import legacy_headers, open_session, rpc, sse_messages

TOKEN = "gw-token-for-mcp-tests"  # tests.mcp_helpers' headers carry this one
AUTH = {"authorization": f"Bearer {TOKEN}"}
NDJSON = {"content-type": "application/x-ndjson"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"token": TOKEN, "mcp_enabled": True, "mcp_auth_mode": "legacy"}


@pytest.fixture
async def api(pgateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=pgateway.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://pushgo.test",
                                 headers=AUTH) as c:
        yield c


def apns_token() -> str:
    return secrets.token_hex(32)


async def bulk(api: httpx.AsyncClient, *items: dict[str, Any]) -> list[dict[str, Any]]:
    body = b"".join(json.dumps(i).encode() + b"\n" for i in items)
    resp = await api.post("/messages/bulk", content=body, headers=NDJSON)
    assert resp.status_code == 200, resp.text
    return [json.loads(line) for line in resp.text.splitlines()]


async def until_done(api: httpx.AsyncClient, op_id: str, **query: str) -> dict[str, Any]:
    with anyio.fail_after(30):
        while True:
            resp = await api.get(f"/deliveries/{op_id}", params=query)
            doc = resp.json()["data"]
            if doc["done"]:
                return doc  # type: ignore[no-any-return]
            await anyio.sleep(0.05)


async def private_device(api: httpx.AsyncClient) -> str:
    key = await register(api, "android")
    await call(api, "/channel/device", {"device_key": key, "channel_type": "private"})
    return key


async def apns_device(api: httpx.AsyncClient, token: str) -> str:
    key = await register(api, "ios")
    await call(api, "/channel/device",
               {"device_key": key, "channel_type": "apns", "provider_token": token})
    return key


@pytest.mark.usefixtures("fast_backoff")  # the 503 retry comes back in milliseconds
async def test_counts_and_failure_reasons_match_what_the_mock_answered(
        api, pgateway, providers):
    tokens = [apns_token() for _ in range(12)]
    apns = providers.apns
    apns.unregister(tokens[0])
    apns.unregister(tokens[1])
    apns.reject(tokens[2], 400, "BadDeviceToken")
    apns.reject(tokens[3], 400, "TopicDisallowed")
    apns.reject(tokens[4], 503, "ServiceUnavailable", times=1)  # retried, then accepted
    [res] = await bulk(api, {"route": "apns", "tokens": tokens, "title": "t",
                             "op_id": "status-1"})
    assert res["ok"] and res["recipients"] == 12
    doc = await until_done(api, "status-1")
    final = {}
    for note in apns.notifications:  # the last answer per token is its outcome
        final[note.token] = note.reason or "sent"
    assert sorted(final) == sorted(tokens)
    answered = Counter(final.values())
    assert doc["states"] == {"queued": 0, "sent": answered.pop("sent"),
                             "failed": sum(answered.values()), "expired": 0}
    assert doc["failures"] == dict(answered) == {
        "Unregistered": 2, "BadDeviceToken": 1, "TopicDisallowed": 1}
    assert doc["total"] == 12 and doc["done"] is True and doc["op_id"] == "status-1"
    assert doc["routes"] == {"apns": doc["states"]}
    assert doc["operations"] == 1 and "channel_id" not in doc
    assert isinstance(doc["created_at"], int) and doc["retrying"] == 0
    assert [n.status for n in apns.notifications if n.token == tokens[4]] == [503, 200]


async def test_a_channel_operation_is_done_once_its_private_device_has_it(
        api, pgateway, providers):
    tok = apns_token()
    private = await private_device(api)
    cid = await stored_channel(pgateway, private, await apns_device(api, tok))
    sent = await call(api, "/message", {"channel_id": cid, "password": PASSWORD,
                                        "title": "t", "op_id": "chan-1"})
    await providers.apns.wait_for(1)
    with anyio.fail_after(10):
        while (doc := await call(api, "/deliveries/chan-1"))["states"]["sent"] < 1:
            await anyio.sleep(0.05)
    assert doc["done"] is False and doc["channel_id"] == cid
    assert doc["routes"] == {"apns": {"queued": 0, "sent": 1, "failed": 0, "expired": 0},
                             "private": {"queued": 1, "sent": 0, "failed": 0, "expired": 0}}
    await call(api, "/messages/pull", {"device_key": private})
    doc = await until_done(api, "chan-1", channel_id=cid)
    assert doc["states"]["sent"] == 2 and sent["op_id"] == "chan-1"


async def test_one_op_id_on_two_channels_adds_up_and_channel_id_narrows_it(api, pgateway):
    a = await stored_channel(pgateway, await private_device(api))
    b = await stored_channel(pgateway, await private_device(api), await private_device(api))
    for cid in (a, b):
        await call(api, "/message", {"channel_id": cid, "password": PASSWORD, "title": "t",
                                     "op_id": "shared"})
    both = await call(api, "/deliveries/shared")
    assert both["total"] == 3 and both["operations"] == 2 and "channel_id" not in both
    only_b = await call(api, f"/deliveries/shared?channel_id={b.lower()}")
    assert only_b["total"] == 2 and only_b["channel_id"] == b


async def test_status_errors(api, pgateway):
    assert_error(await api.get("/deliveries/nope"), 404, "operation_not_found")
    assert_error(await api.get("/deliveries/bad%20id"), 400, "invalid_op_id")
    assert_error(await api.get("/deliveries/x?channel_id=zz"), 400, "invalid_channel_id")
    assert_error(await api.get("/deliveries/x?limit=3"), 400, "invalid_query")
    assert_error(await api.get("/deliveries/nope/stream"), 404, "operation_not_found")
    transport = httpx.ASGITransport(app=pgateway.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as anon:
        assert_error(await anon.get("/deliveries/nope"), 401, "authentication_failed")


async def test_the_stream_sends_each_change_and_ends_when_done(api, pgateway, monkeypatch):
    monkeypatch.setattr(status_service, "KEEPALIVE_S", 0.2)
    monkeypatch.setattr(status_service, "POLL_S", 0.05)
    device = await private_device(api)
    cid = await stored_channel(pgateway, device)
    await call(api, "/message", {"channel_id": cid, "password": PASSWORD, "title": "t",
                                 "op_id": "watch-1"})
    parser = SSEParser()
    events: list[dict[str, Any]] = []
    async with (hypercorn_server(pgateway) as base,
                httpx.AsyncClient(base_url=base, headers=AUTH, timeout=10) as c):
        with anyio.fail_after(10):
            async with c.stream("GET", "/deliveries/watch-1/stream") as resp:
                assert resp.status_code == 200
                assert resp.headers["content-type"].startswith("text/event-stream")
                async for chunk in resp.aiter_bytes():
                    for event in parser.feed(chunk):
                        events.append(json.loads(event.data))
                    if events and parser.comments >= 2 and len(events) == 1:
                        # queued, and a keep-alive since: the device takes it now
                        await call(api, "/messages/pull", {"device_key": device})
    assert [e["done"] for e in events] == [False, True]
    assert events[0]["states"]["queued"] == 1 and events[1]["states"]["sent"] == 1
    assert events[1] == await call(api, "/deliveries/watch-1")


async def test_the_mcp_resource_reads_the_same_status(api, pgateway):
    cid = await stored_channel(pgateway, await private_device(api))
    await call(api, "/message", {"channel_id": cid, "password": PASSWORD, "title": "t",
                                 "op_id": "mcp-1"})
    transport = httpx.ASGITransport(app=pgateway.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:6666") as http:
        sid = await open_session(http)
        resp = await http.post("/mcp", content=rpc("resources/read",
                                                   {"uri": "pushgo://operations/mcp-1"}),
                               headers=legacy_headers(sid))
        [content] = resp.json()["result"]["contents"]
        missing = await http.post("/mcp", content=rpc("resources/read",
                                                      {"uri": "pushgo://operations/none"}),
                                  headers=legacy_headers(sid))
        listed = await http.post("/mcp", content=rpc("resources/templates/list"),
                                 headers=legacy_headers(sid))
    assert content["uri"] == "pushgo://operations/mcp-1"
    assert content["mimeType"] == "application/json"
    assert json.loads(content["text"]) == await call(api, "/deliveries/mcp-1")
    assert missing.json()["error"]["code"] == -32002
    templates = [t["uriTemplate"] for t in listed.json()["result"]["resourceTemplates"]]
    assert "pushgo://operations/{op_id}" in templates


async def test_a_send_tool_reports_delivery_progress_to_a_progress_token(
        api, pgateway, providers):
    tokens = [apns_token() for _ in range(3)]
    providers.apns.unregister(tokens[2])
    keys = [await apns_device(api, t) for t in tokens]
    cid = await stored_channel(pgateway, *keys, await private_device(api))
    transport = httpx.ASGITransport(app=pgateway.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:6666") as http:
        sid = await open_session(http)
        params = {"name": "pushgo.message.send", "_meta": {"progressToken": "p-7"},
                  "arguments": {"channel_id": cid, "password": PASSWORD, "title": "hi"}}
        with anyio.fail_after(15):
            resp = await http.post("/mcp", content=rpc("tools/call", params, rid=3),
                                   headers=legacy_headers(sid))
    msgs = sse_messages(resp.text)
    progress = [m["params"] for m in msgs if m.get("method") == "notifications/progress"]
    assert progress[0] == {"progressToken": "p-7", "progress": 0, "total": 1,
                           "message": "sending"}
    assert progress[1]["total"] == 4 and progress[1]["message"].startswith("accepted")
    values = [p["progress"] for p in progress]
    assert values == sorted(set(values)) and values[-1] == 4  # only ever grows, to the end
    assert all(p["total"] == 4 for p in progress[1:])
    result = msgs[-1]["result"]["structuredContent"]
    assert result["accepted"] is True
    assert result["delivery"] == {
        "devices": 4,
        "states": {"queued": 1, "sent": 2, "failed": 1, "expired": 0},  # queued: private
        "routes": {"apns": {"queued": 0, "sent": 2, "failed": 1, "expired": 0},
                   "private": {"queued": 1, "sent": 0, "failed": 0, "expired": 0}},
        "failures": {"Unregistered": 1}, "done": True,
        "pending": [{"route": "private", "deliveries": 1, "reason": "device_offline"}]}
    assert len(providers.apns.notifications) == 3


async def test_the_stream_and_the_mcp_resource_say_why_deliveries_wait_for_a_provider(
        api, pgateway, providers, monkeypatch):
    """APNs down: the status (its SSE stream, the MCP resource) names the provider as
    unavailable with the connection failure, until it is back and every delivery is sent."""
    monkeypatch.setattr(status_service, "POLL_S", 0.05)
    monkeypatch.setattr(pool_module, "BACKOFF_MIN_S", 0.01)
    monkeypatch.setattr(pool_module, "BACKOFF_MAX_S", 0.05)
    breaker = pgateway.pump.breakers["apns"]
    breaker.cooldown_s, breaker.window_s = 0.1, 0.2  # scaled down from 10 s and 10 s
    keys = [await apns_device(api, apns_token()) for _ in range(3)]
    cid = await stored_channel(pgateway, *keys)
    providers.apns.go_down()
    await call(api, "/message", {"channel_id": cid, "password": PASSWORD, "title": "t",
                                 "op_id": "down-1"})
    # First "retrying" (connects fail), then, once the breaker opens, "provider_unavailable".
    with anyio.fail_after(30):
        while (await call(api, "/deliveries/down-1")).get("waiting", {}).get(
                "apns", {}).get("state") != "provider_unavailable":
            await anyio.sleep(0.02)
    doc = await call(api, "/deliveries/down-1")
    assert doc["waiting"]["apns"]["state"] == "provider_unavailable"

    transport = httpx.ASGITransport(app=pgateway.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:6666") as http:
        sid = await open_session(http)
        resp = await http.post("/mcp", content=rpc("resources/read",
                                                   {"uri": "pushgo://operations/down-1"}),
                               headers=legacy_headers(sid))
    [content] = resp.json()["result"]["contents"]
    waiting = json.loads(content["text"])["waiting"]["apns"]
    assert waiting["state"] == "provider_unavailable"
    assert waiting["last_error"] == doc["waiting"]["apns"]["last_error"]

    parser = SSEParser()
    events: list[dict[str, Any]] = []
    async with (hypercorn_server(pgateway) as base,
                httpx.AsyncClient(base_url=base, headers=AUTH, timeout=10) as c):
        with anyio.fail_after(30):
            async with c.stream("GET", "/deliveries/down-1/stream") as resp:
                async for chunk in resp.aiter_bytes():
                    for event in parser.feed(chunk):
                        events.append(json.loads(event.data))
                    if len(events) == 1:
                        providers.apns.come_up()
    assert events[0]["waiting"]["apns"]["state"] == "provider_unavailable"
    assert events[-1]["done"] and events[-1]["states"]["sent"] == 3
    assert "waiting" not in events[-1]
    assert len(providers.apns.accepted) == 3
