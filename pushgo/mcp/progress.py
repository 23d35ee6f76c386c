"""Delivery progress for the MCP send tools: when the client passed a ``progressToken``, a
send tool reports ``notifications/progress`` past "accepted" while the operation's provider
deliveries (APNs, FCM) go out, for at most ``FOLLOW_S``, then returns with the status it last
saw. Progress counts in deliveries: ``1 + settled`` of ``1 + provider deliveries`` (the 1 is
the accept), so it only ever grows.

Private-route deliveries are not waited for: they stay queued until their device connects.
Must not import starlette or pushgo.api.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from pushgo.service.send import Accepted
from pushgo.service.status import Status, provider_settled

Progress = Callable[[float, float | None, str | None], Awaitable[None]]

#: Longest a send tool waits for its deliveries before it answers anyway.
FOLLOW_S = 10.0


def _provider(doc: dict[str, Any]) -> tuple[int, int, int, int]:
    """(provider deliveries, sent, failed + expired, queued) of a status document."""
    total = sent = failed = queued = 0
    for route, states in doc["routes"].items():
        if route == "private":
            continue
        total += sum(states.values())
        sent += states.get("sent", 0)
        failed += states.get("failed", 0) + states.get("expired", 0)
        queued += states.get("queued", 0)
    return total, sent, failed, queued


async def report_delivery(status: Status, accepted: Accepted, progress: Progress, *,
                          follow_s: float = FOLLOW_S) -> dict[str, Any] | None:
    """Report "accepted" and then delivery progress; the last status seen, or None when the
    operation has no provider deliveries to follow."""
    doc = await status.get(accepted.op_id, channel_ids=[accepted.channel_id])
    total, sent, failed, queued = _provider(doc)
    if total == 0:
        await progress(1, 1, "accepted")
        return None
    done = 1 + sent + failed
    await progress(done, 1 + total, f"accepted: {total} provider deliveries")
    if queued:
        with anyio.move_on_after(follow_s):
            async for seen in status.watch(accepted.op_id, channel_ids=[accepted.channel_id],
                                           until=provider_settled):
                if seen is None:
                    continue
                doc = seen
                _total, sent, failed, queued = _provider(doc)
                if 1 + sent + failed > done:
                    done = 1 + sent + failed
                    await progress(done, 1 + total,
                                   f"{sent} sent, {failed} failed, {queued} waiting")
    return {"states": doc["states"], "failures": doc["failures"],
            "done": provider_settled(doc)}
