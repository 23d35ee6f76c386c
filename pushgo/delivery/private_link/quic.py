"""warp-link over QUIC (ALPN ``pushgo-quic``): one UDP socket, aioquic's sans-I/O connections
driven from anyio (so it runs on Trio and asyncio), the app's first bidirectional stream
carrying frames each behind a 4-byte big-endian length, as on TCP.

The listener runs in the gateway's root task group. Datagrams are routed to connections by
destination connection id; a new connection starts only from a full-size Initial packet, and
past ``max_connections`` none starts. Each connection has a driver task (send what is due, run
aioquic's timers, hand stream data to the session) and, once the app opened its stream, the
warp-link session (``session.py``). A session's end closes its connection.

Must not import pushgo.api, starlette or the store.
"""

from __future__ import annotations

import logging
import math
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
from aioquic.buffer import Buffer  # type: ignore[attr-defined]
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicPacketType, encode_quic_version_negotiation, pull_quic_header
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from pushgo.delivery.private_link.link import FrameRefused, LinkClosed
from pushgo.delivery.private_link.session import PrivateLinks
from pushgo.protocol import warplink as W
from pushgo.settings import Settings

log = logging.getLogger("pushgo.private_link")

ALPN = "pushgo-quic"
#: Connections per process (handshaking or in session).
MAX_CONNECTIONS = 8192 + 256
#: Frames received and not yet read by the session, per connection.
INBOX_FRAMES = 32
#: A QUIC client's first datagram is at least this large (RFC 9000 §14.1).
MIN_INITIAL = 1200
CLOSE_TIMEOUT_S = 2.0


def server_configuration(cert: str, key: str, idle_timeout_s: float) -> QuicConfiguration:
    config = QuicConfiguration(is_client=False, alpn_protocols=[ALPN],
                               idle_timeout=idle_timeout_s)
    config.load_cert_chain(cert, key)
    return config


@dataclass(eq=False)
class _Peer:
    conn: QuicConnection
    addr: Any
    inbox_send: MemoryObjectSendStream[bytes]
    inbox_recv: MemoryObjectReceiveStream[bytes]
    wake: anyio.Event = field(default_factory=anyio.Event)
    stream_id: int | None = None
    buf: bytearray = field(default_factory=bytearray)
    cids: set[bytes] = field(default_factory=set)
    closed: bool = False
    refused: FrameRefused | None = None
    terminated: anyio.Event = field(default_factory=anyio.Event)
    #: Set when a frame is queued for the session or the inbox closes (a fresh one per wait).
    arrival: anyio.Event | None = None

    def poke(self) -> None:
        self.wake.set()

    def arrived(self) -> None:
        if self.arrival is not None:
            self.arrival.set()


class QuicLink:
    """A :class:`~pushgo.delivery.private_link.Link` over one QUIC stream."""

    transport = "quic"
    token_accepted = False

    def __init__(self, peer: _Peer) -> None:
        self.peer = peer

    async def send(self, frame: bytes) -> None:
        peer = self.peer
        if peer.closed or peer.stream_id is None:
            raise LinkClosed("quic connection closed")
        peer.conn.send_stream_data(peer.stream_id, struct.pack(">I", len(frame)) + frame)
        peer.poke()

    async def receive(self) -> bytes:
        # Waits for a frame without taking it, then takes it at once: a read cancelled while
        # waiting (the session cancels its read whenever it has something to send) loses none
        # (a memory stream's receive() can lose the item handed to it as it is cancelled).
        peer = self.peer
        try:
            while True:
                peer.arrival = arrival = anyio.Event()
                try:
                    return peer.inbox_recv.receive_nowait()
                except anyio.WouldBlock:
                    await arrival.wait()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if self.peer.refused is not None:
                raise self.peer.refused from None
            raise LinkClosed("quic connection closed") from None


class QuicTransport:
    """The warp-link QUIC listener of one gateway process."""

    def __init__(self, links: PrivateLinks, host: str, port: int, config: QuicConfiguration,
                 *, max_connections: int = MAX_CONNECTIONS, reuse_port: bool = False) -> None:
        """``reuse_port``: several worker processes share the port (the kernel keeps one
        client's datagrams on one socket while its address stays the same)."""
        self.links = links
        self.host = host
        self.port = port
        self.config = config
        self.max_connections = max_connections
        self.reuse_port = reuse_port
        self._routes: dict[bytes, _Peer] = {}
        self._peers: set[_Peer] = set()
        self._udp: anyio.abc.UDPSocket | None = None
        self._sock: socket.socket | None = None

    @classmethod
    def from_settings(cls, links: PrivateLinks, settings: Settings) -> QuicTransport:
        assert settings.private_tls_cert and settings.private_tls_key  # settings checked
        host, port = settings.private_quic_bind
        # QUIC's own idle timeout stays above the longest warp-link one (120 s): the session
        # decides when a quiet peer is gone.
        config = server_configuration(settings.private_tls_cert, settings.private_tls_key, 150.0)
        return cls(links, host, port, config, max_connections=settings.private_max_sessions + 256,
                   reuse_port=settings.workers > 1)

    @property
    def connections(self) -> int:
        return len(self._peers)

    def bind_now(self) -> None:
        """Bind before the gateway starts, so that a taken address stops start-up with one
        line (``pushgo serve``); ``run`` binds by itself otherwise."""
        infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM,
                                   flags=socket.AI_PASSIVE)
        family, kind, proto, _name, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(addr)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock

    async def _open(self) -> anyio.abc.UDPSocket:
        if self._sock is not None:
            return await anyio.abc.UDPSocket.from_socket(self._sock)
        return await anyio.create_udp_socket(local_host=self.host, local_port=self.port,
                                             reuse_port=self.reuse_port)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        async with await self._open() as udp:
            self._udp = udp
            self.port = udp.extra(anyio.abc.SocketAttribute.local_port)
            log.info("private quic listening on %s:%d", self.host, self.port)
            task_status.started()
            async with anyio.create_task_group() as tg:
                async for data, addr in udp:
                    await self._datagram(tg, data, addr)

    async def _datagram(self, tg: anyio.abc.TaskGroup, data: bytes, addr: Any) -> None:
        try:
            header = pull_quic_header(Buffer(data=data),
                                      host_cid_length=self.config.connection_id_length)
        except ValueError:
            return
        if (header.packet_type != QuicPacketType.VERSION_NEGOTIATION
                and header.version is not None
                and header.version not in self.config.supported_versions):
            await self._send(encode_quic_version_negotiation(
                source_cid=header.destination_cid, destination_cid=header.source_cid,
                supported_versions=self.config.supported_versions), addr)
            return
        peer = self._routes.get(header.destination_cid)
        if peer is None:
            if (header.packet_type != QuicPacketType.INITIAL or len(data) < MIN_INITIAL
                    or len(self._peers) >= self.max_connections):
                return
            peer = self._new_peer(header.destination_cid, addr)
            tg.start_soon(self._drive, peer)
        peer.conn.receive_datagram(data, addr, anyio.current_time())
        peer.poke()

    def _new_peer(self, original_cid: bytes, addr: Any) -> _Peer:
        conn = QuicConnection(configuration=self.config,
                              original_destination_connection_id=original_cid)
        send, recv = anyio.create_memory_object_stream[bytes](INBOX_FRAMES)
        peer = _Peer(conn, addr, send, recv)
        self._peers.add(peer)
        for cid in (original_cid, conn.host_cid):
            self._route(peer, cid)
        return peer

    def _route(self, peer: _Peer, cid: bytes) -> None:
        self._routes[cid] = peer
        peer.cids.add(cid)

    async def _send(self, data: bytes, addr: Any) -> None:
        if self._udp is None:
            return
        try:
            with anyio.move_on_after(CLOSE_TIMEOUT_S):  # a UDP send never waits long
                await self._udp.sendto(data, addr[0], addr[1])
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # a lost datagram: QUIC sends it again

    async def _drive(self, peer: _Peer) -> None:
        """One connection: flush, timers, events; the session once the app's stream opens."""
        try:
            async with anyio.create_task_group() as tg:
                while True:
                    peer.wake = anyio.Event()
                    await self._flush(peer)
                    self._events(peer, tg)
                    await self._flush(peer)
                    if self._ended(peer):
                        break
                    timer = peer.conn.get_timer()
                    wait = math.inf if timer is None else max(0.0, timer - anyio.current_time())
                    with anyio.move_on_after(wait):
                        await peer.wake.wait()
                    timer = peer.conn.get_timer()
                    if timer is not None and anyio.current_time() >= timer:
                        peer.conn.handle_timer(anyio.current_time())
                tg.cancel_scope.cancel()
        finally:
            self._forget(peer)

    async def _flush(self, peer: _Peer) -> None:
        for data, addr in peer.conn.datagrams_to_send(anyio.current_time()):
            peer.addr = addr
            await self._send(data, addr)

    def _events(self, peer: _Peer, tg: anyio.abc.TaskGroup) -> None:
        while (event := peer.conn.next_event()) is not None:
            if isinstance(event, events.ConnectionIdIssued):
                self._route(peer, event.connection_id)
            elif isinstance(event, events.ConnectionIdRetired):
                self._routes.pop(event.connection_id, None)
                peer.cids.discard(event.connection_id)
            elif isinstance(event, events.ConnectionTerminated):
                peer.closed = True
                peer.terminated.set()
                peer.inbox_send.close()
                peer.arrived()
            elif isinstance(event, events.StreamDataReceived):
                self._stream_data(peer, event, tg)

    def _stream_data(self, peer: _Peer, event: events.StreamDataReceived,
                     tg: anyio.abc.TaskGroup) -> None:
        if peer.stream_id is None:
            if event.stream_id % 4 != 0:  # only a client-opened bidirectional stream
                return
            peer.stream_id = event.stream_id
            tg.start_soon(self._session, peer)
        if event.stream_id != peer.stream_id or peer.refused is not None:
            return
        peer.buf += event.data
        limit = self.links.config.max_frame_bytes + 2
        while len(peer.buf) >= 4:
            (size,) = struct.unpack(">I", peer.buf[:4])
            if size == 0 or size > limit:
                peer.refused = FrameRefused(W.E_FRAME_TOO_LARGE, f"invalid frame length {size}")
                peer.inbox_send.close()
                peer.arrived()
                return
            if len(peer.buf) < 4 + size:
                break
            frame = bytes(peer.buf[4:4 + size])
            del peer.buf[:4 + size]
            try:
                peer.inbox_send.send_nowait(frame)
                peer.arrived()
            except anyio.WouldBlock:  # the session does not keep up: the peer floods
                peer.refused = FrameRefused(W.E_TOO_BUSY, "too many frames unread")
                peer.inbox_send.close()
                peer.arrived()
                return
        if event.end_stream:
            peer.inbox_send.close()
            peer.arrived()

    async def _session(self, peer: _Peer) -> None:
        try:
            await self.links.serve(QuicLink(peer))
        finally:
            with anyio.CancelScope(shield=True):
                if not peer.closed and peer.stream_id is not None:
                    # The session's last frame (GoAway, Error) and the stream's end go out;
                    # the app closes the connection on reading them, else we do shortly.
                    peer.conn.send_stream_data(peer.stream_id, b"", end_stream=True)
                    peer.poke()
                    with anyio.move_on_after(CLOSE_TIMEOUT_S):
                        await peer.terminated.wait()
                if not peer.closed:
                    peer.conn.close(error_code=0, reason_phrase="session ended")
                    peer.poke()

    @staticmethod
    def _ended(peer: _Peer) -> bool:
        return peer.closed

    def _forget(self, peer: _Peer) -> None:
        peer.closed = True
        peer.terminated.set()
        peer.inbox_send.close()
        peer.arrived()
        for cid in peer.cids:
            if self._routes.get(cid) is peer:
                del self._routes[cid]
        self._peers.discard(peer)
