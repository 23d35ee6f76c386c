"""A database from before Live Activities (version 5: no deliveries.push_type, no token
tables) gains them when migrated, and migrating again changes nothing."""

from __future__ import annotations

import inspect
from typing import Any

import sqlalchemy as sa

from pushgo.store.engine import Store
from pushgo.store.migrations import LATEST, MIGRATIONS
from pushgo.store.schema import metadata, schema_info

#: The version this feature's migration follows (lease owners); later ones re-run harmlessly.
BEFORE = 5


def test_a_database_from_before_live_activities_is_migrated(db_url: str) -> None:
    store = Store(db_url)

    def version_before(conn: Any) -> None:
        metadata.create_all(conn)
        conn.exec_driver_sql("DROP TABLE live_activities")
        conn.exec_driver_sql("DROP TABLE live_activity_start_tokens")
        conn.exec_driver_sql("ALTER TABLE deliveries DROP COLUMN push_type")
        conn.execute(schema_info.insert().values(id=1, version=BEFORE, migrated_at=0))

    def shape(conn: Any) -> tuple[set[str], set[str], int]:
        inspector = sa.inspect(conn)
        return ({c["name"] for c in inspector.get_columns("deliveries")},
                set(inspector.get_table_names()),
                conn.execute(sa.select(schema_info.c.version)).scalar_one())

    try:
        store.run_sync(version_before)
        columns, tables, _ = store.run_sync(shape)
        assert "push_type" not in columns and "live_activities" not in tables
        assert store.migrate() == BEFORE
        columns, tables, version = store.run_sync(shape)
        assert "push_type" in columns
        assert {"live_activities", "live_activity_start_tokens"} <= tables
        assert version == LATEST
        assert store.migrate() == LATEST  # and again: nothing left to do
    finally:
        store.dispose()


def test_a_database_from_before_app_activity_keys_gains_the_table(db_url: str) -> None:
    # The version whose migration adds live_activity_keys (found by what it does, not its
    # number), the database one before it.
    [adds] = [v for v, step in enumerate(MIGRATIONS, start=1)
              if "live_activity_keys" in inspect.getsource(step)]
    store = Store(db_url)

    def version_before(conn: Any) -> None:
        metadata.create_all(conn)
        conn.exec_driver_sql("DROP TABLE live_activity_keys")
        conn.execute(schema_info.insert().values(id=1, version=adds - 1, migrated_at=0))

    try:
        store.run_sync(version_before)
        assert "live_activity_keys" not in store.run_sync(
            lambda conn: set(sa.inspect(conn).get_table_names()))
        assert store.migrate() == adds - 1
        tables = store.run_sync(lambda conn: set(sa.inspect(conn).get_table_names()))
        assert "live_activity_keys" in tables
        assert store.migrate() == LATEST
    finally:
        store.dispose()
