"""In-memory provider peers for the provider-client tests: a byte-stream pair, python-hyper h2
as the server on one end (each answer decided by the test), a sink that records what the
connection handed back, and a connect factory that opens peers on demand.

No sockets, no sleeps: every wait is on an event, under ``fail_after``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import h2.config
import h2.connection
import h2.events
import h2.settings
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from pushgo.protocol import h2client
from pushgo.protocol.h2client import Response
from pushgo.protocol.h2headers import encode_headers
from pushgo.push.connection import Origin
from tests.helpers import on_mock_clock as on_mock_clock  # shared with the e2e clock tests

ORIGIN = Origin("push.test", 443)
REQUEST = encode_headers([(b":method", b"POST"), (b":scheme", b"https"),
                          (b":authority", b"push.test"), (b":path", b"/3/device/ab")])
#: Long enough for anything in memory to settle; a wait that needs it has failed.
WAIT_S = 5.0


class MemoryByteStream(anyio.abc.ByteStream):
    """One end of an in-memory byte pipe (what a TLS stream is to the connection)."""

    def __init__(self, send: MemoryObjectSendStream[bytes],
                 receive: MemoryObjectReceiveStream[bytes]) -> None:
        self._send = send
        self._receive = receive
        self._pending = b""

    async def send(self, item: bytes) -> None:
        await self._send.send(bytes(item))

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self._pending:
            self._pending = await self._receive.receive()
        data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return data

    async def send_eof(self) -> None:
        await self._send.aclose()

    async def aclose(self) -> None:
        await self._send.aclose()
        await self._receive.aclose()


def byte_stream_pair(capacity: float = math.inf) -> tuple[MemoryByteStream, MemoryByteStream]:
    """Two connected ends; each direction buffers ``capacity`` writes (0: a write waits for
    the other end to read it, as a full TCP window makes it)."""
    a_send, b_receive = anyio.create_memory_object_stream[bytes](capacity)
    b_send, a_receive = anyio.create_memory_object_stream[bytes](capacity)
    return MemoryByteStream(a_send, a_receive), MemoryByteStream(b_send, b_receive)


def frame_types(data: bytes) -> list[tuple[int, int]]:
    """(type, flags) of each HTTP/2 frame in ``data`` (whole frames, no preface)."""
    out = []
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        out.append((data[3], data[4]))
        data = data[9 + length:]
    return out



async def until(owner: Any, predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
    """Wait until ``predicate()`` holds, re-checking whenever ``owner.changed`` is set."""
    with anyio.fail_after(timeout):
        while not predicate():
            owner.changed = anyio.Event()
            await owner.changed.wait()


@dataclass
class Request:
    stream_id: int
    headers: dict[bytes, bytes]
    body: bytes


class Peer:
    """python-hyper h2 as the provider on the server end of a pair. ``serve()`` reads; complete
    requests queue up for ``next_request()``; the test answers each one."""

    def __init__(self, stream: anyio.abc.ByteStream, *, max_streams: int | None = 1000) -> None:
        self.stream = stream
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.conn.initiate_connection()
        if max_streams is not None:
            self.conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams})
        self._partial: dict[int, Request] = {}
        self._requests_in, self._requests = anyio.create_memory_object_stream[Request](math.inf)
        self.pings = 0
        self.silent = False  # reads but processes and answers nothing, PINGs included
        self.ignored = bytearray()  # what a silent peer read
        self.reading = True
        self.terminated: h2.events.ConnectionTerminated | None = None
        self.closed = anyio.Event()  # the client's end is closed (EOF)
        self.changed = anyio.Event()

    async def serve(self) -> None:
        await self.flush()
        try:
            while True:
                if not self.reading:
                    await anyio.sleep_forever()
                try:
                    data = await self.stream.receive()
                except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return
                if self.silent or not self.reading:
                    self.ignored += data
                    self.changed.set()
                    continue
                self._feed(data)
                await self.flush()
        finally:
            self.closed.set()
            self.changed.set()

    def _feed(self, data: bytes) -> None:
        for ev in self.conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                self._partial[ev.stream_id] = Request(ev.stream_id, dict(ev.headers or []), b"")
            elif isinstance(ev, h2.events.DataReceived):
                self._partial[ev.stream_id].body += ev.data or b""
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self._requests_in.send_nowait(self._partial.pop(ev.stream_id))
            elif isinstance(ev, h2.events.PingReceived):
                self.pings += 1
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.terminated = ev
        self.changed.set()

    async def until(self, predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
        await until(self, predicate, timeout)

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.stream.send(data)

    async def next_request(self) -> Request:
        with anyio.fail_after(WAIT_S):
            return await self._requests.receive()

    async def respond(self, stream_id: int, status: int = 200, body: bytes = b"",
                      headers: list[tuple[str, str]] | None = None) -> None:
        self.conn.send_headers(stream_id, [(":status", str(status)), *(headers or [])],
                               end_stream=not body)
        if body:
            self.conn.send_data(stream_id, body, end_stream=True)
        await self.flush()

    async def reset(self, stream_id: int, error_code: int) -> None:
        self.conn.reset_stream(stream_id, error_code)
        await self.flush()

    async def max_streams(self, n: int) -> None:
        self.conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: n})
        await self.flush()

    async def goaway(self, last_stream_id: int, error_code: int = h2client.NO_ERROR) -> None:
        """GOAWAY written raw: h2 would refuse to answer the streams below it afterwards."""
        await self.flush()
        await self.stream.send(h2client.frame(h2client.GOAWAY, 0, 0, struct.pack(">LL", last_stream_id,
                                                                    error_code)))

    async def hang_up(self) -> None:
        await self.stream.aclose()

    def go_silent(self) -> None:
        """From now on read the connection but never answer anything, PINGs included (a
        half-open connection as the client sees it)."""
        self.silent = True

    def stop_reading(self) -> None:
        """Read nothing more once the read under way ends: on a pair of capacity 0 the
        client's next write waits forever."""
        self.reading = False


@dataclass
class Sink:
    """What a connection hands back, in order, with a way to wait for it."""

    responses: list[tuple[Any, Response]] = field(default_factory=list)
    unsent: list[Any] = field(default_factory=list)
    lost: list[Any] = field(default_factory=list)
    changed: anyio.Event = field(default_factory=anyio.Event)

    def on_response(self, tag: Any, response: Response) -> None:
        self.responses.append((tag, response))
        self.changed.set()

    def on_unsent(self, tag: Any) -> None:
        self.unsent.append(tag)
        self.changed.set()

    def on_lost(self, tag: Any) -> None:
        self.lost.append(tag)
        self.changed.set()

    async def until(self, predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
        await until(self, predicate, timeout)


class Provider:
    """A connect factory: each call opens a fresh pair and serves its far end with a
    :class:`Peer` in the test's task group; ``fail_next`` makes the next calls fail."""

    def __init__(self, tg: anyio.abc.TaskGroup, *, max_streams: int | None = 1000,
                 capacity: float = math.inf) -> None:
        self.tg = tg
        self.max_streams = max_streams
        self.capacity = capacity
        self.peers: list[Peer] = []
        self.attempts: list[float] = []  # when each connect was tried
        self.fail_next = 0
        self.changed = anyio.Event()

    async def connect(self) -> anyio.abc.ByteStream:
        self.attempts.append(anyio.current_time())
        self.changed.set()
        if self.fail_next:
            self.fail_next -= 1
            raise OSError("connection refused")
        client, server = byte_stream_pair(self.capacity)
        peer = Peer(server, max_streams=self.max_streams)
        self.peers.append(peer)
        self.tg.start_soon(peer.serve)
        return client

    async def until(self, predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
        await until(self, predicate, timeout)
