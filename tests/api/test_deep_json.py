"""Deeply nested JSON is a clear 400 on every route that reads JSON, never a 500.

The routes are collected from the running gateway (API, operator, bulk, /mcp and the OAuth
server), so a route added later is covered without touching this file. Each gets bodies
nested 10,000 deep (``[[[…`` and ``{"a":{"a":…``, alone and inside a field); GET routes get
the same in their query string.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from pushgo.protocol import jsondepth
from tests.helpers import PASSWORD

TOKEN = "deep-json-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
LEVELS = 10_000
ARRAYS = "[" * LEVELS + "]" * LEVELS
OBJECTS = '{"a":' * LEVELS + "1" + "}" * LEVELS
DEEP = [ARRAYS, OBJECTS]
BODIES = [*DEEP, *(f'{{"{field}": {{"k": {deep}}}}}' for deep in DEEP
                   for field in ("metadata", "params"))]
#: For query strings (a URL has a length limit): 2,000 levels, twice what once made a 500.
QUERY_DEEP = ["[" * 2000 + "]" * 2000, '{"a":' * 2000 + "1" + "}" * 2000]
#: Routes whose answer to a JSON body that is not theirs is another error (wrong media type).
NOT_JSON = {"/oauth/token", "/oauth/revoke", "/oauth/authorize"}


@pytest.fixture(params=["oauth", "legacy"])
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"mcp_enabled": True, "mcp_auth_mode": request.param, "token": TOKEN}


def routes(gateway: Any) -> list[tuple[str, str]]:
    """(method, path) of every route, path parameters filled with a placeholder."""
    out = set()
    for route in gateway.starlette.routes:
        if not isinstance(route, Route):
            continue
        path = route.path
        for name in route.param_convertors:
            path = path.replace("{" + name + "}", "x")
        for method in route.methods or ("GET", "POST"):
            if method != "HEAD":
                out.add((method, path))
    return sorted(out)


def problem(method: str, path: str, raw: str, resp: httpx.Response) -> str | None:
    where = f"{method} {path} {raw[:24]!r} -> {resp.status_code} {resp.text[:200]!r}"
    if resp.status_code >= 500:
        return where
    return None


async def test_deep_json_bodies_are_a_4xx_on_every_route(client, gateway):
    client.headers.update(AUTH)
    headers = {"content-type": "application/json",
               "accept": "application/json, text/event-stream"}
    failures = []
    checked = set()
    for method, path in routes(gateway):
        if method in ("GET", "OPTIONS"):
            continue
        for raw in BODIES:
            resp = await client.request(method, path, content=raw, headers=headers)
            found = problem(method, path, raw, resp)
            if found:
                failures.append(found)
            elif path not in NOT_JSON:
                # A 4xx, or a per-item refusal in a streamed 200 (bulk).
                assert 400 <= resp.status_code < 500 or '"ok":false' in resp.text, (
                    method, path, resp.status_code, resp.text[:200])
                checked.add(path)
    assert not failures, "\n".join(failures[:10])
    # The routes measured failing before the limit, and one of each kind.
    assert {"/message", "/channel/subscribe", "/messages/bulk", "/mcp"} <= checked
    if gateway.oauth is not None:
        assert {"/oauth/register", "/oauth/channel/validate"} <= checked


async def test_the_api_names_the_depth_limit_in_its_error_code(client, gateway):
    client.headers.update(AUTH)
    fitting = '{"a":' * 2000 + "1" + "}" * 2000  # under the 32 KiB body limit
    for path in ("/message", "/channel/subscribe", "/device/register", "/event/create"):
        for raw in (ARRAYS, fitting, '{"metadata": ' + fitting + "}"):
            resp = await client.post(path, content=raw,
                                     headers={"content-type": "application/json"})
            assert (resp.status_code, resp.json()["error_code"]) == (400, "json_too_deep"), path


async def test_deep_json_in_a_query_string_is_a_400_on_every_get_route(client, gateway):
    client.headers.update(AUTH)
    failures = []
    for method, path in routes(gateway):
        if method != "GET" or path.endswith("/stream"):
            continue
        for raw in QUERY_DEEP:
            resp = await client.get(path, params={"metadata": raw})
            found = problem(method, path, raw, resp)
            if found:
                failures.append(found)
    assert not failures, "\n".join(failures[:10])
    for raw in QUERY_DEEP:
        resp = await client.get("/message", params={
            "channel_id": "0" * 26, "password": PASSWORD, "title": "t", "metadata": raw})
        assert (resp.status_code, resp.json()["error_code"]) == (400, "json_too_deep")


async def test_a_deep_bulk_item_is_one_json_too_deep_result_line(client, gateway):
    client.headers.update(AUTH)
    resp = await client.post("/messages/bulk", content=ARRAYS + "\n",
                             headers={"content-type": "application/x-ndjson"})
    assert resp.status_code == 200
    lines = [json.loads(line) for line in resp.text.splitlines() if line.strip()]
    assert any(line.get("error_code") == "json_too_deep" for line in lines), lines


async def test_an_oauth_json_body_too_deep_is_invalid_request(client, gateway):
    if gateway.oauth is None:
        pytest.skip("the OAuth server runs in oauth mode only")
    for path in ("/oauth/register", "/oauth/channel/validate"):
        for raw in QUERY_DEEP:  # under the OAuth body limit
            resp = await client.post(path, content=raw,
                                     headers={"content-type": "application/json"})
            assert resp.status_code == 400, (path, resp.text[:200])
            assert "nested deeper" in resp.text


def test_the_depth_check_counts_nesting_not_brackets_in_strings():
    assert jsondepth.depth(b'{"a": "[[[[{{{{", "b": [1, [2]]}') == 3
    assert jsondepth.depth('"\\"[[["') == 0
    jsondepth.check("[" * jsondepth.MAX_DEPTH + "]" * jsondepth.MAX_DEPTH)
    jsondepth.check(b"[" + b"[]," * 10_000 + b"[]]")  # many brackets, shallow
    with pytest.raises(jsondepth.TooDeep):
        jsondepth.check("[" * (jsondepth.MAX_DEPTH + 1) + "]" * (jsondepth.MAX_DEPTH + 1))
    with pytest.raises(ValueError):
        jsondepth.loads(OBJECTS)
    assert jsondepth.loads('{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}
