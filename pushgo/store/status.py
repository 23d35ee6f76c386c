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
from pushgo.store import providers as P
from pushgo.store.schema import deliveries, operations

STATES = ("queued", "sent", "failed", "expired")


def status(conn: Connection, op_id: str, channel_ids: Sequence[str] | None, now: int = 0,
           ) -> dict[str, Any] | None:
    """The wire document of ``GET /deliveries/{op_id}``, or None when no operation matches.
    ``now`` (epoch ms) judges how fresh the providers' breaker states are."""
    o, d = operations, deliveries
    where = [o.c.op_id == op_id]
    if channel_ids is not None:
        where.append(o.c.channel_id.in_(list(channel_ids)))
    head = conn.execute(sa.select(
        sa.func.count(), sa.func.min(o.c.created_at), sa.func.min(o.c.channel_id),
        sa.func.max(o.c.channel_id), sa.func.max(o.c.deliver_at),
    ).where(*where)).one()
    count, created_at, first_channel, last_channel, deliver_at = head
    if not count:
        return None
    # A queued delivery's last error says why it waits (a retry, or a provider unavailable).
    reason = sa.case((d.c.state.in_(("failed", "queued")), d.c.last_error), else_=sa.null())
    again = sa.or_(d.c.attempts > 0, d.c.last_error.is_not(None))
    retrying = sa.func.sum(sa.case((sa.and_(d.c.state == "queued", again), 1), else_=0))
    rows = conn.execute(sa.select(d.c.route, d.c.state, reason, sa.func.count(), retrying)
                        .select_from(d.join(o, o.c.op_pk == d.c.op_pk))
                        .where(*where).group_by(d.c.route, d.c.state, reason)).all()
    states = dict.fromkeys(STATES, 0)
    routes: dict[str, dict[str, int]] = {}
    failures: dict[str, int] = {}
    queued_why: dict[str, dict[str, int]] = {}  # route -> last error -> queued deliveries
    waiting_retry = 0
    for route, state, why, n, again in rows:
        n = int(n)
        states[state] = states.get(state, 0) + n
        per_route = routes.setdefault(route, dict.fromkeys(STATES, 0))
        per_route[state] = per_route.get(state, 0) + n
        if state == "failed":
            key = why or "unknown"
            failures[key] = failures.get(key, 0) + n
        elif state == "queued" and why:
            per_why = queued_why.setdefault(route, {})
            per_why[why] = per_why.get(why, 0) + n
        waiting_retry += int(again or 0)
    # Scheduled deliveries wait for deliver_at: not done until they went out (or cancelled).
    pending = states["queued"] + states.get("scheduled", 0)
    doc: dict[str, Any] = {
        "op_id": op_id, "total": sum(states.values()), "done": pending == 0,
        "states": states, "failures": failures, "created_at": int(created_at),
        "operations": int(count), "retrying": waiting_retry, "routes": routes,
    }
    if first_channel == last_channel and not is_direct_key(first_channel):
        doc["channel_id"] = first_channel
    if deliver_at is not None:
        doc["deliver_at"] = int(deliver_at)
        if states.get("scheduled"):
            doc["state"] = "scheduled"
    waiting = _waiting(conn, routes, queued_why, now)
    if waiting:
        doc["waiting"] = waiting
    offline = routes.get("private", {}).get("queued", 0)
    if offline:
        doc["private"] = {"waiting_offline": offline}
    return doc


def _waiting(conn: Connection, routes: dict[str, dict[str, int]],
             queued_why: dict[str, dict[str, int]], now: int) -> dict[str, Any]:
    """Why the provider routes with queued deliveries wait: ``provider_unavailable`` while a
    process holds the provider's breaker open (with its last error and since when), else
    ``retrying`` when some wait for another attempt (with their most frequent last error)."""
    pending = sorted(r for r, counts in routes.items() if r != "private" and counts["queued"])
    if not pending:
        return {}
    down = P.unavailable(conn, pending, now)
    out: dict[str, Any] = {}
    for route in pending:
        why = queued_why.get(route, {})
        common = max(why.items(), key=lambda kv: (kv[1], kv[0]))[0] if why else None
        health = down.get(route)
        if health is not None:
            out[route] = {"state": "provider_unavailable", "breaker": health.state,
                          "last_error": health.last_error or common, "since": health.since,
                          "deliveries": routes[route]["queued"]}
        elif why:
            out[route] = {"state": "retrying", "last_error": common,
                          "deliveries": sum(why.values())}
    return out


def operation_exists(conn: Connection, op_id: str) -> bool:
    """Some operation (on any channel) used this op_id."""
    found = conn.execute(sa.select(operations.c.op_pk).where(operations.c.op_id == op_id)
                         .limit(1)).first()
    return found is not None
