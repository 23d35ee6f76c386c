"""The real Connection and H2Client over an in-memory byte-stream pair, against python-hyper h2
as the provider: responses, refused and reset streams, GOAWAY, a peer hanging up or breaking
the protocol, the live stream gate, draining, and (on Trio's mock clock) pings, the idle
timeout and the liveness deadlines: a stream left unanswered, a silent peer, a stuck write."""

from __future__ import annotations

import math
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest

from pushgo.protocol import h2client
from pushgo.push.connection import Connection, Liveness, State
from tests.push.h2peer import (
    ORIGIN,
    REQUEST,
    Peer,
    Provider,
    Sink,
    byte_stream_pair,
    frame_types,
    on_mock_clock,
    until,
)

pytestmark = pytest.mark.anyio


class Changes:
    """The connection's ``on_change`` callback, as something to wait on."""

    def __init__(self) -> None:
        self.changed = anyio.Event()

    def __call__(self) -> None:
        self.changed.set()


@asynccontextmanager
async def connected(*, max_streams: int | None = 1000, stream_cap: int = 1000,
                    initial_streams: int = 1, capacity: float = math.inf, **kw: Any,
                    ) -> AsyncIterator[tuple[Connection, Peer, Sink, Changes]]:
    sink, changes = Sink(), Changes()
    async with anyio.create_task_group() as tg:
        provider = Provider(tg, max_streams=max_streams, capacity=capacity)
        conn = Connection(ORIGIN, sink, stream_cap=stream_cap, initial_streams=initial_streams,
                          connect=provider.connect, on_change=changes, **kw)
        await tg.start(conn.run)
        assert conn.state is State.OPEN
        yield conn, provider.peers[0], sink, changes
        tg.cancel_scope.cancel()


def tags(sink: Sink) -> list[Any]:
    return [tag for tag, _response in sink.responses]


async def test_a_submitted_request_gets_its_response_through_the_sink() -> None:
    async with connected() as (conn, peer, sink, _changes):
        conn.submit(REQUEST, b'{"n":1}', "job-1")
        req = await peer.next_request()
        assert req.headers[b":path"] == b"/3/device/ab" and req.body == b'{"n":1}'
        await peer.respond(req.stream_id, 200, headers=[("apns-id", "abc")])
        await sink.until(lambda: bool(sink.responses))
        [(tag, response)] = sink.responses
        assert (tag, response.status, response.headers) == ("job-1", 200, {b"apns-id": b"abc"})
        assert conn.inflight == 0 and not sink.unsent and not sink.lost


async def test_a_refused_stream_is_handed_back_as_unsent() -> None:
    async with connected() as (conn, peer, sink, _changes):
        conn.submit(REQUEST, b"", "job-1")
        req = await peer.next_request()
        await peer.reset(req.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
        await sink.until(lambda: bool(sink.unsent))
        assert sink.unsent == ["job-1"] and not sink.lost and not sink.responses
        assert conn.state is State.OPEN and conn.inflight == 0


async def test_a_stream_reset_for_any_other_reason_is_lost() -> None:
    async with connected() as (conn, peer, sink, _changes):
        conn.submit(REQUEST, b"", "job-1")
        req = await peer.next_request()
        await peer.reset(req.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        await sink.until(lambda: bool(sink.lost))
        assert sink.lost == ["job-1"] and not sink.unsent and conn.state is State.OPEN


async def test_goaway_hands_back_the_streams_above_its_last_id_and_the_connection_drains() -> None:
    async with connected() as (conn, peer, sink, changes):
        await until(changes, lambda: conn.available >= 3)
        for i in range(3):
            conn.submit(REQUEST, b"", f"job-{i}")
        reqs = [await peer.next_request() for _ in range(3)]
        await peer.goaway(last_stream_id=reqs[0].stream_id)
        await sink.until(lambda: len(sink.unsent) == 2)
        assert sorted(sink.unsent) == ["job-1", "job-2"]
        assert conn.state is State.DRAINING and conn.available == 0
        await peer.respond(reqs[0].stream_id)
        await until(changes, lambda: conn.state is State.CLOSED)
        assert tags(sink) == ["job-0"] and not sink.lost


async def test_the_peer_hanging_up_mid_flight_loses_every_stream_still_waiting() -> None:
    async with connected() as (conn, peer, sink, changes):
        await until(changes, lambda: conn.available >= 2)
        conn.submit(REQUEST, b"", "job-0")
        conn.submit(REQUEST, b"", "job-1")
        await peer.next_request()
        await peer.next_request()
        await peer.hang_up()
        await until(changes, lambda: conn.state is State.CLOSED)
        assert sorted(sink.lost) == ["job-0", "job-1"]
        assert not sink.responses and not sink.unsent
        assert conn.available == 0 and conn.inflight == 0


async def test_a_peer_breaking_the_protocol_gets_goaway_with_its_error_code() -> None:
    async with connected() as (conn, peer, sink, changes):
        conn.submit(REQUEST, b"", "job-0")
        await peer.next_request()
        await peer.flush()
        await peer.stream.send(h2client.frame(h2client.PUSH_PROMISE, h2client.END_HEADERS, 1, b"\0\0\0\2"))
        await until(changes, lambda: conn.state is State.CLOSED)
        assert sink.lost == ["job-0"]
        assert conn.error is not None and conn.error.startswith("ProtocolError")
        await peer.until(lambda: peer.closed.is_set())
        assert peer.terminated is not None
        assert peer.terminated.error_code == h2client.PROTOCOL_ERROR


async def test_the_stream_gate_follows_the_peer_max_concurrent_streams() -> None:
    async with connected(max_streams=2) as (conn, peer, sink, changes):
        await until(changes, lambda: conn.h2.peer_max_streams == 2)
        assert conn.available == 2
        conn.submit(REQUEST, b"", "job-0")
        conn.submit(REQUEST, b"", "job-1")
        assert conn.available == 0
        reqs = [await peer.next_request() for _ in range(2)]
        await peer.max_streams(5)
        await until(changes, lambda: conn.available == 3)
        await peer.max_streams(1)
        await until(changes, lambda: conn.h2.peer_max_streams == 1)
        assert conn.available == 0
        for req in reqs:
            await peer.respond(req.stream_id)
        await sink.until(lambda: len(sink.responses) == 2)
        assert conn.available == 1


async def test_draining_lets_the_streams_in_flight_finish_then_says_goaway() -> None:
    async with connected() as (conn, peer, sink, changes):
        conn.submit(REQUEST, b"", "job-0")
        req = await peer.next_request()
        conn.drain()
        assert conn.state is State.DRAINING and conn.available == 0
        await peer.respond(req.stream_id)
        await until(changes, lambda: conn.state is State.CLOSED)
        assert tags(sink) == ["job-0"] and not sink.lost and not sink.unsent
        await peer.until(lambda: peer.closed.is_set())
        assert peer.terminated is not None
        assert (peer.terminated.error_code, peer.terminated.last_stream_id) == (h2client.NO_ERROR, 0)


@on_mock_clock()
async def test_an_idle_connection_pings_every_interval_and_stays_open() -> None:
    async with connected(ping_interval=10.0, idle_timeout=600.0) as (conn, peer, _sink, _ch):
        start = anyio.current_time()
        await peer.until(lambda: peer.pings >= 3, timeout=100)
        assert conn.state is State.OPEN
        assert 30 <= anyio.current_time() - start < 31


@on_mock_clock()
async def test_a_silent_peer_is_pinged_then_left_with_goaway_after_the_idle_timeout() -> None:
    client, server = byte_stream_pair()
    received = bytearray()
    sink, changes = Sink(), Changes()

    async def connect() -> anyio.abc.ByteStream:
        return client

    async def swallow() -> None:
        try:
            while True:
                received.extend(await server.receive())
        except anyio.EndOfStream:
            pass

    conn = Connection(ORIGIN, sink, stream_cap=10, connect=connect, on_change=changes,
                      ping_interval=10.0, idle_timeout=25.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(swallow)
        start = anyio.current_time()
        await tg.start(conn.run)
        await until(changes, lambda: conn.state is State.CLOSED, timeout=100)
        assert anyio.current_time() - start == pytest.approx(30, abs=1)
    peer = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    events = peer.receive_data(bytes(received))
    assert sum(isinstance(e, h2.events.PingReceived) for e in events) == 2
    [goaway] = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway.error_code == h2client.NO_ERROR
    assert received.endswith(h2client.frame(h2client.GOAWAY, 0, 0, struct.pack(">LL", 0, h2client.NO_ERROR)))


# -- liveness: streams in flight must be answered, the peer must answer PINGs, writes must end --


@on_mock_clock()
async def test_a_stream_left_unanswered_past_the_response_deadline_ends_the_connection() -> None:
    live = Liveness(response_s=30.0, ping_s=10.0, write_s=10.0)
    async with connected(liveness=live) as (conn, peer, sink, changes):
        await until(changes, lambda: conn.available >= 2)
        conn.submit(REQUEST, b"", "stuck")
        stuck = await peer.next_request()
        # The peer answers every other stream (and PINGs) but never this one.
        for i in range(5):
            await anyio.sleep(5)
            conn.submit(REQUEST, b"", f"job-{i}")
            await peer.respond((await peer.next_request()).stream_id)
        await anyio.sleep(4)
        assert conn.state is State.OPEN and sink.lost == []
        await until(changes, lambda: conn.state is State.CLOSED, timeout=60)
        assert sink.lost == ["stuck"] and not sink.unsent
        assert tags(sink) == [f"job-{i}" for i in range(5)]
        assert conn.error is not None and conn.error.startswith("Unresponsive")
        assert f"stream {stuck.stream_id} had no response" in conn.error


@on_mock_clock()
async def test_streams_answered_in_time_keep_a_busy_connection_open_without_pings() -> None:
    live = Liveness(response_s=30.0, ping_s=10.0, write_s=10.0)
    async with connected(liveness=live) as (conn, peer, sink, changes):
        await until(changes, lambda: conn.available >= 2)
        conn.submit(REQUEST, b"", "job-0")
        previous = await peer.next_request()
        # For 100 s there is always a stream in flight, each answered 5 s after it was sent.
        for i in range(1, 21):
            await anyio.sleep(5)
            conn.submit(REQUEST, b"", f"job-{i}")
            current = await peer.next_request()
            await peer.respond(previous.stream_id)
            previous = current
        await sink.until(lambda: len(sink.responses) == 20)
        assert conn.state is State.OPEN and conn.inflight == 1
        assert not sink.lost and peer.pings == 0


@on_mock_clock()
async def test_a_silent_peer_with_streams_in_flight_is_pinged_then_left() -> None:
    live = Liveness(response_s=300.0, ping_s=10.0, write_s=10.0)
    async with connected(liveness=live) as (conn, peer, sink, changes):
        await until(changes, lambda: conn.available >= 2)
        conn.submit(REQUEST, b"", "job-0")
        conn.submit(REQUEST, b"", "job-1")
        await peer.next_request()
        await peer.next_request()
        peer.go_silent()  # reads on, answers nothing: no response, no PING ACK
        await until(changes, lambda: conn.state is State.CLOSED, timeout=100)
        assert sorted(sink.lost) == ["job-0", "job-1"] and not sink.responses
        assert conn.error is not None and "no answer to PING" in conn.error
        await peer.until(lambda: peer.closed.is_set())
        assert frame_types(bytes(peer.ignored)).count((h2client.PING, 0)) == 1


@on_mock_clock()
async def test_a_peer_that_stops_reading_is_left_once_a_write_misses_its_deadline() -> None:
    live = Liveness(response_s=300.0, ping_s=100.0, write_s=5.0)
    async with connected(capacity=0, liveness=live) as (conn, peer, sink, changes):
        await until(changes, lambda: conn.available >= 2)
        conn.submit(REQUEST, b"", "job-0")
        await peer.next_request()
        peer.stop_reading()  # the read under way may take one more write; the next one waits
        conn.submit(REQUEST, b"", "job-1")
        await anyio.wait_all_tasks_blocked()
        conn.submit(REQUEST, b"", "job-2")
        await until(changes, lambda: conn.state is State.CLOSED, timeout=100)
        assert sorted(sink.lost) == ["job-0", "job-1", "job-2"] and not sink.responses
        assert conn.error is not None and "a write did not complete" in conn.error
