"""One HTTP/2 connection to a provider: one reader task, one coalescing writer, a stream gate
sized from the peer's live MAX_CONCURRENT_STREAMS, and sticky failure.

Submitting is synchronous (it only appends frames to the client's buffer and sets an event);
the writer sends everything pending in one socket write per scheduling round. The first read
or write error ends the connection and every stream still waiting on it is handed back to the
sink: ``on_unsent`` when the provider never processed it (REFUSED_STREAM, above a GOAWAY's last
stream id, never written), ``on_lost`` when its outcome is unknown (resent: at-least-once).

A connection proves it is alive (:class:`Liveness`): a stream unanswered past the response
deadline, a PING (sent when streams are in flight and nothing has arrived for a while) with no
frame back in time, or a socket write that does not complete, ends it like a read error does.
The checks cost O(1) per writer round, nothing per request.

The byte stream comes from an injected ``connect`` factory (TLS with ALPN ``h2`` by default),
so tests run the real connection over an in-memory stream pair.
"""

from __future__ import annotations

import enum
import logging
import math
import ssl
from collections import deque
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
RESPONSE_TIMEOUT_S = 30.0
PING_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Liveness:
    """How a connection with streams in flight proves the peer is still there."""

    #: A stream with no response this long after it was written: the connection is suspect.
    response_s: float = RESPONSE_TIMEOUT_S
    #: Streams in flight and nothing received this long: PING; nothing back this long: dead.
    ping_s: float = PING_TIMEOUT_S
    #: A socket write (the peer not reading, its TCP window full) that takes longer: dead.
    write_s: float = WRITE_TIMEOUT_S


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


class Unresponsive(Exception):
    """The peer stopped answering: a stream past its deadline, a PING unanswered, a write
    stuck. The connection ends and its streams are handed back as lost."""


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
                 idle_timeout: float = IDLE_TIMEOUT_S,
                 liveness: Liveness = Liveness()) -> None:
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
        self.liveness = liveness
        self.tag: Any = None  # the owner's label (e.g. the JWT generation it was opened with)
        self._connect = connect
        self._tags: dict[int, Any] = {}
        self._wake = anyio.Event()
        self._last_active = 0.0
        # Liveness: stream ids are handed out in order (1, 3, 5, …); ``_oldest_sid`` only moves
        # forward past answered streams, and ``_marks`` holds (highest stream id, time) for each
        # writer round that wrote new streams, so the oldest open stream's age costs O(1)
        # amortized per round.
        self._last_received = 0.0
        self._ping_sent: float | None = None  # a PING waiting for any frame back
        self._last_sid = -1
        self._marked_sid = -1
        self._oldest_sid = 1
        self._marks: deque[tuple[int, float]] = deque()
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
        self._last_sid = sid
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
            self._last_active = self._last_received = anyio.current_time()
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
                OSError, ssl.SSLError, ProtocolError, Unresponsive) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            level = logging.WARNING if isinstance(exc, Unresponsive) else logging.INFO
            log.log(level, "provider connection closed", extra={"fields": {
                "origin": self.origin.authority, "reason": self.error,
                "streams": len(self._tags)}})
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
            self._last_active = self._last_received = anyio.current_time()
            self._ping_sent = None  # any frame answers our PING
            # Settings/ping ACKs and window updates to send; once a draining connection has
            # nothing open, the writer says GOAWAY and ends it.
            self._wake.set()
            if freed:
                self.on_change()

    async def _writer(self, stream: anyio.abc.ByteStream, scope: anyio.CancelScope) -> None:
        # One scope for every write, its deadline armed only while a write is under way:
        # cheaper than a new cancel scope per scheduling round on the hot path.
        write_s = self.liveness.write_s
        with anyio.CancelScope() as writing:
            await self._write_rounds(stream, writing)
        if writing.cancelled_caught:
            raise Unresponsive(f"a write did not complete in {write_s:g} s")

    async def _write_rounds(self, stream: anyio.abc.ByteStream,
                            writing: anyio.CancelScope) -> None:
        wait = self.ping_interval
        write_s = self.liveness.write_s
        while True:
            with anyio.move_on_after(wait):
                await self._wake.wait()
            self._wake = anyio.Event()
            now = anyio.current_time()
            wait = self.ping_interval
            if self._last_sid > self._marked_sid:  # new streams go out this round
                self._marks.append((self._last_sid, now))
                self._marked_sid = self._last_sid
            if self._tags:
                self._last_active = now
                wait = self._check_liveness(now)
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
                writing.deadline = anyio.current_time() + write_s
                await stream.send(data)
                writing.deadline = math.inf

    def _check_liveness(self, now: float) -> float:
        """With streams in flight: raise :class:`Unresponsive` when the oldest is past its
        response deadline or our PING went unanswered; queue a PING when nothing has arrived
        for a while. Returns the seconds until the next check is due."""
        live = self.liveness
        tags = self._tags
        sid = self._oldest_sid
        while sid not in tags:  # every open stream id is >= _oldest_sid, and one is open
            sid += 2
        self._oldest_sid = sid
        marks = self._marks
        while marks and marks[0][0] < sid:
            marks.popleft()
        written = marks[0][1] if marks else now
        due = written + live.response_s
        if now >= due:
            raise Unresponsive(f"stream {sid} had no response in {live.response_s:g} s")
        if self._ping_sent is None:
            quiet_since = max(self._last_received, written)
            if now - quiet_since < live.ping_s:
                return min(due, quiet_since + live.ping_s) - now
            self.h2.ping()
            self._ping_sent = now
        elif now - self._ping_sent >= live.ping_s:
            raise Unresponsive(f"no answer to PING in {live.ping_s:g} s")
        return min(due, self._ping_sent + live.ping_s) - now
