"""warp-link over raw TCP: TLS with ALPN ``pushgo-tcp`` (or plain behind a TLS-offloading
proxy), an optional PROXY protocol v1 header first, then frames each behind a 4-byte
big-endian length.

The listener runs in the gateway's root task group (``Gateway.running()``). Each connection
has ``hello_timeout_s`` for its PROXY header and TLS handshake; a length of 0 or past the
frame limit ends the session with an Error frame. Connections past ``max_connections`` are
closed at once.

Must not import pushgo.api, starlette or the store.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteStream
from anyio.streams.tls import TLSStream

from pushgo.delivery.private_link.link import FrameRefused, LinkClosed
from pushgo.delivery.private_link.session import PrivateLinks
from pushgo.protocol import warplink as W
from pushgo.protocol.proxyproto import MAX_LINE, parse_v1
from pushgo.settings import Settings

log = logging.getLogger("pushgo.private_link")

ALPN = "pushgo-tcp"
#: Open TCP connections (handshaking or in session) per process.
MAX_CONNECTIONS = 8192 + 256
CLOSE_TIMEOUT_S = 2.0
_BROKEN = (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError,
           anyio.ClosedResourceError, ssl.SSLError, OSError)


def server_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols([ALPN])
    return ctx


class TcpLink:
    """A :class:`~pushgo.delivery.private_link.Link` over one length-prefixed byte stream."""

    transport = "tcp"
    token_accepted = False
    __slots__ = ("_size", "max_frame", "stream")

    def __init__(self, stream: BufferedByteStream, max_frame_bytes: int) -> None:
        self.stream = stream
        self.max_frame = max_frame_bytes + 2  # the type and flags bytes
        #: The length of a frame whose body is still to come (kept across a cancelled read).
        self._size: int | None = None

    async def send(self, frame: bytes) -> None:
        try:
            await self.stream.send(struct.pack(">I", len(frame)) + frame)
        except _BROKEN as exc:
            raise LinkClosed(str(exc)) from exc

    async def receive(self) -> bytes:
        try:
            if self._size is None:
                (size,) = struct.unpack(">I", await self.stream.receive_exactly(4))
                if size == 0 or size > self.max_frame:
                    raise FrameRefused(W.E_FRAME_TOO_LARGE, f"invalid frame length {size}")
                self._size = size
            frame = await self.stream.receive_exactly(self._size)
            self._size = None
            return frame
        except _BROKEN as exc:
            raise LinkClosed(str(exc)) from exc


class TcpTransport:
    """The warp-link TCP listener of one gateway process."""

    def __init__(self, links: PrivateLinks, host: str, port: int,
                 ssl_context: ssl.SSLContext | None, *, proxy_protocol: bool = False,
                 max_connections: int = MAX_CONNECTIONS, reuse_port: bool = False) -> None:
        """``reuse_port``: several worker processes listen on the one port."""
        self.links = links
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.proxy_protocol = proxy_protocol
        self.max_connections = max_connections
        self.open = 0
        self.reuse_port = reuse_port
        self._sock: socket.socket | None = None

    @classmethod
    def from_settings(cls, links: PrivateLinks, settings: Settings) -> TcpTransport:
        ctx = None
        if not settings.private_tcp_tls_offload:
            assert settings.private_tls_cert and settings.private_tls_key  # settings checked
            ctx = server_context(settings.private_tls_cert, settings.private_tls_key)
        host, port = settings.private_tcp_bind
        return cls(links, host, port, ctx, proxy_protocol=settings.private_tcp_proxy_protocol,
                   max_connections=settings.private_max_sessions + 256,
                   reuse_port=settings.workers > 1)

    def bind_now(self) -> None:
        """Bind and listen before the gateway starts, so that a taken address stops start-up
        with one line (``pushgo serve``); ``run`` binds by itself otherwise."""
        infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        family, kind, proto, _name, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(addr)
            sock.listen(socket.SOMAXCONN)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        listener: anyio.abc.Listener[anyio.abc.SocketStream]
        if self._sock is not None:
            listener = await anyio.abc.SocketListener.from_socket(self._sock)
        else:
            listener = await anyio.create_tcp_listener(
                local_host=self.host, local_port=self.port, reuse_port=self.reuse_port)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        log.info("private tcp listening on %s:%d tls=%s proxy_protocol=%s", self.host,
                 self.port, self.ssl_context is not None, self.proxy_protocol)
        task_status.started()
        async with listener:
            await listener.serve(self._connection)

    async def _connection(self, stream: anyio.abc.ByteStream) -> None:
        if self.open >= self.max_connections:
            with anyio.move_on_after(CLOSE_TIMEOUT_S):
                await stream.aclose()
            return
        self.open += 1
        opened: anyio.abc.ByteStream = stream
        link: TcpLink | None = None
        try:
            with anyio.move_on_after(self.links.config.hello_timeout_s):
                opened, link = await self._open(stream)
            if link is not None:
                await self.links.serve(link)
        except (ValueError, anyio.DelimiterNotFound, *_BROKEN) as exc:
            log.info("private tcp connection refused: %s", type(exc).__name__)
        finally:
            self.open -= 1
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT_S):
                await opened.aclose()

    async def _open(self, stream: anyio.abc.ByteStream
                    ) -> tuple[anyio.abc.ByteStream, TcpLink]:
        """The PROXY header read and the TLS handshake done: the stream to close and the
        link (a bad header or handshake raises)."""
        buffered = BufferedByteStream(stream)
        if self.proxy_protocol:
            line = await buffered.receive_until(b"\r\n", MAX_LINE)
            parse_v1(line)  # the client's address: only checked, nothing keys on it here
        if self.ssl_context is None:
            return buffered, TcpLink(buffered, self.links.config.max_frame_bytes)
        # ALPN: pushgo-tcp is the only protocol offered (a client offering none is served).
        tls = await TLSStream.wrap(buffered, server_side=True, ssl_context=self.ssl_context,
                                   standard_compatible=False)
        return tls, TcpLink(BufferedByteStream(tls), self.links.config.max_frame_bytes)
