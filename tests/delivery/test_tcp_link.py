"""The warp-link TCP link's reads: a read cancelled part-way through a frame (the session
cancels its read whenever it has something to send) loses nothing."""

from __future__ import annotations

import struct

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteStream

from pushgo.delivery.private_link.tcp import TcpLink

pytestmark = pytest.mark.anyio


async def test_a_read_cancelled_inside_a_frame_goes_on_with_it() -> None:
    frame = b"\x0b\x12" + b"x" * 100
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listeners:
        listener = listeners.listeners[0]
        assert isinstance(listener, anyio.abc.SocketListener)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with await anyio.connect_tcp("127.0.0.1", port) as client:
            server = await listener.accept()
            link = TcpLink(BufferedByteStream(server), 1024)
            await client.send(struct.pack(">I", len(frame)) + frame[:30])
            with anyio.move_on_after(0.2) as waited:  # the length and a part of the body
                await link.receive()
            assert waited.cancelled_caught
            await client.send(frame[30:])
            with anyio.fail_after(5):
                assert await link.receive() == frame
            await server.aclose()
