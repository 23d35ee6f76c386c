"""One HTTP/2 connection to a provider: one reader task, one coalescing writer, a stream gate
sized from the peer's live MAX_CONCURRENT_STREAMS, and sticky failure.

Submitting is synchronous (it only appends frames to the client's buffer and sets an event);
the writer sends everything pending in one socket write per scheduling round. The first read
or write error ends the connection and every stream still waiting on it is handed back to the
sink: ``on_unsent`` when the provider never processed it (REFUSED_STREAM, above a GOAWAY's last
stream id, never written), ``on_lost`` when its outcome is unknown (resent: at-least-once).

The byte stream comes from an injected ``connect`` factory (TLS with ALPN ``h2`` by default),
so tests run the real connection over an in-memory stream pair.
"""

from __future__ import annotations

import enum
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute

from pushgo.protocol.h2client import (
    GoAway,
    H2Client,
    ProtocolError,
    Response,
    SettingsChanged,
    StreamReset,
)

log = logging.getLogger("pushgo.push")

READ_SIZE = 65_536
CONNECT_TIMEOUT_S = 10.0
PING_INTERVAL_S = 60.0
IDLE_TIMEOUT_S = 600.0


class Sink(Protocol):
    def on_response(self, tag: Any, response: Response) -> None: ...

    def on_unsent(self, tag: Any) -> None: ...

    def on_lost(self, tag: Any) -> None: ...


@dataclass(frozen=True)
class Origin:
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Origin:
        parts = urlsplit(url if "://" in url else "https://" + url)
        return cls(parts.hostname or "", parts.port or 443)

    @property
    def authority(self) -> str:
        return self.host if self.port == 443 else f"{self.host}:{self.port}"


class ConnectionFailed(Exception):
    pass


#: Opens the byte stream a connection speaks HTTP/2 over.
Connect = Callable[[], Awaitable[anyio.abc.ByteStream]]


def tls_connect(origin: Origin, ssl_context: ssl.SSLContext) -> Connect:
    """TCP + TLS to ``origin``; a peer that does not negotiate ``h2`` by ALPN is a failure."""

    async def connect() -> anyio.abc.ByteStream:
        stream = await anyio.connect_tcp(origin.host, origin.port, tls=True,
                                         ssl_context=ssl_context, tls_hostname=origin.host)
        if stream.extra(TLSAttribute.alpn_protocol, None) != "h2":
            await anyio.aclose_forcefully(stream)
            raise ConnectionFailed(f"{origin.authority} did not negotiate h2")
        return stream

    return connect


# Theory of operation. A connection is CONNECTING until its byte stream is up, then OPEN: it
# takes streams while the peer's MAX_CONCURRENT_STREAMS allows. It turns DRAINING when asked
# (``drain()``: the pool closing, a renewed credential, idle too long) or when the peer sends
# GOAWAY: no new streams; the open ones are answered; once none is left the writer sends our
# GOAWAY and the connection ends. CLOSED is final, whatever ended it (drained, a read or write
# error, the peer closing, cancellation), and every stream still waiting is handed back then.
# Only ``run()`` (its reader and writer) and ``drain()`` change the state.
class State(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    DRAINING = "draining"
    CLOSED = "closed"


CONNECTING, OPEN, DRAINING, CLOSED = State.CONNECTING, State.OPEN, State.DRAINING, State.CLOSED


class Connection:
    """One HTTP/2 connection; see :class:`State` for its life."""

    def __init__(self, origin: Origin, sink: Sink, *, stream_cap: int,
                 initial_streams: int = 1, connect: Connect | None = None,
                 ssl_context: ssl.SSLContext | None = None,
                 on_change: Callable[[], None] = lambda: None,
                 ping_interval: float = PING_INTERVAL_S,
                 idle_timeout: float = IDLE_TIMEOUT_S) -> None:
        if connect is None:
            if ssl_context is None:
                raise ValueError("a connection needs a connect factory or an SSL context")
            connect = tls_connect(origin, ssl_context)
        self.origin = origin
        self.sink = sink
        self.h2 = H2Client(stream_cap=stream_cap, initial_streams=initial_streams)
        self.state = CONNECTING
        self.on_change = on_change
        self.ping_interval = ping_interval
        self.idle_timeout = idle_timeout
        self.tag: Any = None  # the owner's label (e.g. the JWT generation it was opened with)
        self._connect = connect
        self._tags: dict[int, Any] = {}
        self._wake = anyio.Event()
        self._last_active = 0.0
        self._goodbye = b""  # the GOAWAY the client queued when the peer broke the protocol
        self.error: str | None = None

    @property
    def available(self) -> int:
        return self.h2.available if self.state is OPEN else 0

    @property
    def inflight(self) -> int:
        return len(self._tags)

    def submit(self, block: bytes, body: bytes, tag: Any) -> None:
        sid = self.h2.submit(block, body)
        self._tags[sid] = tag
        self._wake.set()

    def drain(self) -> None:
        """Take no new streams; close once the open ones finish."""
        if self.state is CONNECTING or self.state is OPEN:
            self.state = DRAINING
            self._wake.set()
            self.on_change()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                  ) -> None:
        stream: anyio.abc.ByteStream | None = None
        try:
            try:
                with anyio.fail_after(CONNECT_TIMEOUT_S):
                    stream = await self._connect()
            except (OSError, TimeoutError, ssl.SSLError, anyio.BrokenResourceError) as exc:
                raise ConnectionFailed(f"connect {self.origin.authority}: {exc}") from exc
            self._last_active = anyio.current_time()
            if self.state is CONNECTING:
                self.state = OPEN
            task_status.started()
            self.on_change()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._guard, self._writer, stream, tg.cancel_scope)
                await self._guard(self._reader, stream, tg.cancel_scope)
            await self._send_goaway(stream)
        finally:
            self.state = CLOSED
            tags, self._tags = self._tags, {}
            for tag in tags.values():
                # Sticky failure: whatever was still open has an unknown outcome.
                self.sink.on_lost(tag)
            if stream is not None:
                await anyio.aclose_forcefully(stream)
            self.on_change()

    async def _guard(self, loop: Callable[..., Any], stream: anyio.abc.ByteStream,
                     scope: anyio.CancelScope) -> None:
        """Run the reader or writer; the first to fail or finish ends the connection."""
        try:
            await loop(stream, scope)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                OSError, ssl.SSLError, ProtocolError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.info("provider connection closed", extra={"fields": {
                "origin": self.origin.authority, "reason": self.error}})
        finally:
            scope.cancel()

    async def _send_goaway(self, stream: anyio.abc.ByteStream) -> None:
        """After the peer broke the protocol: the GOAWAY saying why, sent once reader and
        writer are done, so nothing else writes the stream."""
        data, self._goodbye = self._goodbye, b""
        if data:
            with anyio.move_on_after(1):
                try:
                    await stream.send(data)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError,
                        ssl.SSLError):
                    pass

    async def _reader(self, stream: anyio.abc.ByteStream, _scope: anyio.CancelScope) -> None:
        try:
            await self._read(stream)
        except ProtocolError:
            # Taken before the writer can run again: a writer cancelled with the bytes in
            # hand would drop the GOAWAY.
            self._goodbye = self.h2.data_to_send()
            raise

    async def _read(self, stream: anyio.abc.ByteStream) -> None:
        sink = self.sink
        while True:
            try:
                data = await stream.receive(READ_SIZE)
            except anyio.EndOfStream:
                return
            events = self.h2.receive_data(data)
            freed = False
            for ev in events:
                if isinstance(ev, Response):
                    tag = self._tags.pop(ev.stream_id, None)
                    if tag is not None:
                        sink.on_response(tag, ev)
                    freed = True
                elif isinstance(ev, StreamReset):
                    tag = self._tags.pop(ev.stream_id, None)
                    if tag is not None:
                        (sink.on_unsent if ev.refused else sink.on_lost)(tag)
                    freed = True
                elif isinstance(ev, GoAway):
                    for sid in ev.unprocessed:
                        tag = self._tags.pop(sid, None)
                        if tag is not None:
                            sink.on_unsent(tag)
                    if self.state is not CLOSED:
                        self.state = DRAINING
                    freed = True
                elif isinstance(ev, SettingsChanged):
                    freed = True
            self._last_active = anyio.current_time()
            # Settings/ping ACKs and window updates to send; once a draining connection has
            # nothing open, the writer says GOAWAY and ends it.
            self._wake.set()
            if freed:
                self.on_change()

    async def _writer(self, stream: anyio.abc.ByteStream, scope: anyio.CancelScope) -> None:
        while True:
            with anyio.move_on_after(self.ping_interval):
                await self._wake.wait()
            self._wake = anyio.Event()
            now = anyio.current_time()
            if self._tags:
                self._last_active = now
            elif now - self._last_active >= self.ping_interval:
                if now - self._last_active >= self.idle_timeout:
                    self.drain()
                else:
                    self.h2.ping()
            if self.state is DRAINING and not self._tags:
                self.h2.close()
                data = self.h2.data_to_send()
                with anyio.move_on_after(1):
                    await stream.send(data)
                return
            data = self.h2.data_to_send()
            if data:
                await stream.send(data)
