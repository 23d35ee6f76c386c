"""warp-link's long waits on Trio's MockClock, through a real server over WSS: a quiet peer
is sent GoAway ``idle_timeout`` while one that pings stays; an unacknowledged Deliver is sent
again after the ack timeout, and not once it is acknowledged."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from pushgo.app import Gateway
from pushgo.protocol import warplink as W
from pushgo.testing.warplink_client import connect
from tests.conftest import make_settings
from tests.e2e.test_private_link_wss import deliver, private_device, settle, welcomed, ws_url
from tests.helpers import call, on_mock_clock, send, tick
from tests.live import hypercorn_server

TICK_S = 0.01

pytestmark = on_mock_clock()


@pytest.fixture
def db_url(tmp_path: str) -> str:
    return f"sqlite:///{tmp_path}/pushgo.db"


@pytest.fixture
async def live(db_url: str) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    gw = Gateway(make_settings(db_url, db_request_timeout_ms=600_000))
    async with anyio.create_task_group() as ticking:
        ticking.start_soon(tick, TICK_S)
        async with gw.running(), hypercorn_server(gw) as base, \
                httpx.AsyncClient(base_url=base, timeout=3600) as http:
            yield base, http
        ticking.cancel_scope.cancel()


async def test_a_quiet_peer_gets_goaway_idle_timeout_and_a_pinging_one_stays(
        live: tuple[str, httpx.AsyncClient]) -> None:
    base, http = live
    key, _cid = await private_device(http)
    async with connect(ws_url(base)) as client:
        welcome = await welcomed(client, key, perf_tier="high", app_state="foreground")
        assert welcome.idle_timeout_secs == 48
        for _ in range(4):  # 4 x 40 s of pings: well past one idle timeout, still open
            await anyio.sleep(40)
            await settle(client, within=3600)
        started = anyio.current_time()
        with anyio.fail_after(3600):
            assert await client.next_frame() == W.GoAway("idle_timeout")
        assert anyio.current_time() - started >= 48 - 1


async def test_an_unacknowledged_deliver_is_sent_again_until_acknowledged(
        live: tuple[str, httpx.AsyncClient]) -> None:
    base, http = live
    key, cid = await private_device(http)
    async with connect(ws_url(base)) as client:
        await welcomed(client, key)
        await send(http, cid, title="again")
        first, _ = await deliver(client)
        with anyio.fail_after(3600):
            again = await client.next_frame()
        assert again == first  # the same frame: same seq, id and payload
        await client.ack(again)
        await settle(client, within=3600)
        later = await send(http, cid, title="later")
        frame, data = await deliver(client)
        assert data["message_id"] == later["message_id"]
        await client.ack(frame)
        await settle(client, within=3600)
        await anyio.sleep(30)  # past another ack timeout: nothing is sent again, so the
        await settle(client, within=3600)  # next frame is the Pong, not a Deliver
    assert (await call(http, "/v2/messages/pull", {"device_key": key}))["items"] == []


async def test_a_peer_that_never_says_hello_gets_an_error_and_is_closed(
        live: tuple[str, httpx.AsyncClient]) -> None:
    base, _http = live
    async with connect(ws_url(base)) as client:
        with anyio.fail_after(3600):
            answer = await client.next_frame()
            assert answer == W.ErrorFrame("hello_timeout", "no ClientHello")
            with pytest.raises(EOFError):
                await client.next_frame()
