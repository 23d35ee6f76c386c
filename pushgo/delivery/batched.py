"""Calls of many tasks at once made as few store calls: ``Batched``.

One message to a channel of 10,000 connected devices wakes 10,000 sessions; each wants its
inbox page read, and a moment later each acknowledges its delivery. One store call each
would hand the GIL and a thread back and forth 20,000 times and queue the calls past their
deadlines; here the callers of one moment share a few calls of up to ``batch`` requests.

No task of its own: up to ``parallel`` of the waiting callers lead, each taking its own
request and the oldest others into one call, then handing its place to the oldest request
still waiting. A failed call fails the callers of its batch (as calls of their own would); a
leader cancelled in the middle leaves the others of its batch to the next leader; a waiting
caller cancelled is skipped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel

Req = TypeVar("Req")
Res = TypeVar("Res")


@dataclass(eq=False, slots=True)
class _Call(Generic[Req, Res]):
    request: Req
    #: Set when the call is served or made a leader (a fresh one before each wait).
    wake: anyio.Event = field(default_factory=anyio.Event)
    result: Res | None = None
    error: Exception | None = None
    served: bool = False
    #: Out of the queue (in a batch, or its caller gone): leaders skip it.
    taken: bool = False
    #: Holds one of the leading places: makes a batch's call, then hands the place on.
    lead: bool = False


class Batched(Generic[Req, Res]):
    """``await batched.call(request)``: ``run(requests)`` answers a batch, one result per
    request in order."""

    def __init__(self, run: Callable[[list[Req]], Awaitable[Sequence[Res]]], *, batch: int,
                 parallel: int) -> None:
        self.run = run
        self.batch = batch
        self.parallel = parallel
        self._queue: deque[_Call[Req, Res]] = deque()
        self._leading = 0

    async def call(self, request: Req) -> Res:
        me: _Call[Req, Res] = _Call(request)
        if self._leading < self.parallel:
            self._leading += 1
            me.lead = True  # a leader's own call is never queued
        else:
            self._queue.append(me)
        try:
            while not me.served:
                if me.lead:
                    try:
                        await anyio.lowlevel.checkpoint()  # the others of this moment queue
                        await self._run_batch(me)
                    finally:
                        me.lead = False
                        self._hand_on()
                    continue
                me.wake = anyio.Event()
                await me.wake.wait()
        finally:
            me.taken = True  # a caller gone before it was served is skipped
            if me.lead:  # made a leader, but gone before it led
                me.lead = False
                self._hand_on()
        if me.error is not None:
            raise me.error
        return me.result  # type: ignore[return-value]  # served: set by the batch

    async def _run_batch(self, own: _Call[Req, Res]) -> None:
        batch = [own]
        while self._queue and len(batch) < self.batch:
            other = self._queue.popleft()
            if not other.taken:
                other.taken = True
                batch.append(other)
        try:
            results = await self.run([c.request for c in batch])
        except Exception as exc:
            for c in batch:
                c.error, c.served = exc, True
                c.wake.set()
            return
        except BaseException:  # this caller is gone: the others wait for the next leader
            for c in reversed(batch[1:]):
                c.taken = False
                self._queue.appendleft(c)
            raise
        for c, result in zip(batch, results, strict=True):
            c.result, c.served = result, True
            c.wake.set()

    def _hand_on(self) -> None:
        """A leader is done: the oldest call still waiting leads next (out of the queue),
        else one fewer leads."""
        while self._queue:
            nxt = self._queue.popleft()
            if not nxt.taken:
                nxt.lead = True
                nxt.wake.set()
                return
        self._leading -= 1
