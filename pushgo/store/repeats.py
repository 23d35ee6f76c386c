"""Sends repeated until acknowledged: the ``repeats`` table (one receipt per operation), its
rounds and its acknowledgements. Plain functions of a Connection.

A round is a fan-out of the operation again to the channel's subscribed provider devices
(APNs, FCM, WNS): new deliveries the outbox pump sends as any other. Private devices are not
sent a round: the first delivery stays in their inbox (stream, warp-link, pull) until they
acknowledge it, and that acknowledgement stops the repeats. Rounds are taken with ``FOR
UPDATE SKIP LOCKED`` on PostgreSQL inside the transaction that writes them, so one process
makes each round however many share the outbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pushgo.store.outbox import fan_out_statement
from pushgo.store.schema import deliveries, devices, repeats

#: Why a repeat stopped.
ACKED = "acked"
EVENT_CLOSED = "event_closed"
MAX_REACHED = "max_reached"
EXPIRED = "expired"
CANCELLED = "cancelled"
STOP_REASONS = (ACKED, EVENT_CLOSED, MAX_REACHED, EXPIRED, CANCELLED)


@dataclass(frozen=True, slots=True)
class Receipt:
    op_pk: int
    channel_id: str
    op_id: str
    entity_type: str
    entity_id: str
    every_ms: int
    max_sends: int
    sends: int
    next_at: int | None
    expires_at: int
    acked_by: str | None
    acked_at: int | None
    acked_via: str | None
    stopped: str | None
    stopped_at: int | None
    created_at: int


@dataclass(frozen=True, slots=True)
class Rounds:
    """What one pass over the due repeats did."""

    made: int  # rounds fanned out
    stopped: int  # repeats that ended instead (expired)
    channels: tuple[str, ...]  # channels with new deliveries (their listeners are told)
    more: bool  # the page was full: more may be due now


_COLUMNS = [repeats.c[name] for name in Receipt.__slots__]

#: A round goes to the channel's provider devices only, not into any inbox again.
_ROUND = fan_out_statement(inbox=False, devices_where=sa.and_(
    devices.c.channel_type != "private", devices.c.provider_token.is_not(None)))


def insert(conn: Connection, *, op_pk: int, channel_id: str, op_id: str, entity_type: str,
           entity_id: str, every_s: int, max_sends: int, now: int, expires_at: int,
           first_at: int | None = None) -> None:
    """The receipt of an operation just fanned out (its first send, at ``first_at`` for a
    scheduled send: the rounds follow it)."""
    last = max_sends <= 1
    first = now if first_at is None else first_at
    conn.execute(repeats.insert().values(
        op_pk=op_pk, channel_id=channel_id, op_id=op_id, entity_type=entity_type,
        entity_id=entity_id, every_ms=every_s * 1000, max_sends=max_sends, sends=1,
        next_at=None if last else min(first + every_s * 1000, expires_at), expires_at=expires_at,
        stopped=MAX_REACHED if last else None, stopped_at=now if last else None,
        created_at=now, updated_at=now))


def _stop(conn: Connection, where: Any, reason: str, now: int) -> int:
    return int(conn.execute(repeats.update().where(where, repeats.c.stopped.is_(None)).values(
        stopped=reason, stopped_at=now, next_at=None, updated_at=now)).rowcount)


def stop_event(conn: Connection, channel_id: str, event_id: str, now: int) -> int:
    """The event closed: its repeating sends stop."""
    return _stop(conn, sa.and_(repeats.c.channel_id == channel_id,
                               repeats.c.entity_id == event_id,
                               repeats.c.entity_type == "event"), EVENT_CLOSED, now)


def stop_ops(conn: Connection, op_pks: Sequence[int], reason: str, now: int) -> int:
    """The repeating sends of these operations stop (a cancel)."""
    return _stop(conn, repeats.c.op_pk.in_(list(op_pks)), reason, now)


def stop(conn: Connection, op_id: str, reason: str, now: int,
         channel_id: str | None = None) -> int:
    """Stop the repeats of ``op_id`` (in ``channel_id`` when given); how many were running."""
    where = repeats.c.op_id == op_id
    if channel_id is not None:
        where = sa.and_(where, repeats.c.channel_id == channel_id)
    return _stop(conn, where, reason, now)


def _due_query(locking: bool) -> sa.Select[Any]:
    q = sa.select(*_COLUMNS).where(
        repeats.c.next_at <= sa.bindparam("now", type_=sa.BigInteger),
        repeats.c.stopped.is_(None),
    ).order_by(repeats.c.next_at).limit(sa.bindparam("limit", type_=sa.Integer))
    if locking:
        q = q.with_for_update(skip_locked=True)
    return q


_DUE = {False: _due_query(False), True: _due_query(True)}


def run_due(conn: Connection, now: int, limit: int) -> Rounds:
    """Make the rounds due at ``now`` (at most ``limit``): fan each out again, or end it when
    its TTL is over; one ending at its last send stops as max_reached."""
    rows = [Receipt(*r) for r in conn.execute(
        _DUE[conn.dialect.name == "postgresql"], {"now": now, "limit": limit})]
    made = ended = 0
    channels: set[str] = set()
    for r in rows:
        if now >= r.expires_at:
            ended += _stop(conn, repeats.c.op_pk == r.op_pk, EXPIRED, now)
            continue
        count = conn.execute(_ROUND, {"op_pk": r.op_pk, "channel_id": r.channel_id, "now": now,
                                      "expires_at": r.expires_at}).rowcount
        if count:
            channels.add(r.channel_id)
        sends = r.sends + 1
        last = sends >= r.max_sends
        conn.execute(repeats.update().where(repeats.c.op_pk == r.op_pk).values(
            sends=sends, updated_at=now,
            next_at=None if last else min(now + r.every_ms, r.expires_at),
            stopped=MAX_REACHED if last else None, stopped_at=now if last else None))
        made += 1
    return Rounds(made, ended, tuple(sorted(channels)), len(rows) >= limit)


def next_due(conn: Connection) -> int | None:
    """When the earliest running repeat is due, None when none runs."""
    value = conn.execute(sa.select(sa.func.min(repeats.c.next_at))
                         .where(repeats.c.stopped.is_(None))).scalar()
    return None if value is None else int(value)


def acknowledge(conn: Connection, device_key: str, delivery_ids: Sequence[str], via: str,
                now: int) -> int:
    """The device acknowledged these deliveries: the repeats of their operations record it
    (the first acknowledgement only) and stop. How many receipts took it."""
    ops = sa.select(deliveries.c.op_pk).where(
        deliveries.c.device_key == device_key,
        deliveries.c.delivery_id.in_(list(delivery_ids)))
    return _acknowledge(conn, repeats.c.op_pk.in_(ops.scalar_subquery()), device_key, via, now)


def repeating(conn: Connection, op_pks: Sequence[int]) -> set[int]:
    """Which of these operations repeat until acknowledged and are not yet."""
    pks = sorted(set(op_pks))
    out: set[int] = set()
    for start in range(0, len(pks), 500):
        out.update(int(pk) for pk in conn.execute(sa.select(repeats.c.op_pk).where(
            repeats.c.op_pk.in_(pks[start:start + 500]), repeats.c.acked_at.is_(None)
        )).scalars())
    return out


def _acknowledge(conn: Connection, where: Any, device_key: str, via: str, now: int) -> int:
    r = repeats.c
    return int(conn.execute(repeats.update().where(where, r.acked_at.is_(None)).values(
        acked_by=device_key, acked_at=now, acked_via=via[:32], updated_at=now,
        next_at=None,
        stopped=sa.func.coalesce(r.stopped, ACKED),
        stopped_at=sa.func.coalesce(r.stopped_at, now),
    )).rowcount)


def acknowledge_op(conn: Connection, device_key: str, op_id: str, delivery_id: str | None,
                   via: str, now: int) -> tuple[int, list[Receipt]] | None:
    """A device acknowledges ``op_id`` (``POST /receipts/ack``): only a repeating operation
    that was delivered to it (its ``delivery_id`` when given). None when there is none; else
    how many receipts this acknowledgement was the first of, and the receipts after it."""
    d = deliveries
    q = sa.select(d.c.op_pk).join(repeats, repeats.c.op_pk == d.c.op_pk).where(
        d.c.device_key == device_key, repeats.c.op_id == op_id)
    if delivery_id is not None:
        q = q.where(d.c.delivery_id == delivery_id)
    pks = sorted({int(pk) for pk in conn.execute(q.distinct()).scalars()})
    if not pks:
        return None
    first = _acknowledge(conn, repeats.c.op_pk.in_(pks), device_key, via, now)
    return first, _receipts(conn, repeats.c.op_pk.in_(pks))


def _receipts(conn: Connection, where: Any) -> list[Receipt]:
    return [Receipt(*r) for r in conn.execute(
        sa.select(*_COLUMNS).where(where).order_by(repeats.c.op_pk))]


def receipts(conn: Connection, op_id: str,
             channel_ids: Sequence[str] | None = None) -> list[Receipt]:
    """The receipts of ``op_id`` (one per channel that used it), in ``channel_ids`` if given."""
    where = repeats.c.op_id == op_id
    if channel_ids is not None:
        where = sa.and_(where, repeats.c.channel_id.in_(list(channel_ids)))
    return _receipts(conn, where)
