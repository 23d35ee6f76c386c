"""The provider senders over in-memory connections to an h2 peer: one result per job, a
rejection as a value, REFUSED_STREAM retried on a fresh stream, an expired job (by the injected
wall clock) never sent, stopping drains the connections, and (on Trio's mock clock) a provider
that stops answering has its streams sent again, under the same apns-id, on a new
connection."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import h2.errors
import pytest

from pushgo.protocol import apns, fcm, h2client
from pushgo.protocol.outcomes import Delivered, Rejected
from pushgo.push.connection import Liveness, State
from pushgo.push.sender import ApnsSender, Expired, FcmSender, Job, ProviderSender, Result, ResultBuffer
from tests.push.h2peer import ORIGIN, WAIT_S, Peer, Provider, frame_types, on_mock_clock

pytestmark = pytest.mark.anyio

NOW_MS = 1_700_000_000_000
DELIVERY_ID = "0123456789abcdef0123456789abcdef"
TOKEN = "ab" * 32
TEMPLATE = apns.PayloadTemplate(b'{"delivery_id":"', b'","aps":{}}', False)


class StaticJwt:
    def __init__(self) -> None:
        self.expired_tokens: list[str] = []

    async def token(self) -> str:
        return "h.p.s"

    def expired(self, token: str) -> None:
        self.expired_tokens.append(token)


class StaticAccessToken:
    project_id = "proj"

    async def token(self) -> str:
        return "ya29.token"

    def invalidate(self, token: str) -> None:
        pass


class Clock:
    """The gateway's wall clock in milliseconds, set by the test."""

    def __init__(self) -> None:
        self.ms = NOW_MS

    def __call__(self) -> int:
        return self.ms


def job(seq: int = 1, *, expires_at_ms: int = NOW_MS + 3_600_000, template: Any = TEMPLATE,
        delivery_id: str = DELIVERY_ID) -> Job:
    return Job(seq, delivery_id, "device-1", TOKEN, template, expires_at_ms, False)


@asynccontextmanager
async def running(sender_type: type[ProviderSender], clock: Clock, **kw: Any,
                  ) -> AsyncIterator[tuple[Any, Provider, ResultBuffer]]:
    results = ResultBuffer()
    async with anyio.create_task_group() as tg:
        provider = Provider(tg)
        if sender_type is ApnsSender:
            sender: ProviderSender = ApnsSender(ORIGIN, None, results, StaticJwt(), "com.example",
                                                connect=provider.connect, clock_ms=clock, **kw)
        else:
            sender = FcmSender(ORIGIN, None, results, StaticAccessToken(),
                               connect=provider.connect, clock_ms=clock, **kw)
        await tg.start(sender.run)
        yield sender, provider, results
        tg.cancel_scope.cancel()


async def take(results: ResultBuffer) -> list[Result]:
    with anyio.fail_after(WAIT_S):
        return await results.take()


async def test_an_apns_200_is_a_delivered_result_named_by_the_apns_id() -> None:
    async with running(ApnsSender, Clock()) as (sender, provider, results):
        the_job = job()
        sender.jobs_in.send_nowait(the_job)
        peer = await first_peer(provider)
        req = await peer.next_request()
        assert req.headers[b":path"] == b"/3/device/" + TOKEN.encode()
        assert req.headers[b"authorization"] == b"bearer h.p.s"
        assert json.loads(req.body)["delivery_id"] == DELIVERY_ID
        await peer.respond(req.stream_id, 200)
        [result] = await take(results)
        assert result.job is the_job
        assert result.outcome == Delivered(apns.apns_id_of(DELIVERY_ID))
        assert sender.inflight == 0


async def test_an_apns_410_unregistered_is_a_dead_token_rejection() -> None:
    async with running(ApnsSender, Clock()) as (sender, provider, results):
        sender.jobs_in.send_nowait(job())
        peer = await first_peer(provider)
        req = await peer.next_request()
        await peer.respond(req.stream_id, 410,
                           json.dumps({"reason": "Unregistered", "timestamp": NOW_MS}).encode())
        [result] = await take(results)
        assert result.outcome == Rejected("Unregistered", 410, "dead_token", NOW_MS)


async def test_a_refused_stream_is_sent_again_on_a_fresh_stream() -> None:
    async with running(ApnsSender, Clock()) as (sender, provider, results):
        sender.jobs_in.send_nowait(job())
        peer = await first_peer(provider)
        first = await peer.next_request()
        await peer.reset(first.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
        again = await peer.next_request()
        assert again.stream_id > first.stream_id and again.body == first.body
        await peer.respond(again.stream_id, 200)
        [result] = await take(results)
        assert isinstance(result.outcome, Delivered)
        assert sender.resent == 1 and len(results) == 0


async def test_an_expired_job_is_reported_and_never_sent() -> None:
    clock = Clock()
    async with running(ApnsSender, clock) as (sender, provider, results):
        clock.ms = NOW_MS + 10_000
        sender.jobs_in.send_nowait(job(expires_at_ms=NOW_MS + 10_000))
        [result] = await take(results)
        assert result.outcome == Expired()
        assert provider.attempts == [] and sender.pool.connects == 0


async def test_fcm_takes_the_ttl_from_the_injected_clock_and_names_the_message() -> None:
    clock = Clock()
    template = (fcm.MessageTemplate('{"k":"v"}', "HIGH", False), None)
    async with running(FcmSender, clock) as (sender, provider, results):
        clock.ms = NOW_MS + 600_000
        sender.jobs_in.send_nowait(job(expires_at_ms=NOW_MS + 3_600_000, template=template))
        peer = await first_peer(provider)
        req = await peer.next_request()
        assert json.loads(req.body)["message"]["android"]["ttl"] == "3000s"
        await peer.respond(req.stream_id, 200, b'{"name":"projects/proj/messages/1"}')
        [result] = await take(results)
        assert result.outcome == Delivered("projects/proj/messages/1")


async def test_stopping_lets_the_stream_in_flight_finish_and_ends_the_sender() -> None:
    async with running(ApnsSender, Clock()) as (sender, provider, results):
        sender.jobs_in.send_nowait(job())
        peer = await first_peer(provider)
        req = await peer.next_request()
        async with anyio.create_task_group() as tg:
            tg.start_soon(sender.aclose, WAIT_S)
            await anyio.wait_all_tasks_blocked()
            [conn] = sender.pool.connections
            assert conn.state is State.DRAINING and conn.available == 0
            await peer.respond(req.stream_id, 200)
        [result] = await take(results)
        assert isinstance(result.outcome, Delivered)
        await peer.until(lambda: peer.closed.is_set())
        assert peer.terminated is not None and peer.terminated.error_code == h2client.NO_ERROR
        assert sender.pool.connections == []


async def first_peer(provider: Provider) -> Any:
    await provider.until(lambda: bool(provider.peers))
    return provider.peers[0]


async def peer_number(provider: Provider, n: int, timeout: float = WAIT_S) -> Peer:
    await provider.until(lambda: len(provider.peers) > n, timeout)
    return provider.peers[n]


def delivery_ids(results: list[Result]) -> list[str]:
    return sorted(r.job.delivery_id for r in results)


@on_mock_clock()
async def test_a_stream_the_provider_never_answers_goes_out_again_on_a_new_connection() -> None:
    live = Liveness(response_s=30.0, ping_s=10.0, write_s=10.0)
    ids = ["a" * 32, "b" * 32]
    async with running(ApnsSender, Clock(), liveness=live) as (sender, provider, results):
        sender.jobs_in.send_nowait(job(1, delivery_id=ids[0]))
        first = await first_peer(provider)
        stuck = await first.next_request()
        sender.jobs_in.send_nowait(job(2, delivery_id=ids[1]))
        answered = await first.next_request()
        await first.respond(answered.stream_id)
        [result] = await take(results)
        assert result.job.delivery_id == ids[1]
        # The first connection answers PINGs but never the stuck stream.
        second = await peer_number(provider, 1, timeout=60)
        again = await second.next_request()
        assert again.headers[b"apns-id"] == stuck.headers[b"apns-id"]
        assert again.body == stuck.body
        await second.respond(again.stream_id)
        [result] = await take(results)
        assert result.outcome == Delivered(apns.apns_id_of(ids[0]))
        assert first.pings >= 1 and sender.resent == 1 and len(provider.peers) == 2
        [conn] = sender.pool.connections
        assert conn.state is State.OPEN


@on_mock_clock()
async def test_a_silent_provider_has_its_streams_sent_again_on_a_fresh_connection() -> None:
    live = Liveness(response_s=300.0, ping_s=10.0, write_s=10.0)
    ids = [c * 32 for c in "abc"]
    async with running(ApnsSender, Clock(), liveness=live) as (sender, provider, results):
        for i, delivery_id in enumerate(ids):
            sender.jobs_in.send_nowait(job(i, delivery_id=delivery_id))
        first = await first_peer(provider)
        sent = [await first.next_request() for _ in ids]
        first.go_silent()  # half-open: nothing answered, PINGs included
        second = await peer_number(provider, 1, timeout=100)
        again = [await second.next_request() for _ in ids]
        assert sorted(r.headers[b"apns-id"] for r in again) == sorted(
            r.headers[b"apns-id"] for r in sent)
        for req in again:
            await second.respond(req.stream_id)
        done: list[Result] = []
        while len(done) < len(ids):
            done += await take(results)
        assert delivery_ids(done) == ids
        assert all(isinstance(r.outcome, Delivered) for r in done)
        assert (h2client.PING, 0) in frame_types(bytes(first.ignored))
        assert sender.resent == 3 and sender.inflight == 0
