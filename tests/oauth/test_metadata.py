"""Discovery, clients and the door of /mcp in OAuth mode: the metadata documents and their
issuer, the 401 challenge, dynamic registration, predefined clients, Client ID Metadata
Documents and their SSRF guards, and which routes exist in which mode."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pushgo.app import Gateway
from pushgo.oauth import cimd
from pushgo.settings import SettingsError
from tests.conftest import make_settings
from tests.helpers import PASSWORD
from tests.live import serve_app
from tests.oauth_helpers import (  # noqa: F401
    AUTH,
    BASE,
    REDIRECT,
    RESOURCE,
    TOKEN,
    authorize,
    authorize_query,
    browser_fixture,
    channel,
    clock_fixture,
    exchange,
    oauth_gateway,
    oauth_settings,
    open_page,
    pkce,
    redirect_params,
    register,
    submit,
    token,
)


@pytest.fixture
def db_url(tmp_path: Any) -> str:
    """Discovery and registration exercise HTTP, not storage: SQLite only."""
    return f"sqlite:///{tmp_path}/pushgo.db"


async def gateway_with(tmp_path: Any, **overrides: Any) -> Gateway:
    return Gateway(make_settings(f"sqlite:///{tmp_path}/g.db", **overrides))


# --- discovery ----------------------------------------------------------------------------------


async def test_every_metadata_document_names_the_same_issuer_byte_for_byte(http):
    prm = (await http.get("/.well-known/oauth-protected-resource")).json()
    prm_mcp = (await http.get("/.well-known/oauth-protected-resource/mcp")).json()
    asm = (await http.get("/.well-known/oauth-authorization-server")).json()
    oidc = (await http.get("/.well-known/openid-configuration")).json()
    assert prm == prm_mcp
    assert prm["resource"] == RESOURCE
    assert prm["authorization_servers"] == [BASE] and asm["issuer"] == BASE == oidc["issuer"]
    assert set(prm["scopes_supported"]) == {"mcp:tools", "mcp:channels:manage"}
    for doc in (asm, oidc):
        assert doc["code_challenge_methods_supported"] == ["S256"]
        assert doc["authorization_endpoint"] == BASE + "/oauth/authorize"
        assert doc["token_endpoint"] == BASE + "/oauth/token"
        assert doc["registration_endpoint"] == BASE + "/oauth/register"
        assert doc["revocation_endpoint"] == BASE + "/oauth/revoke"
        assert doc["jwks_uri"] == BASE + "/oauth/jwks.json"
        assert doc["authorization_response_iss_parameter_supported"] is True
        assert doc["grant_types_supported"] == ["authorization_code", "refresh_token"]
        assert doc["ui_locales_supported"] == ["en", "zh-CN"]
    resp = await http.options("/oauth/token")
    assert resp.status_code == 204 and resp.headers["access-control-allow-origin"] == "*"


async def test_urls_follow_the_forwarded_origin_or_the_public_base_url(http, tmp_path):
    headers = {"x-forwarded-proto": "https", "x-forwarded-host": "push.example.com"}
    asm = (await http.get("/.well-known/oauth-authorization-server", headers=headers)).json()
    assert asm["issuer"] == "https://push.example.com"
    assert asm["token_endpoint"] == "https://push.example.com/oauth/token"
    prm = (await http.get("/.well-known/oauth-protected-resource/mcp",
                          headers={"host": "gw.internal:8080"})).json()
    assert prm["resource"] == "http://gw.internal:8080/mcp"

    gw = await gateway_with(tmp_path, mcp_enabled=True,
                            public_base_url="https://gateway.example.com/push")
    async with gw.running():
        transport = httpx.ASGITransport(app=gw.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.7") as c:
            asm = (await c.get("/.well-known/oauth-authorization-server",
                               headers=headers)).json()
            prm = (await c.get("/.well-known/oauth-protected-resource")).json()
            resp = await c.post("/mcp", json={})
    assert asm["issuer"] == "https://gateway.example.com/push"
    assert prm["resource"] == "https://gateway.example.com/push/mcp"
    assert resp.headers["www-authenticate"].endswith(
        'resource_metadata="https://gateway.example.com/push/.well-known/'
        'oauth-protected-resource/mcp"')


async def test_the_jwks_publishes_the_es256_public_key_only(http):
    (key,) = (await http.get("/oauth/jwks.json")).json()["keys"]
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("EC", "P-256", "ES256", "sig")
    assert "d" not in key and key["kid"]


async def test_mcp_without_a_token_is_401_with_the_resource_metadata_url(http):
    resp = await http.post("/mcp", content=b"{}", headers={"content-type": "application/json"})
    assert resp.status_code == 401
    challenge = resp.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{BASE}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert "error=" not in challenge
    resp = await http.post("/mcp", content=b"{}", headers={"authorization": "Bearer nope"})
    assert resp.status_code == 401
    assert 'error="invalid_token"' in resp.headers["www-authenticate"]
    assert resp.json()["error"] == "invalid_token"


# --- dynamic registration -----------------------------------------------------------------------


async def test_registration_answers_201_with_the_full_metadata_and_ignores_extra_fields(http):
    resp = await http.post("/oauth/register", json={
        "redirect_uris": [REDIRECT, "https://app.example.com/cb", "com.example.app:/oauth"],
        "client_name": "Claude-ish", "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"], "scope": "mcp:tools", "software_id": "x",
        "application_type": "native", "some_vendor_extension": {"a": 1}})
    assert resp.status_code == 201, resp.text
    doc = resp.json()
    assert doc["client_id"].startswith("pgc_") and doc["client_secret"]
    assert doc["client_secret_expires_at"] == 0
    assert doc["token_endpoint_auth_method"] == "client_secret_basic"  # RFC 7591 default
    assert doc["redirect_uris"][2] == "com.example.app:/oauth"
    assert doc["grant_types"] == ["authorization_code", "refresh_token"]
    assert (doc["client_name"], doc["scope"]) == ("Claude-ish", "mcp:tools")
    assert "some_vendor_extension" not in doc
    public = await register(http)
    assert "client_secret" not in public and public["token_endpoint_auth_method"] == "none"


@pytest.mark.parametrize(("uris", "error"), [
    (["http://app.example.com/cb"], "invalid_redirect_uri"),
    (["https://app.example.com/cb#frag"], "invalid_redirect_uri"),
    (["javascript:alert(1)"], "invalid_redirect_uri"),
    (["data:text/html,hi"], "invalid_redirect_uri"),
    ([], "invalid_redirect_uri"),
    ("https://app.example.com/cb", "invalid_redirect_uri"),
])
async def test_registration_refuses_unsafe_redirect_uris(http, uris, error):
    resp = await http.post("/oauth/register", json={"redirect_uris": uris})
    assert resp.status_code == 400
    assert resp.json()["error"] == error


async def test_registration_refuses_bad_metadata(http):
    for body in ([1, 2], {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt"},
                 {"redirect_uris": [REDIRECT], "grant_types": ["client_credentials"]},
                 {"redirect_uris": [REDIRECT], "client_name": 7}):
        resp = await http.post("/oauth/register", json=body)
        assert resp.status_code == 400, body
        assert resp.json()["error"] == "invalid_client_metadata", resp.text
    resp = await http.post("/oauth/register", content=b"{not json",
                           headers={"content-type": "application/json"})
    assert resp.json()["error"] == "invalid_client_metadata"


async def test_registration_is_rate_limited_per_address(http):
    statuses = [(await http.post("/oauth/register", json={"redirect_uris": [REDIRECT]}))
                .status_code for _ in range(22)]
    assert statuses[:20] == [201] * 20
    assert statuses[-1] == 429


async def test_with_dcr_disabled_the_endpoint_is_404_and_not_advertised(tmp_path):
    gw = await gateway_with(tmp_path, mcp_enabled=True, mcp_dcr_enabled=False)
    async with gw.running():
        transport = httpx.ASGITransport(app=gw.asgi)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            resp = await c.post("/oauth/register", json={"redirect_uris": [REDIRECT]})
            asm = (await c.get("/.well-known/oauth-authorization-server")).json()
    assert resp.status_code == 404
    assert "registration_endpoint" not in asm


# --- predefined clients -------------------------------------------------------------------------


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"authorization": f"Basic {raw}"}


async def test_predefined_clients_authenticate_with_basic_or_post(tmp_path):
    clients = "desk-app:desk-secret-0123456789\nother:other-secret-0123456789"
    gw = await gateway_with(tmp_path, mcp_enabled=True, mcp_predefined_clients=clients)
    async with gw.running():
        cid = await channel(gw)
        transport = httpx.ASGITransport(app=gw.asgi)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            for style in ("basic", "post"):
                code, verifier = await authorize(c, "desk-app", [(cid, PASSWORD)],
                                                 redirect_uri=REDIRECT)
                form = {"grant_type": "authorization_code", "code": code,
                        "redirect_uri": REDIRECT, "code_verifier": verifier}
                if style == "basic":
                    resp = await c.post("/oauth/token", data=form,
                                        headers=basic("desk-app", "desk-secret-0123456789"))
                else:
                    resp = await token(c, **form, client_id="desk-app",
                                       client_secret="desk-secret-0123456789")
                assert resp.status_code == 200, resp.text
            # Configured without redirect URIs: loopback only (any port and path), never an
            # HTTPS or plain-http host elsewhere (an error page, no redirect).
            _v, ch = pkce()
            await open_page(c, "/oauth/authorize", authorize_query(
                "desk-app", ch, redirect_uri="http://[::1]:4711/elsewhere"))
            for uri in ("https://desk.example.com/cb", "http://desk.example.com/cb"):
                resp = await c.get("/oauth/authorize", params=authorize_query(
                    "desk-app", ch, redirect_uri=uri))
                assert resp.status_code == 400 and "location" not in resp.headers
            resp = await c.post("/oauth/token", data={"grant_type": "refresh_token",
                                                      "refresh_token": "x"},
                                headers=basic("desk-app", "wrong-secret"))
            assert resp.status_code == 401 and resp.json()["error"] == "invalid_client"
            assert resp.headers["www-authenticate"].startswith("Basic")


@pytest.mark.parametrize("raw", ["no-colon", "id:short", ":secret-0123456789abc"])
async def test_a_bad_predefined_client_setting_stops_start_up(tmp_path, raw):
    with pytest.raises(SettingsError, match="PUSHGO_MCP_PREDEFINED_CLIENTS"):
        Gateway(make_settings(f"sqlite:///{tmp_path}/x.db", mcp_enabled=True,
                              mcp_predefined_clients=raw))


# --- Client ID Metadata Documents ---------------------------------------------------------------


async def test_a_client_id_metadata_document_is_fetched_and_used(tmp_path):
    served: list[str] = []

    async def doc(request: Request) -> Response:
        served.append(request.url.path)
        url = str(request.url)
        return JSONResponse({"client_id": url, "client_name": "Doc Client",
                             "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"})

    async def bad(request: Request) -> Response:
        return JSONResponse({"client_id": "https://elsewhere.example/x",
                             "redirect_uris": [REDIRECT]})

    app = Starlette(routes=[Route("/client.json", doc), Route("/bad.json", bad),
                            Route("/healthz", lambda r: Response("ok"))])
    gw = await gateway_with(tmp_path, mcp_enabled=True, mcp_cimd_allow_loopback=True)
    async with serve_app(app) as origin, gw.running():
        client_id = origin + "/client.json"
        cid = await channel(gw)
        transport = httpx.ASGITransport(app=gw.asgi)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            code, verifier = await authorize(c, client_id, [(cid, PASSWORD)])
            assert "Doc Client" in (await open_page(c, "/oauth/authorize", authorize_query(
                client_id, pkce()[1]))).html
            tokens = await exchange(c, client_id, code, verifier)
            assert tokens["access_token"]
            resp = await c.get("/oauth/authorize",
                               params=authorize_query(origin + "/bad.json", pkce()[1]))
            assert resp.status_code == 400 and "location" not in resp.headers
    assert served == ["/client.json"]  # cached after the first fetch


@pytest.mark.parametrize("client_id", [
    "http://127.0.0.1:9/client.json",       # loopback, and not https
    "https://127.0.0.1:9/client.json",      # loopback
    "https://10.1.2.3/client.json",         # private
    "https://169.254.169.254/latest/meta",  # link-local (cloud metadata)
    "https://[::1]/client.json",
    "https://localhost/client.json",
    "https://user:pw@example.com/c.json",
    "https://example.com/",                 # no path
])
async def test_metadata_document_urls_cannot_reach_private_targets(http, client_id):
    resp = await http.get("/oauth/authorize", params=authorize_query(client_id, pkce()[1]))
    assert resp.status_code == 400
    assert "location" not in resp.headers
    assert "not registered" in resp.text
    with pytest.raises(cimd.CimdError, match=r"non-public|https|path|credentials"):
        await cimd.fetch(client_id, allow_loopback=False)


# --- modes --------------------------------------------------------------------------------------


async def test_legacy_mode_serves_no_oauth_routes_and_oauth_mode_takes_the_gateway_token(
        tmp_path, http):
    gw = await gateway_with(tmp_path, mcp_enabled=True, mcp_auth_mode="legacy", token=TOKEN)
    async with gw.running():
        transport = httpx.ASGITransport(app=gw.asgi)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            for path in ("/.well-known/oauth-authorization-server", "/oauth/jwks.json"):
                assert (await c.get(path)).status_code == 404
            resp = await c.post("/mcp", content=b"{}", headers={"content-type": "application/json"})
            assert resp.headers["www-authenticate"] == "Bearer"
    # OAuth mode: the gateway token is a legacy caller, shown the password field (as v1.2.9).
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
                  "io.modelcontextprotocol/clientCapabilities": {}}}})
    resp = await http.post("/mcp", content=body, headers={
        **AUTH, "content-type": "application/json", "accept": "application/json",
        "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"})
    assert resp.status_code == 200, resp.text
    tools = {t["name"]: t for t in resp.json()["result"]["tools"]}
    assert "password" in tools["pushgo.message.send"]["inputSchema"]["required"]


async def test_predefined_redirect_uris_and_a_secret_rotation_come_from_the_setting(tmp_path):
    """``id:secret@uri|uri``: only those URIs (exact; loopback any port); the same id twice
    holds two secrets, both accepted at the token endpoint, and the grants outlive the
    rotation's end (the old secret dropped)."""
    new, old = "desk-secret-new-0123456789", "desk-secret-old-0123456789"
    clients = (f"desk:{new}@https://desk.example.com/cb|{REDIRECT}; desk:{old}"
               "\nother:other-secret-0123456789")
    gw = await gateway_with(tmp_path, mcp_enabled=True, mcp_predefined_clients=clients)
    async with gw.running():
        cid = await channel(gw)
        transport = httpx.ASGITransport(app=gw.asgi)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            _v, ch = pkce()
            await open_page(c, "/oauth/authorize", authorize_query(
                "desk", ch, redirect_uri="https://desk.example.com/cb"))
            for uri in ("https://desk.example.com/cb/", "https://desk.example.com/other",
                        "https://evil.example/steal", "http://127.0.0.1:9999/callback/x"):
                resp = await c.get("/oauth/authorize", params=authorize_query(
                    "desk", ch, redirect_uri=uri))
                assert resp.status_code == 400 and "location" not in resp.headers, uri
            refresh = ""
            for secret in (new, old):
                code, verifier = await authorize(c, "desk", [(cid, PASSWORD)])
                resp = await c.post("/oauth/token", headers=basic("desk", secret), data={
                    "grant_type": "authorization_code", "code": code,
                    "redirect_uri": REDIRECT, "code_verifier": verifier})
                assert resp.status_code == 200, resp.text
                refresh = resp.json()["refresh_token"]
            wrong = await c.post("/oauth/token", headers=basic("desk", "other-secret-0123456789"),
                                 data={"grant_type": "refresh_token", "refresh_token": refresh})
            assert wrong.status_code == 401
    # The rotation ends: only the new secret is configured; the grant is kept.
    gw = await gateway_with(tmp_path, mcp_enabled=True,
                            mcp_predefined_clients=f"desk:{new}@{REDIRECT}")
    async with gw.running():
        transport = httpx.ASGITransport(app=gw.asgi)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            resp = await c.post("/oauth/token", headers=basic("desk", old),
                                data={"grant_type": "refresh_token", "refresh_token": refresh})
            assert resp.status_code == 401
            resp = await c.post("/oauth/token", headers=basic("desk", new),
                                data={"grant_type": "refresh_token", "refresh_token": refresh})
            assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("raw", [
    "a:short", "a:0123456789abcdef@http://evil.example/cb",
    "a:0123456789abcdef@https://x.example/cb#frag",
    "a:0123456789abcdef@http://evil.example@127.0.0.1/cb",
    "a:s1-0123456789abcdef;a:s2-0123456789abcdef;a:s3-0123456789abcdef"])
def test_a_bad_predefined_client_entry_is_one_line_naming_the_variable(raw):
    from pushgo.oauth.config import predefined_clients

    with pytest.raises(SettingsError) as err:
        predefined_clients(make_settings("sqlite://", mcp_predefined_clients=raw))
    assert str(err.value).startswith("invalid PUSHGO_MCP_PREDEFINED_CLIENTS: ")
    assert "\n" not in str(err.value) and "0123456789abcdef" not in str(err.value)


async def test_the_openid_configuration_claims_no_id_token(http):
    oidc = (await http.get("/.well-known/openid-configuration")).json()
    asm = (await http.get("/.well-known/oauth-authorization-server")).json()
    assert oidc == asm
    assert not {"subject_types_supported", "id_token_signing_alg_values_supported",
                "userinfo_endpoint"} & set(oidc)
    assert "openid" not in oidc["scopes_supported"]


@pytest.mark.parametrize("profile", ["small", "public"])
async def test_each_runtime_profile_owns_its_token_lifetimes(tmp_path, profile):
    """The access token's ``expires_in`` and the code's lifetime follow
    PUSHGO_RUNTIME_PROFILE: public is shorter."""
    from pushgo.oauth.config import MINUTE, PROFILES

    small, public = PROFILES["small"], PROFILES["public"]
    assert public.access < small.access and public.refresh_idle < small.refresh_idle
    assert public.refresh_absolute < small.refresh_absolute
    assert public.bind_session < small.bind_session and public.code < small.code
    gw = await gateway_with(tmp_path, mcp_enabled=True, runtime_profile=profile)
    async with gw.running():
        cid = await channel(gw)
        transport = httpx.ASGITransport(app=gw.asgi)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            client = await register(c)
            code, verifier = await authorize(c, client["client_id"], [(cid, PASSWORD)])
            tokens = await exchange(c, client["client_id"], code, verifier)
    assert tokens["expires_in"] * 1000 == PROFILES[profile].access
    assert tokens["expires_in"] == (5 if profile == "public" else 15) * MINUTE // 1000


@pytest.mark.parametrize(("overrides", "warned"), [
    ({"http_host": "0.0.0.0"}, "PUSHGO_PUBLIC_BASE_URL is unset"),
    ({"http_host": "127.0.0.1"}, None),
    ({"http_host": "0.0.0.0", "public_base_url": "http://gw.example.com"}, "plain http"),
    ({"http_host": "0.0.0.0", "public_base_url": "https://gw.example.com"}, None),
    ({"http_host": "::1", "public_base_url": "http://127.0.0.1:6666"}, None),
])
async def test_start_up_warns_once_about_a_risky_public_base_url(tmp_path, caplog, overrides,
                                                                  warned):
    gw = await gateway_with(tmp_path, mcp_enabled=True, **overrides)
    with caplog.at_level("WARNING", logger="pushgo.oauth"):
        async with gw.running():
            pass
    lines = [r.getMessage() for r in caplog.records if "PUSHGO_PUBLIC_BASE_URL" in r.getMessage()]
    if warned is None:
        assert lines == []
    else:
        assert len(lines) == 1 and warned in lines[0]
