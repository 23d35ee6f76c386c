"""What the MCP send tools tell an assistant: a ``summary`` text content item and the
structured ``delivery`` field (devices, routes, what failed, what is pending and why), for a
private device that is offline, a provider this gateway has no credentials for, and a
provider that is down; the structured content always validates against the tool's
outputSchema."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import pytest

from pushgo.app import Gateway
from pushgo.mcp import progress
from pushgo.mcp.summary import describe, pending
from pushgo.store import providers as provider_store
from tests.helpers import PASSWORD, call, pull, stored_channel
from tests.mcp_helpers import (  # noqa: F401
    AUTH,
    api_fixture,
    legacy_call,
    mcp_settings,
    open_session,
    private_device_on_channel,
)

APNS_TOKEN = "ab" * 32


@pytest.fixture(autouse=True)
def patient_glance(monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy test machine must not turn "failed" into "still on the way": the tools look
    until every delivery is accounted for, which here is always soon."""
    monkeypatch.setattr(progress, "GLANCE_S", 30.0)


def _mcp(gateway: Gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway.asgi),
                             base_url="http://127.0.0.1:6666", headers=AUTH)


async def send_tool(http: httpx.AsyncClient, cid: str, **extra: Any) -> dict[str, Any]:
    sid = await open_session(http)
    doc = await legacy_call(http, sid, "tools/call", {"name": "pushgo.message.send", "arguments": {
        "channel_id": cid, "password": PASSWORD, "title": "build finished", **extra}})
    result: dict[str, Any] = doc["result"]
    assert result["isError"] is False, result
    tools = (await legacy_call(http, sid, "tools/list"))["result"]["tools"]
    schema = next(t for t in tools if t["name"] == "pushgo.message.send")["outputSchema"]
    jsonschema.Draft202012Validator(schema).validate(result["structuredContent"])
    summary = result["structuredContent"]["summary"]
    assert result["content"][1] == {"type": "text", "text": summary}
    return result


async def apns_device(api: httpx.AsyncClient) -> str:
    data = await call(api, "/device/register", {"platform": "ios"})
    key = str(data["device_key"])
    await call(api, "/channel/device",
               {"device_key": key, "channel_type": "apns", "provider_token": APNS_TOKEN})
    return key


async def test_an_offline_private_device_is_named_as_what_the_send_waits_for(gateway, api):
    key, cid = await private_device_on_channel(gateway, api)
    async with _mcp(gateway) as http:
        result = await send_tool(http, cid)
    out = result["structuredContent"]
    assert out["delivery"]["devices"] == 1
    assert out["delivery"]["pending"] == [
        {"route": "private", "deliveries": 1, "reason": "device_offline"}]
    assert out["delivery"]["done"] is True  # nothing left for a provider
    assert out["summary"].startswith(f"Accepted for 1 device on channel {cid} "
                                     "(1 via a private connection).")
    assert "private device that is offline" in out["summary"]
    assert "reconnects" in out["summary"]
    assert len(await pull(api, key)) == 1  # and it is there when the device comes


async def test_a_provider_without_credentials_is_named_as_the_reason_it_failed(gateway, api):
    key = await apns_device(api)
    cid = await stored_channel(gateway, key)
    async with _mcp(gateway) as http:
        out = (await send_tool(http, cid))["structuredContent"]
    assert out["delivery"]["failures"] == {"provider_not_configured": 1}, out
    assert out["delivery"]["pending"] == []
    assert "1 failed: this gateway has no credentials for that provider" in out["summary"]
    assert "(1 via APNs)" in out["summary"]


async def test_a_provider_that_is_down_is_named_with_its_last_error(pgateway, providers):
    gateway: Gateway = pgateway
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway.asgi),
                                 base_url="http://pushgo.test", headers=AUTH) as api:
        key = await apns_device(api)
    cid = await stored_channel(gateway, key)
    providers.apns.go_down()
    now = gateway.ctx.now()
    await gateway.store.run(provider_store.record, "apns", "open", "ConnectionRefused",
                            now - 5000, now)
    async with _mcp(gateway) as http:
        out = (await send_tool(http, cid))["structuredContent"]
    (item,) = out["delivery"]["pending"]
    assert item["route"] == "apns" and item["reason"] == "provider_unavailable"
    assert item["last_error"] == "ConnectionRefused" and item["deliveries"] == 1
    assert "because APNs is unavailable (last error: ConnectionRefused; since " \
        in out["summary"]
    assert "retries automatically" in out["summary"]
    providers.apns.come_up()
    await gateway.store.run(provider_store.record, "apns", "closed", None, now, now)


def test_the_words_cover_every_state() -> None:
    doc = {"total": 5, "states": {"queued": 3, "sent": 1, "failed": 1, "expired": 0},
           "failures": {"BadDeviceToken": 1},
           "routes": {"apns": {"queued": 2, "sent": 1, "failed": 0, "expired": 0},
                      "fcm": {"queued": 1, "sent": 0, "failed": 1, "expired": 0}},
           "waiting": {"apns": {"state": "retrying", "last_error": "TooManyRequests",
                                "deliveries": 1}}}
    assert pending(doc) == [
        {"route": "apns", "deliveries": 1, "reason": "retrying", "last_error": "TooManyRequests"},
        {"route": "apns", "deliveries": 1, "reason": "sending"},
        {"route": "fcm", "deliveries": 1, "reason": "sending"}]
    text = describe(doc, "C1")
    assert text.startswith("Accepted for 5 devices on channel C1 (3 via APNs, 2 via FCM). "
                           "1 delivered. 1 failed: BadDeviceToken (1).")
    assert "to be retried on APNs after a temporary failure (last error: TooManyRequests)" in text
    assert "still on the way to FCM" in text
    nobody = {"total": 0, "states": {"queued": 0}, "failures": {}, "routes": {}}
    assert "no device is subscribed to channel C1" in describe(nobody, "C1")
