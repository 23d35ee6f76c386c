"""URL-mode elicitation of ``pushgo.channel.bind.start`` with the official Python SDK client
over a real server, in both protocol eras: the client is asked to open the bind page itself
(``elicitation/create``, mode ``url``), the user (a stand-in posting the page's form) binds a
second channel there, and the tool answers with the channels now bound; the initialize era
also sends ``notifications/elicitation/complete``. A user who declines leaves the session
pending, with its ``bind_url``. And resource subscriptions through the SDK: an operation's
updates on the session's GET stream (initialize era) and through ``Client.listen``
(2026-07-28)."""

from __future__ import annotations

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

from pushgo.service import status as status_module
from tests.helpers import PASSWORD, pull
from tests.live import hypercorn_server
from tests.oauth.test_sdk import Browser, MemoryStorage, private_device, sdk
from tests.oauth_helpers import (  # noqa: F401
    api_fixture,
    channel,
    clock_fixture,
    hidden,
    oauth_gateway,
    oauth_settings,
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
async def signed_in(base: str, api: httpx.AsyncClient, cid: str, mode: str,
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
            signed_in(base, api, cid, mode, user, heard) as client:
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
            signed_in(base, api, cid, mode, user, []) as client:
        out = (await client.call_tool("pushgo.channel.bind.start", {})).structured_content
    assert (out["status"], out["elicitation"]) == ("pending", "decline")
    assert out["bind_url"].startswith(base + "/mcp/bind/session?bind_session_id=")
    assert "channels" not in out


async def test_a_client_without_url_elicitation_gets_the_bind_url(gateway, api):
    _key, cid = await private_device(api, gateway)
    async with hypercorn_server(gateway) as base, \
            signed_in(base, api, cid, "legacy", None, []) as client:
        out = (await client.call_tool("pushgo.channel.bind.start", {})).structured_content
    assert set(out) == {"bind_session_id", "bind_url", "expires_at", "poll_after_ms"}


@pytest.mark.parametrize("mode", MODES)
async def test_the_sdk_hears_an_operation_until_it_is_done(gateway, api, mode, monkeypatch):
    monkeypatch.setattr(status_module, "POLL_S", 0.05)  # a device's pull is seen at the poll
    key, cid = await private_device(api, gateway)
    heard: list[Any] = []
    uri = "pushgo://operations/op-watched"
    async with hypercorn_server(gateway) as base, \
            signed_in(base, api, cid, mode, None, heard) as client:
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

