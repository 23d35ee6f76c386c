"""MCP pieces without a server: JSON-RPC parsing, the 2026-07-28 ladder and header values,
Origin and Accept rules, tool schemas against the API Structs, annotations, sessions and the
notifier, and OAuth mode plugged in through the McpAuth / ChannelBinding interfaces."""

from __future__ import annotations

import base64
import json
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from pushgo.errors import StoreUnavailable, codes
from pushgo.mcp import build_mcp
from pushgo.mcp import dispatcher as mcp_dispatch
from pushgo.mcp.auth import Principal, Unauthorized
from pushgo.mcp.http import Accept, origin_allowed
from pushgo.mcp.sessions import Notifier, SessionStore
from pushgo.protocol import jsonrpc
from pushgo.protocol import mcp as mcp_wire
from pushgo.protocol import operations as OPS
from tests.helpers import PASSWORD, pull
from tests.mcp_helpers import (  # noqa: F401
    api_fixture,
    mcp_settings,
    meta,
    modern_request,
    private_device_on_channel,
    sqlite_db_url,
)

# --- JSON-RPC ---------------------------------------------------------------------------------


def test_messages_are_told_apart_by_their_members():
    assert jsonrpc.parse_message(b'{"jsonrpc":"2.0","id":1,"method":"m"}') == jsonrpc.Request(1, "m", None)
    note = jsonrpc.parse_message(b'{"jsonrpc":"2.0","method":"n","params":{"a":1}}')
    assert isinstance(note, jsonrpc.Notification) and note.params is not None
    assert bytes(note.params) == b'{"a":1}'
    assert jsonrpc.parse_message(b'{"jsonrpc":"2.0","id":"x","result":{}}') == jsonrpc.ClientReply("x", {})
    assert jsonrpc.parse_message(b'{"jsonrpc":"2.0","id":null,"error":{}}') \
        == jsonrpc.ClientReply(None, None, {})
    null_params = jsonrpc.parse_message(b'{"jsonrpc":"2.0","id":1,"method":"m","params":null}')
    assert isinstance(null_params, jsonrpc.Request) and null_params.params is None


def test_error_responses_always_carry_an_id_member():
    assert json.loads(jsonrpc.encode_error(None, -1, "m")) == {"jsonrpc": "2.0", "id": None,
                                                         "error": {"code": -1, "message": "m"}}
    assert json.loads(jsonrpc.encode_error(3, -1, "m", {"k": 1}))["error"]["data"] == {"k": 1}


def test_salvage_id_only_returns_usable_ids():
    assert jsonrpc.salvage_id(b'{"id":5}') == 5
    assert jsonrpc.salvage_id(b'{"id":true}') is None
    assert jsonrpc.salvage_id(b"nope") is None


# --- 2026-07-28 ladder ------------------------------------------------------------------------


def _params(**over: Any) -> msgspec.Raw:
    return msgspec.Raw(json.dumps({"_meta": meta(), **over}).encode())


def test_the_ladder_accepts_a_conforming_request():
    headers = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call",
               "mcp-name": "t"}
    env = mcp_wire.check_modern_request("tools/call", _params(name="t"), headers)
    assert env.protocol_version == "2026-07-28" and env.client_capabilities == {}


def test_the_ladder_checks_meta_before_headers_and_headers_before_the_version():
    with pytest.raises(jsonrpc.RpcError) as e:
        mcp_wire.check_modern_request("x", None, {})
    assert e.value.code == jsonrpc.INVALID_PARAMS
    bad_version = msgspec.Raw(json.dumps({"_meta": meta("v9")}).encode())
    with pytest.raises(jsonrpc.RpcError) as e:
        mcp_wire.check_modern_request("x", bad_version, {"mcp-protocol-version": "2026-07-28",
                                                  "mcp-method": "x"})
    assert e.value.code == jsonrpc.HEADER_MISMATCH
    with pytest.raises(jsonrpc.RpcError) as e:
        mcp_wire.check_modern_request("x", bad_version, {"mcp-protocol-version": "v9",
                                                  "mcp-method": "x"})
    assert e.value.code == jsonrpc.UNSUPPORTED_PROTOCOL_VERSION
    assert e.value.data == {"supported": list(mcp_wire.SUPPORTED_VERSIONS), "requested": "v9"}


def test_a_null_name_needs_no_name_header():
    headers = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call"}
    mcp_wire.check_modern_request("tools/call", _params(), headers)


@pytest.mark.parametrize(("raw", "value"), [
    ("plain", "plain"),
    ("=?base64?" + base64.b64encode("Hello, 世界".encode()).decode() + "?=", "Hello, 世界"),
    ("=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=", "=?base64?literal?="),
    ("=?base64?!!?=", None),
    ("=?base64?SGk=x?=", None),
    ("=?base64?/w==?=", None),  # not UTF-8
    ("=?base64?SGj=?=", None),  # non-canonical padding bits
    ("=?BASE64?SGk=?=", "=?BASE64?SGk=?="),  # markers are case-sensitive
])
def test_header_values_decode_the_base64_sentinel(raw, value):
    assert mcp_wire.decode_header_value(raw) == value


def test_declares_version_reads_only_the_meta_key():
    assert mcp_wire.declares_version(_params())
    assert not mcp_wire.declares_version(msgspec.Raw(b'{"_meta":{}}'))
    assert not mcp_wire.declares_version(msgspec.Raw(b'{"_meta":[1]}'))
    assert not mcp_wire.declares_version(None)


def test_negotiation_answers_a_supported_legacy_revision():
    assert mcp_wire.negotiate("2025-06-18") == "2025-06-18"
    assert mcp_wire.negotiate("2026-07-28") == "2025-11-25"
    assert mcp_wire.negotiate("") == "2025-11-25"


# --- HTTP rules -------------------------------------------------------------------------------


def test_origin_rules():
    for ok in ("http://localhost", "http://localhost:3000", "https://127.0.0.1:1",
               "http://[::1]:6274"):
        assert origin_allowed(ok, None), ok
    for bad in ("http://evil.example.com", "null", "", "ftp://localhost", "http://localhost:x",
                "http://127.0.0.1.evil.com", "https://gw.example.com"):
        assert not origin_allowed(bad, None), bad
    assert origin_allowed("https://gw.example.com", "https://gw.example.com")
    assert origin_allowed("https://GW.example.com:443", "https://gw.example.com")
    assert not origin_allowed("http://gw.example.com", "https://gw.example.com")


@pytest.mark.parametrize(("value", "json_ok", "sse_ok"), [
    (None, True, True), ("", True, True), ("*/*", True, True),
    ("application/json", True, False), ("text/event-stream", False, True),
    ("application/json;q=0.5, text/event-stream", True, True),
    ("application/*", True, False), ("text/*;q=0", False, False),
    ("text/html", False, False), ("application/json;q=bogus", True, False),
])
def test_accept_rules(value, json_ok, sse_ok):
    assert Accept.parse(value) == Accept(json_ok, sse_ok)


# --- tools ------------------------------------------------------------------------------------


async def test_send_tool_schemas_have_exactly_the_api_fields(gateway):
    tools = {t.name: t for t in gateway.mcp.dispatcher.tools.wire()}
    kinds: dict[str, type[Any]] = {"pushgo.message.send": OPS.MessageIn}
    kinds.update({f"pushgo.event.{a}": k for a, k in OPS.EVENT_ACTIONS.items()})
    kinds.update({f"pushgo.thing.{a}": k for a, k in OPS.THING_ACTIONS.items()})
    event_only = {"create": {"ended_at"}, "update": {"started_at", "ended_at"},
                  "close": {"started_at"}}
    for name, kind in kinds.items():
        schema = tools[name].inputSchema
        expected = set(kind.__struct_fields__)
        if name.startswith("pushgo.event."):
            expected -= event_only[name.rsplit(".", 1)[1]]
        assert set(schema["properties"]) == expected, name
        assert schema["additionalProperties"] is False
        assert "password" in schema["required"] and "channel_id" in schema["required"]
        assert set(schema["required"]) <= set(schema["properties"])
        assert tools[name].outputSchema["type"] == "object"


async def test_annotations_are_honest(gateway):
    # The OAuth caller's list: it has the channel tools too.
    ann = {t.name: t.annotations for t in gateway.mcp.dispatcher.tools.wire(True)}
    for name in ("pushgo.channel.bind.status", "pushgo.channel.list"):
        assert ann[name].readOnlyHint is True
    for name in ("pushgo.event.update", "pushgo.event.close", "pushgo.thing.update",
                 "pushgo.thing.archive", "pushgo.thing.delete", "pushgo.channel.unbind"):
        assert (ann[name].readOnlyHint, ann[name].destructiveHint) == (False, True), name
    for name in ("pushgo.message.send", "pushgo.event.create", "pushgo.thing.create"):
        a = ann[name]
        assert (a.readOnlyHint, a.destructiveHint, a.idempotentHint, a.openWorldHint) == (
            False, False, False, True), name
    assert ann["pushgo.channel.unbind"].idempotentHint is True


def test_cursors_round_trip():
    assert mcp_dispatch.decode_cursor(mcp_dispatch.encode_cursor(150)) == 150
    assert mcp_dispatch.decode_cursor(None) == 0
    with pytest.raises(jsonrpc.RpcError):
        mcp_dispatch.decode_cursor("o:1")


async def test_a_store_failure_outside_a_tool_is_an_internal_error_with_the_code(gateway,
                                                                                monkeypatch):
    async def broken(*_a: Any, **_k: Any) -> Any:
        raise StoreUnavailable(message="store down")

    monkeypatch.setattr(gateway.mcp.dispatcher.resources, "read", broken)
    call = mcp_dispatch.Call(jsonrpc.Request(1, "resources/read", msgspec.Raw(b'{"uri":"pushgo://x"}')),
                  Principal("legacy"), modern=False, protocol_version="2025-11-25")
    out = await gateway.mcp.dispatcher.dispatch(call)
    doc = json.loads(out.body)
    assert out.error_code == jsonrpc.INTERNAL_ERROR
    assert doc["error"]["data"] == {"error_code": "store_unavailable"}


# --- sessions and the notifier ----------------------------------------------------------------


async def test_sessions_expire_when_idle_and_the_oldest_go_first():
    now = [0.0]
    store = SessionStore(max_sessions=2, idle_timeout_s=10, clock=lambda: now[0])
    a = store.create("o", "2025-11-25", {})
    now[0] = 1
    b = store.create("o", "2025-11-25", {})
    assert store.get(a.id, "someone else") is None
    now[0] = 2
    c = store.create("o", "2025-11-25", {})  # full: a (oldest seen) goes
    assert store.get(a.id, "o") is None and a.ended.is_set()
    assert store.get(b.id, "o") is b
    now[0] = 30
    assert store.get(c.id, "o") is None
    assert len(store) == 1


async def test_the_notifier_delivers_to_the_owners_streams_and_drops_for_laggards():
    n = Notifier()
    with n.subscribe("a") as inbox_a, n.subscribe("b") as inbox_b:
        assert n.publish("x", owner="a") == 1
        assert n.publish("y") == 2
        assert await inbox_a.receive() == ("x", None)
        assert await inbox_a.receive() == ("y", None)
        assert await inbox_b.receive() == ("y", None)
        for _ in range(100):
            n.publish("z", owner="b")
        assert inbox_b.statistics().current_buffer_used == 32
    assert n.publish("gone") == 0


# --- OAuth mode through the interfaces --------------------------------------------------------


class FakeAuth:
    oauth = True

    def __init__(self, scopes: set[str]) -> None:
        self.scopes = frozenset(scopes)

    async def authenticate(self, headers: Any) -> Principal:
        if headers.get("authorization") != "Bearer oauth":
            raise Unauthorized(codes.OAUTH_INVALID_TOKEN, "no", 'Bearer resource_metadata="x"')
        return Principal("client-1", oauth=True, subject="u", scopes=self.scopes)

    def insufficient_scope(self, scope: str) -> Unauthorized:
        return Unauthorized(codes.OAUTH_INSUFFICIENT_SCOPE, scope,
                            f'Bearer error="insufficient_scope", scope="{scope}"')


class FakeBinding:
    def __init__(self, granted: set[str]) -> None:
        self.granted = granted

    async def is_granted(self, principal: Principal, channel_id: str) -> bool:
        return channel_id in self.granted

    async def list_channels(self, principal: Principal) -> list[dict[str, Any]]:
        return [{"channel_id": c, "channel_name": "ops", "granted_at": 1, "status": "active"}
                for c in sorted(self.granted)]

    async def start(self, principal: Principal, **kw: Any) -> dict[str, Any]:
        return {"bind_session_id": "b1", "bind_url": "https://x/b1", "expires_at": 1,
                "poll_after_ms": 1000}

    async def status(self, principal: Principal, bind_session_id: str) -> dict[str, Any]:
        return {"status": "pending", "action": "bind"}

    async def unbind(self, principal: Principal, channel_id: str) -> dict[str, Any]:
        return {"removed": True, "channel_id": channel_id}


async def test_oauth_mode_plugs_in_through_the_interfaces(gateway, api):
    key, cid = await private_device_on_channel(gateway, api)
    binding = FakeBinding({cid})
    mcp = build_mcp(gateway.services, auth=FakeAuth({"mcp:tools", "mcp:channels:manage"}),
                    binding=binding)
    transport = httpx.ASGITransport(app=mcp.endpoint)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:

        async def call(method: str, params: dict[str, Any], auth: str = "Bearer oauth"
                       ) -> httpx.Response:
            body, headers = modern_request(method, params)
            headers["authorization"] = auth
            return await c.post("/mcp", content=body, headers=headers)

        resp = await call("tools/list", {}, auth="Bearer nope")
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"] == 'Bearer resource_metadata="x"'
        tools = (await call("tools/list", {})).json()["result"]["tools"]
        send = next(t for t in tools if t["name"] == "pushgo.message.send")
        assert "password" not in send["inputSchema"]["properties"]

        async def send_to(args: dict[str, Any]) -> dict[str, Any]:
            resp = await call("tools/call", {"name": "pushgo.message.send", "arguments": args})
            return resp.json()["result"]["structuredContent"]  # type: ignore[no-any-return]

        out = await send_to({"channel_id": cid, "title": "granted"})
        assert out["accepted"] is True
        out = await send_to({"channel_id": cid, "title": "x", "password": PASSWORD})
        assert out["error_code"] == "password_forbidden_in_oauth_mode"
        binding.granted.clear()
        out = await send_to({"channel_id": cid, "title": "x"})
        assert out["error_code"] == "channel_not_bound"
        listed = await call("tools/call", {"name": "pushgo.channel.list", "arguments": {}})
        assert listed.json()["result"]["structuredContent"] == {"channels": []}
        read = await call("resources/read", {"uri": f"pushgo://channels/{cid}"})
        assert read.json()["error"]["code"] == jsonrpc.INVALID_PARAMS  # ungranted reads as unknown
    assert [i["payload"]["title"] for i in await pull(api, key)] == ["granted"]

    scoped = build_mcp(gateway.services, auth=FakeAuth({"mcp:tools"}), binding=binding)
    transport = httpx.ASGITransport(app=scoped.endpoint)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        body, headers = modern_request("tools/call", {"name": "pushgo.channel.list",
                                                      "arguments": {}})
        resp = await c.post("/mcp", content=body, headers={**headers,
                                                           "authorization": "Bearer oauth"})
    assert resp.status_code == 403
    assert 'error="insufficient_scope"' in resp.headers["www-authenticate"]
    await anyio.sleep(0)
