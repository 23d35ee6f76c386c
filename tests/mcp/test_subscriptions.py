"""Resource subscriptions over a real server, raw HTTP, both eras: ``resources/subscribe`` /
``resources/unsubscribe`` with ``notifications/resources/updated`` on the session's GET
stream (initialize era), ``subscriptions/listen`` with ``resourceSubscriptions`` (2026-07-28);
an operation's updates until it is done, a channel's on new work; the bounds (the cap per
session, coalescing on a controlled clock, watchers ending with their session or stream)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from pushgo.app import Gateway
from pushgo.mcp import dispatcher as mcp_dispatch
from pushgo.mcp import watch
from pushgo.protocol import jsonrpc
from pushgo.service import status as status_module
from tests.helpers import PASSWORD, call, eventually, on_mock_clock, pull
from tests.mcp.test_streams import LIST_CHANGED, Stream, served
from tests.mcp_helpers import (  # noqa: F401
    AUTH,
    LEGACY,
    api_fixture,
    legacy_call,
    mcp_settings,
    modern_request,
    open_session,
    private_device_on_channel,
)

UPDATED = "notifications/resources/updated"
SUB_ID = "io.modelcontextprotocol/subscriptionId"


@pytest.fixture(autouse=True)
def quick_status_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """A device's pull is seen at the status poll: poll often, so the test is quick."""
    monkeypatch.setattr(status_module, "POLL_S", 0.05)


def feed_of(gateway: Gateway) -> watch.ChannelFeed:
    assert gateway.mcp is not None
    feed = gateway.mcp.dispatcher.resources.feed  # type: ignore[attr-defined]
    assert isinstance(feed, watch.ChannelFeed)
    return feed


@asynccontextmanager
async def get_stream(c: httpx.AsyncClient, sid: str) -> AsyncIterator[Stream]:
    headers = {**AUTH, "accept": "text/event-stream", "mcp-session-id": sid,
               "mcp-protocol-version": LEGACY}
    async with c.stream("GET", "/mcp", headers=headers) as resp:
        assert resp.status_code == 200
        stream = Stream(resp)
        assert (await stream.next_event()).data == ""  # the priming event
        yield stream


async def send(api: httpx.AsyncClient, cid: str, **extra: Any) -> dict[str, Any]:
    return await call(api, "/message", {"channel_id": cid, "password": PASSWORD,
                                        "title": "hello", **extra})


async def test_a_session_hears_its_channel_and_operation_until_it_unsubscribes(gateway, api):
    key, cid = await private_device_on_channel(gateway, api)
    async with served(gateway) as c:
        sid = await open_session(c)
        async with get_stream(c, sid) as stream:
            channel_uri = f"pushgo://channels/{cid}"
            assert (await legacy_call(c, sid, "resources/subscribe",
                                      {"uri": channel_uri}))["result"] == {}
            sent = await send(api, cid, op_id="op-sub-1")
            assert await stream.next_message() == {
                "jsonrpc": "2.0", "method": UPDATED, "params": {"uri": channel_uri}}
            op_uri = "pushgo://operations/op-sub-1"
            await legacy_call(c, sid, "resources/subscribe", {"uri": op_uri})
            assert (await pull(api, key))[0]["payload"]["message_id"] == sent["message_id"]
            assert await stream.next_message() == {
                "jsonrpc": "2.0", "method": UPDATED, "params": {"uri": op_uri}}
            session = gateway.mcp.sessions.get(sid, "legacy")
            # done: its watcher ended and the subscription with it
            await eventually(lambda: _async(op_uri not in session.subscriptions))
            await legacy_call(c, sid, "resources/unsubscribe", {"uri": channel_uri})
            await send(api, cid)
            gateway.mcp.notifier.publish(LIST_CHANGED)  # a marker: nothing came before it
            assert (await stream.next_message())["method"] == LIST_CHANGED
            await c.delete("/mcp", headers={**AUTH, "mcp-session-id": sid})
            await stream.ends()
    assert feed_of(gateway)._signals == {}


async def _async(value: bool) -> bool:
    return value


async def test_a_devices_pull_is_heard_at_once_not_at_the_status_poll(
        gateway, api, monkeypatch):
    monkeypatch.setattr(status_module, "POLL_S", 3600.0)  # only the inbox's word wakes it
    key, cid = await private_device_on_channel(gateway, api)
    await send(api, cid, op_id="op-pulled")
    uri = "pushgo://operations/op-pulled"
    async with served(gateway) as c:
        sid = await open_session(c)
        async with get_stream(c, sid) as stream:
            await legacy_call(c, sid, "resources/subscribe", {"uri": uri})
            status = gateway.services.status  # its watcher has read the operation once:
            await eventually(lambda: _async(("op-pulled", None) in status._recent))
            await pull(api, key)
            assert await stream.next_message() == {
                "jsonrpc": "2.0", "method": UPDATED, "params": {"uri": uri}}


async def test_subscribe_refuses_what_cannot_be_watched_and_caps_a_session(
        gateway, api, monkeypatch):
    _key, cid = await private_device_on_channel(gateway, api)
    async with served(gateway) as c:
        sid = await open_session(c)
        missing = await legacy_call(c, sid, "resources/subscribe",
                                    {"uri": "pushgo://operations/nope"})
        assert missing["error"]["code"] == jsonrpc.RESOURCE_NOT_FOUND_LEGACY
        listing = await legacy_call(c, sid, "resources/subscribe", {"uri": "pushgo://channels"})
        assert listing["error"]["code"] == jsonrpc.INVALID_PARAMS
        monkeypatch.setattr(mcp_dispatch, "MAX_SUBSCRIPTIONS", 1)
        await send(api, cid, op_id="op-cap")
        first = await legacy_call(c, sid, "resources/subscribe",
                                  {"uri": f"pushgo://channels/{cid}"})
        assert first["result"] == {}
        again = await legacy_call(c, sid, "resources/subscribe",
                                  {"uri": f"pushgo://channels/{cid}"})
        assert again["result"] == {}  # the same resource twice is one subscription
        over = await legacy_call(c, sid, "resources/subscribe",
                                 {"uri": "pushgo://operations/op-cap"})
        assert over["error"]["code"] == jsonrpc.INVALID_REQUEST
        assert over["error"]["data"] == {"error_code": "subscription_limit_exceeded",
                                         "limit": 1}


async def test_listen_watches_the_resources_it_may_read_and_stops_when_closed(gateway, api):
    _key, cid = await private_device_on_channel(gateway, api)
    channel_uri = f"pushgo://channels/{cid}"
    async with served(gateway) as c:
        body, headers = modern_request("subscriptions/listen", {"notifications": {
            "resourceSubscriptions": [channel_uri, "pushgo://operations/nope",
                                      "pushgo://channels", channel_uri]}}, rid="sub-7")
        async with c.stream("POST", "/mcp", content=body, headers=headers) as resp:
            stream = Stream(resp)
            ack = await stream.next_message()
            assert ack["params"]["notifications"] == {"resourceSubscriptions": [channel_uri]}
            await send(api, cid)
            assert await stream.next_message() == {"jsonrpc": "2.0", "method": UPDATED,
                                                   "params": {"uri": channel_uri,
                                                              "_meta": {SUB_ID: "sub-7"}}}
    await eventually(lambda: _async(feed_of(gateway)._signals == {}))


@on_mock_clock()
async def test_changes_within_the_interval_are_merged_into_one_notification() -> None:
    feed = watch.ChannelFeed()
    cid = "C" * 26

    class Source:
        async def watch(self, uri: str) -> AsyncIterator[None]:
            with feed.follow(cid) as signal:
                while True:
                    await signal.wait()
                    yield None

    emitted: list[float] = []

    async def emit(_uri: str) -> None:
        emitted.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch.follow, Source(), "u", emit)
        await anyio.sleep(0.01)
        for _ in range(5):  # a burst: the first is told at once, the rest once, a second on
            feed.operation_accepted(cid)
            await anyio.sleep(0.1)
        await anyio.sleep(5)
        assert len(emitted) == 2
        assert emitted[1] - emitted[0] >= watch.COALESCE_S
        tg.cancel_scope.cancel()
