"""The private route: devices without APNs/FCM receive their deliveries live over SSE.

Owns the hub (which connected stream to wake when a channel gets work) and the stream loop:
first every pending delivery of the device, oldest first, then live ones; a keep-alive comment
every 15 s, which is also when the stream re-reads its inbox in case another process wrote it.
Must not import pushgo.api or starlette.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio

from pushgo.delivery.batched import Batched
from pushgo.protocol.payload import with_delivery_id
from pushgo.protocol.sse import encode_comment, encode_event
from pushgo.service.context import Context
from pushgo.service.inbox import Inbox, InboxItem
from pushgo.service.outbox import OutboxService

KEEPALIVE_S = 15.0
PAGE = 200
RETRY_MS = 3000


@dataclass(eq=False, slots=True)
class _Waiter:
    device_key: str
    #: Set by a wake-up; the stream puts a fresh one before each read of the inbox.
    event: anyio.Event | None = None
    channels: set[str] = field(default_factory=set)
    stale: bool = True

    def wake(self) -> None:
        if self.event is not None:
            self.event.set()


#: Store calls of inbox page reads (and of acknowledgements) at once: one message to a
#: channel of thousands of connected devices wakes them all, and each then acknowledges.
CONCURRENT_CALLS = 4
#: Devices whose pages (or acknowledgements) one store call reads (or writes).
CALL_BATCH = 256


class InboxCalls:
    """The inbox calls of the streams and sessions of one moment, batched (pushgo.delivery
    .batched): page reads, and warp-link acknowledgements."""

    def __init__(self, inbox: Inbox, *, batch: int = CALL_BATCH,
                 parallel: int = CONCURRENT_CALLS) -> None:
        self.inbox = inbox
        self._reads: Batched[tuple[str, int, int], list[InboxItem]] = Batched(
            self._read, batch=batch, parallel=parallel)
        self._acks: Batched[tuple[str, str], bool] = Batched(
            self._ack, batch=batch, parallel=parallel)

    async def page(self, device_key: str, after_seq: int, limit: int) -> list[InboxItem]:
        """Up to ``limit`` of the device's waiting deliveries after ``after_seq``."""
        return await self._reads.call((device_key, after_seq, limit))

    async def ack(self, device_key: str, delivery_id: str) -> bool:
        """The device has the delivery (a warp-link Ack): it leaves the inbox."""
        return await self._acks.call((device_key, delivery_id))

    async def _read(self, wants: list[tuple[str, int, int]]) -> list[list[InboxItem]]:
        pages = await self.inbox.pages(wants)
        return [pages.get(key, []) for key, _, _ in wants]

    async def _ack(self, pairs: list[tuple[str, str]]) -> list[bool]:
        return await self.inbox.ack_link(pairs)


class Hub:
    """In-process registry of open streams, keyed by device and by subscribed channel, and
    their batched inbox reads."""

    def __init__(self, calls: InboxCalls) -> None:
        self._by_device: dict[str, set[_Waiter]] = {}
        self._by_channel: dict[str, set[_Waiter]] = {}
        self.calls = calls

    @property
    def connected(self) -> int:
        return sum(len(ws) for ws in self._by_device.values())

    # DeliveryListener
    def operation_accepted(self, channel_id: str) -> None:
        for waiter in self._by_channel.get(channel_id, ()):
            waiter.wake()

    def subscriptions_changed(self, device_key: str) -> None:
        for waiter in self._by_device.get(device_key, ()):
            waiter.stale = True
            waiter.wake()

    def wake_all(self) -> None:
        """Every open stream re-reads its subscriptions and inbox (wake-ups from other
        processes may have been missed)."""
        for key in list(self._by_device):
            self.subscriptions_changed(key)

    def _add(self, waiter: _Waiter) -> None:
        self._by_device.setdefault(waiter.device_key, set()).add(waiter)

    def _remove(self, waiter: _Waiter) -> None:
        self._set_channels(waiter, set())
        peers = self._by_device.get(waiter.device_key)
        if peers is not None:
            peers.discard(waiter)
            if not peers:
                del self._by_device[waiter.device_key]

    def _set_channels(self, waiter: _Waiter, channels: set[str]) -> None:
        for cid in waiter.channels - channels:
            group = self._by_channel.get(cid)
            if group is not None:
                group.discard(waiter)
                if not group:
                    del self._by_channel[cid]
        for cid in channels - waiter.channels:
            self._by_channel.setdefault(cid, set()).add(waiter)
        waiter.channels = channels


class PrivateStreams:
    def __init__(self, ctx: Context, hub: Hub, inbox: Inbox, outbox: OutboxService,
                 keepalive_s: float = KEEPALIVE_S) -> None:
        self.ctx = ctx
        self.hub = hub
        self.inbox = inbox
        self.outbox = outbox
        self.keepalive_s = keepalive_s

    async def stream(self, device_key: str, last_event_id: str | None) -> AsyncIterator[bytes]:
        """SSE bytes for one connected device until the client goes away."""
        waiter = _Waiter(device_key)
        self.hub._add(waiter)
        try:
            cursor = await self.inbox.cursor_after(device_key, last_event_id)
            yield encode_comment("pushgo private stream") + f"retry: {RETRY_MS}\n\n".encode()
            while True:
                # A fresh event before reading: a wake-up during the read is not lost.
                waiter.event = event = anyio.Event()
                if waiter.stale:
                    waiter.stale = False
                    chans = await self.outbox.subscribed_channels(device_key)
                    self.hub._set_channels(waiter, set(chans))
                items = await self.hub.calls.page(device_key, cursor, PAGE)
                if items:
                    chunk = b"".join(
                        encode_event(with_delivery_id(i.payload_json, i.delivery_id).encode(),
                                     event_id=i.delivery_id)
                        for i in items)
                    cursor = items[-1].seq
                    yield chunk
                    if len(items) == PAGE:
                        continue
                with anyio.move_on_after(self.keepalive_s) as scope:
                    await event.wait()
                if scope.cancelled_caught:
                    yield encode_comment("keep-alive")
        finally:
            self.hub._remove(waiter)
