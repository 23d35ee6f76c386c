"""The official Python SDK's OAuthClientProvider against pushgo over real HTTP: discovery
(RFC 9728, RFC 8414), dynamic registration, the authorize page filled in and posted like a
browser would, PKCE + ``resource`` + ``iss`` checks, the token exchange, a message sent
without any channel password that reaches a private device, and a refresh."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

from pushgo.app import Gateway
from tests.helpers import PASSWORD, pull
from tests.live import ServerProcess, hypercorn_server
from tests.oauth_helpers import (  # noqa: F401
    api_fixture,
    channel,
    clock_fixture,
    oauth_gateway,
    oauth_settings,
)

CALLBACK = "http://127.0.0.1:47123/callback"
FORM = "application/x-www-form-urlencoded"


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None
        self.history: list[OAuthToken] = []

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        self.history.append(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class Browser:
    """Stands in for the user: opens the authorize URL, fills in the bind form with the
    channel id and password, submits, and hands the redirect's parameters to the SDK."""

    def __init__(self, channels: list[tuple[str, str]]) -> None:
        self.channels = channels
        self.result: AuthorizationCodeResult | None = None
        self.pages: list[str] = []

    async def redirect(self, url: str) -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            page = await http.get(url)
            assert page.status_code == 200, page.text
            assert page.headers["x-frame-options"] == "DENY"
            self.pages.append(page.text)
            form = re.search(r'<form method="post" action="([^"]+)"', page.text)
            assert form is not None
            fields = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
            assert {"request_id", "csrf_token"} <= set(fields)
            data = list(fields.items())
            for cid, password in self.channels:
                data += [("channel_id", cid), ("password", password)]
            data.append(("decision", "approve"))
            answer = await http.post(urljoin(url, form.group(1)), content=urlencode(data),
                                     headers={"content-type": FORM})
            assert answer.status_code == 303, answer.text
            location = answer.headers["location"]
            assert location.startswith(CALLBACK)
            q = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
            self.result = AuthorizationCodeResult(code=q["code"], state=q.get("state"),
                                                  iss=q.get("iss"))

    async def callback(self) -> AuthorizationCodeResult:
        assert self.result is not None
        return self.result


@asynccontextmanager
async def sdk(url: str, browser: Browser, storage: MemoryStorage, mode: str
              ) -> AsyncIterator[tuple[Client, OAuthClientProvider]]:
    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(client_name="SDK test client",
                                            redirect_uris=[CALLBACK],  # type: ignore[list-item]
                                            grant_types=["authorization_code", "refresh_token"],
                                            response_types=["code"]),
        storage=storage, redirect_handler=browser.redirect, callback_handler=browser.callback)
    async with httpx2.AsyncClient(auth=provider, timeout=15) as http, \
            Client(streamable_http_client(url, http_client=http),
                   mode=mode) as client:
        yield client, provider


async def private_device(api: httpx.AsyncClient, gateway: Gateway) -> tuple[str, str]:
    resp = await api.post("/device/register", json={"platform": "android"})
    key = resp.json()["data"]["device_key"]
    resp = await api.post("/channel/device", json={"device_key": key, "channel_type": "private"})
    assert resp.status_code == 200, resp.text
    return key, await channel(gateway, key)


async def full_flow(url: str, api: httpx.AsyncClient, key: str, cid: str, mode: str) -> None:
    browser = Browser([(cid, PASSWORD)])
    storage = MemoryStorage()
    async with sdk(url, browser, storage, mode) as (client, provider):
        tools = {t.name: t for t in (await client.list_tools()).tools}
        # OAuth callers never see a password field.
        assert "password" not in tools["pushgo.message.send"].input_schema["properties"]
        result = await client.call_tool("pushgo.message.send", {
            "channel_id": cid, "title": "deploy finished", "body": "all green"})
        assert result.is_error is False, result.content
        message_id = result.structured_content["message_id"]
        listed = await client.call_tool("pushgo.channel.list", {})
        assert [c["channel_id"] for c in listed.structured_content["channels"]] == [cid]

        first = storage.tokens
        assert first is not None and first.refresh_token
        assert set((first.scope or "").split()) == {"mcp:tools", "mcp:channels:manage"}
        assert storage.client is not None and storage.client.client_id.startswith("pgc_")
        # The access token is due: the SDK refreshes it before the next request.
        provider.context.token_expiry_time = time.time() - 1
        again = await client.call_tool("pushgo.message.send", {
            "channel_id": cid, "title": "second"})
        assert again.is_error is False, again.content
        second = storage.tokens
        assert second is not None and second.access_token != first.access_token
        assert second.refresh_token and second.refresh_token != first.refresh_token
    assert len(browser.pages) == 1  # one consent; the refresh needed no browser
    assert browser.pages[0].count('name="channel_id"') >= 1
    items = await pull(api, key)
    assert [i["payload"]["title"] for i in items] == ["deploy finished", "second"]
    assert items[0]["payload"]["message_id"] == message_id


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_the_sdk_completes_the_oauth_flow_and_sends_without_a_password(gateway, api, mode):
    key, cid = await private_device(api, gateway)
    async with hypercorn_server(gateway) as base:
        await full_flow(base + "/mcp", api, key, cid, mode)


@pytest.mark.slow
async def test_the_sdk_completes_the_flow_against_pushgo_serve(tmp_path, anyio_backend):
    server = ServerProcess({"PUSHGO_MCP_ENABLED": "true",
                            "PUSHGO_DB_URL": f"sqlite:///{tmp_path}/serve.db",
                            "PUSHGO_ASYNC_BACKEND": anyio_backend,
                            "PUSHGO_LOG_LEVEL": "warning"}, str(tmp_path / "serve.log"))
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as api:
            resp = await api.post("/device/register", json={"platform": "android"})
            key = resp.json()["data"]["device_key"]
            await api.post("/channel/device", json={"device_key": key, "channel_type": "private"})
            resp = await api.post("/channel/subscribe", json={
                "device_key": key, "channel_name": "serve", "password": PASSWORD})
            cid = resp.json()["data"]["channel_id"]
            await full_flow(server.url + "/mcp", api, key, cid, "legacy")
            meta = (await api.get("/.well-known/oauth-authorization-server")).json()
            assert meta["issuer"] == server.url
    finally:
        assert server.terminate() == 0, server.log()
