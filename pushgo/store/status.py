"""Delivery status of an operation: counts of its deliveries by route, state and failure
reason. Plain functions of a Connection; one GROUP BY per read, whatever the fan-out size.

An op_id names every operation that used it (one per channel, or per direct token set), so a
large send split over many bulk lines reads as one; ``channel_ids`` narrows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pushgo.protocol.bulk import is_direct_key
from pushgo.store.schema import deliveries, operations

STATES = ("queued", "sent", "failed", "expired")


def status(conn: Connection, op_id: str, channel_ids: Sequence[str] | None) -> dict[str, Any] | None:
    """The wire document of ``GET /deliveries/{op_id}``, or None when no operation matches."""
    o, d = operations, deliveries
    where = [o.c.op_id == op_id]
    if channel_ids is not None:
        where.append(o.c.channel_id.in_(list(channel_ids)))
    head = conn.execute(sa.select(
        sa.func.count(), sa.func.min(o.c.created_at), sa.func.min(o.c.channel_id),
        sa.func.max(o.c.channel_id),
    ).where(*where)).one()
    count, created_at, first_channel, last_channel = head
    if not count:
        return None
    reason = sa.case((d.c.state == "failed", d.c.last_error), else_=sa.null())
    retrying = sa.func.sum(sa.case((sa.and_(d.c.state == "queued", d.c.attempts > 0), 1),
                                   else_=0))
    rows = conn.execute(sa.select(d.c.route, d.c.state, reason, sa.func.count(), retrying)
                        .select_from(d.join(o, o.c.op_pk == d.c.op_pk))
                        .where(*where).group_by(d.c.route, d.c.state, reason)).all()
    states = dict.fromkeys(STATES, 0)
    routes: dict[str, dict[str, int]] = {}
    failures: dict[str, int] = {}
    waiting_retry = 0
    for route, state, why, n, again in rows:
        n = int(n)
        states[state] = states.get(state, 0) + n
        per_route = routes.setdefault(route, dict.fromkeys(STATES, 0))
        per_route[state] = per_route.get(state, 0) + n
        if state == "failed":
            key = why or "unknown"
            failures[key] = failures.get(key, 0) + n
        waiting_retry += int(again or 0)
    doc: dict[str, Any] = {
        "op_id": op_id, "total": sum(states.values()), "done": states["queued"] == 0,
        "states": states, "failures": failures, "created_at": int(created_at),
        "operations": int(count), "retrying": waiting_retry, "routes": routes,
    }
    if first_channel == last_channel and not is_direct_key(first_channel):
        doc["channel_id"] = first_channel
    return doc
