"""The store's own worker threads (pushgo/store/threads.py), on Trio and asyncio: results and
errors come back, the pool is bounded, and cancellation never leaves a transaction half done —
a job still queued is taken back (it never runs), a job already running runs to its end before
its caller sees the cancellation."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from pushgo.store.engine import Store
from pushgo.store.threads import StoreThreads

pytestmark = pytest.mark.anyio


def blocker() -> tuple[threading.Event, threading.Event, Any]:
    """A job that says it started, then holds its thread until released."""
    started, release = threading.Event(), threading.Event()

    def job() -> str:
        started.set()
        assert release.wait(10)
        return "held"

    return started, release, job


async def release_soon(release: threading.Event) -> None:
    await anyio.sleep(0.05)
    release.set()


async def wait_for(event: threading.Event) -> None:
    with anyio.fail_after(10):
        while not event.is_set():
            await anyio.sleep(0.005)


async def test_results_and_errors_come_back() -> None:
    pool = StoreThreads(2)
    try:
        assert await pool.run(lambda a, b: a + b, 2, 3) == 5
        with pytest.raises(KeyError, match="missing"):
            empty: dict[str, int] = {}
            await pool.run(lambda: empty["missing"])
        # Callers at once, more than threads: every one gets its own answer.
        out: dict[int, int] = {}

        async def call(i: int) -> None:
            out[i] = await pool.run(lambda: i * i)

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(call, i)
        assert out == {i: i * i for i in range(50)}
    finally:
        pool.close()


async def test_a_queued_job_cancelled_never_runs() -> None:
    pool = StoreThreads(1)
    started, release, hold = blocker()
    ran = threading.Event()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run, hold)
            await wait_for(started)  # the only thread is busy
            with anyio.move_on_after(0.05) as scope:
                await pool.run(ran.set)  # queued behind it
            assert scope.cancelled_caught
            release.set()
        assert await pool.run(lambda: "after") == "after"  # the thread went past it
        assert not ran.is_set()
    finally:
        release.set()
        pool.close()


async def test_a_running_job_ends_before_its_caller_sees_the_cancellation() -> None:
    pool = StoreThreads(1)
    started, release, hold = blocker()
    finished = threading.Event()
    seen: dict[str, bool] = {}

    def job() -> None:
        hold()
        finished.set()

    scope = anyio.CancelScope()

    async def caller() -> None:
        with scope:
            await pool.run(job)
            await anyio.sleep_forever()  # Trio returns the result, then cancels here
        seen["job over when the cancellation arrived"] = finished.is_set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            await wait_for(started)
            scope.cancel()
            await anyio.sleep(0.05)
            assert not seen  # still waiting: the job holds its thread
            release.set()
        assert scope.cancelled_caught
        assert seen == {"job over when the cancellation arrived": True}
    finally:
        release.set()
        pool.close()


async def test_the_pool_admits_at_most_its_limit() -> None:
    pool = StoreThreads(1, limit=2)
    started, release, hold = blocker()
    try:
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(pool.run, hold)
            await wait_for(started)
            await anyio.sleep(0.05)
            assert pool._in_flight == 2  # one running, one queued
            assert len(pool._admission) == 3  # the rest wait in the event loop
            release.set()
        assert pool._in_flight == 0 and not pool._admission
    finally:
        release.set()
        pool.close()


async def test_a_cancelled_store_call_leaves_no_half_written_transaction(tmp_path: Any
                                                                         ) -> None:
    store = Store(f"sqlite:///{tmp_path}/t.db", pool_size=1)
    table = sa.table("t", sa.column("n", sa.Integer))
    store.run_sync(lambda conn: conn.exec_driver_sql("CREATE TABLE t (n INTEGER)"))
    started, release, hold = blocker()

    def two_rows(conn: sa.Connection) -> None:
        conn.execute(table.insert().values(n=1))
        hold()  # cancelled here, between the two writes
        conn.execute(table.insert().values(n=2))

    def queued(conn: sa.Connection) -> None:
        conn.execute(table.insert().values(n=3))

    try:
        async with anyio.create_task_group() as tg, anyio.create_task_group() as callers:
            callers.start_soon(store.run, two_rows)
            await wait_for(started)
            callers.start_soon(store.run, queued)
            await anyio.sleep(0.02)
            callers.cancel_scope.cancel()
            tg.start_soon(release_soon, release)
        rows = store.run_sync(lambda conn: [r[0] for r in conn.execute(sa.select(table.c.n))])
        assert sorted(rows) == [1, 2]  # the running one whole, the queued one never
    finally:
        release.set()
        store.dispose()
