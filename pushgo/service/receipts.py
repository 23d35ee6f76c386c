"""Repeat until acknowledged: the receipts of repeating sends and their rounds.

A send with ``repeat`` writes a receipt beside its operation (pushgo.service.send). Its rounds
are made by ``run_due`` (driven by pushgo.delivery.repeats on the gateway's clock): each fans
the operation out again to the channel's provider devices, new deliveries the outbox pump
sends. It stops at the first acknowledgement by any device (an inbox ack, a warp-link Ack,
``POST /receipts/ack``), when its event closes, after ``max`` sends, at its TTL, or when
``stop`` is called (a cancelled operation).

Who may read a receipt: whoever passed the gateway's door, as delivery status. Who may
acknowledge: a device, for an operation that was delivered to it.

Must not import pushgo.api, pushgo.mcp or starlette.
"""

from __future__ import annotations

from collections.abc import Sequence

from pushgo.errors import NotFound, codes
from pushgo.protocol import fields as field_rules
from pushgo.protocol import receipts as R
from pushgo.service.context import Context
from pushgo.service.keys import narrowed, not_allowed
from pushgo.store import repeats as S
from pushgo.store.repeats import STOP_REASONS, Receipt, Rounds
from pushgo.store.status import operation_exists

#: Rounds made per store transaction.
PAGE = 200
#: How an acknowledgement through ``POST /receipts/ack`` is named.
VIA_RECEIPT = "receipts_ack"


def receipt_not_found() -> NotFound:
    return NotFound(codes.RECEIPT_NOT_FOUND, "no repeating send with this op_id")


def _out(r: Receipt) -> R.ReceiptOut:
    return R.receipt_out(
        op_id=r.op_id, channel_id=r.channel_id, entity_type=r.entity_type,
        entity_id=r.entity_id, every_ms=r.every_ms, max_sends=r.max_sends, sends=r.sends,
        next_at=r.next_at, expires_at=r.expires_at, acked_by=r.acked_by, acked_at=r.acked_at,
        acked_via=r.acked_via, stopped=r.stopped, stopped_at=r.stopped_at,
        created_at=r.created_at)


def _newest(found: Sequence[Receipt]) -> Receipt:
    return max(found, key=lambda r: (r.created_at, r.op_pk))


class Receipts:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def get(self, op_id: str, channel_ids: Sequence[str] | None = None) -> R.ReceiptOut:
        """The receipt of ``op_id``; of the newest send when several channels used that op_id
        (``channel_ids`` narrows them)."""
        op = field_rules.token_id(op_id, "op_id", field_rules.OP_ID_MAX, required=True)
        assert op is not None
        allowed = narrowed(channel_ids)  # an API key: its own channels only
        found = await self.ctx.store.read(S.receipts, op, allowed)
        if not found:
            if allowed is not channel_ids and await self.ctx.store.read(operation_exists, op):
                raise not_allowed()
            raise receipt_not_found()
        return _out(_newest(found))

    async def ack(self, req: R.ReceiptAckIn) -> R.ReceiptAckOut:
        """A device acknowledges an operation delivered to it."""
        key, op_id, delivery_id = R.ack_request(req)
        now = self.ctx.now()
        found = await self.ctx.store.run(S.acknowledge_op, key, op_id, delivery_id,
                                         VIA_RECEIPT, now)
        if found is None:
            raise NotFound(codes.RECEIPT_NOT_FOUND,
                           "no repeating send of this op_id was delivered to this device")
        first, receipts = found
        return R.ReceiptAckOut(acknowledged=first > 0, receipt=_out(_newest(receipts)))

    async def stop(self, op_id: str, reason: str, channel_id: str | None = None) -> int:
        """Stop the repeats of ``op_id`` (in ``channel_id`` when given) with ``reason`` (one of
        ``STOP_REASONS``; ``cancelled`` for a cancelled operation); how many were running."""
        if reason not in STOP_REASONS:  # a caller's mistake, not a request's
            raise ValueError(f"unknown stop reason {reason!r}")
        return await self.ctx.store.run(S.stop, op_id, reason, self.ctx.now(), channel_id)

    async def run_due(self) -> Rounds:
        """Make the rounds due now; the channels that got new deliveries are announced like
        accepted work (the pump wakes, other processes are told)."""
        rounds = await self.ctx.store.run(S.run_due, self.ctx.now(), PAGE)
        for channel_id in rounds.channels:
            self.ctx.accepted(channel_id)
        return rounds

    async def next_due(self) -> int | None:
        """When the next round is due (gateway clock, ms); None when no repeat runs."""
        return await self.ctx.store.read(S.next_due)


__all__ = ["PAGE", "VIA_RECEIPT", "Receipts", "Rounds", "receipt_not_found"]
