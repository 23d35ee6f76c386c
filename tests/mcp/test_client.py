"""/mcp driven by the official Python SDK client (``mcp`` on PyPI) over a real server, in both
protocol eras: listing tools, sending a message that reaches a private device, business
errors as ``isError`` results, resources."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import ReadResourceResult, TextResourceContents

from pushgo.app import Gateway
from tests.helpers import PASSWORD, pull
from tests.live import hypercorn_server
from tests.mcp_helpers import (  # noqa: F401
    AUTH,
    LEGACY_TOOLS,
    api_fixture,
    mcp_settings,
    private_device_on_channel,
)

MODES = ["legacy", "2026-07-28"]



@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def sdk_client(gateway: Gateway, mode: str) -> AsyncIterator[Client]:
    async with hypercorn_server(gateway) as base, \
            httpx2.AsyncClient(headers=AUTH, timeout=10) as http:
        transport = streamable_http_client(base + "/mcp", http_client=http)
        async with Client(transport, mode=mode) as client:
            yield client


def text_of(result: Any) -> dict[str, Any]:
    """The JSON text mirroring a result's structured content (send tools add a summary)."""
    block = result.content[0]
    doc: dict[str, Any] = json.loads(block.text)
    return doc


def resource_text(result: ReadResourceResult) -> str:
    """The text of a resource read that has one text content."""
    (content,) = result.contents
    assert isinstance(content, TextResourceContents), content
    return content.text


async def test_the_sdk_lists_exactly_the_legacy_tools_in_legacy_mode(gateway, mode):
    async with sdk_client(gateway, mode) as client:
        tools = (await client.list_tools()).tools
    assert {t.name for t in tools} == LEGACY_TOOLS
    for tool in tools:
        assert tool.input_schema["additionalProperties"] is False
        assert tool.output_schema is not None
        assert tool.annotations is not None
    send = next(t for t in tools if t.name == "pushgo.message.send")
    assert send.input_schema["required"][:3] == ["channel_id", "password", "title"]
    assert send.annotations is not None
    assert send.annotations.read_only_hint is False
    assert send.annotations.destructive_hint is False


async def test_a_message_sent_through_the_sdk_reaches_a_private_device(gateway, api, mode):
    key, cid = await private_device_on_channel(gateway, api)
    async with sdk_client(gateway, mode) as client:
        result = await client.call_tool("pushgo.message.send", {
            "channel_id": cid, "password": PASSWORD, "title": "build finished",
            "body": "all green", "severity": "high"})
    assert result.is_error is False
    out = result.structured_content
    assert out["channel_id"] == cid and out["accepted"] is True
    assert text_of(result) == out
    (item,) = await pull(api, key)
    assert item["payload"]["message_id"] == out["message_id"]
    assert item["payload"]["title"] == "build finished"


async def test_a_wrong_password_is_an_error_result_with_password_mismatch(gateway, api, mode):
    _key, cid = await private_device_on_channel(gateway, api)
    async with sdk_client(gateway, mode) as client:
        result = await client.call_tool("pushgo.message.send", {
            "channel_id": cid, "password": "not-the-password", "title": "x"})
    assert result.is_error is True
    assert result.structured_content["error_code"] == "password_mismatch"
    assert text_of(result)["error_code"] == "password_mismatch"


async def test_events_and_things_run_their_lifecycle_through_the_sdk(gateway, api, mode):
    key, cid = await private_device_on_channel(gateway, api)
    base = {"channel_id": cid, "password": PASSWORD}
    async with sdk_client(gateway, mode) as client:
        created = await client.call_tool("pushgo.event.create", {
            **base, "event_time": 1_710_000_000, "title": "deploy", "status": "running",
            "message": "step 1", "severity": "normal"})
        assert created.is_error is False, created.content
        eid = created.structured_content["event_id"]
        closed = await client.call_tool("pushgo.event.close", {
            **base, "event_id": eid, "event_time": 1_710_000_100, "status": "done",
            "message": "ok", "severity": "normal"})
        assert closed.is_error is False, closed.content
        again = await client.call_tool("pushgo.event.update", {
            **base, "event_id": eid, "event_time": 1_710_000_200, "status": "x",
            "message": "y", "severity": "low"})
        assert again.structured_content["error_code"] == "event_closed"
        thing = await client.call_tool("pushgo.thing.create", {
            **base, "observed_at": 1_710_000_000, "title": "server-1"})
        tid = thing.structured_content["thing_id"]
        for action in ("update", "archive", "delete"):
            res = await client.call_tool(f"pushgo.thing.{action}", {
                **base, "thing_id": tid, "observed_at": 1_710_000_300})
            assert res.is_error is False, (action, res.content)
    assert len(await pull(api, key)) == 6


async def test_channel_tools_in_legacy_mode_answer_oauth_required(gateway, mode):
    async with sdk_client(gateway, mode) as client:
        for name, args in [("pushgo.channel.bind.start", {}),
                           ("pushgo.channel.bind.status", {"bind_session_id": "x"}),
                           ("pushgo.channel.list", {}),
                           ("pushgo.channel.unbind", {"channel_id": "0" * 26})]:
            result = await client.call_tool(name, args)
            assert result.is_error is True, name
            assert result.structured_content["error_code"] == "oauth_required"
            assert "OAuth" in result.structured_content["error"]


async def test_the_sdk_reads_the_channel_resources(gateway, api, mode):
    _key, cid = await private_device_on_channel(gateway, api)
    async with sdk_client(gateway, mode) as client:
        await client.call_tool("pushgo.message.send", {
            "channel_id": cid, "password": PASSWORD, "title": "hello"})
        listed = await client.list_resources()
        # "Authorized channels" is always empty without OAuth: legacy mode does not list it.
        assert [str(r.uri) for r in listed.resources] == []
        templates = await client.list_resource_templates()
        assert [t.uri_template for t in templates.resource_templates] == [
            "pushgo://channels/{channel_id}", "pushgo://operations/{op_id}",
            "pushgo://receipts/{op_id}"]
        channels = await client.read_resource("pushgo://channels")
        assert json.loads(resource_text(channels))["channels"] == []
        one = await client.read_resource(f"pushgo://channels/{cid}")
    doc = json.loads(resource_text(one))
    assert doc["channel"]["channel_id"] == cid
    assert [m["title"] for m in doc["recent_messages"]] == ["hello"]
    assert "password_hash" not in resource_text(one)
