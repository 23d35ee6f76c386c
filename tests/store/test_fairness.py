"""The dispatcher's claim is fair across senders (pushgo/store/dispatch.py ``claim_due``): each
round's batch is shared among the senders with due work by their keys' weights
(``api_keys.weight``; 1 for the root key and for a key that is unknown or revoked), what a
sender with less due work leaves goes to the others, and a lone sender has the whole batch.
On SQLite and PostgreSQL, Trio and asyncio; the store's migrations, real ``api_keys`` rows."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from pushgo.service.principal import key_hash, new_key
from pushgo.store import dispatch as dispatch_store
from pushgo.store import keys as key_store
from pushgo.store.engine import Store
from pushgo.store.schema import deliveries

pytestmark = pytest.mark.anyio

NOW = 1_700_000_000_000
LEASE_MS = 600_000
ROUTES = ["apns", "fcm", "wns", "webpush"]


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url, pool_size=2)
    s.migrate()
    try:
        yield s
    finally:
        s.dispose()


def seed(conn: Any, sender: str, count: int, route: str = "apns", due_at: int = NOW - 1,
         created_at: int = NOW) -> None:
    """``count`` due direct deliveries of ``sender`` (no device row needed)."""
    rows = [{
        "delivery_id": secrets.token_hex(16), "op_pk": 1, "channel_id": "c" * 26,
        "device_key": "direct", "route": route, "state": "queued", "inbox": False,
        "next_attempt_at": due_at, "created_at": created_at, "updated_at": created_at,
        "expires_at": NOW + 86_400_000, "provider_token": "ab" * 32, "sender": sender,
    } for _ in range(count)]
    for start in range(0, count, 1000):
        conn.execute(deliveries.insert(), rows[start:start + 1000])


def add_key(conn: Any, weight: int) -> str:
    key_id, key = new_key()
    key_store.insert_key(conn, key_id=key_id, name=f"w{weight}", secret_hash=key_hash(key),
                         scopes=["send", "direct"], weight=weight, created_at=NOW,
                         created_by="test")
    return key_id


def senders_of(conn: Any, seqs: list[int]) -> Counter[str]:
    rows = conn.execute(sa.select(deliveries.c.sender).where(deliveries.c.seq.in_(seqs)))
    return Counter(str(r.sender) for r in rows)


async def claim(store: Store, limit: int, routes: list[str] = ROUTES) -> Counter[str]:
    page = await store.run(dispatch_store.claim_due, routes, NOW, limit, LEASE_MS, "me")
    assert len({d.seq for d in page}) == len(page)  # nothing twice
    return await store.read(senders_of, [d.seq for d in page])


async def test_one_delivery_of_a_second_sender_is_in_the_first_round_behind_a_big_backlog(
        store: Store) -> None:
    def both(conn: Any) -> tuple[str, str]:
        a, b = add_key(conn, 1), add_key(conn, 1)
        # A's backlog is older and due sooner: first come, first served would send it all
        # before B's one delivery.
        seed(conn, a, 5000, due_at=NOW - 60_000, created_at=NOW - 60_000)
        seed(conn, b, 1)
        return a, b

    a, b = await store.run(both)
    first = await claim(store, 1000)
    assert first == {a: 999, b: 1}
    assert await claim(store, 1000) == {a: 1000}  # then A has every round to itself


async def test_weights_three_to_one_share_each_round_three_to_one_while_both_have_work(
        store: Store) -> None:
    def both(conn: Any) -> tuple[str, str]:
        heavy, light = add_key(conn, 3), add_key(conn, 1)
        seed(conn, heavy, 400)
        seed(conn, light, 400, route="fcm")  # shares span the routes claimed together
        return heavy, light

    heavy, light = await store.run(both)
    for _ in range(5):
        assert await claim(store, 100) == {heavy: 75, light: 25}
    # The heavy sender has 25 left, less than its share: the rest goes to the light one ...
    assert await claim(store, 100) == {heavy: 25, light: 75}
    # ... which then has the whole batch, until it has nothing left either.
    assert await claim(store, 100) == {light: 100}
    assert await claim(store, 100) == {light: 100}
    assert await claim(store, 100) == {}


async def test_a_sender_with_less_due_than_its_share_leaves_the_rest_to_the_others(
        store: Store) -> None:
    def three(conn: Any) -> tuple[str, str, str]:
        a, b = add_key(conn, 1), add_key(conn, 1)
        seed(conn, a, 500)
        seed(conn, b, 500)
        seed(conn, "root", 7)
        return a, b, "root"

    a, b, root = await store.run(three)
    got = await claim(store, 100)
    assert got[root] == 7 and sum(got.values()) == 100
    assert abs(got[a] - got[b]) <= 1  # the 93 left split evenly between equal weights


async def test_a_sender_alone_gets_the_whole_batch_and_an_unknown_or_revoked_key_weighs_one(
        store: Store) -> None:
    def one(conn: Any) -> str:
        key_id = add_key(conn, 5)
        seed(conn, key_id, 300)
        return key_id

    alone = await store.run(one)
    assert await claim(store, 100) == {alone: 100}

    def revoke_and_more(conn: Any) -> None:
        assert key_store.revoke_key(conn, alone, NOW)
        seed(conn, "f" * 16, 300)  # a key id with no row at all

    await store.run(revoke_and_more)
    assert await claim(store, 100) == {alone: 50, "f" * 16: 50}


async def test_only_due_unleased_deliveries_on_the_claimed_routes_count(store: Store) -> None:
    def mixed(conn: Any) -> tuple[str, str]:
        a, b = add_key(conn, 1), add_key(conn, 1)
        seed(conn, a, 50)
        seed(conn, b, 50, due_at=NOW + 60_000)  # retrying later: not due
        seed(conn, b, 50, route="wns")  # a route not claimed (its breaker is open)
        return a, b

    a, b = await store.run(mixed)
    assert await claim(store, 100, routes=["apns"]) == {a: 50}
    assert await claim(store, 100, routes=["apns"]) == {}  # A's are leased now
    assert await claim(store, 100, routes=["wns"]) == {b: 50}


def test_more_senders_than_the_batch_each_get_one_and_the_weights_share_the_rest() -> None:
    many = {f"s{i}": 10 for i in range(30)}
    shares = dispatch_store.fair_shares(many, {}, 20)
    assert sum(shares.values()) == 20 and set(shares.values()) == {1}
    assert dispatch_store.fair_shares({"a": 1000, "b": 1000}, {"a": 1, "b": 1000}, 100) == {
        "a": 1, "b": 99}  # never nothing: one at least, however light
    assert dispatch_store.fair_shares({"a": 3, "b": 0}, {}, 10) == {"a": 3}
    assert dispatch_store.fair_shares({}, {}, 10) == {}


async def test_every_delivery_written_carries_its_operations_sender(store: Store) -> None:
    """Fan-out, a repeat's rounds, a scheduled send's release, direct sends and Live
    Activity pushes: each delivery is its operation's sender's."""
    from pushgo.store import channels as channel_store
    from pushgo.store import devices as device_store
    from pushgo.store import direct as direct_store
    from pushgo.store import liveactivities as live_store
    from pushgo.store import outbox as outbox_store
    from pushgo.store import repeats as repeat_store
    from pushgo.store import schedule as schedule_store

    def write(conn: Any) -> None:
        cid, device = "c" * 26, "d" * 32
        channel_store.create(conn, cid, "ops", "hash", NOW)
        device_store.create(conn, device, "ios", NOW)
        device_store.set_route(conn, device, "apns", "ab" * 32, NOW)
        channel_store.subscribe(conn, cid, device, NOW, 10)
        live_store.set_keyed_token(conn, cid, "ev1", "cd" * 32, NOW, 10)

        def operation(op_id: str, sender: str, route: str = "message.create") -> int:
            return outbox_store.insert_operation(
                conn, channel_id=cid, op_id=op_id, route=route, entity_type="message",
                entity_id=op_id, thing_id=None, fingerprint="f", severity="normal",
                payload="{}", alert="{}", created_at=NOW, expires_at=NOW + 86_400_000,
                sender=sender)

        repeated = operation("repeated", "k-repeat")
        assert outbox_store.fan_out(conn, repeated, cid, NOW, NOW + 86_400_000) == 1
        repeat_store.insert(conn, op_pk=repeated, channel_id=cid, op_id="repeated",
                            entity_type="message", entity_id="repeated", every_s=60,
                            max_sends=3, now=NOW, expires_at=NOW + 86_400_000)
        assert repeat_store.run_due(conn, NOW + 60_000, 10).made == 1
        later = operation("later", "k-later")
        outbox_store.fan_out(conn, later, cid, NOW, NOW + 86_400_000)
        schedule_store.schedule(conn, later, NOW + 1000)
        assert schedule_store.release_due(conn, NOW + 1000) == [cid]
        direct = operation("direct", "k-direct")
        direct_store.insert_direct(conn, direct, cid, "apns", ["ef" * 32] * 2, NOW,
                                   NOW + 86_400_000, "k-direct")
        live = operation("live", "k-live", route="event.update")
        assert live_store.add_keyed_pushes(conn, live, cid, "ev1", "update", NOW,
                                           NOW + 86_400_000, "k-live") == 1

    await store.run(write)
    by_sender = await store.read(lambda c: Counter(
        str(sender) for sender in c.execute(sa.select(deliveries.c.sender)).scalars()))
    assert by_sender == {"k-repeat": 2, "k-later": 1, "k-direct": 2, "k-live": 1}


def test_a_database_from_before_delivery_senders_is_migrated(db_url: str) -> None:
    """The queued deliveries of an older database take their operation's sender; the index
    of the fair claim is made; migrating again changes nothing."""
    import inspect as source

    from pushgo.store.migrations import LATEST, MIGRATIONS
    from pushgo.store.schema import metadata, operations, schema_info

    [adds] = [v for v, step in enumerate(MIGRATIONS, start=1)
              if "deliveries.c.sender" in source.getsource(step)]
    store = Store(db_url)

    def version_before(conn: Any) -> None:
        metadata.create_all(conn)
        conn.exec_driver_sql("DROP INDEX ix_deliveries_sender_due")
        conn.exec_driver_sql("ALTER TABLE deliveries DROP COLUMN sender")
        conn.execute(schema_info.insert().values(id=1, version=adds - 1, migrated_at=0))
        for pk, sender in ((1, "k-old"), (2, "root")):
            conn.execute(operations.insert().values(
                op_pk=pk, channel_id="c" * 26, op_id=f"op{pk}", route="message.create",
                entity_type="message", entity_id=f"m{pk}", fingerprint="f", severity="normal",
                payload="{}", created_at=NOW, expires_at=NOW + 1, sender=sender))
            conn.execute(sa.text(
                "INSERT INTO deliveries (delivery_id, op_pk, channel_id, device_key, route, "
                "state, inbox, attempts, next_attempt_at, created_at, updated_at, expires_at) "
                "VALUES (:id, :pk, :c, 'direct', 'apns', 'queued', :f, 0, 0, 0, 0, 1)"),
                {"id": secrets.token_hex(16), "pk": pk, "c": "c" * 26, "f": False})

    def shape(conn: Any) -> tuple[dict[int, str], set[str], int]:
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("deliveries")}
        senders = {int(r.op_pk): str(r.sender) for r in conn.execute(
            sa.select(deliveries.c.op_pk, deliveries.c.sender))}
        return senders, indexes, conn.execute(sa.select(schema_info.c.version)).scalar_one()

    try:
        store.run_sync(version_before)
        assert store.migrate() == adds - 1
        senders, indexes, version = store.run_sync(shape)
        assert senders == {1: "k-old", 2: "root"}
        assert "ix_deliveries_sender_due" in indexes and version == LATEST
        assert store.migrate() == LATEST
    finally:
        store.dispose()
