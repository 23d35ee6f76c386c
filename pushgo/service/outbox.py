"""What the delivery package needs of the outbox and the store, one method each: claiming due
provider deliveries under a lease, renewing and releasing leases, the operations behind a
claimed page, recording a batch of send outcomes, the channels a device's private stream
follows, the queue depth, and the cross-process wake-up notices (PostgreSQL NOTIFY).

Every claim is leased to this process's identity (``instance_identity``: PUSHGO_INSTANCE_ID or
the host name, the listening address and the worker slot), the same again when the process
is restarted; at start the process takes its own claims back at once (``recover_own_claims``)
instead of waiting for their leases to run out.

pushgo.delivery reaches the store only through ``OutboxService``.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import socket
from collections.abc import Sequence

import anyio
import anyio.to_thread
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from pushgo.errors import StoreUnavailable
from pushgo.settings import Settings
from pushgo.store import Store
from pushgo.store import channels as C
from pushgo.store import dispatch as S
from pushgo.store import providers as P
from pushgo.store.dispatch import Due, OpInfo, Outcomes
from pushgo.store.schema import deliveries

log = logging.getLogger("pushgo.outbox")

#: A wake-up notice payload is at most 8000 bytes: ids are short, so batches are cut well below.
NOTICE_BATCH = 200
#: Tries to lock this process's identity at start, this far apart: the session of a run killed
#: a moment ago may still be ending.
IDENTITY_LOCK_TRIES = 5
IDENTITY_LOCK_PAUSE_S = 0.5


def instance_identity(settings: Settings, slot: int = 0, host: str | None = None) -> str:
    """The identity this process leases its claims under: PUSHGO_INSTANCE_ID (else the host
    name), the listening address and the worker slot. The same again after a restart of the
    same process; different between live processes of one machine, which cannot listen on one
    address unless they are workers of one supervisor, whose slots differ."""
    name = settings.instance_id or (socket.gethostname() if host is None else host)
    return f"{(name or 'localhost')[:64]}@{settings.http_addr}#{slot}"


def identity_lock_key(schema: str, identity: str) -> int:
    """The advisory lock key of ``identity`` in the outbox of ``schema`` (64 bits, signed)."""
    digest = hashlib.blake2b(f"pushgo instance\0{schema}\0{identity}".encode(),
                             digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


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
    def __init__(self, store: Store, identity: str | None = None) -> None:
        self._store = store
        #: Who this process's claims are leased to (``instance_identity``; a random one when
        #: not given, or when another live process holds the given one).
        self.identity = identity or "~" + secrets.token_hex(8)

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

    async def recover_own_claims(self) -> int:
        """At start, before the first claim: what this identity's previous run left leased is
        due at once (SQLite, the only process: every lease left behind). On PostgreSQL the
        identity is locked first, for the life of the process; when another live process
        holds it (the same PUSHGO_INSTANCE_ID on two machines), this one claims under a random
        identity and leaves those leases to run out. Returns how many were taken back."""
        try:
            if not self.shared:
                return await self._store.run(S.release_leases)
            if not await self._lock_identity():
                return 0
            released = await self._store.run(S.release_own_leases, self.identity)
        except StoreUnavailable as exc:  # the leases run out instead
            log.warning("taking back this process's claims failed",
                        extra={"fields": {"error": exc.message}})
            return 0
        log.info("delivery leases", extra={"fields": {"identity": self.identity,
                                                      "taken_back": released}})
        return released

    async def _lock_identity(self) -> bool:
        """Lock this identity for the life of the process; else (held by another live
        process, or the database not answering) claim under a random one."""
        deadline_s = self._store.request_timeout_s + self._store.connect_timeout_s
        why = "another live process has this identity (PUSHGO_INSTANCE_ID on two machines?)"
        try:
            key = identity_lock_key(await self.schema(), self.identity)
            for attempt in range(IDENTITY_LOCK_TRIES):
                if attempt:
                    await anyio.sleep(IDENTITY_LOCK_PAUSE_S)
                with anyio.fail_after(deadline_s):
                    if await anyio.to_thread.run_sync(self._store.hold_session_lock, key,
                                                      abandon_on_cancel=True):
                        return True
        except (StoreUnavailable, TimeoutError, SQLAlchemyError):
            why = "the database did not answer"
        taken = self.identity
        self.identity = f"{taken}~{secrets.token_hex(4)}"
        log.warning("claiming deliveries under a random identity; the claims of an earlier "
                    "run wait out their lease", extra={"fields": {
                        "identity": taken, "reason": why}})
        return False

    async def claim_due(self, routes: Sequence[str], now: int, limit: int, lease_ms: int
                        ) -> list[Due]:
        return await self._store.run(S.claim_due, routes, now, limit, lease_ms, self.identity)

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

    async def expire_waiting(self, route: str, now: int) -> int:
        """The provider of ``route`` is unavailable: its deliveries past their TTL end expired."""
        return await self._store.run(P.expire_waiting, route, now)

    # the private hub

    async def subscribed_channels(self, device_key: str) -> list[str]:
        return await self._store.read(C.subscribed_channels, device_key)

    # cross-process wake-ups

    async def schema(self) -> str:
        """The database schema this gateway works in."""
        return await self._store.read(current_schema)

    async def notify(self, channel: str, payloads: Sequence[str]) -> None:
        await self._store.run(notify, channel, payloads)


__all__ = ["Due", "OpInfo", "OutboxService", "Outcomes", "identity_lock_key",
           "instance_identity"]
