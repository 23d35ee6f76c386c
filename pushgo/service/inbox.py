"""The device inbox: /messages/pull (destructive, ≤512, expired skipped), /messages/ack, the
v1.3 pair /v2/messages/pull (non-destructive, ≤200 and ``has_more``) and /v2/messages/ack
(``delivery_ids`` → ``requested_count``/``removed_count``), and the page reads behind the
private stream.

v2 pull answers ``{"items": [...], "has_more": bool}`` and no cursor: the items stay in the
inbox until acknowledged, so the next page is simply the next pull after the ack (the v1.3
apps pull, store, ack, and pull again while ``has_more``). ``requested_count`` counts the
distinct non-empty ids asked for (the Android app checks it equals what it sent);
``removed_count`` those that were still in this device's inbox, so a repeated ack is
harmless and answers 0.

An acknowledgement is also a receipt: a repeating send (``repeat``) acknowledged by any of its
devices stops, in the same transaction (pushgo.store.repeats), named by the path it came
through (``via``)."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from sqlalchemy.engine import Connection

from pushgo.errors import InvalidInput, codes
from pushgo.protocol import fields as field_rules
from pushgo.protocol import wire
from pushgo.protocol.payload import with_delivery_id
from pushgo.service.context import Context
from pushgo.store import outbox as outbox_store
from pushgo.store import repeats as repeat_store
from pushgo.store.outbox import InboxItem as InboxItem

PULL_LIMIT = 512
#: Items per /v2/messages/pull page, and ids per /v2/messages/ack.
PULL_V2_LIMIT = 200
ACK_V2_LIMIT = 200
#: How an acknowledgement came (``acked_via`` of a receipt).
VIA_ACK = "messages_ack"
VIA_ACK_V2 = "v2_messages_ack"
VIA_PRIVATE_LINK = "private_link"


def _ack_one(conn: Connection, key: str, delivery_id: str, now: int, via: str) -> bool:
    removed = outbox_store.ack(conn, key, delivery_id, now)
    repeat_store.acknowledge(conn, key, [delivery_id], via, now)
    return removed


def _ack_many(conn: Connection, key: str, ids: list[str], now: int, via: str) -> int:
    removed = outbox_store.ack_many(conn, key, ids, now)
    repeat_store.acknowledge(conn, key, ids, via, now)
    return removed


def _ack_link(conn: Connection, pairs: list[tuple[str, str]], now: int, via: str) -> list[bool]:
    """Acknowledgements of many devices in one transaction: the statements of one, not of
    each (a repeating operation's receipt is recorded per device as ``_ack_one`` does)."""
    taken = outbox_store.ack_pairs(conn, pairs, now)
    repeating = repeat_store.repeating(conn, list(taken.values())) if taken else set()
    for (key, delivery_id), op_pk in taken.items():
        if op_pk in repeating:
            repeat_store.acknowledge(conn, key, [delivery_id], via, now)
    return [pair in taken for pair in pairs]


def _delivery_id(raw: str | None) -> str | None:
    if raw is None:
        return None
    value = raw.strip()
    if not value:
        raise InvalidInput(codes.DELIVERY_ID_REQUIRED, "delivery_id must not be empty")
    return value


class Inbox:
    def __init__(self, ctx: Context, on_change: Callable[[], None] | None = None) -> None:
        self.ctx = ctx
        #: Told when a pull or an ack changed deliveries' states (delivery status watchers
        #: re-read at once instead of at their next poll).
        self.on_change = on_change

    def _changed(self, count: int) -> None:
        if count and self.on_change is not None:
            self.on_change()

    async def pull(self, req: wire.PullIn) -> wire.PullOut:
        key = field_rules.device_key(req.device_key)
        delivery_id = _delivery_id(req.delivery_id)
        items = await self.ctx.store.run(outbox_store.pull, key, delivery_id, self.ctx.now(), PULL_LIMIT)
        self._changed(len(items))
        return wire.PullOut(items=[
            wire.PullItem(delivery_id=i.delivery_id,
                       payload=msgspec.Raw(with_delivery_id(i.payload_json, i.delivery_id)))
            for i in items
        ])

    async def pull_v2(self, req: wire.PullIn) -> wire.PullV2Out:
        key = field_rules.device_key(req.device_key)
        delivery_id = _delivery_id(req.delivery_id)
        items, more = await self.ctx.store.read(outbox_store.peek, key, delivery_id,
                                                self.ctx.now(), PULL_V2_LIMIT)
        return wire.PullV2Out(items=[
            wire.PullItem(delivery_id=i.delivery_id,
                          payload=msgspec.Raw(with_delivery_id(i.payload_json, i.delivery_id)))
            for i in items
        ], has_more=more)

    async def ack_v2(self, req: wire.AckV2In, via: str = VIA_ACK_V2) -> wire.AckV2Out:
        key = field_rules.device_key(req.device_key)
        ids = sorted({i.strip() for i in req.delivery_ids if i.strip()})
        if not ids or len(ids) > ACK_V2_LIMIT:
            raise InvalidInput(codes.INVALID_DELIVERY_IDS,
                               f"delivery_ids must hold 1 to {ACK_V2_LIMIT} ids")
        removed = await self.ctx.store.run(_ack_many, key, ids, self.ctx.now(), via)
        self._changed(removed)
        return wire.AckV2Out(requested_count=len(ids), removed_count=removed)

    async def ack(self, req: wire.AckIn, via: str = VIA_ACK) -> wire.AckOut:
        key = field_rules.device_key(req.device_key)
        delivery_id = _delivery_id(req.delivery_id)
        assert delivery_id is not None
        removed = await self.ctx.store.run(_ack_one, key, delivery_id, self.ctx.now(), via)
        self._changed(int(removed))
        return wire.AckOut(removed=removed)

    async def ack_link(self, pairs: list[tuple[str, str]],
                       via: str = VIA_PRIVATE_LINK) -> list[bool]:
        """(device_key, delivery_id) acknowledgements of connected devices (their own keys,
        checked at their handshake), in one write; whether each was still in the inbox."""
        removed = await self.ctx.store.run(_ack_link, pairs, self.ctx.now(), via)
        self._changed(sum(removed))
        return removed

    async def page(self, device_key: str, after_seq: int, limit: int) -> list[InboxItem]:
        return await self.ctx.store.read(outbox_store.inbox_page, device_key, after_seq, self.ctx.now(),
                                         limit)

    async def pages(self, wants: list[tuple[str, int, int]]) -> dict[str, list[InboxItem]]:
        """``page`` of several devices in one read: (device_key, after_seq, limit) each."""
        return await self.ctx.store.read(outbox_store.inbox_pages, wants, self.ctx.now())

    async def cursor_after(self, device_key: str, delivery_id: str | None) -> int:
        if not delivery_id:
            return 0
        seq = await self.ctx.store.read(outbox_store.seq_of, device_key, delivery_id.strip())
        return seq or 0
