"""Scheduled sends and cancellation: plain functions of a Connection.

A scheduled operation (``operations.deliver_at``) is fanned out like any other, but its
deliveries wait as ``scheduled``: out of every inbox, never claimed by the dispatcher, their
``next_attempt_at`` the time they become due. At that time ``release_due`` moves them into the
outbox as ``queued`` rows with new sequence numbers (same delivery ids): a private stream or
warp-link session reads its inbox after the last sequence it sent, so a delivery released
with its old, lower sequence would be passed over.

Release and cancellation lock the operation row first (PostgreSQL), then its deliveries, in
that order, so a cancel and a release of one operation never both win and never deadlock;
processes sharing the outbox skip the operations another one is releasing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pushgo.store import repeats as repeat_store
from pushgo.store.dispatch import DIRECT_DEVICE
from pushgo.store.schema import deliveries, operations

#: Operations and deliveries released per transaction at most (a large fan-out is released
#: over several, each after the one before).
RELEASE_OPS = 50
RELEASE_ROWS = 5000
CHUNK = 500


def schedule(conn: Connection, op_pk: int, deliver_at: int) -> None:
    """The deliveries just written for ``op_pk`` wait until ``deliver_at``."""
    conn.execute(deliveries.update().where(deliveries.c.op_pk == op_pk).values(
        state="scheduled", inbox=False, next_attempt_at=deliver_at))


def next_due(conn: Connection) -> int | None:
    """When the earliest scheduled delivery becomes due (epoch ms), or None."""
    value = conn.execute(sa.select(sa.func.min(deliveries.c.next_attempt_at))
                         .where(deliveries.c.state == "scheduled")).scalar()
    return None if value is None else int(value)


def release_due(conn: Connection, now: int, max_ops: int = RELEASE_OPS,
                max_rows: int = RELEASE_ROWS) -> list[str]:
    """Scheduled deliveries due by ``now`` become queued (new sequence numbers, in their old
    order; in the inbox unless direct), up to ``max_rows`` of up to ``max_ops`` operations.
    Returns the channel ids released; empty when nothing (more) is due."""
    d = deliveries
    pks = list(conn.execute(
        sa.select(d.c.op_pk).where(d.c.state == "scheduled", d.c.next_attempt_at <= now)
        .group_by(d.c.op_pk).order_by(sa.func.min(d.c.next_attempt_at)).limit(max_ops)
    ).scalars())
    if not pks:
        return []
    lock = sa.select(operations.c.op_pk, operations.c.channel_id).where(
        operations.c.op_pk.in_(pks))
    if conn.dialect.name == "postgresql":
        lock = lock.with_for_update(skip_locked=True)
    held = {int(pk): str(cid) for pk, cid in conn.execute(lock)}
    if not held:
        return []
    rows = [dict(r) for r in conn.execute(
        sa.select(d).where(d.c.op_pk.in_(list(held)), d.c.state == "scheduled",
                           d.c.next_attempt_at <= now).order_by(d.c.seq).limit(max_rows)
    ).mappings()]
    if not rows:
        return []
    seqs = [r.pop("seq") for r in rows]
    for start in range(0, len(seqs), CHUNK):
        conn.execute(d.delete().where(d.c.seq.in_(seqs[start:start + CHUNK])))
    for r in rows:
        r.update(state="queued", inbox=r["device_key"] != DIRECT_DEVICE, lease_until=None,
                 lease_owner=None, updated_at=now)
    for start in range(0, len(rows), CHUNK):
        conn.execute(d.insert(), rows[start:start + CHUNK])
    return sorted({held[int(r["op_pk"])] for r in rows})


@dataclass
class Cancelled:
    """What a cancel did: ``cancelled`` deliveries now; ``states`` counts every delivery of
    the matched operations afterwards; ``repeats_stopped`` repeating sends that will make no
    more rounds."""

    cancelled: int
    channels: list[str]
    states: dict[str, int] = field(default_factory=dict)
    repeats_stopped: int = 0


def cancel(conn: Connection, op_id: str, channel_ids: Sequence[str] | None, now: int
           ) -> Cancelled | None:
    """Cancel every delivery of the operations named ``op_id`` (on ``channel_ids`` when
    given) that has not gone out: scheduled, or queued and not held by a dispatcher (one
    handed to a provider is no longer ours to stop). None when no operation matches."""
    o, d = operations, deliveries
    q = sa.select(o.c.op_pk, o.c.channel_id).where(o.c.op_id == op_id).order_by(o.c.op_pk)
    if channel_ids is not None:
        q = q.where(o.c.channel_id.in_(list(channel_ids)))
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    ops = {int(pk): str(cid) for pk, cid in conn.execute(q)}
    if not ops:
        return None
    pks = sorted(ops)
    cancelled = 0
    touched: set[int] = set()
    for start in range(0, len(pks), CHUNK):
        chunk = pks[start:start + CHUNK]
        result = conn.execute(d.update().where(
            d.c.op_pk.in_(chunk),
            sa.or_(d.c.state == "scheduled",
                   sa.and_(d.c.state == "queued",
                           sa.or_(d.c.lease_until.is_(None), d.c.lease_until <= now))),
        ).values(state="cancelled", inbox=False, lease_until=None, lease_owner=None,
                 last_error=None, updated_at=now).returning(d.c.op_pk))
        for pk in result.scalars():
            cancelled += 1
            touched.add(int(pk))
    stopped = 0
    for start in range(0, len(pks), CHUNK):  # and no more rounds of a repeating send
        stopped += repeat_store.stop_ops(conn, pks[start:start + CHUNK], repeat_store.CANCELLED,
                                         now)
    states: dict[str, int] = {}
    for start in range(0, len(pks), CHUNK):
        for state, n in conn.execute(sa.select(d.c.state, sa.func.count()).where(
                d.c.op_pk.in_(pks[start:start + CHUNK])).group_by(d.c.state)):
            states[str(state)] = states.get(str(state), 0) + int(n)
    channels = sorted({ops[pk] for pk in touched} | ({*ops.values()} if stopped else set()))
    return Cancelled(cancelled, channels, states, stopped)
