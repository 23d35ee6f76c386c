"""/mcp over raw HTTP in the initialize era (2025-06-18 / 2025-11-25), and what both eras
share at the door: Origin, authentication, methods, media types, body size, JSON-RPC parsing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from pushgo.app import Gateway
from pushgo.mcp import dispatcher as mcp_dispatch
from pushgo.protocol import jsonrpc
from tests.conftest import make_settings
from tests.mcp_helpers import (  # noqa: F401
    AUTH,
    LEGACY,
    api_fixture,
    http_fixture,
    initialize_body,
    legacy_call,
    legacy_headers,
    mcp_settings,
    open_session,
    private_device_on_channel,
    rpc,
    rpc_error,
    slow_channel_list,
    sqlite_db_url,
    sse_messages,
)

# --- the door ---------------------------------------------------------------------------------


async def test_mcp_answers_404_when_disabled(tmp_path):
    gw = Gateway(make_settings(f"sqlite:///{tmp_path}/off.db", token="t"))
    async with gw.running():
        transport = httpx.ASGITransport(app=gw.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as c:
            for method in ("GET", "POST", "DELETE"):
                resp = await c.request(method, "/mcp", headers={"authorization": "Bearer t"},
                                       content=initialize_body())
                assert resp.status_code == 404
                assert resp.json()["error_code"] == "route_not_found"
    assert gw.mcp is None


@pytest.mark.parametrize("origin", ["http://evil.example.com", "https://localhost.evil.com",
                                    "null", "file://", "http://10.0.0.1:6666"])
async def test_a_foreign_origin_is_forbidden(http, origin):
    headers = {**legacy_headers(version=None), "origin": origin}
    resp = await http.post("/mcp", content=initialize_body(), headers=headers)
    rpc_error(resp, 403, jsonrpc.INVALID_REQUEST)
    assert "mcp-session-id" not in resp.headers


@pytest.mark.parametrize("origin", ["http://localhost:6274", "http://127.0.0.1", "https://[::1]:8443",
                                    "http://LOCALHOST:1"])
async def test_loopback_origins_are_allowed(http, origin):
    headers = {**legacy_headers(version=None), "origin": origin}
    resp = await http.post("/mcp", content=initialize_body(), headers=headers)
    assert resp.status_code == 200, resp.text


async def test_the_public_base_url_origin_is_allowed(tmp_path):
    settings = make_settings(f"sqlite:///{tmp_path}/p.db", mcp_enabled=True, mcp_auth_mode="legacy",
                             public_base_url="https://gw.example.com")
    gw = Gateway(settings)
    async with gw.running():
        transport = httpx.ASGITransport(app=gw.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as c:
            base = legacy_headers(version=None)
            ok = await c.post("/mcp", content=initialize_body(),
                              headers={**base, "origin": "https://gw.example.com"})
            bad = await c.post("/mcp", content=initialize_body(),
                               headers={**base, "origin": "https://gw.example.com:8443"})
    assert ok.status_code == 200
    assert bad.status_code == 403


async def test_the_gateway_token_is_required(http):
    headers = legacy_headers(version=None)
    del headers["authorization"]
    resp = await http.post("/mcp", content=initialize_body(), headers=headers)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"
    assert resp.json()["error"] == "invalid_request"
    resp = await http.post("/mcp", content=initialize_body(),
                           headers={**headers, "authorization": "Bearer wrong"})
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert resp.json()["error"] == "invalid_token"


async def test_other_http_methods_are_405_with_allow(http):
    for method in ("PUT", "PATCH", "OPTIONS"):
        resp = await http.request(method, "/mcp", headers=AUTH)
        rpc_error(resp, 405, jsonrpc.INVALID_REQUEST)
        assert resp.headers["allow"] == "GET, POST, DELETE"


async def test_a_body_that_is_not_json_typed_is_415(http):
    headers = {**legacy_headers(version=None), "content-type": "text/plain"}
    resp = await http.post("/mcp", content=initialize_body(), headers=headers)
    rpc_error(resp, 415, jsonrpc.INVALID_REQUEST)


@pytest.mark.parametrize("accept", ["text/html", "application/xml, text/plain",
                                    "application/json;q=0, text/event-stream;q=0"])
async def test_a_client_accepting_neither_media_type_gets_406(http, accept):
    resp = await http.post("/mcp", content=initialize_body(),
                           headers=legacy_headers(version=None, accept=accept))
    rpc_error(resp, 406, jsonrpc.INVALID_REQUEST)


async def test_a_body_over_32_kib_is_413(http):
    sid = await open_session(http)
    big = rpc("tools/call", {"name": "pushgo.message.send",
                             "arguments": {"title": "x" * (33 * 1024)}})
    resp = await http.post("/mcp", content=big, headers=legacy_headers(sid))
    rpc_error(resp, 413, jsonrpc.INVALID_REQUEST)

    async def chunks() -> AsyncIterator[bytes]:  # no content-length: refused while streaming in
        for _ in range(40):
            yield b" " * 1024

    resp = await http.post("/mcp", content=chunks(), headers=legacy_headers(sid))
    rpc_error(resp, 413, jsonrpc.INVALID_REQUEST)


@pytest.mark.parametrize(("body", "code", "rid"), [
    (b"{not json", jsonrpc.PARSE_ERROR, None),
    (b"", jsonrpc.PARSE_ERROR, None),
    (b"\xff\xfe", jsonrpc.PARSE_ERROR, None),
    (b"[" * 5000, jsonrpc.PARSE_ERROR, None),
    (b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', jsonrpc.INVALID_REQUEST, None),
    (b"42", jsonrpc.INVALID_REQUEST, None),
    (b'"ping"', jsonrpc.INVALID_REQUEST, None),
    (b'{"jsonrpc":"1.0","id":7,"method":"ping"}', jsonrpc.INVALID_REQUEST, 7),
    (b'{"id":8,"method":"ping"}', jsonrpc.INVALID_REQUEST, 8),
    (b'{"jsonrpc":"2.0","id":true,"method":"ping"}', jsonrpc.INVALID_REQUEST, None),
    (b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', jsonrpc.INVALID_REQUEST, None),
    (b'{"jsonrpc":"2.0","id":null,"method":"ping"}', jsonrpc.INVALID_REQUEST, None),
    (b'{"jsonrpc":"2.0","id":"a","method":""}', jsonrpc.INVALID_REQUEST, "a"),
    (b'{"jsonrpc":"2.0","id":2,"method":"ping","params":[1]}', jsonrpc.INVALID_REQUEST, 2),
    (b'{"jsonrpc":"2.0","id":3,"method":"ping","result":{}}', jsonrpc.INVALID_REQUEST, 3),
    (b'{"jsonrpc":"2.0","id":4}', jsonrpc.INVALID_REQUEST, 4),
    (b'{"jsonrpc":"2.0"}', jsonrpc.INVALID_REQUEST, None),
])
async def test_malformed_json_rpc_is_400_with_the_error_code(http, body, code, rid):
    sid = await open_session(http)
    resp = await http.post("/mcp", content=body, headers=legacy_headers(sid))
    doc = rpc_error(resp, 400, code)
    assert doc["id"] == rid


# --- sessions ---------------------------------------------------------------------------------


async def test_initialize_opens_a_session_and_negotiates_the_version(http, gateway):
    for asked, got in [("2025-11-25", "2025-11-25"), ("2025-06-18", "2025-06-18"),
                       ("2024-11-05", "2025-11-25"), ("2099-01-01", "2025-11-25")]:
        resp = await http.post("/mcp", content=initialize_body(asked, rid="init"),
                               headers=legacy_headers(version=None))
        assert resp.status_code == 200
        sid = resp.headers["mcp-session-id"]
        assert len(sid) >= 32 and all(0x21 <= ord(c) <= 0x7E for c in sid)
        doc = resp.json()
        assert doc["id"] == "init"
        result = doc["result"]
        assert result["protocolVersion"] == got
        assert result["serverInfo"]["name"] == "pushgo"
        assert set(result["capabilities"]) == {"tools", "resources"}
        assert "resultType" not in result
        assert "legacy mode" in result["instructions"]
    assert len(gateway.mcp.sessions) == 4


async def test_initialize_with_bad_params_is_400_invalid_params(http, gateway):
    for params in ({}, {"protocolVersion": 5}, {"protocolVersion": "2025-11-25",
                                                "capabilities": []}):
        resp = await http.post("/mcp", content=rpc("initialize", params),
                               headers=legacy_headers(version=None))
        rpc_error(resp, 400, jsonrpc.INVALID_PARAMS)
    assert len(gateway.mcp.sessions) == 0


async def test_a_request_without_a_session_is_400(http):
    resp = await http.post("/mcp", content=rpc("tools/list"), headers=legacy_headers())
    assert rpc_error(resp, 400, jsonrpc.INVALID_REQUEST)["id"] == 1


async def test_an_unknown_session_is_404(http):
    resp = await http.post("/mcp", content=rpc("tools/list"),
                           headers=legacy_headers("no-such-session"))
    rpc_error(resp, 404, jsonrpc.INVALID_REQUEST)


async def test_delete_ends_a_session_and_it_answers_404_after(http):
    sid = await open_session(http)
    assert (await legacy_call(http, sid, "ping"))["result"] == {}
    resp = await http.delete("/mcp", headers=legacy_headers(sid))
    assert resp.status_code == 200
    resp = await http.post("/mcp", content=rpc("ping"), headers=legacy_headers(sid))
    rpc_error(resp, 404, jsonrpc.INVALID_REQUEST)
    resp = await http.delete("/mcp", headers=legacy_headers(sid))
    rpc_error(resp, 404, jsonrpc.INVALID_REQUEST)
    resp = await http.delete("/mcp", headers=legacy_headers())
    rpc_error(resp, 400, jsonrpc.INVALID_REQUEST)


async def test_the_protocol_version_header_must_name_an_initialize_era_revision(http):
    sid = await open_session(http, "2025-11-25")
    for bad in ("garbage", "2099-01-01", ""):
        resp = await http.post("/mcp", content=rpc("ping"), headers=legacy_headers(sid, bad))
        rpc_error(resp, 400, jsonrpc.INVALID_REQUEST)
    # Another initialize-era revision is served as the session's (the header SHOULD repeat
    # the negotiated one; clients of the 2025-03-26 wire send theirs); none at all too.
    for ok in ("2025-06-18", "2025-03-26", None):
        resp = await http.post("/mcp", content=rpc("ping"), headers=legacy_headers(sid, ok))
        assert resp.status_code == 200 and resp.json()["result"] == {}, ok


async def test_notifications_and_client_responses_are_accepted_with_202(http):
    sid = await open_session(http)
    for body in (rpc("notifications/whatever", {"x": 1}, rid=None),
                 b'{"jsonrpc":"2.0","id":9,"result":{}}',
                 b'{"jsonrpc":"2.0","id":9,"error":{"code":1,"message":"m"}}',
                 rpc("notifications/cancelled", {"requestId": 404}, rid=None),
                 rpc("notifications/cancelled", {"requestId": [1]}, rid=None)):
        resp = await http.post("/mcp", content=body, headers=legacy_headers(sid))
        assert resp.status_code == 202, body
        assert resp.content == b""


# --- methods ----------------------------------------------------------------------------------


async def test_unknown_and_modern_only_methods_are_method_not_found(http):
    sid = await open_session(http)
    for method in ("nope", "server/discover", "prompts/list", "logging/setLevel",
                   "subscriptions/listen", "completion/complete"):
        doc = await legacy_call(http, sid, method, rid=method)
        assert doc["error"]["code"] == jsonrpc.METHOD_NOT_FOUND, method


async def test_tools_list_pages_with_an_opaque_cursor(http, monkeypatch):
    sid = await open_session(http)
    doc = await legacy_call(http, sid, "tools/list")
    # 9 (eight sends and the cancel): the four channel tools need OAuth and are not
    # listed to a legacy caller.
    assert len(doc["result"]["tools"]) == 9 and "nextCursor" not in doc["result"]
    assert "ttlMs" not in doc["result"] and "resultType" not in doc["result"]
    monkeypatch.setattr(mcp_dispatch, "PAGE_SIZE", 5)
    names: list[str] = []
    cursor = None
    while True:
        page = (await legacy_call(http, sid, "tools/list",
                                  {"cursor": cursor} if cursor else {}))["result"]
        names += [t["name"] for t in page["tools"]]
        cursor = page.get("nextCursor")
        if cursor is None:
            break
    assert len(names) == 9 == len(set(names))
    for bad in ("!!", "bm9wZQ", mcp_dispatch.encode_cursor(99)):
        doc = await legacy_call(http, sid, "tools/list", {"cursor": bad})
        assert doc["error"]["code"] == jsonrpc.INVALID_PARAMS


async def test_tool_call_protocol_errors_and_business_errors(http):
    sid = await open_session(http)
    doc = await legacy_call(http, sid, "tools/call", {"name": "pushgo.nope"})
    assert doc["error"]["code"] == jsonrpc.INVALID_PARAMS
    doc = await legacy_call(http, sid, "tools/call", {"arguments": {}})
    assert doc["error"]["code"] == jsonrpc.INVALID_PARAMS
    cases = [({"title": "x", "channel_id": "0" * 26, "bogus": 1}, "invalid_arguments"),
             ({"title": "x", "channel_id": "0" * 26}, "password_required"),
             ({"title": "x", "channel_id": "bad id", "password": "p" * 8}, "invalid_channel_id"),
             ({"title": "x", "channel_id": "0" * 26, "password": "p" * 8}, "channel_not_found"),
             ({"title": 5, "channel_id": "0" * 26}, "invalid_arguments")]
    for args, code in cases:
        doc = await legacy_call(http, sid, "tools/call",
                                {"name": "pushgo.message.send", "arguments": args})
        result = doc["result"]
        assert result["isError"] is True
        assert result["structuredContent"]["error_code"] == code, (args, result)
        assert json.loads(result["content"][0]["text"]) == result["structuredContent"]


async def test_a_client_taking_only_sse_gets_a_primed_stream(http, gateway, api):
    _key, cid = await private_device_on_channel(gateway, api)
    sid = await open_session(http, "2025-11-25")
    args = {"channel_id": cid, "password": "secret-pass-1", "title": "over sse"}
    resp = await http.post("/mcp", content=rpc("tools/call", {"name": "pushgo.message.send",
                                                              "arguments": args}),
                           headers=legacy_headers(sid, accept="text/event-stream"))
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/event-stream"
    assert resp.headers["x-accel-buffering"] == "no"
    first = resp.text.split("\n\n")[0]
    assert first.startswith("id: ") and "retry: 3000" in first and "data: " in first
    (msg,) = sse_messages(resp.text)
    assert msg["id"] == 1 and msg["result"]["structuredContent"]["accepted"] is True
    old = await open_session(http, "2025-06-18")
    resp = await http.post("/mcp", content=rpc("ping"),
                           headers=legacy_headers(old, "2025-06-18", accept="text/event-stream"))
    assert "retry:" not in resp.text
    assert sse_messages(resp.text) == [{"jsonrpc": "2.0", "id": 1, "result": {}}]


async def test_initialize_over_sse_carries_the_session_header(http):
    resp = await http.post("/mcp", content=initialize_body(),
                           headers=legacy_headers(version=None, accept="text/event-stream"))
    assert resp.headers["content-type"] == "text/event-stream"
    assert resp.headers["mcp-session-id"]
    (msg,) = sse_messages(resp.text)
    assert msg["result"]["protocolVersion"] == LEGACY


async def test_a_progress_token_streams_progress_before_the_result(http, gateway, api):
    _key, cid = await private_device_on_channel(gateway, api)
    sid = await open_session(http)
    params = {"name": "pushgo.message.send", "_meta": {"progressToken": "p-1"},
              "arguments": {"channel_id": cid, "password": "secret-pass-1", "title": "t"}}
    resp = await http.post("/mcp", content=rpc("tools/call", params, rid=5),
                           headers=legacy_headers(sid))
    assert resp.headers["content-type"] == "text/event-stream"
    msgs = sse_messages(resp.text)
    progress = [m["params"] for m in msgs if m.get("method") == "notifications/progress"]
    assert progress == [{"progressToken": "p-1", "progress": 0, "total": 1, "message": "sending"},
                        {"progressToken": "p-1", "progress": 1, "total": 1,
                         "message": "accepted"}]
    assert msgs[-1]["id"] == 5 and msgs[-1]["result"]["isError"] is False


async def test_notifications_cancelled_cancels_the_running_request(http, gateway):
    name, started, cancelled = slow_channel_list(gateway)
    sid = await open_session(http)
    answers: list[httpx.Response] = []

    async def call_it() -> None:
        answers.append(await http.post("/mcp", content=rpc("tools/call", {"name": name},
                                                           rid="slow"),
                                       headers=legacy_headers(sid)))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call_it)
            await started.wait()
            dup = await http.post("/mcp", content=rpc("ping", rid="slow"),
                                  headers=legacy_headers(sid))
            rpc_error(dup, 400, jsonrpc.INVALID_REQUEST)
            resp = await http.post("/mcp", content=rpc("notifications/cancelled",
                                                       {"requestId": "slow"}, rid=None),
                                   headers=legacy_headers(sid))
            assert resp.status_code == 202
            await cancelled.wait()
    (answer,) = answers
    doc = rpc_error(answer, 200, -32800)
    assert doc["id"] == "slow"


async def test_a_legacy_caller_is_listed_only_what_works_and_told_why_about_the_rest(http):
    """No channel tool and no "Authorized channels" resource in the lists; called anyway,
    they answer oauth_required (and the list resource still reads, empty, with a note)."""
    sid = await open_session(http)
    tools = [t["name"] for t in (await legacy_call(http, sid, "tools/list"))["result"]["tools"]]
    assert tools and not [n for n in tools if n.startswith("pushgo.channel.")]
    listed = (await legacy_call(http, sid, "resources/list"))["result"]["resources"]
    assert "pushgo://channels" not in [r["uri"] for r in listed]
    for name, args in [("pushgo.channel.bind.start", {}),
                       ("pushgo.channel.bind.status", {"bind_session_id": "pgbs_x"}),
                       ("pushgo.channel.list", {}),
                       ("pushgo.channel.unbind", {"channel_id": "0" * 26})]:
        result = (await legacy_call(http, sid, "tools/call",
                                    {"name": name, "arguments": args}))["result"]
        assert result["isError"] is True
        assert result["structuredContent"]["error_code"] == "oauth_required", name
    read = await legacy_call(http, sid, "resources/read", {"uri": "pushgo://channels"})
    assert json.loads(read["result"]["contents"][0]["text"])["channels"] == []
