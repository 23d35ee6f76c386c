"""A pool of up to N connections to one provider origin, spreading streams over them.

``slot()`` returns an open connection with a free stream, opening connections lazily (with
backoff after failures) and waiting — never polling — until one frees up. The pool's task group
owns every connection task.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc

from pushgo.push.connection import Connection, ConnectionFailed, Origin, Sink

log = logging.getLogger("pushgo.push")

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0


class Pool:
    def __init__(self, origin: Origin, ssl_context: ssl.SSLContext, sink: Sink, *,
                 size: int, stream_cap: int, initial_streams: int = 1,
                 tag_factory: Callable[[], Any] = lambda: None) -> None:
        self.origin = origin
        self.ssl_context = ssl_context
        self.sink = sink
        self.size = size
        self.stream_cap = stream_cap
        self.initial_streams = initial_streams
        self.tag_factory = tag_factory
        self.connections: list[Connection] = []
        self._changed = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self._failures = 0
        self._retry_at = 0.0
        self.last_error: str | None = None
        self.connects = 0  # connections opened (attempts), for /metrics
        self.connect_failures = 0

    def _notify(self) -> None:
        self._changed.set()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                  ) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            await anyio.sleep_forever()

    def close_all(self) -> None:
        for conn in self.connections:
            conn.drain()

    @property
    def open_count(self) -> int:
        return sum(1 for c in self.connections if c.state == "open")

    async def slot(self) -> Connection:
        while True:
            best: Connection | None = None
            for conn in self.connections:
                if conn.available > 0 and (best is None or conn.available > best.available):
                    best = conn
            if best is not None:
                # Spread: open another connection while this one is busy, up to the size.
                if best.inflight and self._can_open():
                    self._open()
                return best
            if self._can_open():
                self._open()
            self._changed = anyio.Event()
            # A timeout makes a connection retry after backoff without another wake-up.
            with anyio.move_on_after(max(0.05, self._retry_at - anyio.current_time())):
                await self._changed.wait()

    def _can_open(self) -> bool:
        live = sum(1 for c in self.connections if c.state in ("connecting", "open"))
        connecting = any(c.state == "connecting" for c in self.connections)
        return live < self.size and not connecting and anyio.current_time() >= self._retry_at

    def _open(self) -> None:
        assert self._tg is not None, "pool is not running"
        conn = Connection(self.origin, self.ssl_context, self.sink, stream_cap=self.stream_cap,
                          initial_streams=self.initial_streams, on_change=self._notify)
        conn.tag = self.tag_factory()
        self.connections.append(conn)
        self.connects += 1
        self._tg.start_soon(self._run_connection, conn)

    async def _run_connection(self, conn: Connection) -> None:
        try:
            await conn.run()
            self._failures = 0
        except ConnectionFailed as exc:
            self._failures += 1
            self.connect_failures += 1
            delay = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** (self._failures - 1))
            self._retry_at = anyio.current_time() + delay
            self.last_error = str(exc)
            log.warning("provider connect failed", extra={"fields": {
                "origin": self.origin.authority, "error": str(exc), "retry_in_s": delay}})
        finally:
            if conn in self.connections:
                self.connections.remove(conn)
            self._notify()
