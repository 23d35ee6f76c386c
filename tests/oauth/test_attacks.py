"""An attacker's list against the authorization server, every probe refused.

Open redirects on every error path (each error condition × each redirect-URI variant, for a
loopback DCR client, an HTTPS DCR client and a predefined client with a configured URI);
redirect-URI variants (user information, case, trailing slash, extra path, query, fragment,
another port on a non-loopback host, IPv6 loopback, ``localhost`` for ``127.0.0.1``,
percent-encoding, backslashes); PKCE downgrade; code reuse; refresh-token reuse after the
grace revoking the family; forged access tokens (alg none, HS256 keyed with the public key,
unknown kid, a stranger's key under our kid, wrong audience and issuer, expired, tampered
payload); CSRF on the authorize and bind forms; framing headers on every page; and password
guessing on the bind page from one address (429 after the throttle) while the owner binds
from another (real Hypercorn server, client sockets on 127.0.0.2 and 127.0.0.3).

SQLite only: these are probes of the HTTP interface; the store paths they reach are covered
on PostgreSQL by test_security.py and test_flow.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from pushgo.app import Gateway
from pushgo.service.throttle import PAIR_RULE
from tests.conftest import make_settings
from tests.helpers import PASSWORD
from tests.live import hypercorn_server
from tests.oauth_helpers import (  # noqa: F401
    BASE,
    REDIRECT,
    RESOURCE,
    TOKEN,
    Clock,
    authorize,
    authorize_query,
    browser_fixture,
    call_tool,
    channel,
    clock_fixture,
    exchange,
    oauth_gateway,
    open_page,
    pkce,
    register,
    signed_in,
    submit,
    token,
    tool_result,
)

APP = "https://app.example/cb"
DESK = "https://desk.example.com/cb"
DESK_SECRET = "desk-secret-0123456789"
EVIL = "https://evil.example/steal"


@pytest.fixture
def db_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/pushgo.db"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"mcp_enabled": True, "token": TOKEN,
            "mcp_predefined_clients": f"desk:{DESK_SECRET}@{DESK}"}


def refused_page(resp: httpx.Response, what: object = "") -> None:
    """Shown to the user as a page, never redirected."""
    assert resp.status_code == 400, (what, resp.status_code, resp.headers.get("location"))
    assert "location" not in resp.headers, what
    assert resp.headers["content-type"].startswith("text/html"), what
    framing_denied(resp)


def framing_denied(resp: httpx.Response) -> None:
    assert resp.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]


def location_params(resp: httpx.Response, uri: str) -> dict[str, str]:
    assert resp.status_code == 303, (resp.status_code, resp.text[:300])
    location = resp.headers["location"]
    assert location.split("?")[0] == uri, location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


# --- open redirects ---------------------------------------------------------------------------

#: Query changes that make an otherwise good authorization request fail.
ERRORS: list[tuple[dict[str, str | None], str]] = [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"response_type": None}, "unsupported_response_type"),
    ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge": "short"}, "invalid_request"),
    ({"scope": "openid admin"}, "invalid_scope"),
    ({"resource": "https://other.example/mcp"}, "invalid_target"),
]


def variants(registered: str) -> list[str]:
    """Redirect URIs an attacker may try instead of ``registered``."""
    parts = urlsplit(registered)
    host, path = parts.netloc, parts.path
    scheme = parts.scheme
    return [
        EVIL, "", "javascript:alert(1)", "//evil.example/steal",
        f"{scheme}://evil.example@{host}{path}",
        f"{scheme.upper()}://{host}{path}",
        f"{scheme}://{host}{path.upper()}",
        f"{scheme}://{host}{path}/",
        f"{scheme}://{host}{path}/extra",
        f"{scheme}://{host}{path}?next=https://evil.example",
        f"{scheme}://{host}{path}#frag",
        f"{scheme}://{host}{path.replace('c', '%63', 1)}",
        f"{scheme}://{host}\\@evil.example{path}",
        f"{scheme}://{host}{path}\\..\\evil",
        f"{scheme}://{host}.evil.example{path}",
        f"{scheme}://{parts.hostname}:8443{path}" if scheme == "https"
        else f"http://[::1]:{parts.port}{path}",
        f"http://localhost:{parts.port}{path}" if scheme == "http"
        else f"http://{parts.hostname}{path}",
        f"http://127.0.0.2:{parts.port}{path}" if scheme == "http"
        else f"https://{parts.hostname}:443{path}",
    ]


async def test_no_error_path_redirects_anywhere_but_a_trusted_registered_uri(gateway, http):
    loopback = (await register(http))["client_id"]
    app = (await register(http, redirect_uris=[APP]))["client_id"]
    clients = [(loopback, REDIRECT, True), (app, APP, False), ("desk", DESK, True)]
    _verifier, challenge = pkce()
    probes = 0
    for client_id, registered, trusted in clients:
        for uri in variants(registered):
            assert uri != registered
            for over, _error in [({}, None), *ERRORS]:
                q = authorize_query(client_id, challenge, redirect_uri=uri or None, **over)
                refused_page(await http.get("/oauth/authorize", params=q),
                             (client_id, uri, over))
                probes += 1
        for over, error in ERRORS:
            q = authorize_query(client_id, challenge, redirect_uri=registered, state="st", **over)
            resp = await http.get("/oauth/authorize", params=q)
            if not trusted:
                # Anyone can register an HTTPS URI: an error before the user acted is a page.
                refused_page(resp, (client_id, over))
                assert error in resp.text
                continue
            params = location_params(resp, registered)
            assert (params["error"], params["state"], params["iss"]) == (error, "st", BASE)
            assert "code" not in params
    assert probes == 3 * 18 * 8
    # Unknown or missing clients never redirect, whatever the redirect URI.
    for client_id in ("nope", "", "https://evil.example/client.json"):
        q = authorize_query(client_id, challenge, redirect_uri=EVIL, response_type="token")
        refused_page(await http.get("/oauth/authorize", params={
            k: v for k, v in q.items() if v}), client_id)


async def test_the_headline_probes_are_refused(gateway, http):
    """A predefined client and a client registered by the attacker, each asked to send the
    browser to evil.example with a bad response_type."""
    _v, challenge = pkce()
    q = authorize_query("desk", challenge, redirect_uri=EVIL, response_type="token")
    refused_page(await http.get("/oauth/authorize", params=q))
    mallory = (await register(http, redirect_uris=[EVIL]))["client_id"]
    q = authorize_query(mallory, challenge, redirect_uri=EVIL, response_type="token")
    refused_page(await http.get("/oauth/authorize", params=q))
    # Duplicate parameters are an error before the redirect URI is trusted: a page.
    url = (f"/oauth/authorize?client_id={mallory}&redirect_uri={EVIL}"
           f"&redirect_uri={REDIRECT}&response_type=code")
    refused_page(await http.get(url))


async def test_loopback_uris_match_on_any_port_and_nothing_else(gateway, http):
    client = (await register(http, redirect_uris=[REDIRECT, "http://[::1]/cb"]))["client_id"]
    _v, challenge = pkce()
    for uri in ("http://127.0.0.1:1/callback", "http://127.0.0.1/callback",
                "http://127.0.0.1:65535/callback", "http://[::1]:4711/cb"):
        await open_page(http, "/oauth/authorize", authorize_query(client, challenge,
                                                                  redirect_uri=uri))
    for uri in ("http://127.0.0.1:0/callback", "http://[::1]:4711/cb/", "http://[::1]:4711/CB",
                "http://localhost:4711/cb", "http://[0:0:0:0:0:0:0:1]:4711/cb"):
        refused_page(await http.get("/oauth/authorize", params=authorize_query(
            client, challenge, redirect_uri=uri)), uri)


@pytest.mark.parametrize("uri", [
    "http://evil.example@127.0.0.1:9999/callback", "http://127.0.0.1:9999/callback#x",
    "https://app.example\\@evil.example/cb", "HTTP://127.0.0.1:9999/callback",
    "http://evil.example/cb", "https://user:pw@app.example/cb", "javascript:alert(1)"])
async def test_registration_refuses_unsafe_redirect_uris(gateway, http, uri):
    resp = await http.post("/oauth/register", json={"redirect_uris": [uri]})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_redirect_uri", uri


# --- PKCE, codes, refresh tokens --------------------------------------------------------------


async def test_pkce_cannot_be_downgraded(gateway, http):
    ch = await channel(gateway)
    client = (await register(http))["client_id"]
    verifier, _challenge = pkce()
    plain = authorize_query(client, verifier[:43], code_challenge_method="plain", state="s")
    assert location_params(await http.get("/oauth/authorize", params=plain),
                           REDIRECT)["error"] == "invalid_request"
    code, verifier = await authorize(http, client, [(ch, PASSWORD)])
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "client_id": client}
    missing = await token(http, **form)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    for wrong in (pkce()[0], verifier + "x", hashlib.sha256(verifier.encode()).hexdigest()):
        resp = await token(http, **form, code_verifier=wrong)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
    # The code is spent by the failures: the right verifier is now too late.
    late = await token(http, **form, code_verifier=verifier)
    assert late.status_code == 400 and late.json()["error"] == "invalid_grant"


async def test_a_reused_code_revokes_what_it_bought(gateway, http):
    ch = await channel(gateway)
    client = (await register(http))["client_id"]
    code, verifier = await authorize(http, client, [(ch, PASSWORD)])
    tokens = await exchange(http, client, code, verifier)
    again = await token(http, grant_type="authorization_code", code=code, code_verifier=verifier,
                        redirect_uri=REDIRECT, client_id=client)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert (await call_tool(http, tokens["access_token"], "pushgo.channel.list",
                            {})).status_code == 401


async def test_refresh_reuse_after_the_grace_revokes_the_family(gateway, http, clock):
    ch = await channel(gateway)
    session = await signed_in(gateway, http, ch)
    client = session["client"]["client_id"]
    first = session["refresh_token"]

    async def refresh(rt: str) -> httpx.Response:
        return await token(http, grant_type="refresh_token", refresh_token=rt, client_id=client)

    second = await refresh(first)
    assert second.status_code == 200
    clock.advance(5)  # inside the 10 s grace: a retried request, answered
    retry = await refresh(first)
    assert retry.status_code == 200
    clock.advance(6)  # 11 s after the rotation: a theft
    stolen = await refresh(first)
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    for rt in (second.json()["refresh_token"], retry.json()["refresh_token"]):
        resp = await refresh(rt)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
    for at in (session["access_token"], second.json()["access_token"]):
        assert (await call_tool(http, at, "pushgo.channel.list", {})).status_code == 401


# --- forged access tokens ---------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _segments(token_: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    head, body, sig = token_.split(".")
    pad = "=" * (-len(body) % 4)
    return (json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))),
            json.loads(base64.urlsafe_b64decode(body + pad)), sig)


def _compact(header: dict[str, Any], claims: dict[str, Any], sig: str) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}.{sig}"


async def test_forged_access_tokens_are_refused(gateway, http, clock):
    ch = await channel(gateway)
    good = (await signed_in(gateway, http, ch))["access_token"]
    assert (await call_tool(http, good, "pushgo.channel.list", {})).status_code == 200
    header, claims, sig = _segments(good)
    jwks = (await http.get("/oauth/jwks.json")).json()
    public = json.dumps(jwks["keys"][0]).encode()
    stranger = ECKey.generate_key("P-256", parameters={"kid": header["kid"]}, private=True)
    other_kid = ECKey.generate_key("P-256", parameters={"kid": "not-ours"}, private=True)
    assert gateway.oauth is not None
    keys = gateway.oauth.keys

    def hs256(secret: bytes) -> str:
        h = {**header, "alg": "HS256"}
        signing_input = f"{_b64(json.dumps(h).encode())}.{_b64(json.dumps(claims).encode())}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(mac)}"

    now = int(time.time()) + clock.offset_ms // 1000
    forged = {
        "alg none": _compact({**header, "alg": "none"}, claims, ""),
        "alg None": _compact({**header, "alg": "None"}, claims, ""),
        "HS256 keyed with the public JWK": hs256(public),
        "HS256 keyed with the x coordinate": hs256(jwks["keys"][0]["x"].encode()),
        "a stranger's key under our kid": jwt.encode(header, claims, stranger),
        "an unknown kid": jwt.encode({**header, "kid": "not-ours"}, claims, other_kid),
        "no kid": _compact({k: v for k, v in header.items() if k != "kid"}, claims, sig),
        "wrong audience": keys.sign({**claims, "aud": "https://other.example/mcp"}),
        "wrong issuer": keys.sign({**claims, "iss": "https://other.example"}),
        "expired": keys.sign({**claims, "iat": now - 3600, "exp": now - 60}),
        "issued in the future": keys.sign({**claims, "iat": now + 3600, "exp": now + 7200}),
        "tampered scope": _compact(header, {**claims, "scope": "mcp:tools admin"}, sig),
        "tampered subject": _compact(header, {**claims, "sub": "pgg_other"}, sig),
        "not an access token (typ)": jwt.encode({**header, "typ": "JWT"}, claims, stranger),
        "garbage": "a.b.c",
    }
    for what, bad in forged.items():
        resp = await call_tool(http, bad, "pushgo.channel.list", {})
        assert resp.status_code == 401, what
        assert 'error="invalid_token"' in resp.headers["www-authenticate"], what
    clock.advance(15 * 60 + 1)
    assert (await call_tool(http, good, "pushgo.channel.list", {})).status_code == 401


# --- CSRF and framing -------------------------------------------------------------------------


async def test_csrf_on_the_authorize_and_bind_forms(gateway, http):
    ch, other_ch = await channel(gateway), await channel(gateway, name="second")
    session = await signed_in(gateway, http, ch)
    started = (await tool_result(http, session["access_token"], "pushgo.channel.bind.start",
                                 {}))["structuredContent"]
    client = (await register(http))["client_id"]
    pages = [("/oauth/authorize", await open_page(http, "/oauth/authorize",
                                                  authorize_query(client, pkce()[1]))),
             ("/mcp/bind/session", await open_page(http, started["bind_url"].removeprefix(BASE)))]
    transport = httpx.ASGITransport(app=gateway.asgi)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as victim:
        for action, page in pages:
            form = {"request_id": page.request_id, "channel_id": other_ch, "password": PASSWORD,
                    "decision": "approve"}
            for data, who in [(form, http), ({**form, "csrf_token": "x" * 32}, http),
                              ({**form, "csrf_token": page.csrf_token}, victim),
                              ({**form, "csrf_token": page.csrf_token, "request_id": "nope"},
                               http)]:
                resp = await who.post(action, data=data)
                assert resp.status_code in (400, 403), (action, data)
                assert "location" not in resp.headers
                framing_denied(resp)
            # A cross-site submission carries no cookie: SameSite=Strict, HttpOnly.
            set_cookie = page.response.headers["set-cookie"].lower()
            assert "samesite=strict" in set_cookie and "httponly" in set_cookie
    listed = (await tool_result(http, session["access_token"], "pushgo.channel.list",
                                {}))["structuredContent"]
    assert [c["channel_id"] for c in listed["channels"]] == [ch]


async def test_every_page_refuses_to_be_framed(gateway, http):
    ch = await channel(gateway)
    session = await signed_in(gateway, http, ch)
    client = (await register(http))["client_id"]
    _v, challenge = pkce()
    bind = (await tool_result(http, session["access_token"], "pushgo.channel.bind.start",
                              {}))["structuredContent"]
    revoke = (await tool_result(http, session["access_token"], "pushgo.channel.bind.start",
                                {"action": "revoke"}))["structuredContent"]
    page = await open_page(http, "/oauth/authorize", authorize_query(client, challenge))
    bind_page = await open_page(http, bind["bind_url"].removeprefix(BASE))
    responses = [
        page.response, bind_page.response,
        await http.get(revoke["bind_url"].removeprefix(BASE)),
        await http.get("/oauth/authorize", params=authorize_query("nope", challenge)),
        await http.get("/mcp/bind/session?bind_session_id=nope"),
        await http.get("/oauth/authorize", params=authorize_query(
            client, challenge, lang="zh-CN")),
        await submit(http, page, [(ch, "wrong-password")], decision="approve"),
        await submit(http, bind_page, [(ch, PASSWORD)], action="/mcp/bind/session"),
    ]
    for resp in responses:
        assert resp.headers["content-type"].startswith("text/html")
        framing_denied(resp)


# --- guessing channel passwords on the bind page ------------------------------------------------

ATTACKER, OWNER = "127.0.0.2", "127.0.0.3"


@asynccontextmanager
async def from_address(base: str, address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(transport=transport, base_url=base) as c:
        yield c


async def test_bind_page_guessing_is_throttled_and_never_locks_out_the_owner(db_url):
    settings = make_settings(db_url, mcp_enabled=True, token=TOKEN, public_base_url=BASE)
    gateway = Gateway(settings, clock=Clock())
    async with gateway.running(), hypercorn_server(gateway) as base, \
            from_address(base, ATTACKER) as attacker, from_address(base, OWNER) as owner:
        target = await channel(gateway, name="target")
        mine, theirs = await channel(gateway, name="attacker's"), await channel(gateway)
        evil = await signed_in(gateway, attacker, mine)
        started = (await tool_result(attacker, evil["access_token"], "pushgo.channel.bind.start",
                                     {"requested_channel_id": target}))["structuredContent"]
        page = await open_page(attacker, started["bind_url"].removeprefix(BASE))
        statuses = []
        for i in range(PAIR_RULE.burst + 3):
            resp = await submit(attacker, page, [(target, f"guess-{i}-password")],
                                action="/mcp/bind/session")
            statuses.append(resp.status_code)
            framing_denied(resp)
        assert statuses == [400] * PAIR_RULE.burst + [429] * 3
        assert int(resp.headers["retry-after"]) >= 1 and "Too many attempts" in resp.text
        # The right password gets no further from there: no oracle.
        right = await submit(attacker, page, [(target, PASSWORD)], action="/mcp/bind/session")
        assert right.status_code == 429

        # The owner, from another address, binds the same channel at once.
        session = await signed_in(gateway, owner, theirs)
        own = (await tool_result(owner, session["access_token"], "pushgo.channel.bind.start",
                                 {"requested_channel_id": target}))["structuredContent"]
        own_page = await open_page(owner, own["bind_url"].removeprefix(BASE))
        done = await submit(owner, own_page, [(target, PASSWORD)], action="/mcp/bind/session")
        assert done.status_code == 200 and "is now bound" in done.text
        listed = (await tool_result(attacker, evil["access_token"], "pushgo.channel.list",
                                    {}))["structuredContent"]
        assert [c["channel_id"] for c in listed["channels"]] == [mine]
