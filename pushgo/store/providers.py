"""Provider health shared through the outbox: each route's breaker state as the last process to
change it saw it (``provider_health``), making a route's waiting deliveries due at once when
its provider is back, and ending those past their TTL while it is not. Plain functions of a
Connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from pushgo.store.schema import deliveries, provider_health

#: A row not rewritten for this long is a dead process's word: it is not believed any more.
#: (A process whose breaker stays open rewrites it at least every cool-down and probe.)
STALE_MS = 5 * 60 * 1000


@dataclass(frozen=True, slots=True)
class Health:
    route: str
    state: str  # closed | open | half_open
    last_error: str | None
    since: int
    updated_at: int


def record(conn: Connection, route: str, state: str, last_error: str | None, since: int,
           now: int) -> None:
    """Write a route's breaker state (one upsert; processes race harmlessly, the last wins)."""
    values = {"route": route, "state": state, "last_error": (last_error or "")[:255] or None,
              "since": since, "updated_at": now}
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(provider_health).values(**values)
    conn.execute(stmt.on_conflict_do_update(
        index_elements=[provider_health.c.route],
        set_={k: stmt.excluded[k] for k in ("state", "last_error", "since", "updated_at")}))


def unavailable(conn: Connection, routes: Sequence[str], now: int) -> dict[str, Health]:
    """The routes among ``routes`` whose breaker some process holds open (or half-open) now."""
    h = provider_health
    rows = conn.execute(sa.select(h).where(
        h.c.route.in_(list(routes)), h.c.state != "closed", h.c.updated_at >= now - STALE_MS))
    return {r.route: Health(r.route, r.state, r.last_error, r.since, r.updated_at)
            for r in rows}


def make_due(conn: Connection, route: str, now: int) -> int:
    """The provider of ``route`` is back: its queued deliveries waiting for a later attempt are
    due now (a range of ``ix_deliveries_due``); those held by a process keep their lease."""
    d = deliveries
    return int(conn.execute(d.update().where(
        d.c.state == "queued", d.c.route == route, d.c.next_attempt_at > now,
        d.c.lease_until.is_(None),
    ).values(next_attempt_at=now)).rowcount)


def expire_waiting(conn: Connection, route: str, now: int) -> int:
    """While a provider is unavailable nothing claims its deliveries: those past their TTL end
    ``expired`` here instead of waiting for the provider to come back."""
    d = deliveries
    return int(conn.execute(d.update().where(
        d.c.state == "queued", d.c.route == route, d.c.expires_at <= now,
        d.c.lease_until.is_(None),
    ).values(state="expired", last_error="expired", updated_at=now)).rowcount)
