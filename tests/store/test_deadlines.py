"""Every store call has a deadline (pushgo/store/threads.py, pushgo/store/engine.py), on Trio
and asyncio: past it the caller leaves — a queued job is taken back, a running one abandoned
and cancelled on its connection — the wait for admission and for a free thread counts, and an
abandoned write is rolled back, never half written. On SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from pushgo.errors import StoreUnavailable
from pushgo.store.engine import Store
from pushgo.store.threads import StoreThreads, current_call
from tests.store.test_threads import blocker, wait_for

pytestmark = pytest.mark.anyio

#: Short deadlines: each test waits on them for real (in hundredths of a second).
SHORT_S = 0.05


def soon() -> float:
    return anyio.current_time() + SHORT_S


@pytest.fixture
def pool() -> Iterator[StoreThreads]:
    threads = StoreThreads(1, limit=2)
    try:
        yield threads
    finally:
        threads.close(timeout=1)


async def test_a_job_still_queued_at_its_deadline_is_taken_back(pool: StoreThreads) -> None:
    started, release, hold = blocker()
    ran: list[int] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(pool.run, hold)
        await wait_for(started)
        with pytest.raises(TimeoutError):
            await pool.run(ran.append, 1, deadline=soon())
        release.set()
    assert await pool.run(lambda: "after") == "after"  # FIFO: the taken-back job came before
    assert ran == []


async def test_a_job_running_at_its_deadline_is_abandoned_and_cancelled(
        pool: StoreThreads) -> None:
    cancelled, ended = threading.Event(), threading.Event()

    def query() -> str:
        call = current_call()
        assert call is not None and call.set_cancel(cancelled.set)
        assert cancelled.wait(10)  # a query stopped by its connection's cancel
        ended.set()
        return "cancelled"

    with pytest.raises(TimeoutError):
        await pool.run(query, deadline=soon())
    await wait_for(ended)
    assert await pool.run(lambda: 2 + 2) == 4  # the thread is free again


async def test_a_cancelled_caller_waits_for_its_running_job_but_not_past_its_deadline(
        pool: StoreThreads) -> None:
    started, release, hold = blocker()
    left = anyio.Event()

    async def caller() -> None:
        try:
            await pool.run(hold, deadline=soon())
        finally:
            left.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            await wait_for(started)
            tg.cancel_scope.cancel()
        # The caller has left while its job still holds the thread: a frozen database does
        # not keep a cancelled request (nor a shutdown) waiting.
        assert left.is_set() and not release.is_set()
    finally:
        release.set()


async def test_the_wait_for_admission_counts_against_the_deadline() -> None:
    threads = StoreThreads(1, limit=1)
    started, release, hold = blocker()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(threads.run, hold)
            await wait_for(started)
            with pytest.raises(TimeoutError, match="no store thread free"):
                await threads.run(lambda: 1, deadline=soon())
            release.set()
    finally:
        release.set()
        threads.close(timeout=1)


TABLE = sa.table("t", sa.column("n", sa.Integer))


async def test_a_write_whose_caller_gave_up_is_rolled_back_and_answers_503(db_url: str) -> None:
    store = Store(db_url, pool_size=1, request_timeout_s=SHORT_S)
    store.run_sync(lambda conn: conn.exec_driver_sql("CREATE TABLE t (n INTEGER)"))
    _started, release, hold = blocker()

    def two_rows(conn: sa.Connection) -> None:
        conn.execute(TABLE.insert().values(n=1))
        hold()  # the deadline passes here, between the two writes
        conn.execute(TABLE.insert().values(n=2))

    try:
        with pytest.raises(StoreUnavailable) as caught:
            await store.run(two_rows)
        assert (caught.value.code, caught.value.message) == (
            "store_unavailable", "store unavailable: timeout")
        release.set()
        rows = await store.run(lambda conn: conn.execute(sa.select(TABLE.c.n)).all(),
                               deadline_s=10)
        assert rows == []  # not half written, and not committed behind the 503
        await store.run(lambda conn: conn.execute(TABLE.insert().values(n=3)), deadline_s=10)
        assert await store.read(lambda conn: conn.execute(sa.select(TABLE.c.n)).all()) == [(3,)]
    finally:
        release.set()
        store.run_sync(lambda conn: conn.exec_driver_sql("DROP TABLE t"))
        store.dispose()


async def test_a_query_past_its_deadline_is_cancelled_on_the_server(
        pg_schema_url: str) -> None:
    # One store thread: the next call succeeds only if the cancel freed it (pg_sleep(30)
    # would hold it otherwise).
    store = Store(pg_schema_url, pool_size=1, request_timeout_s=0.2)
    try:
        with pytest.raises(StoreUnavailable, match="timeout"):
            await store.read(lambda conn: conn.exec_driver_sql("SELECT pg_sleep(30)").all())
        got = await store.run(lambda conn: conn.exec_driver_sql("SELECT 7").scalar(),
                              deadline_s=10)
        assert got == 7
        assert await store.health() is None
    finally:
        store.dispose()


async def test_a_health_check_names_why_the_store_cannot_serve(tmp_path: Any) -> None:
    store = Store("postgresql://nobody@127.0.0.1:1/none", connect_timeout_s=2)
    try:
        assert await store.health() == "connection refused"
        with pytest.raises(StoreUnavailable, match=r"^store unavailable: connection refused$"):
            await store.read(lambda conn: conn.exec_driver_sql("SELECT 1").all())
    finally:
        store.dispose()
    ok = Store(f"sqlite:///{tmp_path}/ok.db")
    try:
        assert await ok.health() is None
    finally:
        ok.dispose()
