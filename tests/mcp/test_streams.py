"""Long-lived /mcp streams over a real server (Hypercorn, both backends): the legacy GET
stream and 2026-07-28 ``subscriptions/listen`` carry server notifications with keep-alives;
closing a modern response stream cancels its request."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from pushgo.app import Gateway
from pushgo.protocol import jsonrpc
from pushgo.protocol.sse import Event, SSEParser
from tests.live import hypercorn_server
from tests.mcp_helpers import (  # noqa: F401
    AUTH,
    legacy_headers,
    mcp_settings,
    modern_request,
    open_session,
    rpc_error,
    slow_channel_list,
    sqlite_db_url,
)

LIST_CHANGED = "notifications/resources/list_changed"


@asynccontextmanager
async def served(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    assert gateway.mcp is not None
    gateway.mcp.endpoint.keepalive_s = 0.2
    async with hypercorn_server(gateway) as base, \
            httpx.AsyncClient(base_url=base, timeout=5) as c:
        yield c


class Stream:
    """Events and comments of one SSE response, read on demand."""

    def __init__(self, resp: httpx.Response) -> None:
        self.resp = resp
        self.parser = SSEParser()
        self.chunks = resp.aiter_raw()
        self.pending: list[Event] = []

    async def next_event(self) -> Event:
        with anyio.fail_after(5):
            while not self.pending:
                self.pending.extend(self.parser.feed(await self.chunks.__anext__()))
        return self.pending.pop(0)

    async def next_message(self) -> dict[str, Any]:
        while True:
            event = await self.next_event()
            if event.data:
                return json.loads(event.data)  # type: ignore[no-any-return]

    async def wait_comments(self, n: int) -> None:
        with anyio.fail_after(5):
            while self.parser.comments < n:
                self.pending.extend(self.parser.feed(await self.chunks.__anext__()))

    async def ends(self) -> None:
        with anyio.fail_after(5):
            async for chunk in self.chunks:
                self.pending.extend(self.parser.feed(chunk))


async def test_the_get_stream_carries_notifications_and_keep_alives(gateway):
    async with served(gateway) as c:
        sid = await open_session(c)
        get_headers = {**AUTH, "accept": "text/event-stream", "mcp-session-id": sid,
                       "mcp-protocol-version": "2025-11-25"}
        async with c.stream("GET", "/mcp", headers=get_headers) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"] == "text/event-stream"
            assert resp.headers["x-accel-buffering"] == "no"
            stream = Stream(resp)
            priming = await stream.next_event()
            assert priming.id and priming.retry == 3000 and priming.data == ""
            assert gateway.mcp.notifier.publish(LIST_CHANGED) == 1
            msg = await stream.next_message()
            assert msg == {"jsonrpc": "2.0", "method": LIST_CHANGED}
            await stream.wait_comments(1)
            resp_del = await c.delete("/mcp", headers=legacy_headers(sid))
            assert resp_del.status_code == 200
            await stream.ends()


async def test_a_session_may_hold_several_get_streams_and_each_note_goes_to_one(gateway):
    async with served(gateway) as c:
        sid = await open_session(c)
        get_headers = {**AUTH, "accept": "text/event-stream", "mcp-session-id": sid,
                       "mcp-protocol-version": "2025-11-25"}
        async with c.stream("GET", "/mcp", headers=get_headers) as r1, \
                c.stream("GET", "/mcp", headers=get_headers) as r2:
            assert r1.status_code == r2.status_code == 200
            first, second = Stream(r1), Stream(r2)
            p1, p2 = await first.next_event(), await second.next_event()
            assert p1.id and p2.id and p1.id != p2.id  # two streams, ids of their own
            # One session: each notification goes to one of its streams (the newest).
            assert gateway.mcp.notifier.publish(LIST_CHANGED) == 1
            msg = await second.next_message()
            assert msg["method"] == LIST_CHANGED
            await c.delete("/mcp", headers=legacy_headers(sid))
            await first.ends()
            await second.ends()
            assert not any(e.data for e in first.pending)


async def test_get_stream_refusals(gateway):
    async with served(gateway) as c:
        sid = await open_session(c)
        base = {**AUTH, "accept": "text/event-stream"}
        rpc_error(await c.get("/mcp", headers=base), 400, jsonrpc.INVALID_REQUEST)
        rpc_error(await c.get("/mcp", headers={**base, "mcp-session-id": "x"}), 404,
                  jsonrpc.INVALID_REQUEST)
        rpc_error(await c.get("/mcp", headers={**AUTH, "accept": "application/json",
                                               "mcp-session-id": sid}), 406, jsonrpc.INVALID_REQUEST)


async def test_listen_acknowledges_then_forwards_what_was_asked_for(gateway):
    async with served(gateway) as c:
        body, headers = modern_request("subscriptions/listen", {"notifications": {
            "resourcesListChanged": True, "toolsListChanged": True,
            "resourceSubscriptions": ["pushgo://channels"]}}, rid="sub-1")
        async with c.stream("POST", "/mcp", content=body, headers=headers) as resp:
            assert resp.headers["content-type"] == "text/event-stream"
            stream = Stream(resp)
            ack = await stream.next_message()
            assert ack["method"] == "notifications/subscriptions/acknowledged"
            assert ack["params"] == {
                "_meta": {"io.modelcontextprotocol/subscriptionId": "sub-1"},
                "notifications": {"resourcesListChanged": True}}
            gateway.mcp.notifier.publish("notifications/tools/list_changed")
            gateway.mcp.notifier.publish(LIST_CHANGED)
            msg = await stream.next_message()
            assert msg["method"] == LIST_CHANGED
            assert msg["params"]["_meta"] == {"io.modelcontextprotocol/subscriptionId": "sub-1"}
            await stream.wait_comments(1)
            gateway.mcp.notifier.close()  # the gateway stopping ends it gracefully
            final = await stream.next_message()
            assert final == {"jsonrpc": "2.0", "id": "sub-1", "result": {
                "resultType": "complete",
                "_meta": {"io.modelcontextprotocol/subscriptionId": "sub-1"}}}
            await stream.ends()


async def test_listen_without_a_filter_acknowledges_nothing(gateway):
    async with served(gateway) as c:
        body, headers = modern_request("subscriptions/listen", {"notifications": {}}, rid=3)
        async with c.stream("POST", "/mcp", content=body, headers=headers) as resp:
            ack = await Stream(resp).next_message()
            assert ack["params"]["notifications"] == {}


@pytest.mark.parametrize("accept", ["application/json, text/event-stream", "text/event-stream"])
async def test_closing_a_modern_response_cancels_its_request(gateway, accept):
    name, started, cancelled = slow_channel_list(gateway)
    async with served(gateway) as c:
        body, headers = modern_request("tools/call", {"name": name, "arguments": {}})
        headers["accept"] = accept
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:

                async def call_and_hang_up() -> None:
                    try:
                        await c.post("/mcp", content=body, headers=headers)
                    except httpx.HTTPError:
                        pass

                tg.start_soon(call_and_hang_up)
                await started.wait()
                tg.cancel_scope.cancel()  # the client goes away mid-request
            await cancelled.wait()
