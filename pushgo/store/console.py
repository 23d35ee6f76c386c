"""What the operator console reads (``/admin/console/*``): the newest operations with their
deliveries counted by state, the depth of the provider queue, failed deliveries grouped by
their last error, and every route's shared provider health. Plain functions of a Connection,
each a bounded query: a page of operations by primary key, one GROUP BY over their
deliveries; the queue and the failures through ``ix_deliveries_due`` (state first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pushgo.protocol.bulk import is_direct_key
from pushgo.store.schema import channels, deliveries, operations, provider_health

#: The states a delivery can be in, each counted (zero when none).
STATES = ("queued", "scheduled", "sent", "failed", "expired", "cancelled")
#: The route whose deliveries wait in devices' inboxes, not in the provider queue.
PRIVATE = "private"


@dataclass(slots=True)
class OperationRow:
    """One op_id among the newest operations (its operations over several channels, or
    several direct token sets, counted together, as ``/deliveries/{op_id}`` counts them)."""

    op_id: str
    kind: str
    created_at: int
    sender: str
    channel_id: str | None
    channel_name: str | None
    deliver_at: int | None
    operations: int = 0
    states: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))

    @property
    def total(self) -> int:
        return sum(self.states.values())

    @property
    def done(self) -> bool:
        return self.states["queued"] + self.states["scheduled"] == 0

    def wire(self) -> dict[str, Any]:
        return {"op_id": self.op_id, "kind": self.kind, "created_at": self.created_at,
                "sender": self.sender, "channel_id": self.channel_id,
                "channel_name": self.channel_name, "deliver_at": self.deliver_at,
                "operations": self.operations, "total": self.total, "done": self.done,
                "states": dict(self.states)}


def recent_operations(conn: Connection, limit: int) -> list[OperationRow]:
    """The ``limit`` newest operations (by their primary key: the order they were accepted),
    merged by op_id, newest first."""
    o, c = operations, channels
    heads = conn.execute(
        sa.select(o.c.op_pk, o.c.op_id, o.c.entity_type, o.c.created_at, o.c.sender,
                  o.c.channel_id, o.c.deliver_at, c.c.channel_name)
        .select_from(o.outerjoin(c, c.c.channel_id == o.c.channel_id))
        .order_by(o.c.op_pk.desc()).limit(limit)).all()
    by_id: dict[str, OperationRow] = {}
    of_pk: dict[int, OperationRow] = {}
    for r in heads:
        direct = is_direct_key(r.channel_id)
        row = by_id.get(r.op_id)
        if row is None:
            row = by_id[r.op_id] = OperationRow(
                r.op_id, r.entity_type, int(r.created_at), r.sender,
                None if direct else r.channel_id, None if direct else r.channel_name,
                None if r.deliver_at is None else int(r.deliver_at))
        elif row.channel_id != r.channel_id:  # one op_id over several channels
            row.channel_id = row.channel_name = None
        row.operations += 1
        of_pk[int(r.op_pk)] = row
    if of_pk:
        d = deliveries
        counts = conn.execute(sa.select(d.c.op_pk, d.c.state, sa.func.count())
                              .where(d.c.op_pk.in_(list(of_pk)))
                              .group_by(d.c.op_pk, d.c.state)).all()
        for op_pk, state, n in counts:
            states = of_pk[int(op_pk)].states
            states[state] = states.get(state, 0) + int(n)
    return list(by_id.values())


def queue_depth(conn: Connection, now: int) -> tuple[int, int]:
    """(queued, due): provider deliveries waiting to go out, and those of them due now."""
    d = deliveries
    due = sa.func.sum(sa.case((d.c.next_attempt_at <= now, 1), else_=0))
    queued, due_now = conn.execute(sa.select(sa.func.count(), due).where(
        d.c.state == "queued", d.c.route != PRIVATE)).one()
    return int(queued or 0), int(due_now or 0)


def failures_since(conn: Connection, since: int, limit: int) -> list[tuple[str, str, int]]:
    """(route, last error, count) of the deliveries that failed since ``since`` (epoch ms),
    most frequent first."""
    d = deliveries
    n = sa.func.count().label("n")
    rows = conn.execute(sa.select(d.c.route, d.c.last_error, n)
                        .where(d.c.state == "failed", d.c.updated_at >= since)
                        .group_by(d.c.route, d.c.last_error)
                        .order_by(n.desc(), d.c.route, d.c.last_error).limit(limit)).all()
    return [(route, why or "unknown", int(count)) for route, why, count in rows]


def provider_health_rows(conn: Connection) -> list[dict[str, Any]]:
    """Every route's breaker state as the last process to change it wrote it."""
    h = provider_health
    return [{"route": r.route, "state": r.state, "last_error": r.last_error,
             "since": int(r.since), "updated_at": int(r.updated_at)}
            for r in conn.execute(sa.select(h).order_by(h.c.route))]
