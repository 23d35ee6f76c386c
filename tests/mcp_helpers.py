"""Shared pieces of the MCP tests (fixtures are imported under their function names and
requested under their ``name=``): gateway settings, an authorized HTTP API client, a private
device on a channel, raw JSON-RPC bodies and headers for both protocol eras."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from pushgo.app import Gateway
from tests.helpers import call, stored_channel

TOKEN = "gw-token-for-mcp-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
ACCEPT_BOTH = "application/json, text/event-stream"
#: The eight send tools.
SEND_TOOLS = {
    "pushgo.message.send", "pushgo.event.create", "pushgo.event.update", "pushgo.event.close",
    "pushgo.thing.create", "pushgo.thing.update", "pushgo.thing.archive", "pushgo.thing.delete",
}
#: What a legacy-mode caller lists: the send tools and the cancel of a send. The four channel
#: tools need OAuth (they answer ``oauth_required`` there), so legacy mode does not offer them.
LEGACY_TOOLS = SEND_TOOLS | {"pushgo.operation.cancel"}


@pytest.fixture(name="settings_overrides")
def mcp_settings() -> dict[str, Any]:
    return {"mcp_enabled": True, "token": TOKEN, "mcp_auth_mode": "legacy"}


@pytest.fixture(name="api")
async def api_fixture(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP API in process, with the gateway token."""
    transport = httpx.ASGITransport(app=gateway.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://pushgo.test",
                                 headers=AUTH) as c:
        yield c


async def private_device_on_channel(gateway: Gateway, api: httpx.AsyncClient) -> tuple[str, str]:
    """(device_key, channel_id): a device on the private route subscribed to a new channel
    whose password is tests.helpers.PASSWORD."""
    data = await call(api, "/device/register", {"platform": "android"})
    key = str(data["device_key"])
    await call(api, "/channel/device", {"device_key": key, "channel_type": "private"})
    return key, await stored_channel(gateway, key)


def meta(version: str = MODERN, /, **extra: Any) -> dict[str, Any]:
    return {"io.modelcontextprotocol/protocolVersion": version,
            "io.modelcontextprotocol/clientInfo": {"name": "pushgo-tests", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}, **extra}


def modern_request(method: str, params: dict[str, Any] | None = None, *, rid: Any = 1,
                   version: str = MODERN) -> tuple[bytes, dict[str, str]]:
    """A 2026-07-28 request body and the headers a conforming client sends with it."""
    params = dict(params or {})
    params.setdefault("_meta", meta(version))
    headers = {**AUTH, "content-type": "application/json", "accept": ACCEPT_BOTH,
               "mcp-protocol-version": version, "mcp-method": method}
    if method == "tools/call":
        headers["mcp-name"] = params["name"]
    elif method == "resources/read":
        headers["mcp-name"] = params["uri"]
    body = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
    return json.dumps(body).encode(), headers


def legacy_headers(session_id: str | None = None, version: str | None = LEGACY,
                   accept: str = ACCEPT_BOTH) -> dict[str, str]:
    headers = {**AUTH, "content-type": "application/json", "accept": accept}
    if session_id is not None:
        headers["mcp-session-id"] = session_id
    if version is not None:
        headers["mcp-protocol-version"] = version
    return headers


def rpc(method: str, params: dict[str, Any] | None = None, rid: Any = 1) -> bytes:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if rid is not None:
        body["id"] = rid
    if params is not None:
        body["params"] = params
    return json.dumps(body).encode()


def initialize_body(version: str = LEGACY, rid: Any = 0) -> bytes:
    return rpc("initialize", {"protocolVersion": version, "capabilities": {},
                              "clientInfo": {"name": "pushgo-tests", "version": "1"}}, rid)


def sse_messages(text: str) -> list[dict[str, Any]]:
    """The JSON-RPC messages of an SSE body (priming events and comments skipped)."""
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].lstrip() for line in block.split("\n") if line.startswith("data:")]
        joined = "\n".join(data)
        if joined:
            out.append(json.loads(joined))
    return out


@pytest.fixture(name="db_url")
def sqlite_db_url(tmp_path: Any) -> str:
    """Transport tests exercise HTTP and JSON-RPC, not storage: SQLite only."""
    return f"sqlite:///{tmp_path}/pushgo.db"


@pytest.fixture(name="http")
async def http_fixture(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    """/mcp in process, no default headers (each test sends exactly what it means)."""
    transport = httpx.ASGITransport(app=gateway.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:6666") as c:
        yield c


async def open_session(http: httpx.AsyncClient, version: str = LEGACY) -> str:
    resp = await http.post("/mcp", content=initialize_body(version), headers=legacy_headers(
        version=None))
    assert resp.status_code == 200, resp.text
    sid = resp.headers["mcp-session-id"]
    resp = await http.post("/mcp", content=rpc("notifications/initialized", rid=None),
                           headers=legacy_headers(sid, version))
    assert resp.status_code == 202, resp.text
    return sid


async def legacy_call(http: httpx.AsyncClient, sid: str, method: str,
                      params: dict[str, Any] | None = None, rid: Any = 1,
                      version: str = LEGACY) -> dict[str, Any]:
    resp = await http.post("/mcp", content=rpc(method, params, rid),
                           headers=legacy_headers(sid, version))
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    doc: dict[str, Any] = resp.json()
    assert doc["jsonrpc"] == "2.0" and doc["id"] == rid
    return doc


def rpc_error(resp: httpx.Response, status: int, code: int) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text)
    doc: dict[str, Any] = resp.json()
    assert doc["jsonrpc"] == "2.0" and "result" not in doc
    assert doc["error"]["code"] == code, doc
    assert isinstance(doc["error"]["message"], str) and doc["error"]["message"]
    return doc


def slow_channel_list(gateway: Gateway) -> tuple[str, anyio.Event, anyio.Event]:
    """Make ``pushgo.channel.list`` wait forever; returns its name and the events set when a
    call starts and when it is cancelled."""
    started, cancelled = anyio.Event(), anyio.Event()
    assert gateway.mcp is not None
    tools: Any = gateway.mcp.dispatcher.tools  # the gateway's own tool table

    async def slow(_args: dict[str, Any], _ctx: Any) -> dict[str, Any]:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        return {}

    name = "pushgo.channel.list"
    tools._tools[name] = dataclasses.replace(tools._tools[name], handler=slow)
    return name, started, cancelled
