"""A pool of up to N connections to one provider origin, spreading streams over them.

``slot()`` returns an open connection with a free stream, opening connections lazily (with
backoff after failures) and waiting — never polling — until one frees up. The pool's task group
owns every connection task. ``aclose()`` drains them all: each finishes its open streams and
says GOAWAY, within a bounded grace.
"""

from __future__ import annotations

import logging
import math
import ssl
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc

from pushgo.push.connection import (
    CONNECTING,
    OPEN,
    Connect,
    Connection,
    ConnectionFailed,
    Liveness,
    Origin,
    Sink,
)

log = logging.getLogger("pushgo.push")

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0


class Pool:
    def __init__(self, origin: Origin, sink: Sink, *, size: int, stream_cap: int,
                 initial_streams: int = 1, connect: Connect | None = None,
                 ssl_context: ssl.SSLContext | None = None,
                 tag_factory: Callable[[], Any] = lambda: None,
                 liveness: Liveness = Liveness()) -> None:
        self.origin = origin
        self.sink = sink
        self.size = size
        self.stream_cap = stream_cap
        self.initial_streams = initial_streams
        self.connect = connect
        self.ssl_context = ssl_context
        self.tag_factory = tag_factory
        self.liveness = liveness
        self.connections: list[Connection] = []
        self._changed = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._closing = False
        self._drained = anyio.Event()  # set once closing and no connection is left
        self.last_error: str | None = None
        self.connects = 0  # connections opened (attempts), for /metrics
        self.connect_failures = 0
        self.unresponsive = 0  # connections left because the peer stopped answering
        #: Told each time a connection fails to open (the outbox pump's breaker).
        self.on_connect_failed: Callable[[ConnectionFailed], None] | None = None

    def _notify(self) -> None:
        self._changed.set()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                  ) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            await anyio.sleep_forever()

    def close_all(self) -> None:
        """Open no more connections and drain those there are."""
        self._closing = True
        for conn in self.connections:
            conn.drain()
        if not self.connections:
            self._drained.set()
        self._notify()

    async def aclose(self, grace: float) -> None:
        """Drain every connection, wait up to ``grace`` seconds for their open streams, then
        end ``run()`` (a connection still open then hands its streams back as lost)."""
        self.close_all()
        with anyio.move_on_after(grace):
            await self._drained.wait()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    @property
    def open_count(self) -> int:
        return sum(1 for c in self.connections if c.state is OPEN)

    def ready(self) -> Connection | None:
        """An open connection with a free stream now, or None (then :meth:`slot` waits)."""
        best: Connection | None = None
        for conn in self.connections:
            if conn.available > 0 and (best is None or conn.available > best.available):
                best = conn
        # Spread: open another connection while this one is busy, up to the size.
        if best is not None and best.inflight and self._can_open():
            self._open()
        return best

    async def slot(self) -> Connection:
        """An open connection with a free stream; once closing, it waits until cancelled."""
        while True:
            best = self.ready()
            if best is not None:
                return best
            if self._can_open():
                self._open()
            self._changed = anyio.Event()
            # A timeout makes a connection retry after backoff without another wake-up.
            wait = math.inf if self._closing else max(0.05, self._retry_at - anyio.current_time())
            with anyio.move_on_after(wait):
                await self._changed.wait()

    def _can_open(self) -> bool:
        if self._closing:
            return False
        live = sum(1 for c in self.connections if c.state is CONNECTING or c.state is OPEN)
        connecting = any(c.state is CONNECTING for c in self.connections)
        return live < self.size and not connecting and anyio.current_time() >= self._retry_at

    def _open(self) -> None:
        assert self._tg is not None, "pool is not running"
        conn = Connection(self.origin, self.sink, stream_cap=self.stream_cap,
                          initial_streams=self.initial_streams, connect=self.connect,
                          ssl_context=self.ssl_context, on_change=self._notify,
                          liveness=self.liveness)
        conn.tag = self.tag_factory()
        self.connections.append(conn)
        self.connects += 1
        self._tg.start_soon(self._run_connection, conn)

    async def _run_connection(self, conn: Connection) -> None:
        try:
            await conn.run()
            self._failures = 0
            if conn.error is not None and conn.error.startswith("Unresponsive"):
                self.unresponsive += 1
        except ConnectionFailed as exc:
            self._failures += 1
            self.connect_failures += 1
            delay = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** (self._failures - 1))
            self._retry_at = anyio.current_time() + delay
            self.last_error = str(exc)
            log.warning("provider connect failed", extra={"fields": {
                "origin": self.origin.authority, "error": str(exc), "retry_in_s": delay}})
            if self.on_connect_failed is not None:
                self.on_connect_failed(exc)
        finally:
            if conn in self.connections:
                self.connections.remove(conn)
            if self._closing and not self.connections:
                self._drained.set()
            self._notify()
