"""The authorize page and the bind/revoke session pages in a real headless Chromium against a
live gateway: the user fills in channel id + password, the page's own script checks the pair
as it is typed, the browser submits and follows the redirect to the client's loopback
redirect URI (code, state, iss), the client exchanges the code; a wrong password leaves the
browser on the page with an inline error; the pages speak Simplified Chinese when asked, and
"deny" goes back with ``access_denied``; a ``bind_url`` from ``pushgo.channel.bind.start``
binds, then a revoke link unbinds, a channel; the product page's seven steps end to end,
the bind page showing the scopes being granted (screenshots in the test's tmp dir)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from pushgo.app import Gateway
from tests.browser import Callback, in_browser, is_png
from tests.helpers import PASSWORD, new_channel
from tests.live import hypercorn_server

TOKEN = "gw-token-for-browser-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}
SCOPE = "mcp:tools mcp:channels:manage"
CHINESE = re.compile(r"[\u4e00-\u9fff]")
APPROVE = "button[name=decision][value=approve]"
ALERT = "[role=alert]"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"mcp_enabled": True, "token": TOKEN}


@pytest.fixture
def db_url(tmp_path: Any) -> str:
    """The pages are the subject here, not storage: SQLite only."""
    return f"sqlite:///{tmp_path}/pushgo.db"


@pytest.fixture
async def base(gateway: Gateway) -> AsyncIterator[str]:
    async with hypercorn_server(gateway) as url:
        yield url


@pytest.fixture
async def api(base: str) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP API over the live server, with the gateway token."""
    async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=15) as c:
        yield c


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """An OAuth client's own HTTP client: no gateway token."""
    async with httpx.AsyncClient(timeout=15) as c:
        yield c


@pytest.fixture
def callback() -> Any:
    with Callback().running() as cb:
        yield cb


class Flow:
    """One OAuth client's view: metadata, a DCR registration with the callback as its redirect
    URI, a PKCE S256 authorize URL, the code exchange."""

    def __init__(self, base: str, redirect_uri: str) -> None:
        self.base = base
        self.redirect_uri = redirect_uri
        self.verifier = secrets.token_urlsafe(48)
        self.state = "st-" + secrets.token_urlsafe(12)
        self.meta: dict[str, Any] = {}
        self.client_id = ""

    async def register(self, http: httpx.AsyncClient, name: str = "Browser Test App") -> None:
        resp = await http.get(self.base + "/.well-known/oauth-authorization-server")
        assert resp.status_code == 200, resp.text
        self.meta = resp.json()
        assert self.meta["issuer"] == self.base
        resp = await http.post(self.meta["registration_endpoint"], json={
            "redirect_uris": [self.redirect_uri], "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
            "client_name": name})
        assert resp.status_code == 201, resp.text
        self.client_id = resp.json()["client_id"]

    def authorize_url(self, **extra: str) -> str:
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(self.verifier.encode()).digest()).rstrip(b"=").decode()
        query = {"response_type": "code", "client_id": self.client_id,
                 "redirect_uri": self.redirect_uri, "state": self.state, "scope": SCOPE,
                 "code_challenge": challenge, "code_challenge_method": "S256",
                 "resource": self.base + "/mcp", **extra}
        return f"{self.meta['authorization_endpoint']}?{urlencode(query)}"

    def answer(self, url: str) -> dict[str, str]:
        """The parameters of the redirect the callback received (each exactly once)."""
        assert url.startswith(self.redirect_uri + "?"), url
        query = parse_qs(urlsplit(url).query)
        assert all(len(v) == 1 for v in query.values()), query
        return {k: v[0] for k, v in query.items()}

    async def exchange(self, http: httpx.AsyncClient, code: str) -> dict[str, Any]:
        resp = await http.post(self.meta["token_endpoint"], data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
            "code_verifier": self.verifier, "client_id": self.client_id,
            "resource": self.base + "/mcp"})
        assert resp.status_code == 200, resp.text
        assert resp.headers["cache-control"] == "no-store"
        return resp.json()  # type: ignore[no-any-return]


@asynccontextmanager
async def mcp_client(base: str, access_token: str) -> AsyncIterator[Client]:
    """The official SDK's client on /mcp with the OAuth access token."""
    async with httpx2.AsyncClient(headers={"authorization": f"Bearer {access_token}"},
                                  timeout=15) as http:
        transport = streamable_http_client(base + "/mcp", http_client=http)
        async with Client(transport, mode="2026-07-28") as client:
            yield client


async def tool(client: Client, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(name, arguments)
    assert result.is_error is False, result
    return dict(result.structured_content or {})


def fill_row(page: Any, channel_id: str, password: str, *, row: int = 0) -> None:
    """Type a channel id and password into one row the way a user does (the password field
    losing focus fires the page's live check)."""
    rows = page.locator("#rows .row")
    rows.nth(row).locator("input[name=channel_id]").fill(channel_id)
    password_input = rows.nth(row).locator("input[name=password]")
    password_input.fill(password)
    password_input.press("Tab")


def live_check(page: Any, css_class: str, *, row: int = 0) -> str:
    """Wait for the live check of a row to finish with ``ok`` or ``error``; its text."""
    out = page.locator("#rows .row").nth(row).locator(f".check.{css_class}")
    out.wait_for(state="visible")
    return str(out.inner_text())


async def test_chromium_authorizes_a_client_and_follows_the_redirect(base, api, http, callback):
    cid = await new_channel(api, name="build-bot")
    other = await new_channel(api, name="nightly", password="another-pass-2")
    flow = Flow(base, callback.uri)
    await flow.register(http)
    url = flow.authorize_url()

    def user(context: Any) -> dict[str, Any]:
        page = context.new_page()
        resp = page.goto(url)
        seen: dict[str, Any] = {"status": resp.status, "headers": resp.headers,
                                "lang": page.get_attribute("html", "lang"),
                                "title": page.title(), "text": page.inner_text("main")}
        fill_row(page, cid, PASSWORD)
        seen["check"] = live_check(page, "ok")
        # A second channel in a row the page's script adds in place.
        page.click("#add-row")
        seen["rows"] = page.locator("#rows .row").count()
        fill_row(page, other, "another-pass-2", row=1)
        seen["check2"] = live_check(page, "ok", row=1)
        seen["shot"] = page.screenshot(full_page=True)
        page.click(APPROVE)
        page.wait_for_url(callback.uri + "?**")
        seen["final_url"] = page.url
        seen["final_text"] = page.inner_text("#client")
        seen["final_shot"] = page.screenshot()
        return seen

    seen = await in_browser(user)

    assert seen["status"] == 200
    assert seen["headers"]["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in seen["headers"]["content-security-policy"]
    assert seen["lang"] == "en"
    assert "Browser Test App" in seen["title"]
    assert callback.uri in seen["text"] and "mcp:tools" in seen["text"]
    assert seen["check"] == "OK: build-bot"
    assert seen["rows"] == 2 and seen["check2"] == "OK: nightly"
    assert is_png(seen["shot"]) and is_png(seen["final_shot"])
    # The browser followed the 303 to the client's redirect URI, exactly once.
    assert callback.hits == [seen["final_url"]]
    assert seen["final_text"] == "back in the app"
    answer = flow.answer(seen["final_url"])
    assert set(answer) == {"code", "state", "iss"}
    assert answer["state"] == flow.state and answer["iss"] == base

    tokens = await flow.exchange(http, answer["code"])
    assert tokens["token_type"].lower() == "bearer"
    assert tokens["access_token"] and tokens["refresh_token"]
    assert set(tokens["scope"].split()) == set(SCOPE.split())
    async with mcp_client(base, tokens["access_token"]) as client:
        listed = await tool(client, "pushgo.channel.list", {})
    assert sorted((c["channel_id"], c["channel_name"]) for c in listed["channels"]) == \
        sorted([(cid, "build-bot"), (other, "nightly")])


async def test_a_wrong_password_shows_an_inline_error_and_does_not_redirect(base, api, http, callback):
    cid = await new_channel(api, name="ops")
    flow = Flow(base, callback.uri)
    await flow.register(http)
    url = flow.authorize_url()

    def user(context: Any) -> dict[str, Any]:
        page = context.new_page()
        page.goto(url)
        fill_row(page, cid, "not-the-password")
        seen: dict[str, Any] = {"live": live_check(page, "error")}
        with page.expect_navigation() as nav:
            page.click(APPROVE)
        seen["status"] = nav.value.status
        seen["alert"] = page.inner_text(ALERT)
        seen["url"] = page.url
        seen["kept_id"] = page.input_value("#rows input[name=channel_id]")
        seen["kept_password"] = page.input_value("#rows input[name=password]")
        seen["hits_after_error"] = list(callback.hits)
        seen["shot"] = page.screenshot()
        # The same page, corrected, still completes.
        fill_row(page, cid, PASSWORD)
        page.click(APPROVE)
        page.wait_for_url(callback.uri + "?**")
        seen["final_url"] = page.url
        return seen

    seen = await in_browser(user)

    assert seen["live"] == "Wrong channel ID or password."
    assert seen["status"] == 400
    assert seen["alert"] == "Wrong channel ID or password."
    assert seen["url"].startswith(base + "/oauth/authorize")
    assert seen["hits_after_error"] == []
    assert seen["kept_id"] == cid and seen["kept_password"] == ""
    assert is_png(seen["shot"])
    answer = flow.answer(seen["final_url"])
    assert answer["state"] == flow.state and answer["iss"] == base
    assert (await flow.exchange(http, answer["code"]))["access_token"]


async def test_the_pages_speak_simplified_chinese(base, api, http, callback):
    cid = await new_channel(api, name="ops")
    flow = Flow(base, callback.uri)
    await flow.register(http, name="Browser Test App")
    by_header = flow.authorize_url()
    by_param = flow.authorize_url(ui_locales="zh-CN")

    def user(context: Any) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        # Accept-Language: zh-CN (the browser's locale), and a wrong password.
        zh = context.browser.new_context(locale="zh-CN")
        try:
            page = zh.new_page()
            page.goto(by_header)
            seen["header_lang"] = page.get_attribute("html", "lang")
            seen["header_h1"] = page.inner_text("h1")
            seen["approve"] = page.inner_text(APPROVE)
            fill_row(page, cid, "wrong-password")
            live_check(page, "error")
            page.click(APPROVE)
            seen["alert"] = page.locator(ALERT).inner_text()
            seen["shot"] = page.screenshot()
        finally:
            zh.close()
        # ui_locales=zh-CN in an English browser; the user says no.
        page = context.new_page()
        page.goto(by_param)
        seen["param_lang"] = page.get_attribute("html", "lang")
        seen["param_text"] = page.inner_text("main")
        seen["deny"] = page.inner_text("button[name=decision][value=deny]")
        page.click("button[name=decision][value=deny]")
        page.wait_for_url(callback.uri + "?**")
        seen["denied_url"] = page.url
        return seen

    seen = await in_browser(user)

    assert seen["header_lang"] == "zh-CN"
    assert seen["header_h1"] == "授权 Browser Test App"
    assert seen["approve"] == "授权"
    assert seen["alert"] == "频道 ID 或密码错误。"
    assert is_png(seen["shot"])
    assert seen["param_lang"] == "zh-CN"
    assert CHINESE.search(seen["param_text"]) and "Channel ID" not in seen["param_text"]
    assert seen["deny"] == "拒绝"
    assert callback.hits == [seen["denied_url"]]
    answer = flow.answer(seen["denied_url"])
    assert answer["error"] == "access_denied" and "code" not in answer
    assert answer["state"] == flow.state and answer["iss"] == base


async def test_bind_and_revoke_links_from_the_mcp_tool_work_in_chromium(base, api, http, callback):
    first = await new_channel(api, name="first")
    second = await new_channel(api, name="second")
    flow = Flow(base, callback.uri)
    await flow.register(http, name="Bind Test App")
    url = flow.authorize_url()

    def authorize(context: Any) -> str:
        page = context.new_page()
        page.goto(url)
        fill_row(page, first, PASSWORD)
        page.click(APPROVE)
        page.wait_for_url(callback.uri + "?**")
        return str(page.url)

    tokens = await flow.exchange(http, flow.answer(await in_browser(authorize))["code"])
    async with mcp_client(base, tokens["access_token"]) as client:
        bind = await tool(client, "pushgo.channel.bind.start", {"action": "bind"})
        revoke = await tool(client, "pushgo.channel.bind.start", {"action": "revoke"})
        assert bind["bind_url"].startswith(base + "/mcp/bind/session?")
        assert revoke["bind_url"].startswith(base + "/mcp/revoke/session?")
        status = await tool(client, "pushgo.channel.bind.status",
                            {"bind_session_id": bind["bind_session_id"]})
        assert status["status"] == "pending"

        def user(context: Any) -> dict[str, Any]:
            page = context.new_page()
            seen: dict[str, Any] = {}
            resp = page.goto(bind["bind_url"])
            seen["bind_headers"] = resp.headers
            seen["bind_h1"] = page.inner_text("h1")
            fill_row(page, second, "wrong-password")
            page.click(APPROVE)
            seen["bind_alert"] = page.inner_text(ALERT)
            fill_row(page, second, PASSWORD)
            seen["bind_check"] = live_check(page, "ok")
            page.click(APPROVE)
            seen["bound"] = page.inner_text("#message")
            seen["shot"] = page.screenshot()
            # One-time: the same link again is spent.
            resp = page.goto(bind["bind_url"])
            seen["again_status"] = resp.status
            seen["again"] = page.inner_text("main")
            page.goto(revoke["bind_url"])
            seen["revoke_h1"] = page.inner_text("h1")
            fill_row(page, first, PASSWORD)
            page.click(APPROVE)
            seen["unbound"] = page.inner_text("#message")
            return seen

        seen = await in_browser(user)

        assert seen["bind_headers"]["x-frame-options"] == "DENY"
        assert seen["bind_h1"] == "Bind a channel"
        assert seen["bind_alert"] == "Wrong channel ID or password."
        assert seen["bind_check"] == "OK: second"
        assert second in seen["bound"] and "is now bound" in seen["bound"]
        assert is_png(seen["shot"])
        assert seen["again_status"] == 404 and "expired" in seen["again"]
        assert seen["revoke_h1"] == "Unbind a channel"
        assert first in seen["unbound"] and "no longer bound" in seen["unbound"]

        status = await tool(client, "pushgo.channel.bind.status",
                            {"bind_session_id": bind["bind_session_id"]})
        assert (status["status"], status["action"], status["channel_id"]) == \
            ("completed", "bind", second)
        assert status["channel_name"] == "second"
        listed = await tool(client, "pushgo.channel.list", {})
        assert [c["channel_id"] for c in listed["channels"]] == [second]
        # The bound channel is usable without its password; the unbound one is not.
        sent = await tool(client, "pushgo.message.send", {"channel_id": second,
                                                          "title": "bound in a browser"})
        assert sent["accepted"] is True
        refused = await client.call_tool("pushgo.message.send", {"channel_id": first,
                                                                 "title": "no longer bound"})
        assert refused.is_error is True
        assert refused.structured_content["error_code"] == "channel_not_bound"
    assert len(callback.hits) == 1


async def test_the_seven_steps_of_the_product_page_with_the_scope_shown_at_step_5(
        base, api, http, callback, tmp_path):
    """1. the client connects to /mcp (401 naming the metadata); 2. it gets a client identity
    by DCR and an authorization in the browser; 3. the assistant calls bind.start; 4. the
    user opens bind_url; 5. enters channel id and password and sees the scopes being granted
    (English, then 简体中文); 6. the assistant polls bind.status; 7. it sends within the
    bound channel."""
    first = await new_channel(api, name="first")
    second = await new_channel(api, name="second")
    third = await new_channel(api, name="third")
    # 1.
    anonymous = await http.post(base + "/mcp", json={"jsonrpc": "2.0", "id": 1,
                                                     "method": "tools/list"})
    assert anonymous.status_code == 401 and "resource_metadata=" in anonymous.headers[
        "www-authenticate"]
    # 2.
    flow = Flow(base, callback.uri)
    await flow.register(http, name="Seven Steps App")

    def authorize(context: Any) -> str:
        page = context.new_page()
        page.goto(flow.authorize_url())
        fill_row(page, first, PASSWORD)
        page.click(APPROVE)
        page.wait_for_url(callback.uri + "?**")
        return str(page.url)

    tokens = await flow.exchange(http, flow.answer(await in_browser(authorize))["code"])
    async with mcp_client(base, tokens["access_token"]) as client:
        # 3.
        bind = await tool(client, "pushgo.channel.bind.start", {"action": "bind"})
        bind_zh = await tool(client, "pushgo.channel.bind.start",
                             {"action": "bind", "lang": "zh-CN"})

        # 4. and 5.
        def user(context: Any) -> dict[str, Any]:
            seen: dict[str, Any] = {}
            page = context.new_page()
            page.goto(bind["bind_url"])
            scopes = page.locator("#scopes")
            seen["scopes_visible"] = scopes.is_visible()
            seen["scopes"] = scopes.inner_text()
            seen["intro"] = page.inner_text("main")
            fill_row(page, second, PASSWORD)
            live_check(page, "ok")
            shot = tmp_path / "step5-bind-page.png"
            page.screenshot(path=str(shot), full_page=True)
            seen["shot"] = shot.read_bytes()
            page.click(APPROVE)
            seen["bound"] = page.inner_text("#message")
            page.goto(bind_zh["bind_url"])
            seen["zh_scopes_visible"] = page.locator("#scopes").is_visible()
            seen["zh_scopes"] = page.inner_text("#scopes")
            seen["zh_intro"] = page.inner_text("main")
            page.screenshot(path=str(tmp_path / "step5-bind-page-zh.png"), full_page=True)
            fill_row(page, third, PASSWORD)
            page.click(APPROVE)
            seen["zh_bound"] = page.inner_text("#message")
            return seen

        seen = await in_browser(user)

        assert seen["scopes_visible"] is True
        assert "mcp:tools" in seen["scopes"] and "mcp:channels:manage" in seen["scopes"]
        assert "send messages, events and things" in seen["scopes"]
        assert "Seven Steps App will be allowed to" in seen["intro"]
        assert is_png(seen["shot"]) and (tmp_path / "step5-bind-page-zh.png").is_file()
        assert "is now bound" in seen["bound"]
        assert seen["zh_scopes_visible"] is True and "mcp:tools" in seen["zh_scopes"]
        assert "向你绑定的频道发送消息" in seen["zh_scopes"]
        assert "将被允许" in seen["zh_intro"]
        assert CHINESE.search(seen["zh_bound"])
        # 6.
        for started, cid in ((bind, second), (bind_zh, third)):
            status = await tool(client, "pushgo.channel.bind.status",
                                {"bind_session_id": started["bind_session_id"]})
            assert (status["status"], status["channel_id"]) == ("completed", cid)
        # 7.
        for cid in (first, second, third):
            assert (await tool(client, "pushgo.message.send",
                               {"channel_id": cid, "title": "step 7"}))["accepted"] is True
