"""Daily quota counters (``quota_usage``): notifications counted per subject (``key:<id>``,
``channel:<id>``) and UTC day, in the transaction that accepts them, so every process sharing
the database sees one count. Plain functions of a Connection.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from pushgo.store.schema import quota_usage

#: Days of counters kept: today and yesterday (a request that began before midnight).
KEEP_DAYS = 2


def used(conn: Connection, subjects: Sequence[str], day: int) -> dict[str, int]:
    """What each of ``subjects`` has used on ``day`` (absent: nothing)."""
    q = quota_usage
    rows = conn.execute(sa.select(q.c.subject, q.c.used)
                        .where(q.c.day == day, q.c.subject.in_(list(subjects))))
    return {r.subject: int(r.used) for r in rows}


def add(conn: Connection, subjects: Sequence[str], day: int, n: int) -> None:
    """Count ``n`` more notifications for each subject on ``day`` (one upsert each)."""
    if n <= 0:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    for subject in sorted(subjects):  # one lock order for every transaction
        stmt = dialect.insert(quota_usage).values(subject=subject, day=day, used=n)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=[quota_usage.c.subject, quota_usage.c.day],
            set_={"used": quota_usage.c.used + stmt.excluded.used}))


def used_by_prefix(conn: Connection, prefix: str, day: int, limit: int) -> dict[str, int]:
    """Subjects starting with ``prefix`` and what they used on ``day`` (at most ``limit``,
    the largest first)."""
    q = quota_usage
    rows = conn.execute(sa.select(q.c.subject, q.c.used)
                        .where(q.c.day == day, q.c.subject.startswith(prefix, autoescape=True))
                        .order_by(q.c.used.desc()).limit(limit))
    return {r.subject: int(r.used) for r in rows}


def purge(conn: Connection, day: int) -> int:
    """Forget counters older than ``KEEP_DAYS`` before ``day``."""
    result = conn.execute(quota_usage.delete().where(quota_usage.c.day <= day - KEEP_DAYS))
    return int(result.rowcount or 0)
