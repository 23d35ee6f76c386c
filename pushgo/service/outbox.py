"""What the delivery package needs of the outbox and the store, one method each: claiming due
provider deliveries under a lease, renewing and releasing leases, the operations behind a
claimed page, recording a batch of send outcomes, the channels a device's private stream
follows, the queue depth, and the cross-process wake-up notices (PostgreSQL NOTIFY).

pushgo.delivery reaches the store only through ``OutboxService``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pushgo.store import Store
from pushgo.store import channels as C
from pushgo.store import dispatch as S
from pushgo.store import providers as P
from pushgo.store.dispatch import Due, OpInfo, Outcomes
from pushgo.store.schema import deliveries

#: A wake-up notice payload is at most 8000 bytes: ids are short, so batches are cut well below.
NOTICE_BATCH = 200


def notify(conn: Connection, channel: str, payloads: Sequence[str]) -> None:
    """``pg_notify`` the payloads on ``channel``, ``NOTICE_BATCH`` lines a notice."""
    for start in range(0, len(payloads), NOTICE_BATCH):
        conn.exec_driver_sql("SELECT pg_notify(%(c)s, %(p)s)",
                             {"c": channel, "p": "\n".join(payloads[start:start + NOTICE_BATCH])})


def current_schema(conn: Connection) -> str:
    return str(conn.exec_driver_sql("SELECT current_schema()").scalar())


def queue_depth(conn: Connection) -> dict[str, int]:
    """Queued deliveries per route (index-only on ``ix_deliveries_due``)."""
    rows = conn.execute(sa.select(deliveries.c.route, sa.func.count())
                        .where(deliveries.c.state == "queued").group_by(deliveries.c.route))
    return {str(route): int(n) for route, n in rows}


class OutboxService:
    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def shared(self) -> bool:
        """Whether other processes may share this outbox (PostgreSQL); SQLite has one."""
        return self._store.dialect != "sqlite"

    @property
    def database_url(self) -> str:
        """``PUSHGO_DB_URL``, for the wake-ups' own LISTEN connection."""
        return self._store.url

    # the outbox pump

    async def release_leases(self) -> int:
        """Forget every lease (at start-up of the only process: they belonged to a dead one)."""
        return await self._store.run(S.release_leases)

    async def claim_due(self, routes: Sequence[str], now: int, limit: int, lease_ms: int
                        ) -> list[Due]:
        return await self._store.run(S.claim_due, routes, now, limit, lease_ms)

    async def extend_leases(self, seqs: Sequence[int], until: int) -> None:
        await self._store.run(S.extend_leases, seqs, until)

    async def op_infos(self, op_pks: Sequence[int]) -> dict[int, OpInfo]:
        return await self._store.read(S.op_infos, op_pks)

    async def apply_outcomes(self, out: Outcomes, now: int) -> None:
        await self._store.run(S.apply_outcomes, out, now)

    async def queue_depth(self) -> dict[str, int]:
        return await self._store.read(queue_depth)

    async def record_provider(self, route: str, state: str, last_error: str | None, since: int,
                              now: int) -> None:
        """A provider's breaker changed: tell every process sharing the outbox (status)."""
        await self._store.run(P.record, route, state, last_error, since, now)

    async def make_due(self, route: str, now: int) -> int:
        """The provider of ``route`` is back: what waits for it is due now."""
        return await self._store.run(P.make_due, route, now)

    # the private hub

    async def subscribed_channels(self, device_key: str) -> list[str]:
        return await self._store.read(C.subscribed_channels, device_key)

    # cross-process wake-ups

    async def schema(self) -> str:
        """The database schema this gateway works in."""
        return await self._store.read(current_schema)

    async def notify(self, channel: str, payloads: Sequence[str]) -> None:
        await self._store.run(notify, channel, payloads)


__all__ = ["Due", "OpInfo", "OutboxService", "Outcomes"]
