"""The pool over in-memory connections: it opens connections lazily up to its size, spreads
streams over them, backs off after a failed connect (Trio's mock clock), and drains them all
when closed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from pushgo.protocol import h2client
from pushgo.push.connection import State
from pushgo.push.pool import BACKOFF_MIN_S, Pool
from tests.push.h2peer import ORIGIN, REQUEST, WAIT_S, Provider, Sink, on_mock_clock, until

pytestmark = pytest.mark.anyio


class Watched(Pool):
    """A pool whose changes (connections opening, closing, freeing streams) can be awaited."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.changed = anyio.Event()

    def _notify(self) -> None:
        super()._notify()
        self.changed.set()


@asynccontextmanager
async def running_pool(*, size: int, stream_cap: int = 1000, max_streams: int | None = 1000,
                       ) -> AsyncIterator[tuple[Watched, Provider, Sink]]:
    sink = Sink()
    async with anyio.create_task_group() as tg:
        provider = Provider(tg, max_streams=max_streams)
        pool = Watched(ORIGIN, sink, size=size, stream_cap=stream_cap, initial_streams=1,
                       connect=provider.connect)
        await tg.start(pool.run)
        yield pool, provider, sink
        tg.cancel_scope.cancel()


async def slot(pool: Pool) -> Any:
    with anyio.fail_after(WAIT_S):
        return await pool.slot()


async def test_connections_open_lazily_and_never_beyond_the_pool_size() -> None:
    async with running_pool(size=2, stream_cap=1) as (pool, provider, _sink):
        await anyio.wait_all_tasks_blocked()
        assert provider.attempts == [] and pool.connections == []
        first = await slot(pool)
        first.submit(REQUEST, b"", "job-0")
        second = await slot(pool)
        assert second is not first
        second.submit(REQUEST, b"", "job-1")
        assert pool.connects == 2 and pool.open_count == 2
        # Both connections are full and the pool is at its size: the third waits for a stream.
        async with anyio.create_task_group() as tg:
            third: list[Any] = []

            async def wait_for_slot() -> None:
                third.append(await slot(pool))

            tg.start_soon(wait_for_slot)
            await anyio.wait_all_tasks_blocked()
            assert third == [] and pool.connects == 2
            peer = provider.peers[0]
            await peer.respond((await peer.next_request()).stream_id)
        assert third == [first] and pool.connects == 2 and len(provider.attempts) == 2


async def test_streams_spread_over_a_second_connection_while_the_first_is_busy() -> None:
    async with running_pool(size=2) as (pool, provider, _sink):
        first = await slot(pool)
        await until(pool, lambda: first.available > 1)  # the peer's SETTINGS arrived
        first.submit(REQUEST, b"", "job-0")
        # The first still has room, so it is the answer; the pool opens another meanwhile.
        assert await slot(pool) is first
        await until(pool, lambda: pool.open_count == 2)
        await until(pool, lambda: pool.connections[1].available > first.available)
        second = await slot(pool)
        assert second is pool.connections[1] and second is not first
        assert pool.connects == 2 and len(provider.peers) == 2


@on_mock_clock()
async def test_a_failed_connect_backs_off_exponentially_before_the_next_try() -> None:
    async with running_pool(size=1) as (pool, provider, _sink):
        provider.fail_next = 3
        start = anyio.current_time()
        conn = await slot(pool)
        assert conn.state is State.OPEN
        tries = [round(t - start, 3) for t in provider.attempts]
        assert tries == [0, BACKOFF_MIN_S, BACKOFF_MIN_S * 3, BACKOFF_MIN_S * 7]
        assert pool.connect_failures == 3 and pool.connects == 4
        assert pool.last_error is not None and "connection refused" in pool.last_error


async def test_closing_drains_every_connection_and_lets_streams_in_flight_finish() -> None:
    async with running_pool(size=1) as (pool, provider, sink):
        conn = await slot(pool)
        conn.submit(REQUEST, b"", "job-0")
        peer = provider.peers[0]
        req = await peer.next_request()
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.aclose, WAIT_S)
            await until(pool, lambda: conn.state is State.DRAINING)
            await peer.respond(req.stream_id)
        assert [tag for tag, _ in sink.responses] == ["job-0"] and not sink.lost
        assert pool.connections == [] and conn.state is State.CLOSED
        await peer.until(lambda: peer.closed.is_set())
        assert peer.terminated is not None and peer.terminated.error_code == h2client.NO_ERROR


@on_mock_clock()
async def test_closing_gives_up_on_a_silent_peer_after_the_grace() -> None:
    async with running_pool(size=1) as (pool, provider, sink):
        conn = await slot(pool)
        conn.submit(REQUEST, b"", "job-0")
        await provider.peers[0].next_request()
        start = anyio.current_time()
        await pool.aclose(2.0)
        assert anyio.current_time() - start == pytest.approx(2.0)
        await until(pool, lambda: not pool.connections)
        assert sink.lost == ["job-0"] and not sink.responses
        assert pool.connects == 1
