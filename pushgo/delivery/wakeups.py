"""Wake-ups across processes on PostgreSQL (several ``pushgo serve`` sharing one outbox).

A listener of the service (DeliveryListener) that, after a commit left work for others — an
accepted operation, changed subscriptions — sends one ``NOTIFY`` per batch of them; a thread
per process ``LISTEN``s and hands each notice from another process to the local listeners (the
private-stream hub, the dispatcher, delivery status), as if the work had been accepted here.
Without it a private stream connected to one process learns of another's message at its next
keep-alive re-read and a dispatcher at its next idle poll; with it, at once.

Notices are only hints: nothing is lost when one is (every reader re-reads the store), so a
broken listening connection is reopened after a pause and then wakes everything once.
Must not import pushgo.api or starlette.
"""

from __future__ import annotations

import logging
import secrets
import threading
import zlib
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.to_thread
import psycopg

from pushgo.service.context import Context
from pushgo.service.outbox import OutboxService

log = logging.getLogger("pushgo.wakeups")

LISTEN_POLL_S = 1.0
RECONNECT_S = 2.0


class PgWakeups:
    def __init__(self, ctx: Context, outbox: OutboxService,
                 on_reconnect: Callable[[], None] = lambda: None) -> None:
        self.ctx = ctx
        self.outbox = outbox
        self.on_reconnect = on_reconnect
        self.ident = secrets.token_hex(4)  # this process: its own notices are skipped
        self.channel = ""
        self._ops: set[str] = set()
        self._devices: set[str] = set()
        self._pending = anyio.Event()
        self._stop = threading.Event()

    # DeliveryListener
    def operation_accepted(self, channel_id: str) -> None:
        self._ops.add(channel_id)
        self._pending.set()

    def subscriptions_changed(self, device_key: str) -> None:
        self._devices.add(device_key)
        self._pending.set()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                  ) -> None:
        # One NOTIFY channel per schema: gateways on other schemas of the database stay apart.
        schema = await self.outbox.schema()
        self.channel = f"pushgo_wake_{zlib.crc32(schema.encode()):08x}"
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._send_forever)
                tg.start_soon(self._listen_in_thread)
                task_status.started()
        finally:
            self._stop.set()

    async def _send_forever(self) -> None:
        while True:
            await self._pending.wait()
            self._pending = anyio.Event()
            payloads = [f"{self.ident} o {c}" for c in self._ops]
            payloads += [f"{self.ident} d {d}" for d in self._devices]
            self._ops, self._devices = set(), set()
            try:
                await self.outbox.notify(self.channel, payloads)
            except Exception:
                log.warning("sending wake-ups failed", exc_info=True)

    async def _listen_in_thread(self) -> None:
        # abandon_on_cancel: the thread sees the stop flag within LISTEN_POLL_S and ends.
        await anyio.to_thread.run_sync(self._listen, abandon_on_cancel=True,
                                       limiter=anyio.CapacityLimiter(1))

    def _listen(self) -> None:
        url = self.outbox.database_url
        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(_libpq_url(url), autocommit=True,
                                     connect_timeout=10) as conn:
                    conn.execute(f'LISTEN "{self.channel}"')
                    if not first:
                        self._call(self.on_reconnect)  # notices may have been missed
                    first = False
                    while not self._stop.is_set():
                        for notice in conn.notifies(timeout=LISTEN_POLL_S):
                            self._call(self._deliver, notice.payload)
            except Exception as exc:
                if self._stop.is_set():
                    return
                log.warning("listening for wake-ups failed; retrying",
                            extra={"fields": {"error": type(exc).__name__}})
                self._stop.wait(RECONNECT_S)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            anyio.from_thread.run_sync(fn, *args)
        except RuntimeError:  # the event loop is gone: shutting down
            self._stop.set()

    def _deliver(self, payload: str) -> None:
        for line in payload.split("\n"):
            ident, _, rest = line.partition(" ")
            if ident == self.ident:
                continue
            kind, _, key = rest.partition(" ")
            for listener in self.ctx.listeners:
                if listener is self:
                    continue
                if kind == "o":
                    listener.operation_accepted(key)
                elif kind == "d":
                    listener.subscriptions_changed(key)


def _libpq_url(url: str) -> str:
    """PUSHGO_DB_URL as libpq takes it (no SQLAlchemy driver suffix)."""
    scheme, sep, rest = url.partition("://")
    return "postgresql" + sep + rest if scheme.split("+", 1)[0] in ("postgresql", "postgres") \
        else url
