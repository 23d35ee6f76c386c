"""The audit log: who did which admin action (a key, an app) to what, and when. Written in
the action's own store call where it can be, read by admins (``GET /admin/audit``,
``pushgo audit``, the console). Details never carry secrets."""

from __future__ import annotations

from functools import partial
from typing import Any

import msgspec
from sqlalchemy.engine import Connection

from pushgo.service.context import Context
from pushgo.service.principal import current
from pushgo.store import audit as audit_store
from pushgo.store.audit import AuditEntry as AuditEntry  # the entries recent() answers

#: The actor of an action taken with the command-line tools on the gateway's machine.
CLI_ACTOR = "cli"

MAX_PAGE = 500


def write(conn: Connection, *, at: int, actor: str, action: str, target: str,
          detail: dict[str, Any] | None = None) -> None:
    """Record an action inside the caller's transaction (the action and its record commit
    together)."""
    audit_store.record(conn, at=at, actor=actor, action=action, target=target,
                       detail=msgspec.json.encode(detail or {}).decode())


class AuditLog:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @staticmethod
    def actor(cli: bool = False) -> str:
        """Who acts: ``cli`` for the command-line tools, else the request's key id."""
        return CLI_ACTOR if cli else current().key_id

    async def record(self, action: str, target: str, detail: dict[str, Any] | None = None,
                     *, cli: bool = False) -> None:
        await self.ctx.store.run(partial(write, at=self.ctx.now(), actor=self.actor(cli),
                                         action=action, target=target, detail=detail))

    async def recent(self, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
        return await self.ctx.store.read(audit_store.recent, max(1, min(limit, MAX_PAGE)),
                                         before)
