"""Receipts of repeating sends: ``POST /receipts/ack`` (a notification action acknowledging
what was delivered to its device) and ``GET /receipts/{op_id}`` (the repeat's settings, its
sends, the next one, who acknowledged when and through which path, why it stopped).

A receipt names the acknowledging device by its key redacted (``abcd…wxyz``): the key is a
device's credential, and whoever reads a receipt is the sender, not the device.

Pure: Structs and the mapping of a stored receipt's values onto them.
"""

from __future__ import annotations

import msgspec

from pushgo.protocol import fields as field_rules
from pushgo.protocol.ids import redact


class ReceiptAckIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    device_key: str
    op_id: str
    #: The delivery the device received (``delivery_id`` of its payload): narrows the
    #: acknowledgement to that delivery of the operation.
    delivery_id: str | None = None


class RepeatOut(msgspec.Struct, kw_only=True):
    every_s: int
    max: int


class ReceiptOut(msgspec.Struct, kw_only=True):
    op_id: str
    channel_id: str
    entity_type: str  # message | event
    entity_id: str
    repeat: RepeatOut
    sends: int  # fan-outs made so far, the first included
    next_send_at: int | None  # epoch ms; null once stopped
    expires_at: int
    acknowledged: bool
    acked_by: str | None  # the acknowledging device's key, redacted
    acked_at: int | None
    acked_via: str | None  # messages_ack | v2_messages_ack | private_link | receipts_ack
    stopped: bool
    stopped_reason: str | None  # acked | event_closed | max_reached | expired | cancelled
    stopped_at: int | None
    created_at: int


class ReceiptAckOut(msgspec.Struct, kw_only=True):
    acknowledged: bool  # this call recorded the first acknowledgement
    receipt: ReceiptOut


def receipt_out(*, op_id: str, channel_id: str, entity_type: str, entity_id: str,
                every_ms: int, max_sends: int, sends: int, next_at: int | None,
                expires_at: int, acked_by: str | None, acked_at: int | None,
                acked_via: str | None, stopped: str | None, stopped_at: int | None,
                created_at: int) -> ReceiptOut:
    return ReceiptOut(
        op_id=op_id, channel_id=channel_id, entity_type=entity_type, entity_id=entity_id,
        repeat=RepeatOut(every_s=every_ms // 1000, max=max_sends), sends=sends,
        next_send_at=next_at, expires_at=expires_at, acknowledged=acked_at is not None,
        acked_by=redact(acked_by) if acked_by is not None else None, acked_at=acked_at,
        acked_via=acked_via, stopped=stopped is not None, stopped_reason=stopped,
        stopped_at=stopped_at, created_at=created_at)


def ack_request(req: ReceiptAckIn) -> tuple[str, str, str | None]:
    """The checked ``(device_key, op_id, delivery_id)`` of an acknowledgement."""
    key = field_rules.device_key(req.device_key)
    op_id = field_rules.token_id(req.op_id, "op_id", field_rules.OP_ID_MAX, required=True)
    assert op_id is not None
    delivery_id = None
    if req.delivery_id is not None:
        delivery_id = req.delivery_id.strip() or None
    return key, op_id, delivery_id
