"""Delivery status: how far an operation's deliveries have got (``GET /deliveries/{op_id}``,
its SSE stream, the MCP resource ``pushgo://operations/{op_id}`` and the send tools'
progress notifications all read it here).

Counts come from the store, never from memory, so they hold across restarts and across
processes sharing one database. Watchers re-read when this process accepts work or records a
batch of send results (the :class:`Pulse`), and at least every ``POLL_S`` otherwise (another
process's work, a device pulling its inbox); never more often than ``MIN_INTERVAL_S`` per
operation, however many watch it.

Who may read: whoever passed the gateway's door — the gateway token when one is set; an API
key (``status`` scope) on its own channels only. A status
holds counts and provider reasons only, never a payload, token or device key.

Must not import pushgo.api or starlette.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import anyio

from pushgo.errors import NotFound, codes
from pushgo.protocol import fields as F
from pushgo.service.context import Context
from pushgo.service.keys import narrowed, not_allowed
from pushgo.store import status as S
from pushgo.store.status import operation_exists

POLL_S = 2.0
MIN_INTERVAL_S = 0.25
KEEPALIVE_S = 15.0
_CACHE_MAX = 256

Doc = dict[str, Any]


def operation_not_found() -> NotFound:
    return NotFound(codes.OPERATION_NOT_FOUND, "operation not found")


def is_done(doc: Doc) -> bool:
    return bool(doc["done"])


def provider_settled(doc: Doc) -> bool:
    """No provider delivery is left queued (private-route deliveries wait for their device,
    for as long as their TTL; they do not hold up a sender watching the providers)."""
    private = doc["routes"].get("private", {}).get("queued", 0)
    return bool(doc["states"]["queued"] - private == 0)


class Pulse:
    """Wakes every waiter at once; a waiter takes ``event()`` before it reads, so a change
    during its read is not missed."""

    def __init__(self) -> None:
        self._event: anyio.Event | None = None

    def event(self) -> anyio.Event:
        if self._event is None:
            self._event = anyio.Event()
        return self._event

    def fire(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None


class Status:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.pulse = Pulse()
        self._recent: dict[tuple[str, tuple[str, ...] | None], tuple[float, Doc | None]] = {}

    # DeliveryListener: accepted work changes the counts of its operation
    def operation_accepted(self, channel_id: str) -> None:
        self.pulse.fire()

    def subscriptions_changed(self, device_key: str) -> None:
        pass

    def results_written(self) -> None:
        """The dispatcher recorded a batch of send results."""
        self.pulse.fire()

    async def get(self, op_id: str, *, channel_ids: Sequence[str] | None = None) -> Doc:
        """The status document, or 404 ``operation_not_found`` (403 ``channel_not_allowed``
        for an API key limited to other channels than the operation's)."""
        op = _op_id(op_id)
        allowed = narrowed(channel_ids)
        doc = await self._read(op, allowed, may_reuse=True)
        if doc is None:
            await self.refuse_other_channels(op, channel_ids, allowed)
            raise operation_not_found()
        return doc

    async def refuse_other_channels(self, op_id: str, asked: Sequence[str] | None,
                                    allowed: Sequence[str] | None) -> None:
        """Nothing found on the key's channels: 403 if the operation is on others."""
        if allowed is not asked and await self.ctx.store.read(operation_exists, op_id):
            raise not_allowed()

    async def watch(self, op_id: str, *, channel_ids: Sequence[str] | None = None,
                    until: Callable[[Doc], bool] = is_done, keepalive_s: float | None = None,
                    ) -> AsyncIterator[Doc | None]:
        """The status now, then each time it changes, ending with the first for which
        ``until`` holds; None when nothing changed for ``keepalive_s``. 404 if no operation
        matches."""
        op_id = _op_id(op_id)
        asked, channel_ids = channel_ids, narrowed(channel_ids)
        keepalive = KEEPALIVE_S if keepalive_s is None else keepalive_s
        last: Doc | None = None
        quiet_since = anyio.current_time()
        while True:
            wake = self.pulse.event()
            doc = await self._read(op_id, channel_ids, may_reuse=last is None)
            if doc is None:
                await self.refuse_other_channels(op_id, asked, channel_ids)
                raise operation_not_found()
            if doc != last:
                last = doc
                quiet_since = anyio.current_time()
                yield doc
                if until(doc):
                    return
            elif anyio.current_time() - quiet_since >= keepalive:
                quiet_since = anyio.current_time()
                yield None
            with anyio.move_on_after(min(POLL_S, keepalive)):
                await wake.wait()

    async def _read(self, op_id: str, channel_ids: Sequence[str] | None, *,
                    may_reuse: bool) -> Doc | None:
        """One store read, shared: a document read less than MIN_INTERVAL_S ago is reused
        (``may_reuse``) or waited out, so many watchers of one operation cost one query."""
        key = (op_id, tuple(channel_ids) if channel_ids is not None else None)
        seen = self._recent.get(key)
        if seen is not None and seen[1] is not None:
            age = anyio.current_time() - seen[0]
            if age < MIN_INTERVAL_S:
                if may_reuse:
                    return seen[1]
                await anyio.sleep(MIN_INTERVAL_S - age)
                newer = self._recent.get(key)
                if newer is not None and newer[0] > seen[0] and newer[1] is not None:
                    return newer[1]  # another watcher read it meanwhile
        doc = await self.ctx.store.read(S.status, op_id, channel_ids, self.ctx.now())
        if len(self._recent) >= _CACHE_MAX:
            self._recent.clear()
        self._recent[key] = (anyio.current_time(), doc)
        return doc


def _op_id(raw: str) -> str:
    op_id = F.op_id(raw)
    if op_id is None:
        raise F.FieldError(codes.OP_ID_REQUIRED, "op_id must not be empty")
    return op_id
