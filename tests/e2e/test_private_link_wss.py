"""warp-link over WSS (``/private/ws``) through a real Hypercorn server, with pushgo's own
warp-link client: what the PushGo apps in private mode do, end to end."""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from pushgo.app import Gateway
from pushgo.protocol import warplink as W
from pushgo.testing.warplink_client import Rejected, WarpLinkClient, connect
from tests.conftest import make_settings
from tests.helpers import call, new_channel, register, send
from tests.live import hypercorn_server

TOKEN = "wss-gateway-token"


@pytest.fixture
async def base(gateway: Gateway) -> AsyncIterator[str]:
    async with hypercorn_server(gateway) as url:
        yield url


@pytest.fixture
async def http(base: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        yield c


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/private/ws"


async def private_device(http: httpx.AsyncClient) -> tuple[str, str]:
    """A device on the private route subscribed to a new channel: (device_key, channel_id)."""
    key = await register(http, "android")
    await call(http, "/channel/device", {"device_key": key, "channel_type": "private"})
    return key, await new_channel(http, key)


async def deliver(client: WarpLinkClient) -> tuple[W.Deliver, dict[str, str]]:
    with anyio.fail_after(10):
        frame = await client.next_frame()
    assert isinstance(frame, W.Deliver), frame
    version, data = W.decode_payload(frame.payload)
    assert version == W.PAYLOAD_V1 and data["delivery_id"] == frame.delivery_id
    return frame, data


async def settle(client: WarpLinkClient, within: float = 10) -> None:
    """A Ping answered: every frame sent before it (an Ack) has been handled. ``within``
    seconds (virtual ones on a MockClock, which run on while the ack's store write is done)."""
    await client.send(W.Ping())
    with anyio.fail_after(within):
        assert isinstance(await client.next_frame(), W.Pong)


async def welcomed(client: WarpLinkClient, key: str, **fields: Any) -> W.ServerWelcome:
    with anyio.fail_after(10):
        answer = await client.hello(key, **fields)
    assert isinstance(answer, W.ServerWelcome), answer
    return answer


async def test_receive_ack_reconnect_and_offline_delivery(base: str,
                                                          http: httpx.AsyncClient) -> None:
    key, cid = await private_device(http)
    async with connect(ws_url(base)) as client:
        assert client.subprotocol == "pushgo-private.v1"
        welcome = await welcomed(client, key)
        assert welcome.negotiated_wire_version == 2 and welcome.negotiated_payload_version == 1
        assert (welcome.heartbeat_secs, welcome.idle_timeout_secs) == (18, 72)
        assert welcome.resume_token and welcome.max_frame_bytes == 32 * 1024
        sent = await send(http, cid, title="one", body="first")
        frame, data = await deliver(client)
        assert (data["title"], data["message_id"]) == ("one", sent["message_id"])
        await client.ack(frame)
        await settle(client)
    async with connect(ws_url(base)) as client:
        await welcomed(client, key)
        second = await send(http, cid, title="two")
        _frame, data = await deliver(client)  # not "one" again: it was acknowledged
        assert data["message_id"] == second["message_id"]
    third = await send(http, cid, title="three")  # while the device is offline
    async with connect(ws_url(base)) as client:
        await welcomed(client, key)
        got = [(await deliver(client))[1]["message_id"] for _ in range(2)]
        assert got == [second["message_id"], third["message_id"]]  # two was never acked


async def test_an_ack_over_wss_removes_it_from_pull_and_the_sse_replay(
        base: str, http: httpx.AsyncClient) -> None:
    key, cid = await private_device(http)
    await send(http, cid, title="acked")
    async with connect(ws_url(base)) as client:
        await welcomed(client, key)
        frame, _data = await deliver(client)
        await client.ack(frame)
        await settle(client)
    assert (await call(http, "/v2/messages/pull", {"device_key": key}))["items"] == []
    later = await send(http, cid, title="later")
    async with http.stream("GET", "/private/stream", params={"device_key": key}) as resp:
        text = ""
        with anyio.fail_after(10):
            async for chunk in resp.aiter_text():
                text += chunk
                if "data:" in text:
                    break
    assert later["message_id"] in text and frame.delivery_id not in text


async def test_a_delivery_acked_over_http_is_not_sent_again(base: str,
                                                            http: httpx.AsyncClient) -> None:
    key, cid = await private_device(http)
    await send(http, cid, title="once")
    async with connect(ws_url(base)) as client:
        await welcomed(client, key)
        frame, _ = await deliver(client)  # not acknowledged here
    await call(http, "/messages/ack", {"device_key": key, "delivery_id": frame.delivery_id})
    async with connect(ws_url(base)) as client:
        await welcomed(client, key)
        nxt = await send(http, cid, title="next")
        _, data = await deliver(client)
        assert data["message_id"] == nxt["message_id"]


async def test_a_new_session_supersedes_the_old_one(base: str, http: httpx.AsyncClient,
                                                    gateway: Gateway) -> None:
    key, cid = await private_device(http)
    async with connect(ws_url(base)) as old, connect(ws_url(base)) as new:
        await welcomed(old, key)
        await welcomed(new, key)
        with anyio.fail_after(10):
            assert await old.next_frame() == W.GoAway("superseded")
            with pytest.raises(EOFError):
                await old.next_frame()
        sent = await send(http, cid, title="to the new one")
        _, data = await deliver(new)
        assert data["message_id"] == sent["message_id"]
        assert gateway.links.sessions_by_transport() == {"wss": 1}


async def test_malformed_frames_close_that_session_only(base: str,
                                                        http: httpx.AsyncClient) -> None:
    key, cid = await private_device(http)
    other, other_cid = await private_device(http)
    async with connect(ws_url(base)) as healthy:
        await welcomed(healthy, other)
        for bad, code in ((b"\x01\x12\xff\xff", "invalid_frame"), (b"\x0b\x12", "unexpected_frame"),
                          (b"\x63\x12", "invalid_frame"), (b"x" * 40_000, "frame_too_large")):
            async with connect(ws_url(base)) as client:
                await client.send_raw(bad)
                with anyio.fail_after(10):
                    answer = await client.next_frame()
                    assert isinstance(answer, W.ErrorFrame) and answer.code == code, answer
                    with pytest.raises(EOFError):
                        await client.next_frame()
        async with connect(ws_url(base)) as client:  # bad input after the handshake
            await welcomed(client, key)
            await client.send_raw(b"\x09\x12\x02")
            with anyio.fail_after(10):
                answer = await client.next_frame()
            assert isinstance(answer, W.ErrorFrame) and answer.code == "invalid_frame"
        sent = await send(http, other_cid, title="still here")
        _, data = await deliver(healthy)
        assert data["message_id"] == sent["message_id"]
    assert (await call(http, "/healthz"))["status"] == "ok"
    assert cid


async def test_an_unknown_device_and_a_foreign_version_are_refused(base: str) -> None:
    async with connect(ws_url(base)) as client:
        with anyio.fail_after(10):
            answer = await client.hello("no-such-device-key-0000000000")
        assert isinstance(answer, W.ErrorFrame) and answer.code == "device_key_not_found"
    async with connect(ws_url(base)) as client:
        with anyio.fail_after(10):
            answer = await client.hello("k", supported_wire_versions=(7,))
        assert isinstance(answer, W.ErrorFrame) and answer.code == "version_incompatible"


async def test_the_upgrade_needs_the_subprotocol(base: str) -> None:
    with pytest.raises(Rejected) as info:
        async with connect(ws_url(base), subprotocols=[]):
            pass
    assert info.value.status == 400 and b"missing_websocket_subprotocol" in info.value.body


async def test_shutdown_sends_goaway(base: str, http: httpx.AsyncClient,
                                     gateway: Gateway) -> None:
    key, _cid = await private_device(http)
    async with connect(ws_url(base)) as client:
        await welcomed(client, key)
        assert gateway.links.sessions_by_transport() == {"wss": 1}
        text = (await http.get("/metrics")).text
        assert 'pushgo_private_sessions{transport="wss"} 1.0' in text
        await gateway.links.shutdown()
        with anyio.fail_after(10):
            assert await client.next_frame() == W.GoAway("shutdown")
    assert gateway.links.sessions_by_transport() == {}


async def test_the_profile_and_readyz_name_the_wss_transport(http: httpx.AsyncClient) -> None:
    data = await call(http, "/gateway/profile")
    assert data["private_channel_enabled"] is True and data["private_enabled"] is True
    t = data["transport"]
    assert (t["wss_enabled"], t["wss_path"], t["ws_subprotocol"], t["wss_port"]) == (
        True, "/private/ws", "pushgo-private.v1", 443)
    assert (t["tcp_enabled"], t["tcp_port"]) == (False, 5223)  # v1.2.9: always a port
    assert (t["quic_enabled"], t["quic_port"]) == (False, None)
    assert "wss_url" not in t
    assert await call(http, "/private/readyz") == {
        "status": "ok", "private_channel_enabled": True, "private_runtime_ready": True}


def _ws_probe_request(port: int, token: str | None) -> bytes:
    """The upgrade v1.2.9's bench scenario ``private_wss_profile`` sends, byte for byte in
    shape (its websocket_probe)."""
    key = base64.b64encode(os.urandom(16)).decode()
    head = (f"GET /private/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\n"
            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Protocol: pushgo-private.v1\r\n")
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    return (head + "\r\n").encode()


async def test_the_bench_scenario_private_wss_profile(base: str,
                                                      http: httpx.AsyncClient) -> None:
    port = int(base.rsplit(":", 1)[1])
    for _ in range(3):
        assert (await http.get("/gateway/profile")).status_code == 200
        async with await anyio.connect_tcp("127.0.0.1", port) as sock:
            await sock.send(_ws_probe_request(port, None))
            raw = b""
            with anyio.fail_after(10):
                while b"\r\n\r\n" not in raw:
                    raw += await sock.receive()
        head = raw.decode("latin-1").lower()
        assert head.startswith("http/1.1 101")
        assert "sec-websocket-protocol: pushgo-private.v1" in head


class TestWithAGatewayToken:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"token": TOKEN, "public_base_url": "https://push.example.com:8443/"}

    async def test_the_token_in_the_hello_or_the_header(self, base: str) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=10,
                                     headers={"authorization": f"Bearer {TOKEN}"}) as http:
            key, _cid = await private_device(http)
            profile = await call(http, "/gateway/profile")
        assert profile["transport"]["wss_url"] == "wss://push.example.com:8443/private/ws"
        assert profile["transport"]["wss_port"] == 8443
        async with connect(ws_url(base)) as client:
            with anyio.fail_after(10):
                answer = await client.hello(key, "wrong")
            assert isinstance(answer, W.ErrorFrame) and answer.code == "auth_failed"
        async with connect(ws_url(base)) as client:
            await welcomed(client, key, gateway_token=TOKEN)
        async with connect(ws_url(base), bearer=TOKEN) as client:
            await welcomed(client, key)


class TestWithWssOff:
    @pytest.fixture
    def db_url(self, tmp_path: Any) -> str:
        return f"sqlite:///{tmp_path}/pushgo.db"

    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"private_transports": ()}

    async def test_profile_private_off_and_ws_refused(self, base: str,
                                                      http: httpx.AsyncClient) -> None:
        data = await call(http, "/gateway/profile")
        assert data["private_channel_enabled"] is False
        assert await call(http, "/healthz") == {"status": "ok", "private_channel_enabled": False,
                                                "private_runtime_ready": True}
        assert data["transport"]["wss_enabled"] is False
        resp = await http.get("/private/readyz")
        assert resp.status_code == 503
        assert resp.json()["error_code"] == "private_channel_runtime_unavailable"
        with pytest.raises(Rejected) as info:
            async with connect(ws_url(base)):
                pass
        assert info.value.status == 503


async def test_make_settings_default_serves_wss() -> None:
    assert make_settings("sqlite://").private_transports == ("wss",)


async def test_the_hand_client_prints_each_delivery_and_acks_it(base: str,
                                                                http: httpx.AsyncClient,
                                                                gateway: Gateway) -> None:
    key, cid = await private_device(http)
    cmd = [sys.executable, "-m", "pushgo.testing.warplink_client", "--url", ws_url(base),
           "--device-key", key]
    async with await anyio.open_process(cmd) as proc:
        try:
            with anyio.fail_after(20):
                while not gateway.links.live(key):
                    await anyio.sleep(0.02)
                sent = await send(http, cid, title="by hand")
                assert proc.stdout is not None
                out = b""
                while b"\n" not in out:
                    out += await proc.stdout.receive()
            line = json.loads(out.split(b"\n")[0])
            assert line["data"]["title"] == "by hand"
            assert line["data"]["message_id"] == sent["message_id"]
            with anyio.fail_after(20):  # acknowledged: gone from the inbox
                while (await call(http, "/v2/messages/pull", {"device_key": key}))["items"]:
                    await anyio.sleep(0.02)
        finally:
            proc.terminate()


async def test_a_payload_too_large_for_a_frame_goes_as_a_wakeup_left_for_pull(
        base: str, http: httpx.AsyncClient) -> None:
    key, cid = await private_device(http)
    # Just under the API's 32 KiB body: with the ids and times around it, over one frame.
    body = "a long body " * 2705
    sent = await send(http, cid, title="big", body=body)
    async with connect(ws_url(base)) as client:
        await welcomed(client, key)
        frame, data = await deliver(client)
        assert len(W.encode(frame)) <= 32 * 1024 + 2
        assert data["provider_wakeup"] == "1" and data["message_id"] == sent["message_id"]
        assert len(data["body"]) <= 180
        await client.ack(frame)
        await settle(client)
        small = await send(http, cid, title="small")
        frame, data = await deliver(client)  # the wake-up is not sent again in this session
        assert data["message_id"] == small["message_id"]
        await client.ack(frame)
        await settle(client)
    items = (await call(http, "/v2/messages/pull", {"device_key": key}))["items"]
    assert [i["payload"]["message_id"] for i in items] == [sent["message_id"]]
    assert items[0]["payload"]["body"] == body.strip()  # the full payload, by pull


async def test_resume_token_and_last_acked_seq_cover_an_ack_lost_with_the_connection(
        base: str, http: httpx.AsyncClient) -> None:
    key, cid = await private_device(http)
    await send(http, cid, title="acked only by the resume")
    async with connect(ws_url(base)) as client:
        first = await welcomed(client, key)
        frame, _ = await deliver(client)  # its Ack "is lost": never sent
    async with connect(ws_url(base)) as client:  # a wrong token: nothing is taken on its word
        stranger = await welcomed(client, key, resume_token="guess", last_acked_seq=frame.seq)
        assert stranger.resume_token != first.resume_token
        again, _ = await deliver(client)
        assert again.delivery_id == frame.delivery_id
    async with connect(ws_url(base)) as client:
        resumed = await welcomed(client, key, resume_token=stranger.resume_token,
                                 last_acked_seq=frame.seq)
        assert resumed.resume_token == stranger.resume_token
        later = await send(http, cid, title="later")
        _, data = await deliver(client)  # not the first one again
        assert data["message_id"] == later["message_id"]
    items = (await call(http, "/v2/messages/pull", {"device_key": key}))["items"]
    assert frame.delivery_id not in [i["delivery_id"] for i in items]
