"""warp-link over raw TCP (TLS with ALPN ``pushgo-tcp``; plain behind a TLS-offloading proxy,
with the PROXY protocol), on the gateway's own listener, with pushgo's warp-link client."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import trustme

from pushgo.app import Gateway
from pushgo.protocol import warplink as W
from pushgo.testing.warplink_client import connect
from tests.conftest import make_settings
from tests.e2e.test_private_link_wss import deliver, private_device, settle, welcomed, ws_url
from tests.helpers import call, send
from tests.live import hypercorn_server


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(ca: trustme.CA, tmp_path: Path) -> dict[str, Any]:
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    return {"private_tls_cert": str(cert), "private_tls_key": str(key)}


@pytest.fixture
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def settings_overrides(tls_files: dict[str, Any]) -> dict[str, Any]:
    return {"private_transports": ("tcp", "wss"), "private_tcp_bind": ("127.0.0.1", 0),
            "private_tcp_port": 443, **tls_files}


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with hypercorn_server(gateway) as base, \
            httpx.AsyncClient(base_url=base, timeout=10) as c:
        yield c


def tcp_url(gateway: Gateway, scheme: str = "tls") -> str:
    assert gateway.private_tcp is not None
    return f"{scheme}://127.0.0.1:{gateway.private_tcp.port}"


async def test_tls_tcp_receive_ack_reconnect_and_offline(gateway: Gateway,
                                                          http: httpx.AsyncClient,
                                                          client_ctx: ssl.SSLContext) -> None:
    key, cid = await private_device(http)
    async with connect(tcp_url(gateway), ssl_context=client_ctx) as client:
        assert client.subprotocol == "pushgo-tcp"  # the ALPN protocol
        welcome = await welcomed(client, key, perf_tier="low", app_state="background")
        assert (welcome.heartbeat_secs, welcome.idle_timeout_secs) == (40, 120)
        sent = await send(http, cid, title="over tcp")
        frame, data = await deliver(client)
        assert data["message_id"] == sent["message_id"]
        await client.ack(frame)
        await settle(client)
        assert gateway.links.sessions_by_transport() == {"tcp": 1}
        metrics = (await http.get("/metrics")).text
        assert 'pushgo_private_sessions{transport="tcp"} 1.0' in metrics
    offline = await send(http, cid, title="while away")
    async with connect(tcp_url(gateway), ssl_context=client_ctx) as client:
        await welcomed(client, key)
        _, data = await deliver(client)
        assert data["message_id"] == offline["message_id"]  # not "over tcp" again
    assert (await call(http, "/v2/messages/pull", {"device_key": key}))["items"]


async def test_a_tcp_session_supersedes_a_wss_one_and_acks_are_shared(
        gateway: Gateway, http: httpx.AsyncClient, client_ctx: ssl.SSLContext) -> None:
    key, cid = await private_device(http)
    base = str(http.base_url).rstrip("/")
    async with connect(ws_url(base)) as wss:
        await welcomed(wss, key)
        sent = await send(http, cid, title="first on wss")
        frame, _ = await deliver(wss)
        await wss.ack(frame)
        await settle(wss)
        async with connect(tcp_url(gateway), ssl_context=client_ctx) as tcp:
            await welcomed(tcp, key)
            with anyio.fail_after(10):
                assert await wss.next_frame() == W.GoAway("superseded")
            later = await send(http, cid, title="then on tcp")
            _, data = await deliver(tcp)  # the one acked over WSS is not sent again
            assert data["message_id"] == later["message_id"] != sent["message_id"]


async def test_bad_lengths_close_that_connection_only(gateway: Gateway, http: httpx.AsyncClient,
                                                       client_ctx: ssl.SSLContext) -> None:
    key, cid = await private_device(http)
    async with connect(tcp_url(gateway), ssl_context=client_ctx) as healthy:
        await welcomed(healthy, key)
        for raw in (b"\x00\x00\x00\x00", b"\x00\x01\x00\x00" + b"x" * 10):
            async with connect(tcp_url(gateway), ssl_context=client_ctx) as client:
                await client.io.stream.send(raw)
                with anyio.fail_after(10):
                    answer = await client.next_frame()
                    assert isinstance(answer, W.ErrorFrame)
                    assert answer.code == "frame_too_large"
                    with pytest.raises(EOFError):
                        await client.next_frame()
        sent = await send(http, cid, title="still fine")
        _, data = await deliver(healthy)
        assert data["message_id"] == sent["message_id"]


async def test_the_profile_names_the_tcp_port(http: httpx.AsyncClient) -> None:
    t = (await call(http, "/gateway/profile"))["transport"]
    assert (t["tcp_enabled"], t["tcp_port"], t["wss_enabled"]) == (True, 443, True)


class TestPlainBehindAProxy:
    @pytest.fixture
    def db_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/pushgo.db"

    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"private_transports": ("tcp",), "private_tcp_bind": ("127.0.0.1", 0),
                "private_tcp_tls_offload": True, "private_tcp_proxy_protocol": True}

    async def test_proxy_header_then_plain_frames(self, gateway: Gateway,
                                                  http: httpx.AsyncClient) -> None:
        key, cid = await private_device(http)
        header = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 5223\r\n"
        async with connect(tcp_url(gateway, "tcp"), preamble=header) as client:
            await welcomed(client, key)
            sent = await send(http, cid, title="through the proxy")
            _, data = await deliver(client)
            assert data["message_id"] == sent["message_id"]
        profile = await call(http, "/gateway/profile")
        assert profile["transport"]["wss_enabled"] is False
        assert profile["private_channel_enabled"] is True

    @pytest.mark.parametrize("header", [b"GET / HTTP/1.1\r\n", b"PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n",
                                        b"PROXY " + b"9" * 200])
    async def test_a_bad_proxy_header_closes_the_connection(self, gateway: Gateway,
                                                            http: httpx.AsyncClient,
                                                            header: bytes) -> None:
        key, _cid = await private_device(http)
        async with connect(tcp_url(gateway, "tcp"), preamble=header) as client:
            await client.send(W.ClientHello(key))
            with anyio.fail_after(10), pytest.raises(EOFError):
                await client.next_frame()
        assert gateway.private_tcp is not None and gateway.links.sessions_by_transport() == {}


def test_settings_without_a_port_of_their_own_keep_tcp_off() -> None:
    assert "tcp" not in make_settings("sqlite://").private_transports
