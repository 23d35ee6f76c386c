"""The authorize page and the bind flow, driven over HTTP like a browser and an MCP client:
page safety headers and languages, inline errors, several channels at once, deny, the live
check and its rate limits; then /mcp with the token (sends without a password, only to bound
channels, scopes), the bind tools with their pages, and list_changed on an open stream."""

from __future__ import annotations

import json
import re
from typing import Any

import anyio
import httpx
import pytest

from pushgo.app import Gateway
from tests.helpers import PASSWORD, pull
from tests.live import hypercorn_server
from tests.oauth_helpers import (  # noqa: F401
    AUTH,
    BASE,
    REDIRECT,
    TOKEN,
    api_fixture,
    authorize_query,
    browser_fixture,
    call_tool,
    channel,
    clock_fixture,
    exchange,
    hidden,
    mcp_body,
    mcp_headers,
    oauth_gateway,
    oauth_settings,
    open_page,
    pkce,
    redirect_params,
    register,
    signed_in,
    submit,
    tool_result,
)


async def private_device(api: httpx.AsyncClient) -> str:
    resp = await api.post("/device/register", json={"platform": "android"})
    key = str(resp.json()["data"]["device_key"])
    resp = await api.post("/channel/device", json={"device_key": key, "channel_type": "private"})
    assert resp.status_code == 200, resp.text
    return key


async def new_page(http: httpx.AsyncClient, **query: Any) -> tuple[dict[str, Any], Any, str]:
    client = await register(http)
    verifier, challenge = pkce()
    page = await open_page(http, "/oauth/authorize",
                           authorize_query(client["client_id"], challenge, **query))
    return client, page, verifier


# --- the authorize page -------------------------------------------------------------------------


async def test_the_authorize_page_is_a_plain_form_nobody_can_frame(http):
    _client, page, _v = await new_page(http)
    resp = page.response
    assert resp.headers["x-frame-options"] == "DENY"
    csp = resp.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert "form-action 'self' http://127.0.0.1:9999" in csp
    assert resp.headers["cache-control"] == "no-store"
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith(f"pgcsrf_{page.request_id}=") and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    html = page.html
    assert '<form method="post" action="/oauth/authorize"' in html
    assert 'name="channel_id"' in html and 'type="password" name="password"' in html
    assert 'name="decision" value="approve"' in html
    assert "Test Assistant" in html and REDIRECT in html and "mcp:channels:manage" in html
    # No third-party assets: nothing is loaded from anywhere.
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script nonce=" in html and 'lang="en"' in html


@pytest.mark.parametrize(("query", "headers"), [
    ({"lang": "zh-CN"}, {}),
    ({"ui_locales": "fr zh-CN"}, {}),
    ({}, {"accept-language": "zh-Hans-CN,zh;q=0.9,en;q=0.5"}),
])
async def test_the_page_speaks_simplified_chinese_when_asked(http, query, headers):
    client = await register(http)
    q = authorize_query(client["client_id"], pkce()[1], **query)
    resp = await http.get("/oauth/authorize", params=q, headers=headers)
    assert resp.status_code == 200
    assert 'lang="zh-CN"' in resp.text and "频道 ID" in resp.text and "授权" in resp.text


async def test_a_wrong_password_is_shown_inline_and_the_form_can_be_fixed(gateway, http):
    cid = await channel(gateway)
    client, page, verifier = await new_page(http)
    resp = await submit(http, page, [(cid.lower(), "wrong-password")], decision="approve")
    assert resp.status_code == 400
    assert 'role="alert"' in resp.text and "Wrong channel ID or password." in resp.text
    assert f'value="{cid}"' in resp.text  # the id is kept (normalized)
    assert "wrong-password" not in resp.text  # a password is never written back
    params = redirect_params(await submit(http, page, [(cid, PASSWORD)]))
    tokens = await exchange(http, client["client_id"], params["code"], verifier)
    assert tokens["scope"] == "mcp:tools mcp:channels:manage"


async def test_several_channels_are_bound_in_one_authorization(gateway, http):
    a, b = await channel(gateway, name="alpha"), await channel(gateway, name="beta")
    client, page, verifier = await new_page(http)
    more = await submit(http, page, [(a, PASSWORD)], add_row="1")
    assert more.status_code == 200 and more.text.count('name="channel_id"') == 2
    resp = await submit(http, page, [(a, PASSWORD), ("", ""), (b, "")], decision="approve")
    assert resp.status_code == 400 and "Enter both the channel ID and the password." in resp.text
    none = await submit(http, page, [], decision="approve")
    assert none.status_code == 400 and "Enter at least one channel." in none.text
    params = redirect_params(await submit(http, page, [(a, PASSWORD), (b, PASSWORD)]))
    tokens = await exchange(http, client["client_id"], params["code"], verifier)
    listed = await tool_result(http, tokens["access_token"], "pushgo.channel.list", {})
    channels = listed["structuredContent"]["channels"]
    assert sorted((c["channel_id"], c["channel_name"], c["status"]) for c in channels) == \
        sorted([(a, "alpha", "active"), (b, "beta", "active")])


async def test_deny_goes_back_with_access_denied_state_and_iss(http):
    _client, page, _v = await new_page(http, state="s-123")
    params = redirect_params(await submit(http, page, [], decision="deny"))
    assert params == {"error": "access_denied", "error_description": "the user denied access",
                      "state": "s-123", "iss": BASE}
    again = await submit(http, page, [], decision="deny")
    assert again.status_code == 400 and "location" not in again.headers


async def test_the_live_check_validates_each_pair_for_its_page_only(gateway, http):
    cid = await channel(gateway, name="alerts")
    _client, page, _v = await new_page(http)

    async def check(channel_id: str, password: str, **over: str) -> httpx.Response:
        body = {"request_id": page.request_id, "csrf_token": page.csrf_token,
                "channel_id": channel_id, "password": password, **over}
        resp: httpx.Response = await http.post("/oauth/channel/validate", json=body)
        return resp

    ok = await check(cid, PASSWORD)
    assert ok.json() == {"valid": True, "channel_id": cid, "channel_name": "alerts"}
    bad = (await check(cid, "nope-nope-nope")).json()
    assert bad["valid"] is False and bad["error_code"] == "channel_password_mismatch"
    assert (await check("not-an-id", PASSWORD)).json()["error_code"] == "invalid_channel_id"
    zh = (await check(cid, "nope-nope-nope", lang="zh-CN")).json()
    assert zh["message"] == "频道 ID 或密码错误。"
    forged = await check(cid, PASSWORD, csrf_token="forged")
    assert forged.status_code == 403 and forged.json()["valid"] is False


async def test_password_attempts_are_limited_per_channel_and_per_address(gateway, http):
    target = await channel(gateway)
    _client, page, _v = await new_page(http)
    body = {"request_id": page.request_id, "csrf_token": page.csrf_token}
    answers = []
    for i in range(6):
        resp = await http.post("/oauth/channel/validate",
                               json={**body, "channel_id": target, "password": f"guess-{i}-x"})
        answers.append(resp.status_code)
    # Five wrong passwords for one channel from one address (pushgo.service.throttle).
    assert answers[:5] == [200] * 5 and answers[5] == 429
    limited = await http.post("/oauth/channel/validate",
                              json={**body, "channel_id": target, "password": PASSWORD})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    # The form is held back by the same limit: no password check happens.
    resp = await submit(http, page, [(target, PASSWORD)], decision="approve")
    assert resp.status_code == 429 and "Too many attempts" in resp.text
    assert int(resp.headers["retry-after"]) >= 1
    # Per address: other channels still count against this client's address.
    others = [await channel(gateway, name=f"c{i}") for i in range(16)]
    statuses = []
    for cid in others:
        resp = await http.post("/oauth/channel/validate",
                               json={**body, "channel_id": cid, "password": "guess-guess"})
        statuses.append(resp.status_code)
    # Twenty failures from one address, then a slow trickle (refused attempts cost nothing).
    assert statuses == [200] * 15 + [429], statuses


async def test_opening_pages_is_limited_per_address(http):
    client = await register(http)
    query = authorize_query(client["client_id"], pkce()[1])
    statuses = [(await http.get("/oauth/authorize", params=query)).status_code
                for _ in range(62)]
    assert statuses[:60] == [200] * 60 and statuses[-1] == 429


# --- /mcp with the token ------------------------------------------------------------------------


async def test_an_oauth_send_needs_no_password_and_reaches_only_bound_channels(gateway, http, api):
    key = await private_device(api)
    bound = await channel(gateway, key)
    other = await channel(gateway, key, name="other")
    session = await signed_in(gateway, http, bound)
    at = session["access_token"]
    sent = await tool_result(http, at, "pushgo.message.send", {"channel_id": bound,
                                                               "title": "from oauth"})
    assert sent["isError"] is False, sent
    (item,) = await pull(api, key)
    assert item["payload"]["title"] == "from oauth"
    with_password = await tool_result(http, at, "pushgo.message.send", {
        "channel_id": bound, "title": "x", "password": PASSWORD})
    assert with_password["isError"] is True
    assert with_password["structuredContent"]["error_code"] == "password_forbidden_in_oauth_mode"
    unbound = await tool_result(http, at, "pushgo.event.create", {
        "channel_id": other, "title": "x", "event_time": 1_710_000_000, "status": "running",
        "message": "step 1", "severity": "normal"})
    assert unbound["structuredContent"]["error_code"] == "channel_not_bound"
    resp = await http.post("/mcp", content=mcp_body("resources/read", {
        "uri": f"pushgo://channels/{other}"}), headers=mcp_headers(at, "resources/read",
                                                                   f"pushgo://channels/{other}"))
    assert resp.json()["error"]["code"] == -32602  # an ungranted channel reads as not found
    resp = await http.post("/mcp", content=mcp_body("resources/read", {
        "uri": f"pushgo://channels/{bound}"}), headers=mcp_headers(at, "resources/read",
                                                                   f"pushgo://channels/{bound}"))
    doc = json.loads(resp.json()["result"]["contents"][0]["text"])
    assert [m["title"] for m in doc["recent_messages"]] == ["from oauth"]


async def test_scopes_are_enforced_with_403_insufficient_scope(gateway, http):
    cid = await channel(gateway)
    tools_only = await signed_in(gateway, http, cid, scope="mcp:tools")
    assert tools_only["scope"] == "mcp:tools"
    resp = await call_tool(http, tools_only["access_token"], "pushgo.channel.list", {})
    assert resp.status_code == 403
    challenge = resp.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="mcp:channels:manage"' in challenge
    assert f'resource_metadata="{BASE}/.well-known/oauth-protected-resource/mcp"' in challenge
    manage_only = await signed_in(gateway, http, cid, scope="mcp:channels:manage")
    resp = await call_tool(http, manage_only["access_token"], "pushgo.message.send",
                           {"channel_id": cid, "title": "x"})
    assert resp.status_code == 403 and 'scope="mcp:tools"' in resp.headers["www-authenticate"]
    ok = await call_tool(http, manage_only["access_token"], "pushgo.channel.list", {})
    assert ok.status_code == 200


# --- the bind tools and their pages -------------------------------------------------------------


async def test_binding_a_channel_through_the_tools_and_the_bind_page(gateway, http, clock):
    first, second = await channel(gateway, name="first"), await channel(gateway, name="second")
    session = await signed_in(gateway, http, first)
    at = session["access_token"]
    before = await tool_result(http, at, "pushgo.message.send", {"channel_id": second,
                                                                 "title": "x"})
    assert before["structuredContent"]["error_code"] == "channel_not_bound"
    started = (await tool_result(http, at, "pushgo.channel.bind.start", {
        "requested_channel_id": second, "lang": "zh-CN"}))["structuredContent"]
    assert started["bind_url"].startswith(f"{BASE}/mcp/bind/session?bind_session_id=")
    assert started["bind_url"].endswith("&lang=zh-CN") and started["poll_after_ms"] == 1500
    sid = started["bind_session_id"]
    status = await tool_result(http, at, "pushgo.channel.bind.status", {"bind_session_id": sid})
    assert status["structuredContent"]["status"] == "pending"

    page = await open_page(http, started["bind_url"])
    assert page.response.headers["x-frame-options"] == "DENY"
    assert f'name="channel_id" value="{second}"' in page.html and "绑定频道" in page.html
    wrong = await submit(http, page, [(second, "bad-password")], action="/mcp/bind/session")
    assert wrong.status_code == 400 and "频道 ID 或密码错误。" in wrong.text
    done = await submit(http, page, [(second, PASSWORD)], action="/mcp/bind/session")
    assert done.status_code == 200 and "second" in done.text
    again = await submit(http, page, [(second, PASSWORD)], action="/mcp/bind/session")
    assert again.status_code == 400  # one-time

    status = (await tool_result(http, at, "pushgo.channel.bind.status",
                                {"bind_session_id": sid}))["structuredContent"]
    assert (status["status"], status["action"], status["channel_id"],
            status["channel_name"]) == ("completed", "bind", second, "second")
    listed = (await tool_result(http, at, "pushgo.channel.list", {}))["structuredContent"]
    assert {c["channel_id"] for c in listed["channels"]} == {first, second}
    sent = await tool_result(http, at, "pushgo.message.send", {"channel_id": second,
                                                               "title": "now bound"})
    assert sent["isError"] is False

    unbound = (await tool_result(http, at, "pushgo.channel.unbind",
                                 {"channel_id": second}))["structuredContent"]
    assert unbound == {"removed": True, "channel_id": second}
    assert (await tool_result(http, at, "pushgo.channel.unbind", {"channel_id": second})
            )["structuredContent"]["removed"] is False
    after = await tool_result(http, at, "pushgo.message.send", {"channel_id": second,
                                                                "title": "x"})
    assert after["structuredContent"]["error_code"] == "channel_not_bound"

    # A revoke session unbinds through its page (the password proves the user's say-so).
    revoke = (await tool_result(http, at, "pushgo.channel.bind.start", {
        "action": "revoke"}))["structuredContent"]
    assert "/mcp/revoke/session?" in revoke["bind_url"]
    rpage = await open_page(http, revoke["bind_url"])
    resp = await submit(http, rpage, [(first, PASSWORD)], action="/mcp/revoke/session")
    assert resp.status_code == 200 and "no longer bound" in resp.text
    listed = (await tool_result(http, at, "pushgo.channel.list", {}))["structuredContent"]
    assert listed["channels"] == []

    # Sessions expire; another client cannot read this one's.
    late = (await tool_result(http, at, "pushgo.channel.bind.start", {}))["structuredContent"]
    other = await signed_in(gateway, http, second)
    foreign = await tool_result(http, other["access_token"], "pushgo.channel.bind.status",
                                {"bind_session_id": late["bind_session_id"]})
    assert foreign["structuredContent"]["error_code"] == "bind_session_not_found"
    clock.advance(11 * 60)  # bind sessions last 10 minutes
    assert (await http.get(late["bind_url"])).status_code == 404
    expired = await tool_result(http, at, "pushgo.channel.bind.status",
                                {"bind_session_id": late["bind_session_id"]})
    assert expired["structuredContent"]["status"] == "expired"
    clock.advance(5 * 60)  # access tokens 15
    stale = await call_tool(http, at, "pushgo.channel.list", {})
    assert stale.status_code == 401
    assert 'error_description="the access token has expired"' in \
        stale.headers["www-authenticate"]


async def test_a_bind_session_returns_to_a_registered_redirect_uri_only(gateway, http):
    cid = await channel(gateway)
    at = (await signed_in(gateway, http, cid))["access_token"]
    bad = await tool_result(http, at, "pushgo.channel.bind.start",
                            {"redirect_uri": "https://evil.example.com/"})
    assert bad["structuredContent"]["error_code"] == "invalid_redirect_uri"
    started = (await tool_result(http, at, "pushgo.channel.bind.start", {
        "redirect_uri": "http://127.0.0.1:5555/callback"}))["structuredContent"]
    page = await open_page(http, started["bind_url"])
    assert "http://127.0.0.1:5555" in page.response.headers["content-security-policy"]
    resp = await submit(http, page, [(cid, PASSWORD)], action="/mcp/bind/session")
    assert resp.status_code == 303
    assert resp.headers["location"] == "http://127.0.0.1:5555/callback"


@pytest.mark.parametrize("settings_overrides", [
    {"mcp_enabled": True, "token": TOKEN, "public_base_url": BASE}])
async def test_list_changed_reaches_an_open_stream_after_a_bind(gateway: Gateway, http):
    first, second = await channel(gateway), await channel(gateway, name="second")
    at = (await signed_in(gateway, http, first))["access_token"]
    started = (await tool_result(http, at, "pushgo.channel.bind.start", {}))["structuredContent"]
    async with hypercorn_server(gateway) as base, httpx.AsyncClient(base_url=base) as live:
        headers = {"authorization": f"Bearer {at}", "content-type": "application/json",
                   "accept": "application/json, text/event-stream"}
        init = await live.post("/mcp", headers=headers, content=json.dumps({
            "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}}}))
        sid = init.headers["mcp-session-id"]
        headers = {**headers, "mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"}
        await live.post("/mcp", headers=headers, content=json.dumps({
            "jsonrpc": "2.0", "method": "notifications/initialized"}))
        got: list[dict[str, Any]] = []
        opened = anyio.Event()

        async def listen() -> None:
            async with live.stream("GET", "/mcp", headers={**headers,
                                                           "accept": "text/event-stream"}) as s:
                assert s.status_code == 200
                opened.set()
                async for line in s.aiter_lines():
                    if line.startswith("data:") and line[5:].strip():
                        got.append(json.loads(line[5:]))
                        return

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(listen)
                await opened.wait()  # subscribed before its response headers went out
                page = await open_page(http, started["bind_url"])
                resp = await submit(http, page, [(second, PASSWORD)],
                                    action="/mcp/bind/session")
                assert resp.status_code == 200, resp.text
    assert got == [{"jsonrpc": "2.0", "method": "notifications/resources/list_changed"}]
