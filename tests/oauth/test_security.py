"""What the authorization server refuses, each with its RFC error: PKCE missing, plain or
wrong; code reuse (which also revokes what the code bought); redirect-URI mismatch and
open-redirect attempts; cross-client codes and refresh tokens; wrong audience or issuer;
expired tokens; reuse of a rotated refresh token (family revoked) and its short grace; scope
escalation on refresh; CSRF; revocation; signing-key rotation; the purge of expired rows."""

from __future__ import annotations

import base64
import sys
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa

from pushgo.app import Gateway
from pushgo.store import schema
from tests.conftest import make_settings
from tests.helpers import PASSWORD
from tests.oauth_helpers import (  # noqa: F401
    BASE,
    REDIRECT,
    RESOURCE,
    api_fixture,
    authorize,
    authorize_query,
    browser_fixture,
    call_tool,
    channel,
    clock_fixture,
    exchange,
    oauth_gateway,
    oauth_settings,
    open_page,
    pkce,
    redirect_params,
    register,
    signed_in,
    submit,
    token,
)


def oauth_error(resp: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text)
    doc: dict[str, Any] = resp.json()
    assert doc["error"] == error, doc
    assert doc["error_description"]
    assert resp.headers["cache-control"] == "no-store"
    return doc


async def refresh(http: httpx.AsyncClient, client_id: str, refresh_token: str,
                  **extra: str) -> httpx.Response:
    return await token(http, grant_type="refresh_token", refresh_token=refresh_token,
                       client_id=client_id, **extra)


async def send_ok(http: httpx.AsyncClient, access_token: str, cid: str) -> int:
    resp = await call_tool(http, access_token, "pushgo.message.send",
                           {"channel_id": cid, "title": "x"})
    return resp.status_code


# --- PKCE -------------------------------------------------------------------------------------


async def test_pkce_is_required_and_only_s256(gateway, http):
    client = await register(http)
    cid = client["client_id"]
    verifier, challenge = pkce()
    cases: list[tuple[dict[str, str | None], str]] = [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain", "code_challenge": verifier[:50]}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),  # the default would be plain
        ({"code_challenge": "short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "openid profile"}, "invalid_scope"),
        ({"resource": "https://other.example.com/mcp"}, "invalid_target"),
    ]
    for over, error in cases:
        resp = await http.get("/oauth/authorize",
                              params=authorize_query(cid, challenge, state="st", **over))
        params = redirect_params(resp)
        assert (params["error"], params["state"], params["iss"]) == (error, "st", BASE), over


async def test_the_token_endpoint_checks_the_code_verifier(gateway, http):
    ch = await channel(gateway)
    client = await register(http)
    code, verifier = await authorize(http, client["client_id"], [(ch, PASSWORD)])
    base = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "client_id": client["client_id"]}
    oauth_error(await token(http, **base), 400, "invalid_request")  # missing verifier
    oauth_error(await token(http, **base, code_verifier=pkce()[0]), 400, "invalid_grant")
    # A failed verification burns the code: even the right verifier is now too late.
    oauth_error(await token(http, **base, code_verifier=verifier), 400, "invalid_grant")


# --- codes --------------------------------------------------------------------------------------


async def test_a_reused_code_is_refused_and_revokes_what_it_bought(gateway, http):
    ch = await channel(gateway)
    client = await register(http)
    code, verifier = await authorize(http, client["client_id"], [(ch, PASSWORD)])
    tokens = await exchange(http, client["client_id"], code, verifier)
    assert await send_ok(http, tokens["access_token"], ch) == 200
    resp = await token(http, grant_type="authorization_code", code=code, redirect_uri=REDIRECT,
                       code_verifier=verifier, client_id=client["client_id"])
    oauth_error(resp, 400, "invalid_grant")
    oauth_error(await refresh(http, client["client_id"], tokens["refresh_token"]), 400,
                "invalid_grant")
    assert await send_ok(http, tokens["access_token"], ch) == 401


async def test_a_code_is_bound_to_its_client_redirect_uri_and_resource(gateway, http):
    ch = await channel(gateway)
    alice, mallory = await register(http), await register(http)
    for over, error in [({"client_id": mallory["client_id"]}, "invalid_grant"),
                        ({"redirect_uri": "http://127.0.0.1:9999/other"}, "invalid_grant"),
                        ({"resource": "http://127.0.0.1:6666/elsewhere"}, "invalid_target")]:
        code, verifier = await authorize(http, alice["client_id"], [(ch, PASSWORD)])
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                "code_verifier": verifier, "client_id": alice["client_id"], **over}
        oauth_error(await token(http, **form), 400, error)
        # Refused once, the code is spent for its rightful client too.
        form.update(client_id=alice["client_id"], redirect_uri=REDIRECT, resource=RESOURCE)
        oauth_error(await token(http, **form), 400, "invalid_grant")


async def test_an_expired_code_is_refused(gateway, http, clock):
    ch = await channel(gateway)
    client = await register(http)
    code, verifier = await authorize(http, client["client_id"], [(ch, PASSWORD)])
    clock.advance(5 * 60 + 1)
    resp = await token(http, grant_type="authorization_code", code=code, redirect_uri=REDIRECT,
                       code_verifier=verifier, client_id=client["client_id"])
    oauth_error(resp, 400, "invalid_grant")


# --- redirects ------------------------------------------------------------------------------------


@pytest.mark.parametrize("redirect_uri", [
    "https://evil.example.com/callback",
    "http://127.0.0.1:9999/callback/../../evil",
    "http://127.0.0.1:9999/callbackx",
    "http://127.0.0.1:9999/callback?next=https://evil.example.com",
    "http://127.0.0.1.evil.example.com:9999/callback",
    "javascript:alert(document.cookie)",
    "//evil.example.com/callback",
    None,
])
async def test_an_unregistered_redirect_uri_is_never_followed(http, redirect_uri):
    client = await register(http)
    resp = await http.get("/oauth/authorize", params=authorize_query(
        client["client_id"], pkce()[1], redirect_uri=redirect_uri, response_type="token"))
    assert resp.status_code == 400
    assert "location" not in resp.headers
    assert resp.headers["content-type"].startswith("text/html")
    assert "will not send you there" in resp.text


async def test_an_unknown_client_gets_an_error_page_not_a_redirect(http):
    resp = await http.get("/oauth/authorize", params=authorize_query("pgc_nobody", pkce()[1]))
    assert resp.status_code == 400 and "location" not in resp.headers
    assert "not registered" in resp.text


async def test_loopback_redirects_match_on_any_port_but_nothing_else(gateway, http):
    ch = await channel(gateway)
    client = await register(http)
    await authorize(http, client["client_id"], [(ch, PASSWORD)])  # the registered port
    resp = await http.get("/oauth/authorize", params=authorize_query(
        client["client_id"], pkce()[1], redirect_uri="http://127.0.0.1:41000/callback"))
    assert resp.status_code == 200  # RFC 8252 §7.3: the port may vary
    resp = await http.get("/oauth/authorize", params=authorize_query(
        client["client_id"], pkce()[1], redirect_uri="http://localhost:9999/callback"))
    assert resp.status_code == 400 and "location" not in resp.headers


# --- CSRF ---------------------------------------------------------------------------------------


async def test_a_form_without_its_csrf_token_or_cookie_is_refused(gateway, http):
    ch = await channel(gateway)
    client = await register(http)
    page = await open_page(http, "/oauth/authorize", authorize_query(client["client_id"],
                                                                     pkce()[1]))
    form = {"request_id": page.request_id, "channel_id": ch, "password": PASSWORD}
    missing = await http.post("/oauth/authorize", data=form)
    assert missing.status_code == 403 and "location" not in missing.headers
    forged = await http.post("/oauth/authorize", data={**form, "csrf_token": "x" * 32})
    assert forged.status_code == 403
    # The right token from a browser that never opened the page (no cookie) is refused too.
    transport = httpx.ASGITransport(app=gateway.asgi)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as other:
        stolen = await other.post("/oauth/authorize",
                                  data={**form, "csrf_token": page.csrf_token})
    assert stolen.status_code == 403 and "location" not in stolen.headers
    # The page itself still works.
    assert (await submit(http, page, [(ch, PASSWORD)])).status_code == 303


# --- access tokens at /mcp ----------------------------------------------------------------------


async def test_a_token_is_only_good_for_its_own_audience_and_issuer(gateway, http):
    ch = await channel(gateway)
    session = await signed_in(gateway, http, ch)
    at = session["access_token"]
    assert await send_ok(http, at, ch) == 200
    for headers in ({"host": "other.example.com"},
                    {"x-forwarded-proto": "https", "x-forwarded-host": "127.0.0.1:6666"}):
        resp = await http.post("/mcp", content=b"{}", headers={
            "authorization": f"Bearer {at}", "content-type": "application/json", **headers})
        assert resp.status_code == 401
        assert 'error="invalid_token"' in resp.headers["www-authenticate"]
    tampered = at[:-4] + ("AAAA" if not at.endswith("AAAA") else "BBBB")
    resp = await call_tool(http, tampered, "pushgo.channel.list", {})
    assert resp.status_code == 401


async def test_an_expired_access_token_is_refused_and_refresh_gets_a_new_one(gateway, http,
                                                                              clock):
    ch = await channel(gateway)
    session = await signed_in(gateway, http, ch)
    clock.advance(15 * 60 + 1)
    resp = await call_tool(http, session["access_token"], "pushgo.channel.list", {})
    assert resp.status_code == 401
    assert "expired" in resp.headers["www-authenticate"]
    renewed = await refresh(http, session["client"]["client_id"], session["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    doc = renewed.json()
    assert doc["refresh_token"] != session["refresh_token"] and doc["expires_in"] == 900
    assert await send_ok(http, doc["access_token"], ch) == 200


# --- refresh tokens -----------------------------------------------------------------------------


async def test_reusing_a_rotated_refresh_token_revokes_the_family(gateway, http, clock):
    ch = await channel(gateway)
    session = await signed_in(gateway, http, ch)
    client_id = session["client"]["client_id"]
    first = session["refresh_token"]
    second = (await refresh(http, client_id, first)).json()
    # Within a few seconds the old token still works once more (a retried request).
    retry = await refresh(http, client_id, first)
    assert retry.status_code == 200
    clock.advance(11)
    third = (await refresh(http, client_id, second["refresh_token"])).json()
    assert await send_ok(http, third["access_token"], ch) == 200
    # Later, the rotated token comes back: a thief or a broken client. All of it ends.
    oauth_error(await refresh(http, client_id, first), 400, "invalid_grant")
    oauth_error(await refresh(http, client_id, third["refresh_token"]), 400, "invalid_grant")
    assert await send_ok(http, third["access_token"], ch) == 401


async def test_refresh_can_narrow_scope_but_never_widen_it(gateway, http):
    ch = await channel(gateway)
    session = await signed_in(gateway, http, ch, scope="mcp:tools")
    client_id = session["client"]["client_id"]
    wider = await refresh(http, client_id, session["refresh_token"],
                          scope="mcp:tools mcp:channels:manage")
    oauth_error(wider, 400, "invalid_scope")
    full = await signed_in(gateway, http, ch)
    narrow = await refresh(http, full["client"]["client_id"], full["refresh_token"],
                           scope="mcp:tools")
    assert narrow.status_code == 200 and narrow.json()["scope"] == "mcp:tools"
    resp = await call_tool(http, narrow.json()["access_token"], "pushgo.channel.list", {})
    assert resp.status_code == 403
    oauth_error(await refresh(http, full["client"]["client_id"], narrow.json()["refresh_token"],
                              resource="https://elsewhere.example/mcp"), 400, "invalid_target")


async def test_a_refresh_token_belongs_to_its_client(gateway, http):
    ch = await channel(gateway)
    session = await signed_in(gateway, http, ch)
    other = await register(http)
    oauth_error(await refresh(http, other["client_id"], session["refresh_token"]), 400,
                "invalid_grant")
    oauth_error(await refresh(http, session["client"]["client_id"], "pgrt_made_up"), 400,
                "invalid_grant")


async def test_client_authentication_and_grant_type_errors(gateway, http):
    confidential = await register(http, token_endpoint_auth_method="client_secret_post")
    oauth_error(await token(http, grant_type="refresh_token", refresh_token="x",
                            client_id=confidential["client_id"]), 401, "invalid_client")
    oauth_error(await token(http, grant_type="refresh_token", refresh_token="x",
                            client_id=confidential["client_id"], client_secret="wrong"),
                401, "invalid_client")
    basic = base64.b64encode(f"{confidential['client_id']}:wrong".encode()).decode()
    resp = await http.post("/oauth/token", data={"grant_type": "refresh_token",
                                                 "refresh_token": "x"},
                           headers={"authorization": f"Basic {basic}"})
    oauth_error(resp, 401, "invalid_client")
    assert resp.headers["www-authenticate"].startswith("Basic")
    oauth_error(await token(http, grant_type="password", client_id=confidential["client_id"],
                            client_secret=confidential["client_secret"]),
                400, "unsupported_grant_type")
    oauth_error(await token(http, grant_type="refresh_token", refresh_token="x"), 401,
                "invalid_client")
    oauth_error(await http.post("/oauth/token", json={"grant_type": "refresh_token"}), 400,
                "invalid_request")
    oauth_error(await token(http, client_id="a"), 400, "invalid_request")


# --- revocation -----------------------------------------------------------------------------------


async def test_revoking_a_refresh_or_access_token_ends_the_grant(gateway, http):
    ch = await channel(gateway)
    for which in ("refresh_token", "access_token"):
        session = await signed_in(gateway, http, ch)
        client_id = session["client"]["client_id"]
        resp = await http.post("/oauth/revoke", data={"token": session[which],
                                                      "client_id": client_id})
        assert resp.status_code == 200
        oauth_error(await refresh(http, client_id, session["refresh_token"]), 400,
                    "invalid_grant")
        assert await send_ok(http, session["access_token"], ch) == 401
    # Unknown tokens and tokens of other clients: 200, nothing happens.
    session = await signed_in(gateway, http, ch)
    other = await register(http)
    for body in ({"token": "nonsense", "client_id": other["client_id"]},
                 {"token": session["refresh_token"], "client_id": other["client_id"]}):
        assert (await http.post("/oauth/revoke", data=body)).status_code == 200
    assert await send_ok(http, session["access_token"], ch) == 200
    oauth_error(await http.post("/oauth/revoke", data={"client_id": other["client_id"]}), 400,
                "invalid_request")


# --- keys and upkeep ------------------------------------------------------------------------------


async def test_a_rotated_key_still_verifies_its_tokens_until_they_expire(gateway, http, clock,
                                                                        db_url):
    ch = await channel(gateway)
    old = await signed_in(gateway, http, ch)
    (old_key,) = (await http.get("/oauth/jwks.json")).json()["keys"]
    assert gateway.oauth is not None
    done = await anyio.run_process([sys.executable, "-m", "pushgo.cli", "oauth", "rotate-key",
                                    "--db-url", db_url], check=False)
    assert done.returncode == 0, done.stderr
    new_kid = done.stdout.decode().strip()
    await gateway.oauth.maintain()  # running gateways pick the new key up here
    keys = (await http.get("/oauth/jwks.json")).json()["keys"]
    assert keys[1]["kid"] == new_kid
    assert keys[0]["kid"] == old_key["kid"] and len(keys) == 2
    assert await send_ok(http, old["access_token"], ch) == 200  # signed by the old key
    new = await refresh(http, old["client"]["client_id"], old["refresh_token"])
    header = new.json()["access_token"].split(".")[0]
    kid = base64.urlsafe_b64decode(header + "==").decode()
    assert keys[1]["kid"] in kid
    clock.advance(30 * 60)
    await gateway.oauth.maintain()
    (left,) = (await http.get("/oauth/jwks.json")).json()["keys"]
    assert left["kid"] == keys[1]["kid"]


async def test_maintenance_rotates_an_old_key_and_purges_what_expired(gateway: Gateway, http,
                                                                       clock):
    ch = await channel(gateway)
    session = await signed_in(gateway, http, ch)
    await register(http)  # never used
    await tool_or_bind(http, session["access_token"])
    assert gateway.oauth is not None

    async def count(table: sa.Table) -> int:
        return await gateway.store.read(
            lambda c: c.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    assert await count(schema.oauth_grants) == 1 and await count(schema.oauth_bind_sessions) == 1
    clock.advance(31 * 86400)
    purged = await gateway.oauth.maintain()
    assert purged["grants"] == 1 and purged["bind_sessions"] == 1 and purged["clients"] == 2
    assert purged["requests"] >= 1
    for table in (schema.oauth_grants, schema.oauth_channel_grants, schema.oauth_refresh_tokens,
                  schema.oauth_codes, schema.oauth_bind_sessions, schema.oauth_requests,
                  schema.oauth_clients):
        assert await count(table) == 0, table.name
    clock.advance(60 * 86400)  # 91 days after the key was made
    await gateway.oauth.maintain()
    keys = (await http.get("/oauth/jwks.json")).json()["keys"]
    assert len(keys) == 2  # rotated; the old one verifies a little longer


async def tool_or_bind(http: httpx.AsyncClient, access_token: str) -> None:
    resp = await call_tool(http, access_token, "pushgo.channel.bind.start", {})
    assert resp.status_code == 200 and resp.json()["result"]["isError"] is False


async def test_predefined_clients_follow_the_setting_across_restarts(db_url):
    first = "keep:old-secret-0123456789;drop:drop-secret-0123456789"
    gw = Gateway(make_settings(db_url, mcp_enabled=True, mcp_predefined_clients=first))
    async with gw.running():
        ch = await channel(gw)
        transport = httpx.ASGITransport(app=gw.asgi)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            code, verifier = await authorize(c, "drop", [(ch, PASSWORD)])
            dropped = await token(c, grant_type="authorization_code", code=code,
                                  redirect_uri=REDIRECT, code_verifier=verifier,
                                  client_id="drop", client_secret="drop-secret-0123456789")
            assert dropped.status_code == 200, dropped.text
    second = "keep:new-secret-0123456789"
    gw = Gateway(make_settings(db_url, mcp_enabled=True, mcp_predefined_clients=second))
    async with gw.running():
        transport = httpx.ASGITransport(app=gw.asgi)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            resp = await token(c, grant_type="refresh_token",
                               refresh_token=dropped.json()["refresh_token"], client_id="drop",
                               client_secret="drop-secret-0123456789")
            oauth_error(resp, 401, "invalid_client")
            for secret, status in (("old-secret-0123456789", 401),
                                   ("new-secret-0123456789", 400)):
                resp = await token(c, grant_type="refresh_token", refresh_token="x",
                                   client_id="keep", client_secret=secret)
                assert resp.status_code == status, resp.text


async def test_keys_grants_and_tokens_survive_a_restart(db_url):
    settings = make_settings(db_url, mcp_enabled=True)
    gw = Gateway(settings)
    async with gw.running():
        ch = await channel(gw)
        transport = httpx.ASGITransport(app=gw.asgi)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            session = await signed_in(gw, c, ch)
            keys = (await c.get("/oauth/jwks.json")).json()
    gw = Gateway(settings)
    async with gw.running():
        transport = httpx.ASGITransport(app=gw.asgi)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            assert (await c.get("/oauth/jwks.json")).json() == keys  # created once
            assert await send_ok(c, session["access_token"], ch) == 200
            renewed = await refresh(c, session["client"]["client_id"], session["refresh_token"])
            assert renewed.status_code == 200
            assert await send_ok(c, renewed.json()["access_token"], ch) == 200
