"""The QUIC side of pushgo's warp-link test client: aioquic's client connection driven from an
anyio UDP socket (Trio or asyncio), ALPN ``pushgo-quic``, frames behind a 4-byte big-endian
length on the client's first bidirectional stream. ``connect_quic`` yields the same
:class:`~pushgo.testing.warplink_client.WarpLinkClient` as the other transports."""

from __future__ import annotations

import math
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from pushgo.testing.warplink_client import WarpLinkClient

ALPN = "pushgo-quic"
HANDSHAKE_TIMEOUT_S = 10.0


class _QuicIo:
    def __init__(self, conn: QuicConnection, udp: anyio.abc.ConnectedUDPSocket) -> None:
        self.conn = conn
        self.udp = udp
        self.stream_id = conn.get_next_available_stream_id()
        self.buf = bytearray()
        self.frames: list[bytes] = []
        self.ended = False
        self.ready = anyio.Event()
        self.changed = anyio.Event()
        self.wake = anyio.Event()

    async def drive(self) -> None:
        """Until the connection ends: send what is due, read datagrams, run timers."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._read)
            while not self.ended:
                self.wake = anyio.Event()
                for data, _addr in self.conn.datagrams_to_send(anyio.current_time()):
                    await self.udp.send(data)
                self._events()
                timer = self.conn.get_timer()
                wait = math.inf if timer is None else max(0.0, timer - anyio.current_time())
                with anyio.move_on_after(wait):
                    await self.wake.wait()
                timer = self.conn.get_timer()
                if timer is not None and anyio.current_time() >= timer:
                    self.conn.handle_timer(anyio.current_time())
            tg.cancel_scope.cancel()

    async def _read(self) -> None:
        async for data in self.udp:
            self.conn.receive_datagram(data, self.udp.extra(
                anyio.abc.SocketAttribute.remote_address), anyio.current_time())
            self.wake.set()

    def _events(self) -> None:
        while (event := self.conn.next_event()) is not None:
            if isinstance(event, events.HandshakeCompleted):
                self.ready.set()
            elif isinstance(event, events.ConnectionTerminated):
                self.ended = True
                self.ready.set()
            elif isinstance(event, events.StreamDataReceived):
                self.buf += event.data
                while len(self.buf) >= 4:
                    (size,) = struct.unpack(">I", self.buf[:4])
                    if len(self.buf) < 4 + size:
                        break
                    self.frames.append(bytes(self.buf[4:4 + size]))
                    del self.buf[:4 + size]
                if event.end_stream:
                    self.ended = True
            else:
                continue
            self.changed.set()
            self.changed = anyio.Event()

    async def send(self, frame: bytes) -> None:
        if self.ended:
            raise EOFError("connection closed")
        self.conn.send_stream_data(self.stream_id, struct.pack(">I", len(frame)) + frame)
        self.wake.set()

    async def receive(self) -> bytes:
        while not self.frames:
            if self.ended:
                raise EOFError("connection closed")
            await self.changed.wait()
        return self.frames.pop(0)

    async def close(self) -> None:
        self.conn.close(error_code=0)
        self.wake.set()


@asynccontextmanager
async def connect_quic(host: str, port: int, *, cafile: str | None = None,
                       server_name: str | None = None) -> AsyncIterator[WarpLinkClient]:
    config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN],
                               server_name=server_name or host)
    if cafile is not None:
        config.load_verify_locations(cafile)
    conn = QuicConnection(configuration=config)
    async with await anyio.create_connected_udp_socket(host, port) as udp, \
            anyio.create_task_group() as tg:
        io = _QuicIo(conn, udp)
        conn.connect((host, port), now=anyio.current_time())
        tg.start_soon(io.drive)
        with anyio.fail_after(HANDSHAKE_TIMEOUT_S):
            await io.ready.wait()
        if io.ended:
            raise ConnectionError("QUIC handshake failed")
        client = WarpLinkClient(io, ALPN)  # type: ignore[arg-type]
        try:
            yield client
        finally:
            await io.close()
            with anyio.move_on_after(1):
                while not io.ended:
                    await io.changed.wait()
            tg.cancel_scope.cancel()
