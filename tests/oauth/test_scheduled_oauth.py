"""Scheduled sends for an OAuth MCP caller: ``deliver_at`` on a bound channel, and
``pushgo.operation.cancel`` without a password, on bound channels only."""

from __future__ import annotations

import httpx

from pushgo.app import Gateway
from tests.helpers import PASSWORD, call, pull
from tests.oauth_helpers import (  # noqa: F401
    api_fixture,
    browser_fixture,
    channel,
    clock_fixture,
    mcp_body,
    mcp_headers,
    oauth_gateway,
    oauth_settings,
    signed_in,
    tool_result,
)


async def private_device(api: httpx.AsyncClient) -> str:
    key = str((await call(api, "/device/register", {"platform": "android"}))["device_key"])
    await call(api, "/channel/device", {"device_key": key, "channel_type": "private"})
    return key


async def test_an_oauth_caller_schedules_and_cancels_on_its_bound_channel_only(
        gateway: Gateway, http: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    key = await private_device(api)
    bound = await channel(gateway, key)
    other = await channel(gateway, key, name="other")
    at = (await signed_in(gateway, http, bound))["access_token"]
    resp = await http.post("/mcp", content=mcp_body("tools/list", {}),
                           headers=mcp_headers(at, "tools/list"))
    cancel_tool = {t["name"]: t for t in resp.json()["result"]["tools"]}["pushgo.operation.cancel"]
    assert "password" not in cancel_tool["inputSchema"]["properties"]
    later = gateway.ctx.now() + 3_600_000
    sent = await tool_result(http, at, "pushgo.message.send", {
        "channel_id": bound, "title": "later", "deliver_at": later, "op_id": "o-later"})
    assert sent["isError"] is False and sent["structuredContent"]["deliver_at"] == later
    await call(api, "/message", {"channel_id": other, "password": PASSWORD, "title": "x",
                                 "op_id": "o-other", "deliver_at": later})
    refused = await tool_result(http, at, "pushgo.operation.cancel",
                                {"op_id": "o-other", "channel_id": other})
    assert refused["structuredContent"]["error_code"] == "channel_not_bound"
    with_password = await tool_result(http, at, "pushgo.operation.cancel", {
        "op_id": "o-later", "channel_id": bound, "password": PASSWORD})
    assert with_password["structuredContent"]["error_code"] == "password_forbidden_in_oauth_mode"
    done = await tool_result(http, at, "pushgo.operation.cancel",
                             {"op_id": "o-later", "channel_id": bound})
    assert done["isError"] is False
    assert done["structuredContent"]["outcome"] == "cancelled"
    assert (await call(api, "/deliveries/o-other"))["state"] == "scheduled"
    assert (await call(api, "/deliveries/o-later"))["states"]["cancelled"] == 1
    assert await pull(api, key) == []
