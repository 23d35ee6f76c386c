"""The outbox: operations (op_id registry + shared payload) and their deliveries, the device
inbox behind the private stream and /messages/pull. Plain functions of a Connection.

Fan-out is one INSERT … SELECT over the channel's subscribers: no row crosses into Python, so a
channel of a million devices costs one statement, not a million round-trips.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pushgo.store.prepared import Prepared
from pushgo.store.schema import deliveries, devices, operations, random_hex_id, subscriptions


@dataclass(frozen=True)
class InboxItem:
    seq: int
    delivery_id: str
    payload_json: str


# Every send runs these: built once with bind parameters, so a call costs an execution, not
# a statement construction and cache-key walk (most of a send's time when they were built
# per call; the bulk path writes thousands a second).
_FIND_OPERATION = sa.select(
    operations.c.op_pk, operations.c.route, operations.c.entity_id, operations.c.thing_id,
    operations.c.fingerprint, operations.c.recipients,
).where(operations.c.channel_id == sa.bindparam("channel_id"),
        operations.c.op_id == sa.bindparam("op_id"))
_INSERT_OPERATION = operations.insert().returning(operations.c.op_pk)


def fan_out_statement(*, inbox: bool, devices_where: sa.ColumnElement[bool]) -> sa.Insert:
    """One `queued` delivery of an operation (bind parameters op_pk, channel_id, now,
    expires_at) per device subscribed to the channel that `devices_where` admits; `inbox`
    whether they are in the devices' inboxes. Sends and repeat rounds build theirs with it.
    Each carries its operation's sender (read once: the subquery is not correlated)."""
    sender = sa.select(operations.c.sender).where(
        operations.c.op_pk == sa.bindparam("op_pk", type_=sa.BigInteger)).scalar_subquery()
    return deliveries.insert().from_select(
        ["delivery_id", "op_pk", "channel_id", "device_key", "route", "state", "inbox",
         "attempts", "next_attempt_at", "created_at", "updated_at", "expires_at", "sender"],
        sa.select(
            random_hex_id(), sa.bindparam("op_pk", type_=sa.BigInteger),
            sa.bindparam("channel_id", type_=sa.String), devices.c.device_key,
            devices.c.channel_type, sa.literal("queued"), sa.true() if inbox else sa.false(),
            sa.literal(0),
            sa.bindparam("now", type_=sa.BigInteger), sa.bindparam("now", type_=sa.BigInteger),
            sa.bindparam("now", type_=sa.BigInteger),
            sa.bindparam("expires_at", type_=sa.BigInteger), sender,
        ).select_from(
            subscriptions.join(devices, devices.c.device_key == subscriptions.c.device_key)
        ).where(
            subscriptions.c.channel_id == sa.bindparam("channel_id", type_=sa.String),
            devices_where,
        ),
    ).execution_options(preserve_rowcount=True)  # psycopg loses an INSERT … SELECT's rowcount


_FAN_OUT = fan_out_statement(inbox=True, devices_where=sa.or_(
    devices.c.channel_type == "private", devices.c.provider_token.is_not(None)))
_SET_RECIPIENTS = operations.update().where(
    operations.c.op_pk == sa.bindparam("pk")).values(recipients=sa.bindparam("recipients"))


# ... and run them on the driver itself (pushgo.store.prepared: SQLAlchemy's per-execution
# work cost several times SQLite's for these small statements).
_RUN_FIND_OPERATION = Prepared(_FIND_OPERATION)
_RUN_INSERT_OPERATION = Prepared(_INSERT_OPERATION, insert=True)
_RUN_FAN_OUT = Prepared(_FAN_OUT)
_RUN_SET_RECIPIENTS = Prepared(_SET_RECIPIENTS)


@dataclass(frozen=True, slots=True)
class SeenOperation:
    op_pk: int
    route: str
    entity_id: str
    thing_id: str | None
    fingerprint: str
    recipients: int


def find_operation(conn: Connection, channel_id: str, op_id: str) -> SeenOperation | None:
    row = _RUN_FIND_OPERATION.first(conn, {"channel_id": channel_id, "op_id": op_id})
    return SeenOperation(*row) if row is not None else None


def insert_operation(conn: Connection, **values: Any) -> int:
    return int(_RUN_INSERT_OPERATION.one(conn, values)[0])


def fan_out(conn: Connection, op_pk: int, channel_id: str, now: int, expires_at: int) -> int:
    """One delivery per subscribed device that has a usable route; returns how many."""
    count = _RUN_FAN_OUT.rowcount(conn, {"op_pk": op_pk, "channel_id": channel_id, "now": now,
                                         "expires_at": expires_at})
    _RUN_SET_RECIPIENTS.rowcount(conn, {"pk": op_pk, "recipients": count})
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


def _pages_statement(want_sql: str) -> Prepared:
    """``inbox_pages``'s query with the wanted (device_key, after_seq, lim) rows given as one
    JSON parameter: the statement is the same text for any batch, so it is compiled once (a
    VALUES list of 256 rows was compiled on every call: two thirds of the store's time when a
    message woke thousands of connected devices)."""
    want = sa.text(want_sql).columns(
        sa.column("device_key", sa.String), sa.column("after_seq", sa.BigInteger),
        sa.column("lim", sa.Integer)).cte("want")
    rank = sa.func.row_number().over(partition_by=deliveries.c.device_key,
                                     order_by=deliveries.c.seq).label("rank")
    ranked = sa.select(deliveries.c.device_key, deliveries.c.seq, deliveries.c.delivery_id,
                       operations.c.payload, rank, want.c.lim).select_from(
        want.join(deliveries, sa.and_(deliveries.c.device_key == want.c.device_key,
                                      deliveries.c.seq > want.c.after_seq))
        .join(operations, operations.c.op_pk == deliveries.c.op_pk)
    ).where(deliveries.c.inbox.is_(True),
            deliveries.c.expires_at > sa.bindparam("now", type_=sa.BigInteger)).subquery()
    return Prepared(sa.select(ranked.c.device_key, ranked.c.seq, ranked.c.delivery_id,
                              ranked.c.payload)
                    .where(ranked.c.rank <= ranked.c.lim)
                    .order_by(ranked.c.device_key, ranked.c.seq))


_INBOX_PAGES = {
    "sqlite": _pages_statement(
        "SELECT json_extract(value, '$[0]') AS device_key, json_extract(value, '$[1]') AS "
        "after_seq, json_extract(value, '$[2]') AS lim FROM json_each(:wants)"),
    "postgresql": _pages_statement(
        "SELECT w.value ->> 0 AS device_key, (w.value ->> 1)::bigint AS after_seq, "
        "(w.value ->> 2)::integer AS lim FROM jsonb_array_elements(CAST(:wants AS jsonb)) AS w"),
}


def inbox_pages(conn: Connection, wants: list[tuple[str, int, int]],
                now: int) -> dict[str, list[InboxItem]]:
    """``inbox_page`` of several devices in one query: for each (device_key, after_seq,
    limit), up to ``limit`` of its waiting items after ``after_seq``, oldest first."""
    pages: dict[str, list[InboxItem]] = {}
    if not wants:
        return pages
    rows = _INBOX_PAGES[conn.dialect.name].all(conn, {
        "wants": json.dumps([[key, int(after), int(limit)] for key, after, limit in wants]),
        "now": now})
    for key, seq, delivery_id, payload in rows:
        pages.setdefault(key, []).append(InboxItem(int(seq), delivery_id, payload))
    return pages


def seq_of(conn: Connection, device_key: str, delivery_id: str) -> int | None:
    return conn.execute(sa.select(deliveries.c.seq).where(
        deliveries.c.device_key == device_key, deliveries.c.delivery_id == delivery_id
    )).scalar()


def _take(conn: Connection, seqs: list[int], now: int) -> None:
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
    _take(conn, [i.seq for i in items], now)
    return items


def ack(conn: Connection, device_key: str, delivery_id: str, now: int) -> bool:
    seq = conn.execute(sa.select(deliveries.c.seq).where(
        deliveries.c.device_key == device_key, deliveries.c.delivery_id == delivery_id,
        deliveries.c.inbox.is_(True),
    )).scalar()
    if seq is None:
        return False
    _take(conn, [seq], now)
    return True


def ack_pairs(conn: Connection, pairs: Sequence[tuple[str, str]],
              now: int) -> dict[tuple[str, str], int]:
    """Several devices' acknowledgements at once: each (device_key, delivery_id) still in
    that device's inbox leaves it. The pairs that did, with their operation (op_pk)."""
    by_id: dict[str, set[str]] = {}
    for key, delivery_id in pairs:
        by_id.setdefault(delivery_id, set()).add(key)
    ids = list(by_id)
    found: dict[tuple[str, str], tuple[int, int]] = {}
    for start in range(0, len(ids), 500):
        for seq, key, delivery_id, op_pk in conn.execute(sa.select(
                deliveries.c.seq, deliveries.c.device_key, deliveries.c.delivery_id,
                deliveries.c.op_pk).where(
                deliveries.c.delivery_id.in_(ids[start:start + 500]),
                deliveries.c.inbox.is_(True))):
            if key in by_id[delivery_id]:  # a device acknowledges only its own
                found[(key, delivery_id)] = (int(seq), int(op_pk))
    _take(conn, [seq for seq, _ in found.values()], now)
    return {pair: op_pk for pair, (_, op_pk) in found.items()}


def peek(conn: Connection, device_key: str, delivery_id: str | None, now: int,
         limit: int) -> tuple[list[InboxItem], bool]:
    """Up to ``limit`` waiting items, oldest first, left in the inbox (``/v2/messages/pull``),
    and whether more wait behind them."""
    q = _inbox_select(now).where(deliveries.c.device_key == device_key)
    if delivery_id is not None:
        q = q.where(deliveries.c.delivery_id == delivery_id)
    rows = conn.execute(q.order_by(deliveries.c.seq).limit(limit + 1)).all()
    return [InboxItem(r.seq, r.delivery_id, r.payload) for r in rows[:limit]], len(rows) > limit


def ack_many(conn: Connection, device_key: str, delivery_ids: list[str], now: int) -> int:
    """Take these of the device's deliveries out of its inbox; how many were still in it."""
    seqs = list(conn.execute(sa.select(deliveries.c.seq).where(
        deliveries.c.device_key == device_key, deliveries.c.delivery_id.in_(delivery_ids),
        deliveries.c.inbox.is_(True),
    )).scalars())
    _take(conn, seqs, now)
    return len(seqs)


def expire(conn: Connection, now: int) -> int:
    """Deliveries past their TTL end as expired and leave the inbox."""
    n = conn.execute(deliveries.update().where(
        deliveries.c.state == "queued", deliveries.c.expires_at <= now
    ).values(state="expired", inbox=False, updated_at=now)).rowcount
    conn.execute(deliveries.update().where(
        deliveries.c.inbox.is_(True), deliveries.c.expires_at <= now
    ).values(inbox=False, updated_at=now))
    return n


