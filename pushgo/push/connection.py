"""One HTTP/2 connection to a provider: one reader task, one coalescing writer, a stream gate
sized from the peer's live MAX_CONCURRENT_STREAMS, and sticky failure.

Submitting is synchronous (it only appends frames to the client's buffer and sets an event);
the writer sends everything pending in one socket write per scheduling round. The first read
or write error ends the connection and every stream still waiting on it is handed back to the
sink: ``on_unsent`` when the provider never processed it (REFUSED_STREAM, above a GOAWAY's last
stream id, never written), ``on_lost`` when its outcome is unknown (resent: at-least-once).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute

from pushgo.protocol.h2client import (
    GoAway,
    H2Client,
    H2ProtocolError,
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


class Connection:
    """States: connecting → open → draining (GOAWAY or close asked) → closed."""

    def __init__(self, origin: Origin, ssl_context: ssl.SSLContext, sink: Sink, *,
                 stream_cap: int, initial_streams: int = 1,
                 on_change: Callable[[], None] = lambda: None,
                 ping_interval: float = PING_INTERVAL_S,
                 idle_timeout: float = IDLE_TIMEOUT_S) -> None:
        self.origin = origin
        self.ssl_context = ssl_context
        self.sink = sink
        self.h2 = H2Client(stream_cap=stream_cap, initial_streams=initial_streams)
        self.state = "connecting"
        self.on_change = on_change
        self.ping_interval = ping_interval
        self.idle_timeout = idle_timeout
        self.tag: Any = None  # the owner's label (e.g. the JWT generation it was opened with)
        self._tags: dict[int, Any] = {}
        self._wake = anyio.Event()
        self._last_active = 0.0
        self.error: str | None = None

    @property
    def available(self) -> int:
        return self.h2.available if self.state == "open" else 0

    @property
    def inflight(self) -> int:
        return len(self._tags)

    def submit(self, block: bytes, body: bytes, tag: Any) -> None:
        sid = self.h2.submit(block, body)
        self._tags[sid] = tag
        self._wake.set()

    def drain(self) -> None:
        """Take no new streams; close once the open ones finish."""
        if self.state in ("connecting", "open"):
            self.state = "draining"
            self._wake.set()
            self.on_change()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                  ) -> None:
        stream: anyio.abc.ByteStream | None = None
        try:
            try:
                with anyio.fail_after(CONNECT_TIMEOUT_S):
                    stream = await anyio.connect_tcp(self.origin.host, self.origin.port,
                                                     tls=True, ssl_context=self.ssl_context,
                                                     tls_hostname=self.origin.host)
            except (OSError, TimeoutError, ssl.SSLError, anyio.BrokenResourceError) as exc:
                raise ConnectionFailed(f"connect {self.origin.authority}: {exc}") from exc
            if stream.extra(TLSAttribute.alpn_protocol, None) != "h2":
                raise ConnectionFailed(f"{self.origin.authority} did not negotiate h2")
            self._last_active = anyio.current_time()
            if self.state == "connecting":
                self.state = "open"
            task_status.started()
            self.on_change()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._guard, self._writer, stream, tg.cancel_scope)
                await self._guard(self._reader, stream, tg.cancel_scope)
        finally:
            self.state = "closed"
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
                OSError, ssl.SSLError, H2ProtocolError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.info("provider connection closed", extra={"fields": {
                "origin": self.origin.authority, "reason": self.error}})
        finally:
            scope.cancel()

    async def _reader(self, stream: anyio.abc.ByteStream, _scope: anyio.CancelScope) -> None:
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
                    if self.state != "closed":
                        self.state = "draining"
                    freed = True
                elif isinstance(ev, SettingsChanged):
                    freed = True
            self._last_active = anyio.current_time()
            self._wake.set()  # settings/ping ACKs and window updates to send
            if freed:
                self.on_change()
            if self.state == "draining" and not self._tags:
                return

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
            if self.state == "draining" and not self._tags:
                self.h2.close()
                data = self.h2.data_to_send()
                with anyio.move_on_after(1):
                    await stream.send(data)
                return
            data = self.h2.data_to_send()
            if data:
                await stream.send(data)
