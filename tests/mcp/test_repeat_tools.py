"""``repeat`` through the MCP send tools in both protocol eras, and the receipt resource
``pushgo://receipts/{op_id}``: what the tool started, the resource shows (and a private
device's acknowledgement in it)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from pushgo.app import Gateway
from pushgo.protocol import jsonrpc
from pushgo.protocol.ids import redact
from tests.helpers import PASSWORD, call
from tests.mcp_helpers import (  # noqa: F401
    api_fixture,
    http_fixture,
    legacy_call,
    mcp_settings,
    modern_request,
    open_session,
    private_device_on_channel,
    rpc_error,
    sqlite_db_url,
)

REPEAT = {"every_s": 120, "max": 4}


def receipt_of(result: dict[str, Any]) -> dict[str, Any]:
    (content,) = result["contents"]
    assert content["mimeType"] == "application/json"
    doc: dict[str, Any] = json.loads(content["text"])
    return doc


async def test_the_modern_era_sends_with_repeat_and_reads_the_receipt(
        http: httpx.AsyncClient, gateway: Gateway, api: httpx.AsyncClient) -> None:
    key, cid = await private_device_on_channel(gateway, api)
    args = {"channel_id": cid, "password": PASSWORD, "title": "pager", "op_id": "mcp-page",
            "repeat": REPEAT}
    resp = await http.post("/mcp", **_modern("tools/call", {"name": "pushgo.message.send",
                                                            "arguments": args}))
    result = resp.json()["result"]
    assert result.get("isError") is not True, result
    resp = await http.post("/mcp", **_modern("resources/read",
                                             {"uri": "pushgo://receipts/mcp-page"}, rid=2))
    doc = receipt_of(resp.json()["result"])
    assert doc["repeat"] == REPEAT and doc["sends"] == 1 and doc["acknowledged"] is False
    page = await call(api, "/v2/messages/pull", {"device_key": key})
    await call(api, "/v2/messages/ack", {"device_key": key,
                                         "delivery_ids": [page["items"][0]["delivery_id"]]})
    resp = await http.post("/mcp", **_modern("resources/read",
                                             {"uri": "pushgo://receipts/mcp-page"}, rid=3))
    doc = receipt_of(resp.json()["result"])
    assert (doc["acked_by"], doc["stopped_reason"]) == (redact(key), "acked")
    # Bad bounds are the tool's error, with the API's code.
    args = {**args, "op_id": "mcp-bad", "repeat": {"every_s": 5, "max": 4}}
    resp = await http.post("/mcp", **_modern("tools/call", {"name": "pushgo.message.send",
                                                            "arguments": args}, rid=4))
    result = resp.json()["result"]
    assert result["isError"] is True
    assert result["structuredContent"]["error_code"] == "invalid_repeat"
    # Not a repeating send: not found.
    resp = await http.post("/mcp", **_modern("resources/read",
                                             {"uri": "pushgo://receipts/none"}, rid=5))
    rpc_error(resp, 400, jsonrpc.INVALID_PARAMS)


async def test_the_legacy_era_creates_a_repeating_event_and_reads_the_receipt(
        http: httpx.AsyncClient, gateway: Gateway, api: httpx.AsyncClient) -> None:
    _key, cid = await private_device_on_channel(gateway, api)
    sid = await open_session(http)
    tools = (await legacy_call(http, sid, "tools/list"))["result"]["tools"]
    schemas = {t["name"]: t["inputSchema"]["properties"] for t in tools}
    assert "repeat" in schemas["pushgo.event.create"]
    assert "repeat" in schemas["pushgo.event.update"]
    assert "repeat" not in schemas["pushgo.event.close"]
    args = {"channel_id": cid, "password": PASSWORD, "title": "API", "status": "down",
            "message": "5xx", "severity": "critical", "event_time": 1_800_000_000,
            "op_id": "mcp-event", "repeat": REPEAT}
    doc = await legacy_call(http, sid, "tools/call",
                            {"name": "pushgo.event.create", "arguments": args}, rid=2)
    assert doc["result"].get("isError") is not True, doc
    event_id = doc["result"]["structuredContent"]["event_id"]
    doc = await legacy_call(http, sid, "resources/read",
                            {"uri": "pushgo://receipts/mcp-event"}, rid=3)
    receipt = receipt_of(doc["result"])
    assert (receipt["entity_type"], receipt["entity_id"]) == ("event", event_id)
    assert receipt["next_send_at"] == receipt["created_at"] + REPEAT["every_s"] * 1000
    close = {k: v for k, v in args.items() if k not in ("title", "repeat")}
    doc = await legacy_call(http, sid, "tools/call", {"name": "pushgo.event.close", "arguments": {
        **close, "op_id": "mcp-close", "event_id": event_id}}, rid=4)
    assert doc["result"].get("isError") is not True, doc
    doc = await legacy_call(http, sid, "resources/read",
                            {"uri": "pushgo://receipts/mcp-event"}, rid=5)
    assert receipt_of(doc["result"])["stopped_reason"] == "event_closed"
    templates = (await legacy_call(http, sid, "resources/templates/list", rid=6))["result"]
    assert "pushgo://receipts/{op_id}" in [t["uriTemplate"]
                                           for t in templates["resourceTemplates"]]


def _modern(method: str, params: dict[str, Any], rid: int = 1) -> dict[str, Any]:
    body, headers = modern_request(method, params, rid=rid)
    return {"content": body, "headers": headers}


