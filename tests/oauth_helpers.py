"""Shared pieces of the OAuth tests: a gateway in OAuth mode with a clock the test can move,
an HTTP client that keeps cookies like a browser, and the steps of the flow (register,
open the authorize page, submit it, exchange the code, call /mcp with the token)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from pushgo.app import Gateway
from pushgo.service.context import wall_ms
from tests.conftest import make_settings
from tests.helpers import PASSWORD, stored_channel

TOKEN = "gw-token-for-oauth-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}
BASE = "http://127.0.0.1:6666"
RESOURCE = BASE + "/mcp"
REDIRECT = "http://127.0.0.1:9999/callback"
MODERN = "2026-07-28"


class Clock:
    """The gateway's wall clock, moved forward by the test; ``frozen``, it stands still until
    the test moves it (for answers that count seconds, such as ``Retry-After``)."""

    def __init__(self, *, frozen: bool = False) -> None:
        self.offset_ms = 0
        self.frozen_at = wall_ms() if frozen else None

    def __call__(self) -> int:
        return (wall_ms() if self.frozen_at is None else self.frozen_at) + self.offset_ms

    def advance(self, seconds: float) -> None:
        self.offset_ms += int(seconds * 1000)


@pytest.fixture(name="settings_overrides")
def oauth_settings() -> dict[str, Any]:
    return {"mcp_enabled": True, "token": TOKEN}


@pytest.fixture(name="clock")
def clock_fixture() -> Clock:
    return Clock()


@pytest.fixture(name="gateway")
async def oauth_gateway(db_url: str, settings_overrides: dict[str, Any],
                        clock: Clock) -> AsyncIterator[Gateway]:
    gw = Gateway(make_settings(db_url, **settings_overrides), clock=clock)
    async with gw.running():
        yield gw


@pytest.fixture(name="http")
async def browser_fixture(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    """Unauthenticated, cookie-keeping: a browser or an OAuth client."""
    transport = httpx.ASGITransport(app=gateway.asgi)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        yield c


@pytest.fixture(name="api")
async def api_fixture(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=gateway.asgi)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=AUTH) as c:
        yield c


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def register(http: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    body = {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
            "client_name": "Test Assistant", **extra}
    resp = await http.post("/oauth/register", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


def authorize_query(client_id: str, challenge: str, **over: Any) -> dict[str, str]:
    q = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
         "state": "state-" + secrets.token_hex(4), "code_challenge": challenge,
         "code_challenge_method": "S256", "scope": "mcp:tools mcp:channels:manage",
         "resource": RESOURCE}
    q.update(over)
    return {k: v for k, v in q.items() if v is not None}


@dataclass
class Page:
    response: httpx.Response
    request_id: str
    csrf_token: str
    lang: str

    @property
    def html(self) -> str:
        return self.response.text


def hidden(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no hidden field {name}"
    return m.group(1)


async def open_page(http: httpx.AsyncClient, url: str, params: dict[str, str] | None = None
                    ) -> Page:
    resp = await http.get(url, params=params)
    assert resp.status_code == 200, resp.text
    return Page(resp, hidden(resp.text, "request_id"), hidden(resp.text, "csrf_token"),
                hidden(resp.text, "lang"))


async def submit(http: httpx.AsyncClient, page: Page, channels: list[tuple[str, str]],
                 action: str = "/oauth/authorize", **extra: str) -> httpx.Response:
    form: list[tuple[str, str]] = [("request_id", page.request_id),
                                   ("csrf_token", page.csrf_token), ("lang", page.lang)]
    for cid, password in channels:
        form += [("channel_id", cid), ("password", password)]
    form += list(extra.items())
    return await http.post(action, content=urlencode(form),
                           headers={"content-type": "application/x-www-form-urlencoded"})


def redirect_params(resp: httpx.Response) -> dict[str, str]:
    assert resp.status_code == 303, (resp.status_code, resp.text[:500])
    location = resp.headers["location"]
    assert location.startswith(REDIRECT.split("?")[0]), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def authorize(http: httpx.AsyncClient, client_id: str, channels: list[tuple[str, str]],
                    **query: Any) -> tuple[str, str]:
    """Open the page, submit it; (code, verifier)."""
    verifier, challenge = pkce()
    q = authorize_query(client_id, challenge, **query)
    page = await open_page(http, "/oauth/authorize", q)
    params = redirect_params(await submit(http, page, channels, decision="approve"))
    assert params.get("state") == q.get("state") and params["iss"] == BASE
    return params["code"], verifier


async def token(http: httpx.AsyncClient, **form: str) -> httpx.Response:
    return await http.post("/oauth/token", data=form)


async def exchange(http: httpx.AsyncClient, client_id: str, code: str, verifier: str
                   ) -> dict[str, Any]:
    resp = await token(http, grant_type="authorization_code", code=code, redirect_uri=REDIRECT,
                       code_verifier=verifier, client_id=client_id, resource=RESOURCE)
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    return resp.json()  # type: ignore[no-any-return]


async def channel(gateway: Gateway, *device_keys: str, name: str = "ops",
                  password: str = PASSWORD) -> str:
    return await stored_channel(gateway, *device_keys, name=name, password=password)


async def signed_in(gateway: Gateway, http: httpx.AsyncClient, *channel_ids: str,
                    scope: str = "mcp:tools mcp:channels:manage") -> dict[str, Any]:
    """A registered client authorized for these channels: its registration and tokens."""
    client = await register(http)
    code, verifier = await authorize(http, client["client_id"],
                                     [(cid, PASSWORD) for cid in channel_ids], scope=scope)
    tokens = await exchange(http, client["client_id"], code, verifier)
    return {"client": client, **tokens}


def mcp_headers(access_token: str, method: str, name: str | None = None) -> dict[str, str]:
    h = {"authorization": f"Bearer {access_token}", "content-type": "application/json",
         "accept": "application/json, text/event-stream", "mcp-protocol-version": MODERN,
         "mcp-method": method}
    if name is not None:
        h["mcp-name"] = name
    return h


def mcp_body(method: str, params: dict[str, Any]) -> bytes:
    params = {**params, "_meta": {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "oauth-tests", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}}}
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()


async def call_tool(http: httpx.AsyncClient, access_token: str, name: str,
                    arguments: dict[str, Any]) -> httpx.Response:
    return await http.post("/mcp", content=mcp_body("tools/call", {"name": name,
                                                                   "arguments": arguments}),
                           headers=mcp_headers(access_token, "tools/call", name))


async def tool_result(http: httpx.AsyncClient, access_token: str, name: str,
                      arguments: dict[str, Any]) -> dict[str, Any]:
    resp = await call_tool(http, access_token, name, arguments)
    assert resp.status_code == 200, resp.text
    return resp.json()["result"]  # type: ignore[no-any-return]
