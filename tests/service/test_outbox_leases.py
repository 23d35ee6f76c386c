"""Restart recovery through ``OutboxService`` (pushgo/service/outbox.py): a process leases its
claims to its identity, and at start takes back what its own previous run left leased — at
once, not after the lease — but never what a live process holds. On PostgreSQL the identity
is locked for the life of the process, so a second live process with the same identity claims
under a random one; SQLite, the only process, takes back every lease. Trio and asyncio."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from pushgo.service import outbox as O
from pushgo.service.outbox import OutboxService, identity_lock_key, instance_identity
from pushgo.settings import Settings
from pushgo.store.engine import Store
from tests.store.test_leases import LEASE_MS, NOW, leases, seed

pytestmark = pytest.mark.anyio

X, Y = "edge-1@0.0.0.0:6666#0", "edge-2@0.0.0.0:6666#0"


@pytest.fixture(autouse=True)
def short_lock_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(O, "IDENTITY_LOCK_PAUSE_S", 0.01)


@pytest.fixture
def stores(pg_schema_url: str) -> Iterator[list[Store]]:
    """Stores on one PostgreSQL schema, one per simulated process; all disposed at the end."""
    made: list[Store] = []
    yield made
    for store in made:
        store.dispose()


def process(url: str, stores: list[Store], identity: str) -> OutboxService:
    store = Store(url, pool_size=2)
    store.migrate()
    stores.append(store)
    return OutboxService(store, identity)


async def claimed(outbox: OutboxService, now: int = NOW) -> set[int]:
    return {d.seq for d in await outbox.claim_due(["apns"], now, 100, LEASE_MS)}


def test_the_identity_is_host_address_and_slot_stable_and_distinct_per_process() -> None:
    s = Settings(http_host="0.0.0.0", http_port=6666)
    assert instance_identity(s, 0, host="edge-1") == "edge-1@0.0.0.0:6666#0"
    assert instance_identity(s, 0, host="edge-1") == instance_identity(s, 0, host="edge-1")
    others = {instance_identity(s, 1, host="edge-1"),  # another worker slot
              instance_identity(Settings(http_port=6667), 0, host="edge-1"),  # another serve
              instance_identity(s, 0, host="edge-2")}  # another machine
    assert len(others) == 3 and "edge-1@0.0.0.0:6666#0" not in others
    named = Settings(http_host="0.0.0.0", http_port=6666, instance_id="eu-3")
    assert instance_identity(named, 2, host="edge-1") == "eu-3@0.0.0.0:6666#2"
    assert instance_identity(s, 0, host="h" * 300).startswith("h" * 64 + "@")
    assert identity_lock_key("public", X) != identity_lock_key("other", X)
    assert identity_lock_key("public", X) != identity_lock_key("public", Y)


async def test_the_only_process_takes_back_every_lease_left_behind(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/pushgo.db", pool_size=2)
    store.migrate()
    try:
        seqs = await store.run(seed, 3)
        assert await claimed(OutboxService(store, X)) == set(seqs)
        assert await OutboxService(store, Y).recover_own_claims() == 3
        assert await claimed(OutboxService(store, Y)) == set(seqs)
    finally:
        store.dispose()


async def test_a_restarted_process_takes_back_its_own_claims_at_once_and_no_others(
        pg_schema_url: str, stores: list[Store]) -> None:
    old_x = process(pg_schema_url, stores, X)
    y = process(pg_schema_url, stores, Y)
    assert await old_x.recover_own_claims() == 0 and await y.recover_own_claims() == 0
    await old_x._store.run(seed, 4)
    mine = await claimed(old_x)
    await old_x._store.run(seed, 2)
    theirs = await claimed(y)
    assert len(mine) == 4 and len(theirs) == 2
    stores.pop(0).dispose()  # X dies: its session, and the lock on its identity, end

    new_x = process(pg_schema_url, stores, X)
    assert await new_x.recover_own_claims() == 4
    assert new_x.identity == X
    assert await claimed(new_x) == mine  # due now, long before the lease would run out
    held = await new_x._store.read(leases)
    assert all(held[seq] == (Y, NOW + LEASE_MS) for seq in theirs)


async def test_an_identity_a_live_process_holds_is_not_taken(
        pg_schema_url: str, stores: list[Store], caplog: pytest.LogCaptureFixture) -> None:
    live = process(pg_schema_url, stores, X)
    assert await live.recover_own_claims() == 0
    await live._store.run(seed, 3)
    held_by_live = await claimed(live)

    twin = process(pg_schema_url, stores, X)  # the same PUSHGO_INSTANCE_ID, another machine
    with caplog.at_level(logging.WARNING, logger="pushgo.outbox"):
        assert await twin.recover_own_claims() == 0
    assert twin.identity.startswith(X + "~") and twin.identity != X
    warnings = [r for r in caplog.records if r.name == "pushgo.outbox"]
    assert len(warnings) == 1 and "random identity" in warnings[0].getMessage()
    held = await live._store.read(leases)
    assert all(held[seq] == (X, NOW + LEASE_MS) for seq in held_by_live)
    assert await claimed(twin) == set()
    await twin._store.run(seed, 1)
    (new,) = await claimed(twin)
    assert (await twin._store.read(leases))[new][0] == twin.identity


async def test_an_identity_that_cannot_be_locked_takes_nothing_back(
        pg_schema_url: str, stores: list[Store], monkeypatch: pytest.MonkeyPatch) -> None:
    """The database fails the lock: the claims of the identity's earlier run are left to run
    out, and this process claims under a random identity (nobody can take its claims early)."""
    earlier = process(pg_schema_url, stores, X)
    await earlier._store.run(seed, 2)
    left = await claimed(earlier)
    stores.pop(0).dispose()

    restarted = process(pg_schema_url, stores, X)

    def refused(_key: int) -> bool:
        raise OperationalError("SELECT pg_try_advisory_lock", {}, Exception("connection lost"))

    monkeypatch.setattr(restarted._store, "hold_session_lock", refused)
    assert await restarted.recover_own_claims() == 0
    assert restarted.identity.startswith(X + "~")
    held = await restarted._store.read(leases)
    assert all(held[seq] == (X, NOW + LEASE_MS) for seq in left)
