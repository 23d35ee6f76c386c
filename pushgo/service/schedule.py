"""Scheduled sends: cancelling what has not gone out (``POST /operations/{op_id}/cancel``, the
MCP tool ``pushgo.operation.cancel``, ``pushgo cancel``), and releasing scheduled deliveries
when their ``deliver_at`` comes (called by :mod:`pushgo.delivery.scheduler`).

Who may cancel: whoever may send to the operation's channel. With the channel's password; or,
on a gateway with a ``PUSHGO_TOKEN`` (which every request then carries), by that token alone,
as for bulk sends: then ``channel_id`` may be left out and every operation of the op_id is
cancelled, direct sends included. An API key acts as that token on its own channels only
(an operation on another: ``channel_not_allowed``). An OAuth MCP caller cancels on a channel
bound to it.

The answer says what happened: ``cancelled`` (deliveries stopped now), ``already_cancelled``
(a repeated cancel: nothing was left), ``already_done`` (everything had gone out, failed or
expired, or is in a provider's hands: nothing changes).

Must not import pushgo.api or starlette.
"""

from __future__ import annotations

from typing import Any

from pushgo.errors import NotFound, codes
from pushgo.protocol import fields as field_rules
from pushgo.protocol.operations import CancelIn, require_password
from pushgo.service.channels import Channels
from pushgo.service.context import Context
from pushgo.service.keys import narrowed, not_allowed, require_channel
from pushgo.service.principal import current
from pushgo.service.status import operation_not_found
from pushgo.store import schedule as S
from pushgo.store.status import operation_exists

Doc = dict[str, Any]


def _op_id(raw: str) -> str:
    op_id = field_rules.op_id(raw)
    if op_id is None:
        raise field_rules.FieldError(codes.OP_ID_REQUIRED, "op_id must not be empty")
    return op_id


class Schedules:
    def __init__(self, ctx: Context, channels: Channels) -> None:
        self.ctx = ctx
        self.channels = channels

    async def cancel(self, op_id: str, req: CancelIn) -> Doc:
        """Cancel with the channel password, or by the gateway token (see the module)."""
        op = _op_id(op_id)
        channel = field_rules.blank_to_none(req.channel_id)
        channel_id = field_rules.channel_id(channel) if channel is not None else None
        password = field_rules.blank_to_none(req.password)
        if password is not None or (self.ctx.settings.token is None and current().is_root):
            if channel_id is None:
                raise field_rules.FieldError(codes.CHANNEL_ID_REQUIRED,
                                             "channel_id is required with a password")
            require_channel(channel_id)
            await self.channels.authorize(channel_id, require_password(password))
        asked = [channel_id] if channel_id is not None else None
        allowed = narrowed(asked)  # an API key: only on its own channels
        try:
            return await self._cancel(op, list(allowed) if allowed is not None else None)
        except NotFound:
            if allowed is not asked and await self.ctx.store.read(operation_exists, op):
                raise not_allowed() from None
            raise

    async def cancel_granted(self, op_id: str, channel_id: str) -> Doc:
        """Cancel for a caller already granted ``channel_id`` (OAuth MCP)."""
        return await self._cancel(_op_id(op_id), [field_rules.channel_id(channel_id)])

    async def _cancel(self, op_id: str, channel_ids: list[str] | None) -> Doc:
        result = await self.ctx.store.run(S.cancel, op_id, channel_ids, self.ctx.now())
        if result is None:
            raise operation_not_found()
        for channel in result.channels:
            self.ctx.accepted(channel)  # status watchers (here and elsewhere) re-read
        states = result.states
        if result.cancelled or result.repeats_stopped:
            outcome = "cancelled"
        elif states.get("cancelled"):
            outcome = "already_cancelled"
        else:
            outcome = "already_done"
        return {"op_id": op_id, "outcome": outcome, "cancelled": result.cancelled,
                "total": sum(states.values()), "states": states,
                "repeat_stopped": result.repeats_stopped > 0}

    # the scheduler (pushgo.delivery.scheduler)

    async def release_due(self) -> list[str]:
        """Scheduled deliveries whose time has come go out; the channels released."""
        return await self.ctx.store.run(S.release_due, self.ctx.now())

    async def next_due(self) -> int | None:
        """When the next scheduled delivery is due (epoch ms), or None."""
        return await self.ctx.store.read(S.next_due)
