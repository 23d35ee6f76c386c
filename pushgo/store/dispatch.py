"""The dispatcher's side of the outbox: claim due provider deliveries under a lease, and apply
send outcomes in batches. Plain functions of a Connection.

A claimed delivery has ``lease_until`` set and ``lease_owner`` naming the process identity
that claimed it; it is due again only when its lease runs out (the process holding it died),
when a result clears it, or when a process restarted under the same identity takes its own
claims back at start (``release_own_leases``). Backoff lives in ``next_attempt_at``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pushgo.protocol.fields import PLATFORMS
from pushgo.store import liveactivities as live_store
from pushgo.store.schema import api_keys, deliveries, devices, operations

CHUNK = 500


@dataclass(frozen=True, slots=True)
class Due:
    seq: int
    delivery_id: str
    route: str
    device_key: str
    platform: str
    token: str | None
    op_pk: int
    expires_at: int
    attempts: int
    #: ``liveactivity`` for an event's Live Activity push (``token`` is then the activity's
    #: or the push-to-start token); "" for the route's usual notification.
    push_type: str = ""
    #: The app whose credentials send it (a direct send's own, else its device's); None: the
    #: ``default`` app.
    app: str | None = None


@dataclass(frozen=True, slots=True)
class OpInfo:
    op_pk: int
    payload: str
    alert: str
    severity: str
    route: str = ""
    expires_at: int = 0


def _due(d: Any) -> list[sa.ColumnElement[bool]]:
    """``d``'s queued deliveries on the claimed routes that are due and not held."""
    return [d.c.state == "queued", d.c.route.in_(sa.bindparam("routes", expanding=True)),
            d.c.next_attempt_at <= sa.bindparam("now", type_=sa.BigInteger),
            sa.or_(d.c.lease_until.is_(None),
                   d.c.lease_until <= sa.bindparam("now", type_=sa.BigInteger))]


def _senders_query() -> sa.Select[Any]:
    """The senders with queued deliveries, their weights and how many of theirs are due
    (counted up to ``limit``). The senders come from a skip scan of ``ix_deliveries_sender_due``
    (one index seek a sender, however many deliveries each has queued), the counts from one
    bounded range of it each."""
    d = deliveries
    first = (sa.select(d.c.sender).where(d.c.state == "queued").order_by(d.c.sender).limit(1)
             .scalar_subquery())
    found = sa.select(first.label("sender")).cte("senders", recursive=True)
    after = d.alias("after")
    nxt = (sa.select(after.c.sender).where(after.c.state == "queued",
                                           after.c.sender > found.c.sender)
           .order_by(after.c.sender).limit(1).scalar_subquery())
    found = found.union_all(sa.select(nxt).where(found.c.sender.is_not(None)))
    mine = d.alias("mine")
    # In the index's order, so that it is read (not the table: most of a big backlog's
    # first rows may be leased, which a scan of the table would wade through).
    due_rows = (sa.select(mine.c.seq).where(mine.c.sender == found.c.sender, *_due(mine))
                .order_by(mine.c.route, mine.c.next_attempt_at)
                .limit(sa.bindparam("limit", type_=sa.Integer)).correlate(found).subquery())
    due = sa.select(sa.func.count()).select_from(due_rows).scalar_subquery()
    return sa.select(
        found.c.sender, sa.func.coalesce(api_keys.c.weight, 1).label("weight"),
        due.label("due"),
    ).select_from(found.outerjoin(api_keys, sa.and_(
        api_keys.c.key_id == found.c.sender, api_keys.c.revoked_at.is_(None),
    ))).where(found.c.sender.is_not(None))


def _claim_query(locking: bool) -> sa.Select[Any]:
    d = deliveries
    q = sa.select(
        d.c.seq, d.c.delivery_id, d.c.route, d.c.device_key, devices.c.platform,
        # A direct send carries its own token; a device's delivery uses the route's current one.
        sa.func.coalesce(d.c.provider_token, devices.c.provider_token).label("provider_token"),
        d.c.op_pk, d.c.expires_at, d.c.attempts, d.c.push_type,
        sa.func.coalesce(d.c.app, devices.c.app).label("app"), d.c.next_attempt_at,
    ).select_from(
        d.outerjoin(devices, devices.c.device_key == d.c.device_key)
    ).where(
        d.c.sender == sa.bindparam("sender", type_=sa.String),
        d.c.route == sa.bindparam("route", type_=sa.String), *_due(d),
    ).order_by(d.c.next_attempt_at, d.c.seq).limit(sa.bindparam("limit", type_=sa.Integer))
    if locking:
        q = q.with_for_update(of=d, skip_locked=True)
    return q


# Built once: the dispatcher claims after every burst of accepted operations, and building
# these statements cost more than running them (an empty claim is the common case).
_SENDERS = _senders_query()
_CLAIM = {False: _claim_query(False), True: _claim_query(True)}
_LEASE = deliveries.update().where(
    deliveries.c.seq.in_(sa.bindparam("seqs", expanding=True))
).values(lease_until=sa.bindparam("until", type_=sa.BigInteger),
         lease_owner=sa.bindparam("owner", type_=sa.String))


def fair_shares(due: dict[str, int], weights: dict[str, int], limit: int) -> dict[str, int]:
    """How many of ``limit`` deliveries each sender gets: shares in proportion to the weights
    of the senders with due work, at least one each, never more than a sender has due (what
    it leaves goes to the others in proportion again). With more senders than ``limit``, a
    random ``limit`` of them get one each: none waits for ever behind the others."""
    active = [s for s, n in due.items() if n > 0]
    if len(active) > limit:
        return dict.fromkeys(random.sample(active, limit), 1)
    given = dict.fromkeys(active, 0)
    left = limit
    while left > 0 and active:
        total = sum(max(1, weights.get(s, 1)) for s in active)
        round_left = left
        # The heaviest first: when what is left is less than one each, they have it.
        for sender in sorted(active, key=lambda s: (-weights.get(s, 1), s)):
            share = max(1, round_left * max(1, weights.get(sender, 1)) // total)
            take = min(share, due[sender] - given[sender], left)
            given[sender] += take
            left -= take
        active = [s for s in active if given[s] < due[s]]
    return {s: n for s, n in given.items() if n}


def claim_due(conn: Connection, routes: Sequence[str], now: int, limit: int,
              lease_ms: int, owner: str | None = None) -> list[Due]:
    """Claim up to ``limit`` due deliveries on ``routes`` for ``lease_ms``, leased to
    ``owner`` (the claiming process's identity), shared fairly among their senders: each
    sender with due work gets a share of ``limit`` in proportion to its key's weight
    (``api_keys.weight``; 1 for the root key and any key no longer live), at least one, and
    what a sender with less due work leaves goes to the others. Each sender's share is its
    oldest due deliveries. One statement for the senders, then one claim a sender."""
    if limit <= 0 or not routes:
        return []
    params: dict[str, Any] = {"routes": list(routes), "now": now, "limit": limit}
    found = conn.execute(_SENDERS, params).all()
    shares = fair_shares({r.sender: int(r.due) for r in found},
                         {r.sender: int(r.weight) for r in found}, limit)
    q = _CLAIM[conn.dialect.name == "postgresql"]
    ranked: list[tuple[float, int, Due]] = []
    for sender, share in shares.items():
        # One query a route: each reads ``ix_deliveries_sender_due`` in order and stops at
        # ``share`` rows (with the routes in one IN list, every due row of a big backlog
        # was read and sorted on each claim).
        mine = [r for route in routes
                for r in conn.execute(q, {**params, "sender": sender, "route": route,
                                          "limit": share})]
        if len(routes) > 1:
            mine.sort(key=lambda r: (r.next_attempt_at, r.seq))
        for i, r in enumerate(mine[:share]):
            # The page interleaves the senders by share: each one's first goes out first.
            ranked.append((i / share, r.seq, Due(
                r.seq, r.delivery_id, r.route, r.device_key, r.platform or "",
                r.provider_token, r.op_pk, r.expires_at, r.attempts, r.push_type or "", r.app)))
    ranked.sort(key=lambda t: t[:2])
    rows = [due for _, _, due in ranked]
    seqs = [r.seq for r in rows]
    for start in range(0, len(seqs), CHUNK):
        conn.execute(_LEASE, {"seqs": seqs[start:start + CHUNK], "until": now + lease_ms,
                              "owner": owner})
    return rows


def op_infos(conn: Connection, op_pks: Sequence[int]) -> dict[int, OpInfo]:
    out: dict[int, OpInfo] = {}
    pks = list(op_pks)
    for start in range(0, len(pks), CHUNK):
        rows = conn.execute(sa.select(
            operations.c.op_pk, operations.c.payload, operations.c.alert, operations.c.severity,
            operations.c.route, operations.c.expires_at,
        ).where(operations.c.op_pk.in_(pks[start:start + CHUNK])))
        for r in rows:
            out[r.op_pk] = OpInfo(r.op_pk, r.payload, r.alert, r.severity, r.route,
                                  r.expires_at)
    return out


def extend_leases(conn: Connection, seqs: Sequence[int], until: int) -> None:
    """Keep holding deliveries still waiting in a sender (a provider may be slow or down)."""
    ids = list(seqs)
    for start in range(0, len(ids), CHUNK):
        conn.execute(deliveries.update().where(
            deliveries.c.seq.in_(ids[start:start + CHUNK]), deliveries.c.state == "queued"
        ).values(lease_until=until))


def release_leases(conn: Connection) -> int:
    """At start of the only process: nothing is held by anyone."""
    return conn.execute(deliveries.update().where(deliveries.c.lease_until.is_not(None))
                        .values(lease_until=None)).rowcount


def release_own_leases(conn: Connection, owner: str) -> int:
    """At start of a process sharing the outbox: the queued deliveries still leased to
    ``owner`` were claimed by this identity's previous run, which is gone; they are due at
    once. Other owners' leases are left to run out."""
    d = deliveries
    return conn.execute(d.update().where(
        d.c.lease_owner == owner, d.c.lease_until.is_not(None), d.c.state == "queued",
    ).values(lease_until=None)).rowcount


@dataclass
class Outcomes:
    """One batch of results to write."""

    sent: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    retry: list[tuple[int, int, str]] = field(default_factory=list)  # seq, next_at, reason
    dead: list[tuple[int, str, str, str]] = field(default_factory=list)  # seq, key, token, why
    #: Given back unsent (the provider's breaker is open): due again at next_at, no attempt
    #: spent; the reason is why the provider is unavailable.
    deferred: list[tuple[int, int, str]] = field(default_factory=list)  # seq, next_at, reason
    #: A dead Live Activity token: that token alone is retired, not the device's route.
    dead_live: list[tuple[int, str, str, str]] = field(default_factory=list)  # as ``dead``

    def __len__(self) -> int:
        return (len(self.sent) + len(self.expired) + len(self.failed) + len(self.retry)
                + len(self.dead) + len(self.deferred) + len(self.dead_live))


def apply_outcomes(conn: Connection, out: Outcomes, now: int) -> None:
    d = deliveries
    for start in range(0, len(out.sent), CHUNK):
        conn.execute(d.update().where(d.c.seq.in_(out.sent[start:start + CHUNK])).values(
            state="sent", attempts=d.c.attempts + 1, lease_until=None, last_error=None,
            updated_at=now))
    for start in range(0, len(out.expired), CHUNK):
        conn.execute(d.update().where(d.c.seq.in_(out.expired[start:start + CHUNK])).values(
            state="expired", lease_until=None, last_error="expired", updated_at=now))
    if out.failed:
        conn.execute(d.update().where(d.c.seq == sa.bindparam("s")).values(
            state="failed", attempts=d.c.attempts + 1, lease_until=None,
            last_error=sa.bindparam("r"), updated_at=now),
            [{"s": seq, "r": reason[:255]} for seq, reason in out.failed])
    if out.retry:
        conn.execute(d.update().where(d.c.seq == sa.bindparam("s")).values(
            attempts=d.c.attempts + 1, lease_until=None, next_attempt_at=sa.bindparam("n"),
            last_error=sa.bindparam("r"), updated_at=now),
            [{"s": seq, "n": at, "r": reason[:255]} for seq, at, reason in out.retry])
    if out.deferred:
        conn.execute(d.update().where(d.c.seq == sa.bindparam("s"), d.c.state == "queued").values(
            lease_until=None, next_attempt_at=sa.bindparam("n"), last_error=sa.bindparam("r"),
            updated_at=now),
            [{"s": seq, "n": at, "r": reason[:255]} for seq, at, reason in out.deferred])
    for seq, device_key, token, reason in out.dead_live:
        live_store.retire_token(conn, device_key, token)
        conn.execute(d.update().where(d.c.seq == seq).values(
            state="failed", attempts=d.c.attempts + 1, lease_until=None,
            last_error=reason[:255], updated_at=now))
    for seq, device_key, token, reason in out.dead:
        if device_key == DIRECT_DEVICE:
            _dead_direct(conn, seq, token, reason, now)
            continue
        # The token is dead: the device route loses it (if it still holds it) and no pending
        # provider work for this device goes out on it.
        conn.execute(devices.update().where(
            devices.c.device_key == device_key, devices.c.provider_token == token
        ).values(provider_token=None, updated_at=now))
        conn.execute(d.update().where(
            d.c.device_key == device_key, d.c.state == "queued", d.c.route != "private",
            # A Live Activity push goes to its own token: the device's death is not its.
            sa.or_(d.c.seq == seq, sa.and_(d.c.lease_until.is_(None), d.c.push_type.is_(None))),
        ).values(state="failed", lease_until=None, last_error=reason[:255], updated_at=now))
        conn.execute(d.update().where(d.c.seq == seq).values(attempts=d.c.attempts + 1))


#: ``deliveries.device_key`` of a direct send (never a device key: those are 32 hex digits).
DIRECT_DEVICE = "direct"
_PLATFORMS = tuple(sorted(set(PLATFORMS.values())))


def _dead_direct(conn: Connection, seq: int, token: str, reason: str, now: int) -> None:
    """A direct send's token is dead: that delivery fails with the provider's reason, and a
    registered device holding the same token loses it (the provider said it is gone)."""
    d = deliveries
    conn.execute(d.update().where(d.c.seq == seq).values(
        state="failed", attempts=d.c.attempts + 1, lease_until=None, last_error=reason[:255],
        updated_at=now))
    conn.execute(devices.update().where(
        devices.c.platform.in_(_PLATFORMS), devices.c.provider_token == token
    ).values(provider_token=None, updated_at=now))
