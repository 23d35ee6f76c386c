"""Scheduled deliveries in the store (pushgo/store/schedule.py): they wait out of every inbox
until released; a release gives them new sequence numbers after everything written before
(same delivery ids, queued, back in the inbox unless direct); concurrent releases on
PostgreSQL release each delivery once; a cancel stops what is scheduled or queued and not
leased. On SQLite and PostgreSQL, Trio and asyncio."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from pushgo.store import outbox as outbox_store
from pushgo.store import schedule as S
from pushgo.store.engine import Store
from pushgo.store.schema import deliveries, operations

pytestmark = pytest.mark.anyio

NOW = 1_700_000_000_000
AT = NOW + 60_000


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url, pool_size=4)
    s.migrate()
    try:
        yield s
    finally:
        s.dispose()


def seed_op(conn: Any, devices: int, *, deliver_at: int | None = AT, direct: int = 0,
            channel: str | None = None, op_id: str | None = None) -> int:
    """An operation with ``devices`` private deliveries and ``direct`` direct APNs ones,
    scheduled at ``deliver_at`` (None: due now)."""
    pk = outbox_store.insert_operation(
        conn, channel_id=channel or secrets.token_hex(13), op_id=op_id or secrets.token_hex(8),
        route="message", entity_type="message", entity_id=secrets.token_hex(16),
        fingerprint="f", severity="normal", payload="{}", created_at=NOW,
        expires_at=NOW + 86_400_000, **({"deliver_at": deliver_at} if deliver_at else {}))
    cid = conn.execute(sa.select(operations.c.channel_id).where(
        operations.c.op_pk == pk)).scalar_one()
    rows = [{"device_key": secrets.token_hex(16), "route": "private", "inbox": True,
             "provider_token": None} for _ in range(devices)]
    rows += [{"device_key": "direct", "route": "apns", "inbox": False,
              "provider_token": "ab" * 32} for _ in range(direct)]
    conn.execute(deliveries.insert(), [{
        **r, "delivery_id": secrets.token_hex(16), "op_pk": pk, "channel_id": cid,
        "state": "queued", "next_attempt_at": NOW, "created_at": NOW, "updated_at": NOW,
        "expires_at": NOW + 86_400_000} for r in rows])
    if deliver_at is not None:
        S.schedule(conn, pk, deliver_at)
    return pk


def of(conn: Any, pk: int) -> list[Any]:
    return list(conn.execute(sa.select(deliveries).where(deliveries.c.op_pk == pk)
                             .order_by(deliveries.c.seq)))


async def test_released_deliveries_come_after_everything_written_before_them(
        store: Store) -> None:
    scheduled = await store.run(lambda c: seed_op(c, 2, direct=1))
    before = await store.read(of, scheduled)
    assert {(r.state, r.inbox, r.next_attempt_at) for r in before} == {("scheduled", False, AT)}
    immediate = await store.run(lambda c: seed_op(c, 1, deliver_at=None))
    assert await store.read(S.next_due) == AT
    assert await store.run(S.release_due, AT - 1) == []
    released = await store.run(S.release_due, AT)
    assert released == [before[0].channel_id]
    after = await store.read(of, scheduled)
    assert [r.delivery_id for r in after] == [r.delivery_id for r in before]
    latest = max(r.seq for r in await store.read(of, immediate))
    assert min(r.seq for r in after) > latest
    assert [(r.state, r.inbox, r.lease_until) for r in after] == [
        ("queued", True, None), ("queued", True, None), ("queued", False, None)]
    assert await store.read(S.next_due) is None
    assert await store.run(S.release_due, AT) == []


async def test_a_large_fan_out_is_released_a_page_at_a_time_in_order(store: Store) -> None:
    pk = await store.run(seed_op, 5)
    ids = [r.delivery_id for r in await store.read(of, pk)]
    pages = 0
    while await store.run(S.release_due, AT, 10, 2):
        pages += 1
    assert pages == 3
    after = await store.read(of, pk)
    assert [r.delivery_id for r in after] == ids and {r.state for r in after} == {"queued"}


async def test_concurrent_releases_release_every_delivery_once(store: Store) -> None:
    pks = [await store.run(seed_op, 5) for _ in range(12)]
    released: list[str] = []

    async def releaser() -> None:
        while found := await store.run(S.release_due, AT, 3, 7):
            released.extend(found)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(releaser)
    assert set(released) == {r.channel_id for pk in pks for r in await store.read(of, pk)}
    for pk in pks:
        assert [r.state for r in await store.read(of, pk)] == ["queued"] * 5


async def test_a_cancel_stops_what_is_scheduled_or_waiting_and_not_what_is_held_or_sent(
        store: Store) -> None:
    pk = await store.run(lambda c: seed_op(c, 4, op_id="op-x"))
    await store.run(S.release_due, AT)
    rows = await store.read(of, pk)

    def progress(conn: Any) -> None:  # one sent, one held by a dispatcher, one leased long ago
        d = deliveries
        conn.execute(d.update().where(d.c.seq == rows[0].seq).values(state="sent"))
        conn.execute(d.update().where(d.c.seq == rows[1].seq).values(lease_until=AT + 60_000))
        conn.execute(d.update().where(d.c.seq == rows[2].seq).values(lease_until=AT - 1))

    await store.run(progress)
    other = await store.run(lambda c: seed_op(c, 2, op_id="op-x"))  # the same op_id on another channel
    got = await store.run(S.cancel, "op-x", [rows[0].channel_id], AT)
    assert got is not None and got.cancelled == 2 and got.channels == [rows[0].channel_id]
    assert got.states == {"sent": 1, "queued": 1, "cancelled": 2}
    assert [r.state for r in await store.read(of, other)] == ["scheduled"] * 2
    again = await store.run(S.cancel, "op-x", None, AT)
    assert again is not None and again.cancelled == 2  # the other channel's, now
    assert again.states == {"sent": 1, "queued": 1, "cancelled": 4}
    assert await store.run(S.cancel, "op-y", None, AT) is None
    assert await store.run(S.release_due, AT) == []


async def test_a_database_from_before_scheduled_sends_gains_deliver_at(db_url: str) -> None:
    from pushgo.store.migrations import LATEST, MIGRATIONS, migrate
    from pushgo.store.schema import schema_info

    before = next(i for i, step in enumerate(MIGRATIONS)
                  if "operations.deliver_at" in (step.__doc__ or ""))
    store = Store(db_url, pool_size=2)
    try:
        store.migrate()

        def version_before(conn: Any) -> None:
            conn.exec_driver_sql("ALTER TABLE operations DROP COLUMN deliver_at")
            conn.exec_driver_sql("DROP INDEX ix_deliveries_scheduled")
            conn.execute(schema_info.update().values(version=before))

        store.run_sync(version_before)
        assert store.run_sync(migrate, store.dialect) == before
        assert "deliver_at" in store.run_sync(lambda c: {
            x["name"] for x in sa.inspect(c).get_columns("operations")})
        assert "ix_deliveries_scheduled" in store.run_sync(lambda c: {
            x["name"] for x in sa.inspect(c).get_indexes("deliveries")})
        assert store.run_sync(lambda c: c.execute(sa.select(schema_info.c.version))
                              .scalar_one()) == LATEST
        pk = await store.run(seed_op, 1)
        assert await store.run(S.release_due, AT) and len(await store.read(of, pk)) == 1
    finally:
        store.dispose()
