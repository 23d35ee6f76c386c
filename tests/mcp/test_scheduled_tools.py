"""Scheduled sends through MCP, in legacy mode (channel passwords) and in both protocol eras:
the send tools take ``deliver_at`` and say the send is scheduled; ``pushgo.operation.cancel``
stops it, and a private device never receives it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema

from pushgo.app import Gateway
from tests.helpers import PASSWORD, call, pull
from tests.mcp_helpers import (  # noqa: F401
    api_fixture,
    http_fixture,
    legacy_call,
    mcp_settings,
    modern_request,
    open_session,
    private_device_on_channel,
    sse_messages,
)

HOUR_MS = 3_600_000


async def modern_tool(http: httpx.AsyncClient, name: str, arguments: dict[str, Any]
                      ) -> dict[str, Any]:
    body, headers = modern_request("tools/call", {"name": name, "arguments": arguments})
    resp = await http.post("/mcp", content=body, headers=headers)
    assert resp.status_code == 200, resp.text
    doc = resp.json() if resp.headers["content-type"] == "application/json" \
        else sse_messages(resp.text)[-1]
    return doc["result"]  # type: ignore[no-any-return]


async def test_a_tool_schedules_a_send_and_the_cancel_tool_stops_it_in_both_eras(
        gateway: Gateway, api: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
    key, cid = await private_device_on_channel(gateway, api)
    sid = await open_session(http)
    tools = {t["name"]: t for t in
             (await legacy_call(http, sid, "tools/list"))["result"]["tools"]}
    for name in ("pushgo.message.send", "pushgo.event.create", "pushgo.thing.update"):
        assert "deliver_at" in tools[name]["inputSchema"]["properties"]
    cancel_tool = tools["pushgo.operation.cancel"]
    assert cancel_tool["inputSchema"]["required"] == ["op_id", "channel_id", "password"]
    at = gateway.ctx.now() + HOUR_MS

    # the legacy era: a session
    doc = await legacy_call(http, sid, "tools/call", {"name": "pushgo.message.send", "arguments": {
        "channel_id": cid, "password": PASSWORD, "title": "Reminder", "deliver_at": at,
        "op_id": "mcp-later"}})
    sent = doc["result"]["structuredContent"]
    assert doc["result"]["isError"] is False and sent["deliver_at"] == at
    jsonschema.validate(sent, tools["pushgo.message.send"]["outputSchema"])
    assert sent["delivery"]["states"]["scheduled"] == 1 and sent["delivery"]["done"] is False
    assert "scheduled for" in sent["summary"] and "pushgo.operation.cancel" in sent["summary"]
    assert await pull(api, key) == []
    # the modern era: stateless
    result = await modern_tool(http, "pushgo.operation.cancel", {
        "op_id": "mcp-later", "channel_id": cid, "password": PASSWORD})
    assert result["isError"] is False
    jsonschema.validate(result["structuredContent"], cancel_tool["outputSchema"])
    assert result["structuredContent"]["outcome"] == "cancelled"
    assert result["structuredContent"]["states"] == {"cancelled": 1}
    again = await legacy_call(http, sid, "tools/call", {"name": "pushgo.operation.cancel",
                                                        "arguments": {"op_id": "mcp-later",
                                                                      "channel_id": cid,
                                                                      "password": PASSWORD}})
    assert again["result"]["structuredContent"]["outcome"] == "already_cancelled"
    # the resource shows it cancelled; the device never gets it
    doc = await legacy_call(http, sid, "resources/read", {"uri": "pushgo://operations/mcp-later"})
    status = json.loads(doc["result"]["contents"][0]["text"])
    assert status["states"]["cancelled"] == 1 and status["done"] is True
    assert status["deliver_at"] == at
    assert (await call(api, "/deliveries/mcp-later"))["states"]["cancelled"] == 1

    # a scheduled event in the modern era; a wrong password cannot cancel it
    result = await modern_tool(http, "pushgo.event.create", {
        "channel_id": cid, "password": PASSWORD, "title": "Window", "status": "planned",
        "message": "maintenance", "severity": "normal", "event_time": at // 1000,
        "deliver_at": at, "op_id": "mcp-event"})
    assert result["structuredContent"]["deliver_at"] == at
    refused = await modern_tool(http, "pushgo.operation.cancel", {
        "op_id": "mcp-event", "channel_id": cid, "password": "wrong-pass-1"})
    assert refused["isError"] is True
    assert refused["structuredContent"]["error_code"] == "password_mismatch"
    past = await modern_tool(http, "pushgo.message.send", {
        "channel_id": cid, "password": PASSWORD, "title": "x", "deliver_at": 1_000_000_000})
    assert past["structuredContent"]["error_code"] == "deliver_at_in_past"
    assert (await call(api, "/deliveries/mcp-event"))["state"] == "scheduled"
