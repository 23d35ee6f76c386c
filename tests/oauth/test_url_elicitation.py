"""URL-mode elicitation of ``pushgo.channel.bind.start`` with the official Python SDK client
over a real server, in both protocol eras: the client is asked to open the bind page itself
(``elicitation/create``, mode ``url``), the user (a stand-in posting the page's form) binds a
second channel there, and the tool answers with the channels now bound; the initialize era
also sends ``notifications/elicitation/complete``. A user who declines leaves the session
pending, with its ``bind_url``. And resource subscriptions through the SDK: an operation's
updates on the session's GET stream (initialize era) and through ``Client.listen``
(2026-07-28)."""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode, urljoin

import anyio
import httpx
import httpx2
import mcp_types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from pushgo.protocol import jsonrpc
from pushgo.service import status as status_module
from tests.helpers import PASSWORD, pull
from tests.live import hypercorn_server
from tests.mcp.test_streams import Stream
from tests.oauth.test_sdk import Browser, MemoryStorage, private_device, sdk
from tests.oauth_helpers import (  # noqa: F401
    api_fixture,
    browser_fixture,
    channel,
    clock_fixture,
    hidden,
    mcp_body,
    mcp_headers,
    oauth_gateway,
    oauth_settings,
    open_page,
    signed_in,
    submit,
)

MODES = ["legacy", "2026-07-28"]
FORM = "application/x-www-form-urlencoded"


class User:
    """Answers the client's URL elicitation: opens the page and binds ``channel_id`` (or
    declines), as a person in a browser would."""

    def __init__(self, channel_id: str, *, decline: bool = False) -> None:
        self.channel_id = channel_id
        self.decline = decline
        self.asked: list[Any] = []

    async def elicit(self, _ctx: Any, params: Any) -> mcp_types.ElicitResult:
        self.asked.append(params)
        if self.decline:
            return mcp_types.ElicitResult(action="decline")
        async with httpx.AsyncClient(timeout=10) as http:
            page = await http.get(params.url)
            assert page.status_code == 200, page.text
            form = [("request_id", hidden(page.text, "request_id")),
                    ("csrf_token", hidden(page.text, "csrf_token")),
                    ("lang", hidden(page.text, "lang")),
                    ("channel_id", self.channel_id), ("password", PASSWORD)]
            done = await http.post(urljoin(params.url, "/mcp/bind/session"),
                                   content=urlencode(form), headers={"content-type": FORM})
            assert done.status_code == 200, done.text
        return mcp_types.ElicitResult(action="accept")


@asynccontextmanager
async def sdk_signed_in(base: str, api: httpx.AsyncClient, cid: str, mode: str,
                    user: User | None, heard: list[Any]) -> AsyncIterator[Client]:
    """An SDK client signed in (OAuth, ``cid`` bound), with an elicitation callback when
    ``user`` is given, recording what the server notified."""
    browser, storage = Browser([(cid, PASSWORD)]), MemoryStorage()
    async with sdk(base + "/mcp", browser, storage, mode) as (first, _provider):
        await first.list_tools()  # sign in once: the tokens stay in storage
    assert storage.tokens is not None

    async def on_message(message: Any) -> None:
        heard.append(message)

    headers = {"authorization": f"Bearer {storage.tokens.access_token}"}
    extra: dict[str, Any] = {"elicitation_callback": user.elicit} if user else {}
    async with httpx2.AsyncClient(headers=headers, timeout=15) as http, \
            Client(streamable_http_client(base + "/mcp", http_client=http), mode=mode,
                   message_handler=on_message, **extra) as client:
        yield client


@pytest.mark.parametrize("mode", MODES)
async def test_bind_start_asks_the_client_to_open_the_page_and_answers_when_bound(
        gateway, api, mode):
    key, cid = await private_device(api, gateway)
    other = await channel(gateway, key, name="second")
    user, heard = User(other), list[Any]()
    async with hypercorn_server(gateway) as base, \
            sdk_signed_in(base, api, cid, mode, user, heard) as client:
        result = await client.call_tool("pushgo.channel.bind.start", {})
        assert result.is_error is False, result.content
        out = result.structured_content
        sent = await client.call_tool("pushgo.message.send", {"channel_id": other,
                                                              "title": "now bound"})
        assert sent.is_error is False, sent.content
    (asked,) = user.asked
    assert asked.mode == "url" and asked.url == out["bind_url"]
    assert "password" in asked.message
    assert (out["status"], out["elicitation"], out["action"]) == ("completed", "accept", "bind")
    assert out["channel_id"] == other and out["channel_name"] == "second"
    assert {c["channel_id"] for c in out["channels"]} == {cid, other}
    completes = [m for m in heard if getattr(m, "method", None)
                 == "notifications/elicitation/complete"]
    if mode == "legacy":
        assert asked.elicitation_id == out["bind_session_id"]
        assert [m.params.elicitation_id for m in completes] == [out["bind_session_id"]]
    else:
        assert completes == []  # 2026-07-28 has no such notification: the answer says it
    assert [i["payload"]["title"] for i in await pull(api, key)] == ["now bound"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_user_who_declines_leaves_the_session_pending_with_its_url(gateway, api, mode):
    key, cid = await private_device(api, gateway)
    other = await channel(gateway, key, name="second")
    user = User(other, decline=True)
    async with hypercorn_server(gateway) as base, \
            sdk_signed_in(base, api, cid, mode, user, []) as client:
        out = (await client.call_tool("pushgo.channel.bind.start", {})).structured_content
    assert (out["status"], out["elicitation"]) == ("pending", "decline")
    assert out["bind_url"].startswith(base + "/mcp/bind/session?bind_session_id=")
    assert "channels" not in out


async def test_a_client_without_url_elicitation_gets_the_bind_url(gateway, api):
    _key, cid = await private_device(api, gateway)
    async with hypercorn_server(gateway) as base, \
            sdk_signed_in(base, api, cid, "legacy", None, []) as client:
        out = (await client.call_tool("pushgo.channel.bind.start", {})).structured_content
    assert set(out) == {"bind_session_id", "bind_url", "expires_at", "poll_after_ms"}


@pytest.mark.parametrize("mode", MODES)
async def test_the_sdk_hears_an_operation_until_it_is_done(gateway, api, mode, monkeypatch):
    monkeypatch.setattr(status_module, "POLL_S", 0.05)  # a device's pull is seen at the poll
    key, cid = await private_device(api, gateway)
    heard: list[Any] = []
    uri = "pushgo://operations/op-watched"
    async with hypercorn_server(gateway) as base, \
            sdk_signed_in(base, api, cid, mode, None, heard) as client:
        await client.call_tool("pushgo.message.send", {"channel_id": cid, "title": "x",
                                                       "op_id": "op-watched"})
        if mode == "legacy":
            caps = client.server_capabilities
            assert caps.resources is not None and caps.resources.subscribe is True
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                await client.subscribe_resource(uri)
            await pull(api, key)
            with anyio.fail_after(5):
                while not any(_updated(m, uri) for m in heard):
                    await anyio.sleep(0.01)
        else:
            async with client.listen(resource_subscriptions=[uri]) as sub:
                assert list(sub.honored.resource_subscriptions or []) == [uri]
                await pull(api, key)
                with anyio.fail_after(5):
                    async for event in sub:
                        assert getattr(event, "uri", None) == uri, event
                        break


def _updated(message: Any, uri: str) -> bool:
    return getattr(message, "method", None) == "notifications/resources/updated" \
        and str(message.params.uri) == uri



def _bind_call(access_token: str, rid: int, **params: Any) -> tuple[bytes, dict[str, str]]:
    name = "pushgo.channel.bind.start"
    body = json.loads(mcp_body("tools/call", {"name": name, "arguments": {}, **params}))
    body["id"] = rid
    body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = {
        "elicitation": {"url": {}}}
    return json.dumps(body).encode(), mcp_headers(access_token, "tools/call", name)


async def test_the_2026_wire_asks_with_input_required_and_checks_the_state_it_gets_back(
        gateway, http):
    first, second = await channel(gateway, name="first"), await channel(gateway, name="second")
    at = (await signed_in(gateway, http, first))["access_token"]
    body, headers = _bind_call(at, 1)
    result = (await http.post("/mcp", content=body, headers=headers)).json()["result"]
    assert result["resultType"] == "input_required"
    ((key, asked),) = result["inputRequests"].items()
    assert asked["method"] == "elicitation/create"
    assert set(asked["params"]) == {"mode", "message", "url"}  # no elicitationId at 2026-07-28
    url, state = asked["params"]["url"], result["requestState"]
    page = await open_page(http, url)
    assert (await submit(http, page, [(second, PASSWORD)],
                         action="/mcp/bind/session")).status_code == 200
    body, headers = _bind_call(at, 2, inputResponses={key: {"action": "accept"}},
                               requestState=state)
    done = (await http.post("/mcp", content=body, headers=headers)).json()["result"]
    assert done["resultType"] == "complete" and done["isError"] is False
    out = done["structuredContent"]
    assert (out["status"], out["channel_id"], out["bind_url"]) == ("completed", second, url)
    assert {c["channel_id"] for c in out["channels"]} == {first, second}
    body, headers = _bind_call(at, 3, inputResponses={key: {"action": "accept"}},
                               requestState="not-" + state)
    bad = await http.post("/mcp", content=body, headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == jsonrpc.INVALID_PARAMS
    stranger = (await signed_in(gateway, http, second))["access_token"]
    body, headers = _bind_call(stranger, 4, inputResponses={key: {"action": "accept"}},
                               requestState=state)
    theirs = (await http.post("/mcp", content=body, headers=headers)).json()["result"]
    assert theirs["structuredContent"]["error_code"] == "bind_session_not_found"


async def test_an_initialize_era_client_that_refuses_the_request_gets_the_bind_url(
        gateway, http):
    first = await channel(gateway, name="first")
    at = (await signed_in(gateway, http, first))["access_token"]
    # The token was issued in process for 127.0.0.1:6666: the live server is reached as that.
    headers = {"authorization": f"Bearer {at}", "content-type": "application/json",
               "accept": "application/json, text/event-stream", "host": "127.0.0.1:6666"}
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "clientInfo": {"name": "t", "version": "1"},
        "capabilities": {"elicitation": {"url": {}}}}}
    async with hypercorn_server(gateway) as base, \
            httpx.AsyncClient(base_url=base, timeout=5) as c:
        opened = await c.post("/mcp", json=init, headers=headers)
        assert opened.status_code == 200, (opened.status_code, opened.text, opened.headers)
        session = {**headers, "mcp-session-id": opened.headers["mcp-session-id"],
                   "mcp-protocol-version": "2025-11-25"}
        await c.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                     headers=session)
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "pushgo.channel.bind.start", "arguments": {}}}
        async with c.stream("POST", "/mcp", json=call, headers=session) as resp:
            assert resp.headers["content-type"] == "text/event-stream"
            stream = Stream(resp)
            asked = await stream.next_message()
            assert asked["method"] == "elicitation/create"
            assert asked["params"]["mode"] == "url"
            refused = await c.post("/mcp", headers=session, json={
                "jsonrpc": "2.0", "id": asked["id"],
                "error": {"code": -32601, "message": "no URL elicitation here"}})
            assert refused.status_code == 202
            answer = await stream.next_message()
    out = answer["result"]["structuredContent"]
    assert (out["status"], out["elicitation"]) == ("pending", "unanswered")
    assert out["bind_url"] == asked["params"]["url"]
    assert out["bind_session_id"] == asked["params"]["elicitationId"]
