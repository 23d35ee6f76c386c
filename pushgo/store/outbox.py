"""The outbox: operations (op_id registry + shared payload) and their deliveries, the device
inbox behind the private stream and /messages/pull. Plain functions of a Connection.

Fan-out is one INSERT … SELECT over the channel's subscribers: no row crosses into Python, so a
channel of a million devices costs one statement, not a million round-trips.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pushgo.store.schema import deliveries, devices, operations, random_hex_id, subscriptions


@dataclass(frozen=True)
class InboxItem:
    seq: int
    delivery_id: str
    payload_json: str


def find_operation(conn: Connection, channel_id: str, op_id: str) -> Any:
    return conn.execute(sa.select(
        operations.c.op_pk, operations.c.route, operations.c.entity_id, operations.c.thing_id,
        operations.c.fingerprint, operations.c.recipients,
    ).where(operations.c.channel_id == channel_id, operations.c.op_id == op_id)).first()


def insert_operation(conn: Connection, **values: Any) -> int:
    result = conn.execute(operations.insert().values(**values).returning(operations.c.op_pk))
    return int(result.scalar_one())


def fan_out(conn: Connection, op_pk: int, channel_id: str, now: int, expires_at: int) -> int:
    """One delivery per subscribed device that has a usable route; returns how many."""
    src = sa.select(
        random_hex_id(), sa.literal(op_pk, sa.BigInteger), sa.literal(channel_id),
        devices.c.device_key, devices.c.channel_type, sa.literal("queued"), sa.true(),
        sa.literal(0), sa.literal(now, sa.BigInteger), sa.literal(now, sa.BigInteger),
        sa.literal(now, sa.BigInteger), sa.literal(expires_at, sa.BigInteger),
    ).select_from(
        subscriptions.join(devices, devices.c.device_key == subscriptions.c.device_key)
    ).where(
        subscriptions.c.channel_id == channel_id,
        sa.or_(devices.c.channel_type == "private", devices.c.provider_token.is_not(None)),
    )
    stmt = deliveries.insert().from_select(
        ["delivery_id", "op_pk", "channel_id", "device_key", "route", "state", "inbox",
         "attempts", "next_attempt_at", "created_at", "updated_at", "expires_at"], src)
    # preserve_rowcount: an INSERT … SELECT's rowcount is otherwise lost (-1) on psycopg.
    count = conn.execute(stmt.execution_options(preserve_rowcount=True)).rowcount
    conn.execute(operations.update().where(operations.c.op_pk == op_pk)
                 .values(recipients=count))
    return count


def _inbox_select(now: int) -> sa.Select[Any]:
    return sa.select(deliveries.c.seq, deliveries.c.delivery_id, operations.c.payload).select_from(
        deliveries.join(operations, operations.c.op_pk == deliveries.c.op_pk)
    ).where(deliveries.c.inbox.is_(True), deliveries.c.expires_at > now)


def inbox_page(conn: Connection, device_key: str, after_seq: int, now: int,
               limit: int) -> list[InboxItem]:
    rows = conn.execute(_inbox_select(now).where(
        deliveries.c.device_key == device_key, deliveries.c.seq > after_seq
    ).order_by(deliveries.c.seq).limit(limit))
    return [InboxItem(r.seq, r.delivery_id, r.payload) for r in rows]


def seq_of(conn: Connection, device_key: str, delivery_id: str) -> int | None:
    return conn.execute(sa.select(deliveries.c.seq).where(
        deliveries.c.device_key == device_key, deliveries.c.delivery_id == delivery_id
    )).scalar()


def _take(conn: Connection, device_key: str, seqs: list[int], now: int) -> None:
    """The device has the payload: it leaves the inbox; a private delivery is now sent."""
    for start in range(0, len(seqs), 500):
        chunk = seqs[start:start + 500]
        conn.execute(deliveries.update().where(deliveries.c.seq.in_(chunk))
                     .values(inbox=False, updated_at=now))
        conn.execute(deliveries.update().where(
            deliveries.c.seq.in_(chunk), deliveries.c.route == "private",
            deliveries.c.state == "queued",
        ).values(state="sent", attempts=deliveries.c.attempts + 1, updated_at=now))


def pull(conn: Connection, device_key: str, delivery_id: str | None, now: int,
         limit: int) -> list[InboxItem]:
    q = _inbox_select(now).where(deliveries.c.device_key == device_key)
    if delivery_id is not None:
        q = q.where(deliveries.c.delivery_id == delivery_id)
    rows = conn.execute(q.order_by(deliveries.c.seq).limit(limit)).all()
    items = [InboxItem(r.seq, r.delivery_id, r.payload) for r in rows]
    _take(conn, device_key, [i.seq for i in items], now)
    return items


def ack(conn: Connection, device_key: str, delivery_id: str, now: int) -> bool:
    seq = conn.execute(sa.select(deliveries.c.seq).where(
        deliveries.c.device_key == device_key, deliveries.c.delivery_id == delivery_id,
        deliveries.c.inbox.is_(True),
    )).scalar()
    if seq is None:
        return False
    _take(conn, device_key, [seq], now)
    return True


def expire(conn: Connection, now: int) -> int:
    """Deliveries past their TTL end as expired and leave the inbox."""
    n = conn.execute(deliveries.update().where(
        deliveries.c.state == "queued", deliveries.c.expires_at <= now
    ).values(state="expired", inbox=False, updated_at=now)).rowcount
    conn.execute(deliveries.update().where(
        deliveries.c.inbox.is_(True), deliveries.c.expires_at <= now
    ).values(inbox=False, updated_at=now))
    return n


def private_recipients(conn: Connection, op_pk: int, device_keys: list[str]) -> list[str]:
    """Which of these (connected) devices got a delivery of this operation."""
    out: list[str] = []
    for start in range(0, len(device_keys), 500):
        chunk = device_keys[start:start + 500]
        rows = conn.execute(sa.select(deliveries.c.device_key).where(
            deliveries.c.op_pk == op_pk, deliveries.c.device_key.in_(chunk)))
        out.extend(r[0] for r in rows)
    return out
