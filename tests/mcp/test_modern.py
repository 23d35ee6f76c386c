"""/mcp over raw HTTP in the stateless 2026-07-28 era: server/discover, the per-request
``_meta`` ladder, header checks (-32020), versions (-32022), method routing (404 -32601),
``resultType`` and cache hints, and era routing beside the initialize era."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from pushgo.protocol import jsonrpc
from tests.mcp_helpers import (  # noqa: F401
    ACCEPT_BOTH,
    AUTH,
    MODERN,
    api_fixture,
    http_fixture,
    legacy_headers,
    mcp_settings,
    meta,
    modern_request,
    open_session,
    private_device_on_channel,
    rpc,
    rpc_error,
    sqlite_db_url,
    sse_messages,
)

SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo"


async def post(http: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await http.post("/mcp", content=body, headers=headers)


async def test_server_discover_describes_the_server(http, gateway):
    resp = await post(http, *modern_request("server/discover", rid="d"))
    assert resp.status_code == 200
    assert "mcp-session-id" not in resp.headers
    doc = resp.json()
    assert doc["id"] == "d"
    result = doc["result"]
    assert result["resultType"] == "complete"
    assert result["supportedVersions"] == ["2026-07-28", "2025-11-25", "2025-06-18"]
    assert result["capabilities"]["tools"] == {"listChanged": False}
    assert result["capabilities"]["resources"]["listChanged"] is True
    assert result["ttlMs"] == 300_000 and result["cacheScope"] == "public"
    assert result["_meta"][SERVER_INFO_KEY]["name"] == "pushgo"
    assert "serverInfo" not in result
    assert len(gateway.mcp.sessions) == 0


async def test_client_info_is_optional(http):
    m = meta()
    del m["io.modelcontextprotocol/clientInfo"]
    resp = await post(http, *modern_request("server/discover", {"_meta": m}))
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("params", [
    {},
    {"_meta": None},
    {"_meta": "x"},
    {"_meta": {"io.modelcontextprotocol/clientCapabilities": {}}},
    {"_meta": {"io.modelcontextprotocol/protocolVersion": MODERN}},
    {"_meta": {**meta(), "io.modelcontextprotocol/clientCapabilities": []}},
])
async def test_a_request_without_the_required_meta_is_400_invalid_params(http, params):
    body, headers = modern_request("server/discover", rid=101)
    doc = json.loads(body)
    doc["params"] = params
    resp = await post(http, json.dumps(doc).encode(), headers)
    assert rpc_error(resp, 400, jsonrpc.INVALID_PARAMS)["id"] == 101


async def test_no_params_at_all_is_400_invalid_params(http):
    _, headers = modern_request("server/discover")
    resp = await post(http, rpc("server/discover", rid=3), headers)
    rpc_error(resp, 400, jsonrpc.INVALID_PARAMS)


async def test_an_unsupported_version_is_400_with_the_supported_list(http):
    body, headers = modern_request("server/discover", rid=301, version="v999.0.0")
    resp = await post(http, body, headers)
    doc = rpc_error(resp, 400, jsonrpc.UNSUPPORTED_PROTOCOL_VERSION)
    assert doc["id"] == 301
    assert doc["error"]["data"] == {"supported": ["2026-07-28", "2025-11-25", "2025-06-18"],
                                    "requested": "v999.0.0"}


async def test_a_non_string_version_never_matches_its_header(http):
    body, headers = modern_request("server/discover")
    doc = json.loads(body)
    doc["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = 7
    resp = await post(http, json.dumps(doc).encode(), {**headers, "mcp-protocol-version": "7"})
    rpc_error(resp, 400, jsonrpc.HEADER_MISMATCH)


def _tool_call() -> tuple[bytes, dict[str, str]]:
    return modern_request("tools/call", {"name": "pushgo.channel.list", "arguments": {}},
                          rid=7)


@pytest.mark.parametrize(("change", "drop"), [
    ({"mcp-protocol-version": "2025-11-25"}, None),
    ({}, "mcp-method"),
    ({"mcp-method": "tools/list"}, None),
    ({"mcp-method": "TOOLS/CALL"}, None),
    ({}, "mcp-name"),
    ({"mcp-name": "pushgo.message.send"}, None),
    ({"mcp-name": "=?base64?not base64?="}, None),
    ({"mcp-name": "=?base64?cHVzaGdvLmNoYW5uZWwubGlzdA?="}, None),  # padding missing
])
async def test_headers_that_disagree_with_the_body_are_400_header_mismatch(http, change, drop):
    body, headers = _tool_call()
    headers.update(change)
    if drop:
        del headers[drop]
    resp = await post(http, body, headers)
    assert rpc_error(resp, 400, jsonrpc.HEADER_MISMATCH)["id"] == 7


async def test_the_body_version_must_match_the_header(http):
    body, headers = modern_request("server/discover", rid=302, version="v999.0.0")
    headers["mcp-protocol-version"] = MODERN
    rpc_error(await post(http, body, headers), 400, jsonrpc.HEADER_MISMATCH)


async def test_a_routing_header_sent_twice_is_a_mismatch(http):
    body, headers = _tool_call()
    raw = [(k, v) for k, v in headers.items()] + [("mcp-method", "tools/call")]
    resp = await http.post("/mcp", content=body, headers=raw)
    rpc_error(resp, 400, jsonrpc.HEADER_MISMATCH)


async def test_header_names_are_case_insensitive_and_values_are_decoded(http):
    body, headers = _tool_call()
    for name_value in ("pushgo.channel.list", "  pushgo.channel.list  ",
                       "=?base64?" + base64.b64encode(b"pushgo.channel.list").decode() + "?="):
        hs = {k.upper(): v for k, v in headers.items() if k != "mcp-name"}
        hs["Mcp-Name"] = name_value
        resp = await post(http, body, hs)
        assert resp.status_code == 200, (name_value, resp.text)
        assert resp.json()["result"]["isError"] is True  # oauth_required: a tool result


async def test_a_missing_header_with_a_modern_body_is_a_mismatch_not_a_session_error(http):
    body, headers = modern_request("tools/list")
    del headers["mcp-protocol-version"]
    rpc_error(await post(http, body, headers), 400, jsonrpc.HEADER_MISMATCH)


@pytest.mark.parametrize("method", ["initialize", "ping", "logging/setLevel",
                                    "resources/subscribe", "resources/unsubscribe",
                                    "prompts/list", "unknown/method"])
async def test_methods_not_served_are_404_method_not_found(http, method):
    resp = await post(http, *modern_request(method, rid=500))
    doc = rpc_error(resp, 404, jsonrpc.METHOD_NOT_FOUND)
    assert doc["id"] == 500


async def test_list_results_carry_result_type_and_cache_hints(http):
    for method, key, scope in [("tools/list", "tools", "public"),
                               ("resources/list", "resources", "private"),
                               ("resources/templates/list", "resourceTemplates", "public")]:
        resp = await post(http, *modern_request(method))
        result = resp.json()["result"]
        assert result["resultType"] == "complete"
        # A legacy caller holds no grant: its resource list is empty.
        assert isinstance(result[key], list) and (result[key] or key == "resources")
        assert result["cacheScope"] == scope
        assert isinstance(result["ttlMs"], int) and result["ttlMs"] >= 0
        assert SERVER_INFO_KEY in result["_meta"]


async def test_tools_list_in_modern_mode_matches_the_legacy_one(http):
    modern = (await post(http, *modern_request("tools/list"))).json()["result"]["tools"]
    sid = await open_session(http)
    legacy = (await http.post("/mcp", content=rpc("tools/list"),
                              headers=legacy_headers(sid))).json()["result"]["tools"]
    assert modern == legacy


async def test_reading_resources(http, gateway, api):
    _key, cid = await private_device_on_channel(gateway, api)
    resp = await post(http, *modern_request("resources/read", {"uri": f"pushgo://channels/{cid}"}))
    result = resp.json()["result"]
    assert result["resultType"] == "complete"
    assert (result["ttlMs"], result["cacheScope"]) == (0, "private")
    (content,) = result["contents"]
    assert content["mimeType"] == "application/json"
    doc = json.loads(content["text"])
    assert doc["channel"]["subscribers"] == 1
    assert doc["recent_messages"] == doc["open_events"] == doc["things"] == []


@pytest.mark.parametrize("uri", ["test://nonexistent-resource-for-conformance-testing",
                                 "pushgo://channels/" + "0" * 26, "pushgo://channels/nope",
                                 "pushgo://channels/", "pushgo://other"])
async def test_an_unknown_resource_is_invalid_params_with_its_uri(http, uri):
    resp = await post(http, *modern_request("resources/read", {"uri": uri}, rid=2))
    doc = rpc_error(resp, 400, jsonrpc.INVALID_PARAMS)
    assert doc["error"]["data"] == {"uri": uri}


async def test_an_unknown_resource_in_the_legacy_era_is_32002(http):
    sid = await open_session(http)
    resp = await http.post("/mcp", content=rpc("resources/read", {"uri": "pushgo://x"}),
                           headers=legacy_headers(sid))
    doc = rpc_error(resp, 200, jsonrpc.RESOURCE_NOT_FOUND_LEGACY)
    assert doc["error"]["data"] == {"uri": "pushgo://x"}


async def test_an_unknown_tool_is_400_invalid_params(http):
    resp = await post(http, *modern_request("tools/call", {"name": "nope", "arguments": {}}))
    rpc_error(resp, 400, jsonrpc.INVALID_PARAMS)


async def test_notifications_are_202_and_responses_are_refused(http):
    _, headers = modern_request("server/discover")
    resp = await post(http, rpc("notifications/cancelled", {"requestId": 1}, rid=None), headers)
    assert (resp.status_code, resp.content) == (202, b"")
    bad = {**headers, "mcp-protocol-version": "v999"}
    resp = await post(http, rpc("notifications/x", rid=None), bad)
    rpc_error(resp, 400, jsonrpc.UNSUPPORTED_PROTOCOL_VERSION)
    resp = await post(http, b'{"jsonrpc":"2.0","id":1,"result":{}}', headers)
    rpc_error(resp, 400, jsonrpc.INVALID_REQUEST)


async def test_get_and_delete_are_405_in_the_modern_era(http):
    headers = {**AUTH, "accept": "text/event-stream", "mcp-protocol-version": MODERN}
    for method in ("GET", "DELETE"):
        resp = await http.request(method, "/mcp", headers=headers)
        rpc_error(resp, 405, jsonrpc.INVALID_REQUEST)
        assert resp.headers["allow"] == "POST"


async def test_a_session_header_is_ignored_by_the_modern_era(http):
    body, headers = modern_request("tools/list")
    resp = await post(http, body, {**headers, "mcp-session-id": "whatever"})
    assert resp.status_code == 200
    assert "mcp-session-id" not in resp.headers


async def test_progress_streams_over_sse_without_priming(http, gateway, api):
    _key, cid = await private_device_on_channel(gateway, api)
    params = {"name": "pushgo.message.send",
              "arguments": {"channel_id": cid, "password": "secret-pass-1", "title": "t"},
              "_meta": {**meta(), "progressToken": 42}}
    resp = await post(http, *modern_request("tools/call", params, rid=9))
    assert resp.headers["content-type"] == "text/event-stream"
    assert "id:" not in resp.text and "retry:" not in resp.text
    msgs = sse_messages(resp.text)
    assert [m.get("method") for m in msgs] == ["notifications/progress"] * 2 + [None]
    assert msgs[-1]["result"]["resultType"] == "complete"
    assert msgs[-1]["result"]["structuredContent"]["accepted"] is True


async def test_errors_keep_their_status_even_for_sse_only_clients(http):
    body, headers = modern_request("nope/nope")
    resp = await post(http, body, {**headers, "accept": "text/event-stream"})
    rpc_error(resp, 404, jsonrpc.METHOD_NOT_FOUND)
    body, headers = modern_request("tools/list")
    resp = await post(http, body, {**headers, "accept": "text/event-stream"})
    assert resp.headers["content-type"] == "text/event-stream"
    (msg,) = sse_messages(resp.text)
    assert len(msg["result"]["tools"]) == 9  # a legacy caller: no channel tools


async def test_listen_needs_an_sse_accepting_client(http):
    body, headers = modern_request("subscriptions/listen", {"notifications": {}})
    resp = await post(http, body, {**headers, "accept": "application/json"})
    rpc_error(resp, 406, jsonrpc.INVALID_REQUEST)
    assert ACCEPT_BOTH


async def test_every_missing_piece_is_named_in_one_answer(http):
    """A client that forgot several things learns them all from one round trip."""
    m = meta()
    del m["io.modelcontextprotocol/clientCapabilities"]
    body, headers = modern_request("tools/call", {"name": "pushgo.channel.list",
                                                  "arguments": {}, "_meta": m})
    for name in ("mcp-method", "mcp-name"):
        del headers[name]
    doc = rpc_error(await post(http, body, headers), 400, jsonrpc.INVALID_PARAMS)
    missing = doc["error"]["data"]["missing"]
    assert missing == ["params._meta['io.modelcontextprotocol/clientCapabilities']",
                       "Mcp-Method header", "Mcp-Name header"]
    for piece in ("clientCapabilities", "Mcp-Method", "Mcp-Name"):
        assert piece in doc["error"]["message"]
    body, headers = modern_request("tools/call", {"name": "pushgo.channel.list",
                                                  "arguments": {}})
    for name in ("mcp-protocol-version", "mcp-method", "mcp-name"):
        del headers[name]
    doc = rpc_error(await post(http, body, headers), 400, jsonrpc.HEADER_MISMATCH)
    assert doc["error"]["data"]["missing"] == ["MCP-Protocol-Version header",
                                               "Mcp-Method header", "Mcp-Name header"]
