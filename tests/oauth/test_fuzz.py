"""Garbage at every OAuth endpoint and page never gets a 500; the pure helpers behind them
(redirect-URI rules, query building, locale choice, form and Basic decoding, PKCE) hold their
properties for any input. Generation follows tests/api/test_fuzz.py: collect, then send."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pushgo.oauth.config import pkce_matches, s256
from pushgo.protocol import oauth as oauth_wire
from tests.api.test_fuzz import collect
from tests.helpers import PASSWORD
from tests.oauth_helpers import (  # noqa: F401
    REDIRECT,
    authorize_query,
    browser_fixture,
    channel,
    clock_fixture,
    oauth_gateway,
    oauth_settings,
    open_page,
    pkce,
    signed_in,
)


@pytest.fixture
def db_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/pushgo.db"


FIELDS = ["grant_type", "code", "redirect_uri", "code_verifier", "client_id", "client_secret",
          "refresh_token", "scope", "resource", "token", "token_type_hint", "request_id",
          "csrf_token", "channel_id", "password", "decision", "add_row", "lang", "state",
          "response_type", "code_challenge", "code_challenge_method", "ui_locales",
          "bind_session_id"]
texts = st.one_of(st.text(max_size=60), st.sampled_from(
    ["authorization_code", "refresh_token", "S256", "plain", "code", "approve", "deny",
     "mcp:tools", "mcp:tools mcp:channels:manage", REDIRECT, "http://127.0.0.1:6666/mcp",
     "zh-CN", "", "x" * 5000]))
forms = st.lists(st.tuples(st.sampled_from(FIELDS), texts), max_size=10)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4), max_leaves=10)
json_docs = st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "redirect_uris": st.one_of(st.lists(texts, max_size=3), json_values),
    "token_endpoint_auth_method": st.one_of(texts, json_values),
    "grant_types": json_values, "response_types": json_values, "client_name": json_values,
    "scope": json_values, "contacts": json_values, "logo_uri": json_values,
    "request_id": texts, "csrf_token": texts, "channel_id": texts, "password": texts}))
auth_headers = st.one_of(st.none(), st.just("Basic !!!"), st.text(max_size=30).map(
    lambda t: "Basic " + base64.b64encode(t.encode()).decode()),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20))
FORM_PATHS = ["/oauth/token", "/oauth/revoke", "/oauth/authorize", "/mcp/bind/session",
              "/mcp/revoke/session"]
JSON_PATHS = ["/oauth/register", "/oauth/channel/validate"]
cases = st.one_of(
    st.tuples(st.just("form"), st.sampled_from(FORM_PATHS), forms, auth_headers,
              st.sampled_from(["application/x-www-form-urlencoded", "text/plain", ""])),
    st.tuples(st.just("json"), st.sampled_from(JSON_PATHS), json_docs, auth_headers,
              st.sampled_from(["application/json", "application/x-www-form-urlencoded"])),
    st.tuples(st.just("bytes"), st.sampled_from(FORM_PATHS + JSON_PATHS),
              st.binary(max_size=200), auth_headers, st.just("application/json")),
    st.tuples(st.just("get"), st.sampled_from(["/oauth/authorize", "/mcp/bind/session",
                                               "/mcp/revoke/session"]),
              forms, auth_headers, st.just("")),
)


async def test_garbage_at_the_oauth_endpoints_never_gets_a_500(gateway, http):
    cid = await channel(gateway)
    session = await signed_in(gateway, http, cid)
    client_id = session["client"]["client_id"]
    page = await open_page(http, "/oauth/authorize", authorize_query(client_id, pkce()[1]))
    known = {"client_id": client_id, "refresh_token": session["refresh_token"],
             "request_id": page.request_id, "csrf_token": page.csrf_token, "channel_id": cid,
             "password": PASSWORD}
    wrong: list[str] = []
    seen: dict[int, int] = {}
    for kind, path, payload, auth, ctype in collect(cases, 400):
        headers = {"content-type": ctype} if ctype else {}
        if auth is not None:
            headers["authorization"] = auth
        if kind in ("form", "get"):
            # Half the time a field carries a real value, so deeper checks are reached.
            pairs = [(k, known.get(k, v) if len(v) % 2 else v) for k, v in payload]
            if kind == "get":
                resp = await http.get(path + "?" + urlencode(pairs), headers=headers)
            else:
                resp = await http.post(path, content=urlencode(pairs), headers=headers)
        elif kind == "json":
            resp = await http.post(path, content=json.dumps(payload), headers=headers)
        else:
            resp = await http.post(path, content=payload, headers=headers)
        seen[resp.status_code] = seen.get(resp.status_code, 0) + 1
        if resp.status_code >= 500 or "internal_error" in resp.text:
            wrong.append(f"{kind} {path} {payload!r} {headers} -> {resp.status_code} "
                         f"{resp.text[:200]}")
    assert not wrong, "\n".join(wrong[:10])
    assert 400 in seen and len(seen) >= 3, seen  # many distinct refusals, not one wall


# --- the pure helpers ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_redirect_rules_never_raise_and_only_admit_safe_schemes(uri):
    problem = oauth_wire.redirect_uri_problem(uri)
    if problem is None:
        scheme = urlsplit(uri).scheme.lower()
        assert scheme == "https" or oauth_wire.is_loopback(uri) or "." in scheme
        assert "#" not in uri
    loop = oauth_wire.loopback_parts(uri)
    assert oauth_wire.redirect_matches([REDIRECT], uri) == (uri == REDIRECT or (
        problem is None and loop is not None and (loop[0], loop[2]) == ("127.0.0.1", "/callback")))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=10), st.text(max_size=20)), max_size=4),
       st.sampled_from(["https://a.example/cb", "https://a.example/cb?x=1",
                        "com.example.app:/cb", "http://127.0.0.1:5/cb?a=b&c="]))
def test_with_query_keeps_the_uri_and_adds_exactly_the_params(params, uri):
    out = oauth_wire.with_query(uri, params)
    parts, before = urlsplit(out), urlsplit(uri)
    assert (parts.scheme, parts.netloc, parts.path) == (before.scheme, before.netloc, before.path)
    got = parse_qsl(parts.query, keep_blank_values=True)
    assert got == parse_qsl(before.query, keep_blank_values=True) + params


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=12)), st.one_of(st.none(), st.text(max_size=20)),
       st.one_of(st.none(), st.text(max_size=30)))
def test_the_locale_is_always_one_of_the_two(lang, ui_locales, accept):
    assert oauth_wire.pick_locale(lang, ui_locales, accept) in oauth_wire.LOCALES


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100))
def test_form_and_basic_decoding_fail_only_with_value_errors(raw):
    for fn in (lambda: oauth_wire.parse_form(raw),
               lambda: oauth_wire.basic_credentials("Basic " + raw.decode("latin-1"))):
        try:
            fn()
        except ValueError:
            pass


def test_basic_credentials_are_form_decoded_per_rfc_6749():
    raw = base64.b64encode(b"my%20client:p%3Ass+word").decode()
    assert oauth_wire.basic_credentials(f"Basic {raw}") == ("my client", "p:ss word")
    assert oauth_wire.basic_credentials("Bearer x") is None


def test_pkce_s256_matches_the_rfc_7636_example():
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert pkce_matches("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", verifier)
    assert not pkce_matches("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", verifier[:-1])
    assert not oauth_wire.valid_challenge("too-short") and oauth_wire.valid_challenge(s256(verifier))

