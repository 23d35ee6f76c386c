"""warp-link over QUIC (ALPN ``pushgo-quic``) on the gateway's own UDP listener, with pushgo's
QUIC warp-link client (aioquic on anyio): Trio and asyncio."""

from __future__ import annotations

import socket
import struct
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
from pushgo.testing.warplink_quic import connect_quic
from tests.e2e.test_private_link_wss import deliver, private_device, settle, welcomed, ws_url
from tests.helpers import call, send
from tests.live import hypercorn_server


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def cafile(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def settings_overrides(ca: trustme.CA, tmp_path: Path) -> dict[str, Any]:
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    return {"private_transports": ("quic", "wss"), "private_quic_bind": ("127.0.0.1", 0),
            "private_quic_port": 443, "private_tls_cert": str(cert),
            "private_tls_key": str(key)}


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with hypercorn_server(gateway) as base, \
            httpx.AsyncClient(base_url=base, timeout=10) as c:
        yield c


def quic_port(gateway: Gateway) -> int:
    assert gateway.private_quic is not None
    return gateway.private_quic.port


async def test_quic_receive_ack_reconnect_and_offline(gateway: Gateway, http: httpx.AsyncClient,
                                                      cafile: str) -> None:
    key, cid = await private_device(http)
    port = quic_port(gateway)
    async with connect_quic("127.0.0.1", port, cafile=cafile, server_name="localhost") as c:
        assert c.subprotocol == "pushgo-quic"
        await welcomed(c, key)
        sent = await send(http, cid, title="over quic")
        frame, data = await deliver(c)
        assert data["message_id"] == sent["message_id"]
        await c.ack(frame)
        await settle(c)
        assert gateway.links.sessions_by_transport() == {"quic": 1}
        metrics = (await http.get("/metrics")).text
        assert 'pushgo_private_sessions{transport="quic"} 1.0' in metrics
    offline = await send(http, cid, title="while away")
    async with connect_quic("127.0.0.1", port, cafile=cafile, server_name="localhost") as c:
        await welcomed(c, key)
        _, data = await deliver(c)
        assert data["message_id"] == offline["message_id"]  # not "over quic" again


async def test_a_quic_session_supersedes_a_wss_one(gateway: Gateway, http: httpx.AsyncClient,
                                                  cafile: str) -> None:
    key, cid = await private_device(http)
    async with connect(ws_url(str(http.base_url).rstrip("/"))) as wss:
        await welcomed(wss, key)
        async with connect_quic("127.0.0.1", quic_port(gateway), cafile=cafile,
                                server_name="localhost") as quic:
            await welcomed(quic, key)
            with anyio.fail_after(10):
                assert await wss.next_frame() == W.GoAway("superseded")
            sent = await send(http, cid, title="to quic")
            _, data = await deliver(quic)
            assert data["message_id"] == sent["message_id"]


async def test_a_bad_length_or_frame_closes_that_session_only(gateway: Gateway,
                                                             http: httpx.AsyncClient,
                                                             cafile: str) -> None:
    key, cid = await private_device(http)
    port = quic_port(gateway)
    async with connect_quic("127.0.0.1", port, cafile=cafile, server_name="localhost") as ok:
        await welcomed(ok, key)
        for raw, code in ((struct.pack(">I", 1 << 20), "frame_too_large"),
                          (struct.pack(">I", 3) + b"\x01\x12\xff", "invalid_frame")):
            async with connect_quic("127.0.0.1", port, cafile=cafile,
                                    server_name="localhost") as bad:
                io: Any = bad.io
                io.conn.send_stream_data(io.stream_id, raw)
                io.wake.set()
                with anyio.fail_after(10):
                    answer = await bad.next_frame()
                    assert isinstance(answer, W.ErrorFrame) and answer.code == code, answer
                    with pytest.raises(EOFError):
                        await bad.next_frame()
        # datagrams that are not QUIC, or too small to open a connection, are ignored
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
            junk.sendto(b"\xc0\x00\x00\x00\x01" + b"\x00" * 20, ("127.0.0.1", port))
            junk.sendto(b"hello", ("127.0.0.1", port))
        sent = await send(http, cid, title="still fine")
        _, data = await deliver(ok)
        assert data["message_id"] == sent["message_id"]


async def test_the_profile_names_the_quic_port(http: httpx.AsyncClient) -> None:
    t = (await call(http, "/gateway/profile"))["transport"]
    assert (t["quic_enabled"], t["quic_port"], t["tcp_enabled"]) == (True, 443, False)
