"""A warp-link client, written from the public definitions of the PushGo apps' private
transport: WebSocket (``ws://`` / ``wss://``, subprotocol ``pushgo-private.v1``) and raw TCP
(``tcp://`` plain, ``tls://`` with ALPN ``pushgo-tcp``; a 4-byte big-endian length before each
frame). For the tests, and by hand::

    python -m pushgo.testing.warplink_client --url ws://127.0.0.1:6666/private/ws \\
        --device-key KEY [--token TOKEN] [--no-ack]

prints each delivery's data as one JSON line and acknowledges it (``quic://host:port`` for
QUIC; ``SSL_CERT_FILE`` names a private CA).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import ssl
import struct
import sys
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute, TLSStream
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from pushgo.protocol import warplink as W

SUBPROTOCOL = "pushgo-private.v1"
TCP_ALPN = "pushgo-tcp"
READ_SIZE = 65536


class Rejected(Exception):
    """The server refused the WebSocket upgrade with an HTTP answer."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"upgrade refused: {status}")
        self.status = status
        self.body = body


class _Ws:
    """Whole binary messages over one WebSocket (wsproto on an anyio byte stream)."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.inbox: deque[bytes] = deque()
        self.closed = False
        self._partial = bytearray()

    async def open(self, host: str, target: str, bearer: str | None,
                   subprotocols: list[str]) -> str | None:
        headers = [(b"authorization", f"Bearer {bearer}".encode())] if bearer else []
        await self.stream.send(self.ws.send(Request(host=host, target=target,
                                                    subprotocols=subprotocols,
                                                    extra_headers=headers)))
        status, body = 0, bytearray()
        while True:
            for event in await self._events():
                if isinstance(event, AcceptConnection):
                    return event.subprotocol
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        raise Rejected(status, b"")
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        raise Rejected(status, bytes(body))

    async def _events(self) -> list[object]:
        try:
            data = await self.stream.receive(READ_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            data = b""
        self.ws.receive_data(data or None)
        if not data:
            self.closed = True
        return list(self.ws.events())

    async def send(self, frame: bytes) -> None:
        await self.stream.send(self.ws.send(BytesMessage(data=frame)))

    async def receive(self) -> bytes:
        while not self.inbox:
            if self.closed:
                raise EOFError("connection closed")
            for event in await self._events():
                await self._handle(event)
        return self.inbox.popleft()

    async def _handle(self, event: object) -> None:
        if isinstance(event, BytesMessage):
            self._partial += event.data
            if event.message_finished:
                self.inbox.append(bytes(self._partial))
                self._partial.clear()
        elif isinstance(event, TextMessage):
            self.inbox.append(b"")  # not a frame: shows as an unreadable one
        elif isinstance(event, Ping):
            await self.stream.send(self.ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            self.closed = True
            if self.ws.state is ConnectionState.REMOTE_CLOSING:  # answer a close handshake
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await self.stream.send(self.ws.send(event.response()))

    async def close(self) -> None:
        if not self.closed and self.ws.state is ConnectionState.OPEN:
            self.closed = True
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await self.stream.send(self.ws.send(CloseConnection(code=1000)))
        await self.stream.aclose()


class _Tcp:
    """Length-prefixed frames over one byte stream."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def send(self, frame: bytes) -> None:
        await self.stream.send(struct.pack(">I", len(frame)) + frame)

    async def _fill(self, size: int) -> None:
        while len(self.buf) < size:
            try:
                self.buf += await self.stream.receive(READ_SIZE)
            except (anyio.EndOfStream, anyio.BrokenResourceError,
                    anyio.ClosedResourceError) as exc:
                raise EOFError("connection closed") from exc

    async def receive(self) -> bytes:
        await self._fill(4)
        (size,) = struct.unpack(">I", self.buf[:4])
        await self._fill(4 + size)
        frame = bytes(self.buf[4:4 + size])
        del self.buf[:4 + size]
        return frame

    async def close(self) -> None:
        await self.stream.aclose()


class WarpLinkClient:
    """One warp-link connection: raw frames, and the few steps an app takes."""

    def __init__(self, io: _Ws | _Tcp, subprotocol: str | None = None) -> None:
        self.io = io
        #: The WebSocket subprotocol, or the TLS ALPN protocol on TCP.
        self.subprotocol = subprotocol
        self.welcome: W.ServerWelcome | None = None

    async def send_raw(self, frame: bytes) -> None:
        await self.io.send(frame)

    async def send(self, frame: W.Frame, version: int = W.WIRE_V2) -> None:
        await self.io.send(W.encode(frame, version))

    async def receive(self) -> W.Frame:
        """The next frame (EOFError once the server closed; ValueError if unreadable)."""
        decoded = W.decode(await self.io.receive())
        if isinstance(decoded, W.FrameError):
            raise ValueError(f"unreadable frame from the server: {decoded.message}")
        return decoded.frame

    async def hello(self, device_key: str, token: str | None = None, **fields: object
                    ) -> W.Frame:
        """Send a ClientHello; the answer (a ServerWelcome, else an ErrorFrame)."""
        hello = W.ClientHello(device_key, token, supported_wire_versions=(W.WIRE_V2,),
                              supported_payload_versions=(W.PAYLOAD_V1,))
        await self.send(dataclasses.replace(hello, **fields))  # type: ignore[arg-type]
        answer = await self.receive()
        if isinstance(answer, W.ServerWelcome):
            self.welcome = answer
        return answer

    async def next_frame(self, *, answer_pings: bool = True) -> W.Frame:
        while True:
            frame = await self.receive()
            if isinstance(frame, W.Ping) and answer_pings:
                await self.send(W.Pong())
                continue
            return frame

    async def ack(self, deliver: W.Deliver, status: str = "ok") -> None:
        await self.send(W.Ack(deliver.delivery_id, status, deliver.seq))

    async def aclose(self) -> None:
        await self.io.close()


@asynccontextmanager
async def connect(url: str, *, bearer: str | None = None,
                  subprotocols: list[str] | None = None,
                  ssl_context: ssl.SSLContext | None = None,
                  preamble: bytes = b"") -> AsyncIterator[WarpLinkClient]:
    """A connection to ``ws://``, ``wss://``, ``tcp://`` or ``tls://`` ``host:port[/path]``;
    ``preamble`` is sent first, before TLS (a PROXY protocol header)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    secure = parts.scheme in ("wss", "tls")
    port = parts.port or (443 if secure else 80)
    if secure and ssl_context is None:
        ssl_context = ssl.create_default_context()
    if parts.scheme == "tls" and ssl_context is not None:
        ssl_context.set_alpn_protocols([TCP_ALPN])
    stream: anyio.abc.ByteStream = await anyio.connect_tcp(host, port)
    client: WarpLinkClient
    try:
        if preamble:
            await stream.send(preamble)
        if secure:
            stream = await TLSStream.wrap(stream, hostname=host, ssl_context=ssl_context,
                                          standard_compatible=False)
        if parts.scheme in ("ws", "wss"):
            ws = _Ws(stream)
            offered = [SUBPROTOCOL] if subprotocols is None else subprotocols
            chosen = await ws.open(parts.netloc, parts.path or "/private/ws", bearer, offered)
            client = WarpLinkClient(ws, chosen)
        else:
            client = WarpLinkClient(_Tcp(stream), stream.extra(TLSAttribute.alpn_protocol, None))
    except BaseException:
        await stream.aclose()
        raise
    try:
        yield client
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            await client.aclose()


def _open(url: str, token: str | None) -> Any:
    parts = urlsplit(url)
    if parts.scheme == "quic":
        from pushgo.testing.warplink_quic import connect_quic  # it builds on this module

        return connect_quic(parts.hostname or "127.0.0.1", parts.port or 443,
                            cafile=os.environ.get("SSL_CERT_FILE"))
    return connect(url, bearer=token)


async def _main(args: argparse.Namespace) -> int:
    async with _open(args.url, args.token) as client:
        answer = await client.hello(args.device_key, args.token, perf_tier=args.perf_tier,
                                    app_state=args.app_state)
        if not isinstance(answer, W.ServerWelcome):
            print(json.dumps({"refused": str(answer)}), file=sys.stderr)
            return 1
        print(json.dumps({"welcome": answer.session_id,
                          "heartbeat_secs": answer.heartbeat_secs}), file=sys.stderr)
        while True:
            with anyio.move_on_after(answer.heartbeat_secs) as quiet:
                frame = await client.next_frame()
            if quiet.cancelled_caught:
                await client.send(W.Ping())
                continue
            if isinstance(frame, W.Deliver):
                _version, data = W.decode_payload(frame.payload)
                print(json.dumps({"seq": frame.seq, "delivery_id": frame.delivery_id,
                                  "data": data}, ensure_ascii=False), flush=True)
                if not args.no_ack:
                    await client.ack(frame)
            elif isinstance(frame, (W.GoAway, W.ErrorFrame)):
                print(json.dumps({"closed": str(frame)}), file=sys.stderr)
                return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pushgo.testing.warplink_client")
    parser.add_argument("--url", required=True,
                        help="ws(s)://host:port/private/ws, tcp|tls://host:port or "
                        "quic://host:port")
    parser.add_argument("--device-key", required=True)
    parser.add_argument("--token", default=None, help="the gateway token (PUSHGO_TOKEN)")
    parser.add_argument("--perf-tier", default="balanced")
    parser.add_argument("--app-state", default="foreground")
    parser.add_argument("--no-ack", action="store_true", help="print without acknowledging")
    args = parser.parse_args(argv)
    try:
        return anyio.run(_main, args)
    except KeyboardInterrupt:
        return 0
    except (OSError, EOFError, Rejected) as exc:
        print(f"warplink_client: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
