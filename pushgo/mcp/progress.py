"""Delivery progress for the MCP send tools: when the client passed a ``progressToken``, a
send tool reports ``notifications/progress`` past "accepted" while the operation's provider
deliveries (APNs, FCM) go out, for at most ``FOLLOW_S``, then returns with the status it last
saw; without one it glances at them for at most ``GLANCE_S``. Either way its result carries
the delivery status and a summary in words (pushgo.mcp.summary). Progress counts in
deliveries: ``1 + settled`` of ``1 + provider deliveries`` (the 1 is the accept), so it only
ever grows.

Private-route deliveries are not waited for: they stay queued until their device connects.
Must not import starlette or pushgo.api.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from pushgo.mcp import summary
from pushgo.mcp.summary import explained
from pushgo.service.send import Accepted
from pushgo.service.status import Status, provider_settled

Progress = Callable[[float, float | None, str | None], Awaitable[None]]

#: Longest a send tool waits for its deliveries before it answers anyway.
FOLLOW_S = 10.0
#: Without a progress token: how long a send tool looks at its provider deliveries before
#: it answers, so its summary can say sent or why not rather than "queued".
GLANCE_S = 2.0


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
                          follow: bool = False, follow_s: float = FOLLOW_S,
                          glance_s: float | None = None) -> tuple[dict[str, Any], str]:
    """What became of a send, for its tool result: the delivery status (``follow``: the
    client asked for progress, so report it while following the provider deliveries for up
    to ``follow_s``; otherwise glance for up to ``glance_s`` until every provider delivery
    is sent, failed or waiting for a known reason) and its summary in words."""
    doc = await status.get(accepted.op_id, channel_ids=[accepted.channel_id])
    total, sent, failed, queued = _provider(doc)
    done = 1 + sent + failed
    await progress(done if total else 1, 1 + total if total else 1,
                   f"accepted: {total} provider deliveries" if total else "accepted")
    until = provider_settled if follow else explained
    if queued and not until(doc):
        with anyio.move_on_after(follow_s if follow else (glance_s or GLANCE_S)):
            async for seen in status.watch(accepted.op_id, channel_ids=[accepted.channel_id],
                                           until=until):
                if seen is None:
                    continue
                doc = seen
                _total, sent, failed, queued = _provider(doc)
                if 1 + sent + failed > done:
                    done = 1 + sent + failed
                    await progress(done, 1 + total,
                                   f"{sent} sent, {failed} failed, {queued} waiting")
    return summary.delivery(doc), summary.describe(doc, accepted.channel_id)
