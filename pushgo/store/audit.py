"""The audit log of admin actions. Plain functions of a Connection."""

from __future__ import annotations

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pushgo.store.schema import audit_log


class AuditEntry(msgspec.Struct, frozen=True):
    seq: int
    at: int
    actor: str
    action: str
    target: str
    detail: str  # a JSON object


def record(conn: Connection, *, at: int, actor: str, action: str, target: str,
           detail: str) -> None:
    conn.execute(audit_log.insert().values(at=at, actor=actor, action=action, target=target,
                                           detail=detail))


def recent(conn: Connection, limit: int, before: int | None = None) -> list[AuditEntry]:
    """The newest ``limit`` entries (older than seq ``before`` when given), newest first."""
    query = sa.select(audit_log.c.seq, audit_log.c.at, audit_log.c.actor, audit_log.c.action,
                      audit_log.c.target, audit_log.c.detail)
    if before is not None:
        query = query.where(audit_log.c.seq < before)
    rows = conn.execute(query.order_by(audit_log.c.seq.desc()).limit(limit))
    return [AuditEntry(*row) for row in rows]
