"""GET /private/stream over a real server: pending first (oldest first), then live; replay of
unacknowledged deliveries on reconnect; Last-Event-ID; keep-alives; HTTP/1.1 and h2c."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from pushgo.protocol.sse import Event, SSEParser
from tests.helpers import call, new_channel, register, send
from tests.live import hypercorn_server


@pytest.fixture
async def base(gateway) -> AsyncIterator[str]:
    async with hypercorn_server(gateway) as url:
        yield url


@pytest.fixture
async def http(base) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        yield c


class Stream:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.parser = SSEParser()
        self._chunks = response.aiter_bytes()
        self._pending: list[Event] = []

    async def next(self) -> Event:
        with anyio.fail_after(5):
            while not self._pending:
                chunk = await self._chunks.__anext__()
                self._pending.extend(self.parser.feed(chunk))
            return self._pending.pop(0)

    async def wait_comments(self, n: int) -> None:
        with anyio.fail_after(5):
            while self.parser.comments < n:
                chunk = await self._chunks.__anext__()
                self._pending.extend(self.parser.feed(chunk))


@asynccontextmanager
async def open_stream(http: httpx.AsyncClient, key: str,
                      last_event_id: str | None = None) -> AsyncIterator[Stream]:
    headers = {"last-event-id": last_event_id} if last_event_id else {}
    async with http.stream("GET", "/private/stream", params={"device_key": key},
                           headers=headers) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        yield Stream(resp)


def payload(event: Event) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(event.data)
    assert doc["delivery_id"] == event.id
    return doc


async def test_pending_deliveries_arrive_oldest_first_then_live_ones(http):
    key = await register(http)
    cid = await new_channel(http, key)
    first = await send(http, cid, title="one")
    second = await send(http, cid, title="two")
    async with open_stream(http, key) as stream:
        got = [payload(await stream.next()), payload(await stream.next())]
        assert [p["message_id"] for p in got] == [first["message_id"], second["message_id"]]
        third = await send(http, cid, title="three")
        live = payload(await stream.next())
        assert live["message_id"] == third["message_id"]
        assert live["title"] == "three"


async def test_unacknowledged_deliveries_are_replayed_on_reconnect_and_acked_ones_are_not(http):
    key = await register(http)
    cid = await new_channel(http, key)
    await send(http, cid, title="a")
    await send(http, cid, title="b")
    async with open_stream(http, key) as stream:
        a, b = payload(await stream.next()), payload(await stream.next())
    async with open_stream(http, key) as stream:
        again = [payload(await stream.next())["delivery_id"] for _ in range(2)]
    assert again == [a["delivery_id"], b["delivery_id"]]
    assert (await call(http, "/messages/ack",
                       {"device_key": key, "delivery_id": a["delivery_id"]}))["removed"] is True
    async with open_stream(http, key) as stream:
        assert payload(await stream.next())["delivery_id"] == b["delivery_id"]


async def test_last_event_id_skips_deliveries_up_to_it(http):
    key = await register(http)
    cid = await new_channel(http, key)
    for title in ("a", "b", "c"):
        await send(http, cid, title=title)
    async with open_stream(http, key) as stream:
        ids = [(await stream.next()).id for _ in range(3)]
    async with open_stream(http, key, last_event_id=ids[1]) as stream:
        assert (await stream.next()).id == ids[2]


async def test_idle_stream_sends_keep_alive_comments(http, gateway):
    gateway.streams.keepalive_s = 0.05
    key = await register(http)
    async with open_stream(http, key) as stream:
        await stream.wait_comments(3)  # the opening comment, then keep-alives


async def test_subscribing_while_connected_delivers_the_new_channel_live(http):
    key = await register(http)
    async with open_stream(http, key) as stream:
        cid = await new_channel(http, key, name="late")
        sent = await send(http, cid, title="fresh")
        assert payload(await stream.next())["message_id"] == sent["message_id"]


async def test_two_devices_on_one_channel_each_get_their_own_delivery(http):
    k1, k2 = await register(http), await register(http, "android")
    cid = await new_channel(http, k1)
    await call(http, "/channel/subscribe",
               {"device_key": k2, "channel_id": cid, "password": "secret-pass-1"})
    async with open_stream(http, k1) as s1, open_stream(http, k2) as s2:
        sent = await send(http, cid)
        p1, p2 = payload(await s1.next()), payload(await s2.next())
    assert p1["message_id"] == p2["message_id"] == sent["message_id"]
    assert p1["delivery_id"] != p2["delivery_id"]


async def test_streams_over_h2c_deliver_to_several_devices_on_one_connection(base, http):
    keys = [await register(http) for _ in range(3)]
    cid = await new_channel(http, keys[0])
    for key in keys[1:]:
        await call(http, "/channel/subscribe",
                   {"device_key": key, "channel_id": cid, "password": "secret-pass-1"})
    async with (httpx.AsyncClient(base_url=base, http1=False, http2=True, timeout=10) as h2,
                open_stream(h2, keys[0]) as s0, open_stream(h2, keys[1]) as s1,
                open_stream(h2, keys[2]) as s2):
        assert s0.response.http_version == "HTTP/2"
        sent = [await send(h2, cid, title=f"m{i}") for i in range(5)]
        for stream in (s0, s1, s2):
            got = [payload(await stream.next())["message_id"] for _ in range(5)]
            assert got == [s["message_id"] for s in sent]


async def test_stream_for_an_unknown_or_missing_device_is_refused(http):
    resp = await http.get("/private/stream", params={"device_key": "0" * 32})
    assert resp.status_code == 400
    assert resp.json()["error_code"] == "device_key_not_found"
    resp = await http.get("/private/stream")
    assert resp.status_code == 400
    assert resp.json()["error_code"] == "device_key_required"
