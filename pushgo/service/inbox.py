"""The device inbox: /messages/pull (destructive, ≤512, expired skipped), /messages/ack, and
the page reads behind the private stream."""

from __future__ import annotations

import msgspec

from pushgo.errors import InvalidInput, codes
from pushgo.protocol import fields as field_rules
from pushgo.protocol import wire
from pushgo.protocol.payload import with_delivery_id
from pushgo.service.context import Context
from pushgo.store import outbox as outbox_store

PULL_LIMIT = 512


def _delivery_id(raw: str | None) -> str | None:
    if raw is None:
        return None
    value = raw.strip()
    if not value:
        raise InvalidInput(codes.DELIVERY_ID_REQUIRED, "delivery_id must not be empty")
    return value


class Inbox:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def pull(self, req: wire.PullIn) -> wire.PullOut:
        key = field_rules.device_key(req.device_key)
        delivery_id = _delivery_id(req.delivery_id)
        items = await self.ctx.store.run(outbox_store.pull, key, delivery_id, self.ctx.now(), PULL_LIMIT)
        return wire.PullOut(items=[
            wire.PullItem(delivery_id=i.delivery_id,
                       payload=msgspec.Raw(with_delivery_id(i.payload_json, i.delivery_id)))
            for i in items
        ])

    async def ack(self, req: wire.AckIn) -> wire.AckOut:
        key = field_rules.device_key(req.device_key)
        delivery_id = _delivery_id(req.delivery_id)
        assert delivery_id is not None
        removed = await self.ctx.store.run(outbox_store.ack, key, delivery_id, self.ctx.now())
        return wire.AckOut(removed=removed)

    async def page(self, device_key: str, after_seq: int, limit: int) -> list[outbox_store.InboxItem]:
        return await self.ctx.store.read(outbox_store.inbox_page, device_key, after_seq, self.ctx.now(),
                                         limit)

    async def cursor_after(self, device_key: str, delivery_id: str | None) -> int:
        if not delivery_id:
            return 0
        seq = await self.ctx.store.read(outbox_store.seq_of, device_key, delivery_id.strip())
        return seq or 0
