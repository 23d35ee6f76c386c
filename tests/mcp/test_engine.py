"""pushgo's MCP engine beyond pushgo's own tools, driven over HTTP through the conformance
fixture app (pushgo.testing.mcp_fixtures: the same dispatcher and transport as /mcp on a real
Hypercorn server): resumable SSE streams (priming event, a response the server ends early,
GET + Last-Event-ID replay, takeover), -32021 for a tool needing an undeclared client
capability in both eras, the fixture content types; and, for /mcp's own tools, that every
output schema admits the tool's ``isError`` structured content."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import jsonschema
import pytest

from pushgo.errors import GatewayError, codes
from pushgo.mcp.auth import NoBinding
from pushgo.mcp.dispatcher import tool_error
from pushgo.mcp.sessions import Notifier
from pushgo.protocol import jsonrpc
from pushgo.protocol import mcp as mcp_wire
from pushgo.protocol.sse import Event, SSEParser
from pushgo.testing.mcp_fixtures import FixtureApp
from tests.live import serve_app
from tests.mcp_helpers import ACCEPT_BOTH, initialize_body, meta, rpc

SSE_ONLY = "text/event-stream"


@asynccontextmanager
async def fixtures() -> AsyncIterator[tuple[FixtureApp, httpx.AsyncClient]]:
    app = FixtureApp(keepalive_s=0.2)
    async with serve_app(app) as base, httpx.AsyncClient(base_url=base, timeout=5) as c:
        try:
            yield app, c
        finally:
            app.close()


def headers(sid: str | None = None, version: str | None = "2025-11-25",
            accept: str = ACCEPT_BOTH, **extra: str) -> dict[str, str]:
    out = {"content-type": "application/json", "accept": accept, **extra}
    if sid is not None:
        out["mcp-session-id"] = sid
    if version is not None:
        out["mcp-protocol-version"] = version
    return out


async def session(c: httpx.AsyncClient, version: str = "2025-11-25",
                  capabilities: dict[str, Any] | None = None) -> str:
    body = json.loads(initialize_body(version))
    body["params"]["capabilities"] = capabilities or {}
    resp = await c.post("/mcp", json=body, headers=headers(version=None))
    assert resp.status_code == 200, resp.text
    sid = resp.headers["mcp-session-id"]
    resp = await c.post("/mcp", content=rpc("notifications/initialized", rid=None),
                        headers=headers(sid, version))
    assert resp.status_code == 202
    return sid


def call(name: str, rid: int = 1, **params: Any) -> bytes:
    return rpc("tools/call", {"name": name, "arguments": {}, **params}, rid)


async def events(resp: httpx.Response) -> list[Event]:
    """Every event of an SSE response, to its end (comments dropped)."""
    parser = SSEParser()
    out: list[Event] = []
    with anyio.fail_after(5):
        async for chunk in resp.aiter_raw():
            out.extend(parser.feed(chunk))
    return out


def messages(evs: list[Event]) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in evs if e.data]


# --- resumable streams ------------------------------------------------------------------------


async def test_a_response_ended_early_is_resumed_with_last_event_id():
    async with fixtures() as (_app, c):
        sid = await session(c)
        async with c.stream("POST", "/mcp", content=call("test_reconnection"),
                            headers=headers(sid)) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"] == "text/event-stream"
            posted = await events(resp)
        # The stream ended after its priming event; the tool is still working.
        (priming,) = posted
        assert priming.data == "" and priming.retry == 3000 and priming.id
        async with c.stream("GET", "/mcp", headers=headers(
                sid, accept=SSE_ONLY, **{"last-event-id": priming.id})) as resp:
            assert resp.status_code == 200
            resumed = await events(resp)
        (answer,) = messages(resumed)
        assert answer["id"] == 1
        assert answer["result"]["content"] == [
            {"type": "text", "text": "Reconnection test completed"}]
        assert resumed[-1].id and resumed[-1].id != priming.id
        # The same id again replays the same answer (a client that lost it), then ends.
        async with c.stream("GET", "/mcp", headers=headers(
                sid, accept=SSE_ONLY, **{"last-event-id": priming.id})) as resp:
            assert messages(await events(resp)) == [answer]
        # After the answer's own id there is nothing left: the stream just ends.
        async with c.stream("GET", "/mcp", headers=headers(
                sid, accept=SSE_ONLY, **{"last-event-id": resumed[-1].id})) as resp:
            assert messages(await events(resp)) == []


async def test_a_resumption_takes_the_stream_over_from_the_old_connection():
    async with fixtures() as (_app, c):
        sid = await session(c)
        body = call("test_tool_with_progress", _meta={"progressToken": "p"})
        async with c.stream("POST", "/mcp", content=body, headers=headers(sid)) as old:
            parser = SSEParser()
            chunks = old.aiter_raw()
            got: list[Event] = []
            with anyio.fail_after(5):
                while not any(e.data for e in got):
                    got.extend(parser.feed(await chunks.__anext__()))
            first = next(e for e in got if e.data)
            assert json.loads(first.data)["method"] == "notifications/progress"
            assert first.id is not None
            async with c.stream("GET", "/mcp", headers=headers(
                    sid, accept=SSE_ONLY, **{"last-event-id": first.id})) as new:
                rest = messages(await events(new))
            # The old response ended when the new connection took the stream.
            with anyio.fail_after(5):
                async for chunk in chunks:
                    got.extend(parser.feed(chunk))
        assert [m.get("method") for m in rest] == ["notifications/progress"] * 2 + [None]
        assert [m["params"]["progress"] for m in rest[:2]] == [50, 100]
        assert rest[-1]["id"] == 1 and rest[-1]["result"]["isError"] is False


@pytest.mark.parametrize("version,accept", [("2025-11-25", "application/json"),
                                            ("2025-06-18", SSE_ONLY)])
async def test_without_a_priming_event_or_sse_the_answer_comes_on_the_request(version, accept):
    """A client taking JSON only, or a 2025-06-18 session (no priming event to resume
    from): the tool cannot end the response early, the answer comes on it."""
    async with fixtures() as (_app, c):
        sid = await session(c, version)
        resp = await c.post("/mcp", content=call("test_reconnection"),
                            headers=headers(sid, version, accept=accept))
        assert resp.status_code == 200
        if accept == SSE_ONLY:
            evs = [e for e in SSEParser().feed(resp.content)]
            assert all(e.retry is None for e in evs)  # no priming in 2025-06-18
            (answer,) = messages(evs)
        else:
            answer = resp.json()
        assert answer["result"]["content"][0]["text"] == "Reconnection test completed"


async def test_an_unknown_last_event_id_opens_a_fresh_notification_stream():
    async with fixtures() as (app, c):
        sid = await session(c)
        for last in ("99-0", "garbage"):
            async with c.stream("GET", "/mcp", headers=headers(
                    sid, accept=SSE_ONLY, **{"last-event-id": last})) as resp:
                assert resp.status_code == 200
                parser = SSEParser()
                with anyio.fail_after(5):
                    priming = None
                    async for chunk in resp.aiter_raw():
                        evs = list(parser.feed(chunk))
                        if evs:
                            priming = evs[0]
                            break
                assert priming is not None and priming.data == "" and priming.retry == 3000
                assert app.notifier.publish("notifications/resources/list_changed") == 1


# --- -32021 -----------------------------------------------------------------------------------


async def test_a_tool_needing_an_undeclared_capability_is_32021_in_both_eras():
    async with fixtures() as (_app, c):
        # 2026-07-28: HTTP 400 with the capabilities it needs, before the tool runs.
        params = {"name": "test_missing_capability", "arguments": {}, "_meta": meta()}
        modern = {**headers(version="2026-07-28"), "mcp-method": "tools/call",
                  "mcp-name": "test_missing_capability"}
        resp = await c.post("/mcp", content=rpc("tools/call", params, 7), headers=modern)
        assert resp.status_code == 400
        doc = resp.json()
        assert doc["id"] == 7 and doc["error"]["code"] == jsonrpc.MISSING_REQUIRED_CLIENT_CAPABILITY
        assert doc["error"]["data"] == {"requiredCapabilities": {"sampling": {}}}
        declared = {**params, "_meta": meta(**{
            "io.modelcontextprotocol/clientCapabilities": {"sampling": {}}})}
        resp = await c.post("/mcp", content=rpc("tools/call", declared, 8), headers=modern)
        assert resp.status_code == 200 and resp.json()["result"]["isError"] is False
        # Initialize era: the session's declared capabilities count; a JSON-RPC error.
        sid = await session(c)
        resp = await c.post("/mcp", content=call("test_missing_capability", 9),
                            headers=headers(sid))
        assert resp.status_code == 200
        assert resp.json()["error"]["code"] == jsonrpc.MISSING_REQUIRED_CLIENT_CAPABILITY
        sid = await session(c, capabilities={"sampling": {}})
        resp = await c.post("/mcp", content=call("test_missing_capability", 10),
                            headers=headers(sid))
        assert resp.json()["result"]["content"][0]["text"] == "The client declares sampling."


def test_missing_capabilities_compares_nested_capability_objects():
    need: dict[str, Any] = {"sampling": {}, "elicitation": {"url": {}}}
    assert mcp_wire.missing_capabilities(need, {"sampling": {}, "elicitation": {"url": {}}}) == {}
    assert mcp_wire.missing_capabilities(need, {"sampling": {}, "elicitation": {"form": {}}}) == {
        "elicitation": {"url": {}}}
    assert mcp_wire.missing_capabilities(need, {"sampling": True}) == need
    err = mcp_wire.missing_capability_error({"sampling": {}})
    assert err.code == -32021 and err.data == {"requiredCapabilities": {"sampling": {}}}


# --- fixture content --------------------------------------------------------------------------


async def test_the_fixture_tools_and_resources_answer_with_their_content_types():
    async with fixtures() as (_app, c):
        sid = await session(c)

        async def result(body: bytes) -> dict[str, Any]:
            resp = await c.post("/mcp", content=body, headers=headers(sid))
            assert resp.status_code == 200, resp.text
            return resp.json()["result"]  # type: ignore[no-any-return]

        mixed = await result(call("test_multiple_content_types"))
        assert [b["type"] for b in mixed["content"]] == ["text", "image", "resource"]
        assert (await result(call("test_audio_content")))["content"][0]["mimeType"] == "audio/wav"
        assert (await result(call("test_error_handling")))["isError"] is True
        binary = await result(rpc("resources/read", {"uri": "test://static-binary"}))
        assert binary["contents"][0]["blob"] and "text" not in binary["contents"][0]
        templ = await result(rpc("resources/read", {"uri": "test://template/42/data"}))
        assert json.loads(templ["contents"][0]["text"])["id"] == "42"
        resp = await c.post("/mcp", content=rpc("resources/read", {"uri": "test://nope"}),
                            headers=headers(sid))
        assert resp.json()["error"]["code"] == jsonrpc.RESOURCE_NOT_FOUND_LEGACY
        tools = (await result(rpc("tools/list")))["tools"]
        schema = next(t for t in tools if t["name"] == "json_schema_2020_12_tool")["inputSchema"]
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$defs"]["address"]["$anchor"] == "address"


# --- /mcp's own output schemas ----------------------------------------------------------------


def test_every_output_schema_admits_its_tools_error_results():
    """Clients (the Inspector among them) validate an isError result's structuredContent
    against the tool's outputSchema too."""
    from pushgo.mcp.tools import Tools

    class _Svc:
        ctx = None

    tools = [*Tools(_Svc(), NoBinding(), oauth=False).wire(),  # type: ignore[arg-type]
             *Tools(_Svc(), NoBinding(), oauth=True).wire()]  # type: ignore[arg-type]
    error = tool_error(GatewayError(codes.PASSWORD_MISMATCH,
                                    "wrong password"))["structuredContent"]
    for tool in tools:
        assert tool.outputSchema is not None
        jsonschema.validate(error, tool.outputSchema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"error_code": "x"}, tool.outputSchema)
    send = next(t for t in tools if t.name == "pushgo.message.send")
    jsonschema.validate({"channel_id": "c", "op_id": "o", "accepted": True,
                         "message_id": "m"}, send.outputSchema)
    status = next(t for t in tools if t.name == "pushgo.channel.bind.status")
    jsonschema.validate({"status": "pending", "action": "bind"}, status.outputSchema)


async def test_notifications_go_to_one_stream_of_a_group():
    n = Notifier()
    with n.subscribe("a", group="s1") as one, n.subscribe("a", group="s1") as two, \
            n.subscribe("a", group="s2") as other, n.subscribe("a") as listen:
        assert n.publish("m") == 3
        assert two.receive_nowait() == ("m", None)  # the newest of the group
        with pytest.raises(anyio.WouldBlock):
            one.receive_nowait()
        assert other.receive_nowait() == ("m", None)
        assert listen.receive_nowait() == ("m", None)
