"""Without a gateway token nobody is authenticated: a channel resource then shows what
/channel/exists shows, never what was sent to the channel."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from pushgo.app import Gateway
from tests.helpers import PASSWORD, call, stored_channel
from tests.live import hypercorn_server
from tests.mcp_helpers import modern_request


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"mcp_enabled": True, "mcp_auth_mode": "legacy"}


@pytest.fixture
async def open_http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with hypercorn_server(gateway) as base, httpx.AsyncClient(base_url=base) as c:
        yield c


async def test_a_tokenless_gateway_hides_channel_history_from_resource_reads(gateway, open_http):
    key = (await call(open_http, "/device/register", {"platform": "android"}))["device_key"]
    cid = await stored_channel(gateway, key)
    await call(open_http, "/message", {"channel_id": cid, "password": PASSWORD,
                                       "title": "secret plans"})
    body, headers = modern_request("resources/read", {"uri": f"pushgo://channels/{cid}"})
    headers.pop("authorization", None)
    resp = await open_http.post("/mcp", content=body, headers=headers)
    assert resp.status_code == 200, resp.text
    (content,) = resp.json()["result"]["contents"]
    doc = json.loads(content["text"])
    assert doc["channel"]["channel_id"] == cid
    assert "recent_messages" not in doc and "open_events" not in doc and "things" not in doc
    assert "secret plans" not in content["text"]


async def test_a_tokenless_gateway_tells_nobody_when_a_channel_changes(gateway, open_http):
    key = (await call(open_http, "/device/register", {"platform": "android"}))["device_key"]
    cid = await stored_channel(gateway, key)
    sent = await call(open_http, "/message", {"channel_id": cid, "password": PASSWORD,
                                              "title": "x", "op_id": "op-open"})
    body, headers = modern_request("subscriptions/listen", {"notifications": {
        "resourceSubscriptions": [f"pushgo://channels/{cid}", "pushgo://operations/op-open"]}})
    headers.pop("authorization", None)
    async with open_http.stream("POST", "/mcp", content=body, headers=headers) as resp:
        async for line in resp.aiter_lines():
            if line.startswith("data: {"):
                ack = json.loads(line[len("data: "):])
                break
    # the operation's counts are as readable as GET /deliveries/{op_id}; the channel is not
    assert ack["params"]["notifications"] == {
        "resourceSubscriptions": ["pushgo://operations/op-open"]}
    assert sent["op_id"] == "op-open"
