"""The outbox's leases name their owner (pushgo/store/dispatch.py): a claim records the
claiming process's identity, and ``release_own_leases`` makes due at once what one identity
left leased — queued deliveries only, never another owner's lease, never a lease from before
owners were recorded. On SQLite and PostgreSQL, Trio and asyncio."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from pushgo.store import dispatch as dispatch_store
from pushgo.store.engine import Store
from pushgo.store.schema import deliveries

pytestmark = pytest.mark.anyio

NOW = 1_700_000_000_000
LEASE_MS = 600_000
A, B = "host-a@127.0.0.1:6666#0", "host-b@127.0.0.1:6666#0"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url, pool_size=2)
    s.migrate()
    try:
        yield s
    finally:
        s.dispose()


def seed(conn: Any, count: int, state: str = "queued") -> list[int]:
    """``count`` due APNs deliveries (a direct send's shape: no device row needed)."""
    conn.execute(deliveries.insert(), [{
        "delivery_id": secrets.token_hex(16), "op_pk": 1, "channel_id": "c" * 26,
        "device_key": "direct", "route": "apns", "state": state, "inbox": False,
        "next_attempt_at": NOW - 1, "created_at": NOW, "updated_at": NOW,
        "expires_at": NOW + 86_400_000, "provider_token": "ab" * 32} for _ in range(count)])
    return [int(s) for s in conn.execute(
        sa.select(deliveries.c.seq).where(deliveries.c.state == state)
        .order_by(deliveries.c.seq.desc()).limit(count)).scalars()]


def leases(conn: Any) -> dict[int, tuple[str | None, int | None]]:
    rows = conn.execute(sa.select(deliveries.c.seq, deliveries.c.lease_owner,
                                  deliveries.c.lease_until))
    return {r.seq: (r.lease_owner, r.lease_until) for r in rows}


async def claim(store: Store, owner: str, limit: int = 100, now: int = NOW) -> set[int]:
    return {d.seq for d in await store.run(dispatch_store.claim_due, ["apns"], now, limit, LEASE_MS, owner)}


async def test_a_claim_records_its_owner_and_its_lease(store: Store) -> None:
    seqs = await store.run(seed, 3)
    assert await claim(store, A, limit=2) == set(sorted(seqs)[:2])
    assert await claim(store, B) == {max(seqs)}
    held = await store.read(leases)
    assert {seq: held[seq] for seq in seqs} == {
        **{seq: (A, NOW + LEASE_MS) for seq in sorted(seqs)[:2]}, max(seqs): (B, NOW + LEASE_MS)}
    assert await claim(store, A) == set()  # everything is leased


async def test_releasing_its_own_leases_makes_only_that_owners_claims_due_at_once(
        store: Store) -> None:
    await store.run(seed, 4)
    mine = await claim(store, A)
    assert len(mine) == 4
    theirs_seqs = await store.run(seed, 3)
    theirs = await claim(store, B)
    assert theirs == set(theirs_seqs)
    # One of A's claims was sent meanwhile (its lease cleared by the result, the owner kept).
    sent = min(mine)
    await store.run(dispatch_store.apply_outcomes, dispatch_store.Outcomes(sent=[sent]), NOW)

    assert await store.run(dispatch_store.release_own_leases, A) == len(mine) - 1
    held = await store.read(leases)
    assert all(held[seq][1] is None for seq in mine)
    assert all(held[seq] == (B, NOW + LEASE_MS) for seq in theirs)  # never taken early
    # A's claims are due now (long before their lease would have run out); B's are not.
    assert await claim(store, A) == mine - {sent}
    assert await claim(store, "host-c@127.0.0.1:6666#0") == set()
    assert await store.run(dispatch_store.release_own_leases, "nobody") == 0


async def test_a_lease_without_an_owner_waits_out_its_lease(store: Store) -> None:
    """Leases taken before owners were recorded (or by a process that records none) are
    never released early by anyone."""
    seqs = await store.run(seed, 2)
    assert await claim(store, None) == set(seqs)  # type: ignore[arg-type]
    assert await store.run(dispatch_store.release_own_leases, A) == 0
    assert await claim(store, A) == set()
    assert await claim(store, A, now=NOW + LEASE_MS) == set(seqs)  # the lease ran out


async def test_a_database_from_before_lease_owners_gains_the_column(db_url: str) -> None:
    """The version before had no deliveries.lease_owner; migrating adds it, and claims
    record their owner from then on."""
    from pushgo.store import migrations
    from pushgo.store.migrations import LATEST, migrate
    from pushgo.store.schema import schema_info

    # The version before lease owners (later migrations re-run harmlessly: checkfirst).
    before = migrations.MIGRATIONS.index(migrations._v5)

    store = Store(db_url, pool_size=2)
    try:
        store.migrate()

        def version_before(conn: Any) -> None:
            conn.exec_driver_sql("ALTER TABLE deliveries DROP COLUMN lease_owner")
            conn.execute(schema_info.update().values(version=before))

        store.run_sync(version_before)
        assert store.run_sync(migrate, store.dialect) == before
        columns = store.run_sync(lambda c: {x["name"] for x in sa.inspect(c).get_columns(
            "deliveries")})
        assert "lease_owner" in columns
        assert store.run_sync(lambda c: c.execute(sa.select(schema_info.c.version))
                              .scalar_one()) == LATEST
        seqs = await store.run(seed, 1)
        assert await claim(store, A) == set(seqs)
    finally:
        store.dispose()
