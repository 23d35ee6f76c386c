"""The private route: devices without APNs/FCM receive their deliveries live over SSE.

Owns the hub (which connected stream to wake when a channel gets work) and the stream loop:
first every pending delivery of the device, oldest first, then live ones; a keep-alive comment
every 15 s, which is also when the stream re-reads its inbox in case another process wrote it.
Must not import pushgo.api or starlette.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio

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


#: Store reads of inbox pages at once. One message to a channel of thousands of connected
#: devices wakes them all: one read each, unbounded, would queue in the store past its
#: request timeout; here they wait their turn, and each read's deadline counts from its start.
CONCURRENT_READS = 4
#: Devices whose pages one store read fetches (pushgo.store.outbox.inbox_pages).
READ_BATCH = 256


@dataclass(eq=False, slots=True)
class _Read:
    device_key: str
    after_seq: int
    limit: int
    #: Set when the read is served or made a leader (a fresh one before each wait).
    wake: anyio.Event = field(default_factory=anyio.Event)
    items: list[InboxItem] = field(default_factory=list)
    error: Exception | None = None
    served: bool = False
    #: Out of the queue (in a batch, or its caller gone): leaders skip it.
    taken: bool = False
    #: Holds one of the leading places: reads a batch, then hands the place on.
    lead: bool = False


class InboxReads:
    """Inbox pages for the streams and sessions woken together, read in batches: a read
    joins a queue; up to ``parallel`` of the waiting callers lead, each taking its own read
    and the oldest others (``batch`` in all) into one store read, then handing its place to
    the oldest read still waiting. So 10,000 devices woken by one message cost 40 queries,
    not 10,000, and no task but the callers' own is needed."""

    def __init__(self, inbox: Inbox, *, batch: int = READ_BATCH,
                 parallel: int = CONCURRENT_READS) -> None:
        self.inbox = inbox
        self.batch = batch
        self.parallel = parallel
        self._queue: deque[_Read] = deque()
        self._leading = 0

    async def page(self, device_key: str, after_seq: int, limit: int) -> list[InboxItem]:
        read = _Read(device_key, after_seq, limit)
        if self._leading < self.parallel:
            self._leading += 1
            read.lead = True  # a leader's own read is never queued
        else:
            self._queue.append(read)
        try:
            while not read.served:
                if read.lead:
                    try:
                        await anyio.lowlevel.checkpoint()  # the others woken with it queue
                        await self._read_batch(read)
                    finally:
                        read.lead = False
                        self._hand_on()
                    continue
                read.wake = anyio.Event()
                await read.wake.wait()
        finally:
            read.taken = True  # a caller gone before it was served is skipped
            if read.lead:  # made a leader, but gone before it led
                read.lead = False
                self._hand_on()
        if read.error is not None:
            raise read.error
        return read.items

    async def _read_batch(self, own: _Read) -> None:
        """One store read: ``own`` and the oldest others waiting (``batch`` in all)."""
        batch = [own]
        while self._queue and len(batch) < self.batch:
            other = self._queue.popleft()
            if not other.taken:
                other.taken = True
                batch.append(other)
        try:
            pages = await self.inbox.pages([(r.device_key, r.after_seq, r.limit)
                                            for r in batch])
        except Exception as exc:  # each caller's read fails as a read of its own would
            for r in batch:
                r.error, r.served = exc, True
                r.wake.set()
            return
        except BaseException:  # this caller is gone: the others wait for the next leader
            for r in reversed(batch[1:]):
                r.taken = False
                self._queue.appendleft(r)
            raise
        for r in batch:
            r.items, r.served = pages.get(r.device_key, []), True
            r.wake.set()

    def _hand_on(self) -> None:
        """A leader is done: the oldest read still waiting leads next (out of the queue),
        else one fewer leads."""
        while self._queue:
            nxt = self._queue.popleft()
            if not nxt.taken:
                nxt.lead = True
                nxt.wake.set()
                return
        self._leading -= 1


class Hub:
    """In-process registry of open streams, keyed by device and by subscribed channel, and
    their batched inbox reads."""

    def __init__(self, reads: InboxReads) -> None:
        self._by_device: dict[str, set[_Waiter]] = {}
        self._by_channel: dict[str, set[_Waiter]] = {}
        self.reads = reads

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
                items = await self.hub.reads.page(device_key, cursor, PAGE)
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
