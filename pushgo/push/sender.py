"""Provider senders: take jobs (one delivery each) from a bounded stream, put each on a pooled
HTTP/2 connection, and report one :class:`Result` per job.

A rejection is a value (``Rejected``), a transport failure is retried here on a fresh stream
(REFUSED_STREAM, GOAWAY-unprocessed, lost connection) up to ``LOCAL_TRIES`` times before it is
handed to the dispatcher as a retryable failure. Expired jobs are never sent: expiry is judged
by an injected wall clock (``clock_ms``, the gateway's own). ``aclose()`` drains the connections
when the sender stops.
APNs: an ``ExpiredProviderToken`` renews the JWT once, drains that connection and retries.
FCM: a 401 invalidates the access token once and retries.
"""

from __future__ import annotations

import logging
import ssl
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from pushgo.protocol import apns as A
from pushgo.protocol import fcm as FC
from pushgo.protocol import liveactivity as LA
from pushgo.protocol.bulk import ack_device_key
from pushgo.protocol.h2client import Response
from pushgo.protocol.outcomes import Delivered, Rejected
from pushgo.push.connection import Connect, Connection, Liveness, Origin
from pushgo.push.credentials import ApnsTokens, CredentialError, FcmTokens
from pushgo.push.pool import Pool

log = logging.getLogger("pushgo.push")

LOCAL_TRIES = 3
QUEUE_SIZE = 2048
#: How long a stopping sender lets its in-flight streams finish.
DRAIN_GRACE_S = 2.0


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class Job:
    seq: int
    delivery_id: str
    device_key: str
    token: str
    template: Any  # apns.PayloadTemplate | tuple[fcm.MessageTemplate, fcm.MessageTemplate|None]
    expires_at_ms: int
    low_priority: bool
    attempts: int = 0  # recorded attempts before this one
    tries: int = 0  # transport retries within this attempt
    auth_retried: bool = False
    sent_at: float = 0.0
    credential: str = ""  # the JWT / access token the request carried
    platform: str = ""
    route: str = ""  # apns / fcm / wns: the outbox route (metrics labels)
    push_type: str = ""  # APNs: "liveactivity" for a Live Activity push, else an alert


@dataclass(frozen=True, slots=True)
class Expired:
    pass


@dataclass(frozen=True, slots=True)
class TransportFailure:
    reason: str


Outcome = Delivered | Rejected | Expired | TransportFailure


class LatencyHistogram:
    """Send latency (request written → provider response) in fixed buckets: one bisect and two
    additions per response, no lock (the event loop is the only writer); /metrics reads it."""

    BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BOUNDS) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.BOUNDS, seconds)] += 1
        self.sum += seconds


@dataclass(frozen=True, slots=True)
class Result:
    job: Job
    outcome: Outcome
    latency_s: float = 0.0


class ResultBuffer:
    """Sync ``add`` from connection readers; async ``take`` for the dispatcher."""

    def __init__(self) -> None:
        self._items: deque[Result] = deque()
        self._event = anyio.Event()

    def add(self, result: Result) -> None:
        self._items.append(result)
        self._event.set()

    async def take(self, max_items: int = 1000) -> list[Result]:
        while not self._items:
            self._event = anyio.Event()
            if self._items:
                break
            await self._event.wait()
        out: list[Result] = []
        while self._items and len(out) < max_items:
            out.append(self._items.popleft())
        return out

    def __len__(self) -> int:
        return len(self._items)


class ProviderSender:
    """Shared machinery; subclasses build requests and read responses."""

    name = "sender"
    stream_cap = 1000
    initial_streams = 1

    def __init__(self, origin: Origin, ssl_context: ssl.SSLContext | None,
                 results: ResultBuffer, *, connections: int = 1,
                 clock_ms: Callable[[], int] = wall_clock_ms, queue_size: int = QUEUE_SIZE,
                 connect: Connect | None = None, liveness: Liveness = Liveness()) -> None:
        self.origin = origin
        self.results = results
        self.pool = Pool(origin, self, size=connections, stream_cap=self.stream_cap,
                         initial_streams=self.initial_streams, connect=connect,
                         ssl_context=ssl_context, tag_factory=self._connection_tag,
                         liveness=liveness)
        self.jobs_in: MemoryObjectSendStream[Job]
        self._jobs: MemoryObjectReceiveStream[Job]
        self.jobs_in, self._jobs = anyio.create_memory_object_stream[Job](queue_size)
        self._retry: deque[Job] = deque()
        self._retry_event = anyio.Event()
        self._awaiting_slot: Job | None = None
        self._slot_scope: anyio.CancelScope | None = None  # made on the event loop
        self._clock_ms = clock_ms
        self._scope: anyio.CancelScope | None = None
        self.inflight = 0
        self.latency = LatencyHistogram()
        self.resent = 0  # streams sent again after REFUSED_STREAM / GOAWAY / a lost connection

    def _connection_tag(self) -> Any:
        return None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                  ) -> None:
        async with anyio.create_task_group() as tg:
            self._scope = tg.cancel_scope
            await tg.start(self.pool.run)
            task_status.started()
            await self._feed()

    async def aclose(self, grace: float = DRAIN_GRACE_S) -> None:
        """Stop: send nothing more, let the streams in flight finish (their results are
        reported) for at most ``grace`` seconds, then end ``run()``. Jobs not sent by then are
        not reported: the pump's leases bring them back."""
        await self.pool.aclose(grace)
        if self._scope is not None:
            self._scope.cancel()

    async def _next_job(self) -> Job:
        while True:
            if self._retry:
                return self._retry.popleft()
            try:
                return self._jobs.receive_nowait()
            except anyio.WouldBlock:
                pass
            self._retry_event = anyio.Event()
            async with anyio.create_task_group() as tg:
                async def wait_retry() -> None:
                    await self._retry_event.wait()
                    tg.cancel_scope.cancel()

                async def wait_job() -> None:
                    job = await self._jobs.receive()
                    self._retry.appendleft(job)
                    tg.cancel_scope.cancel()

                tg.start_soon(wait_retry)
                tg.start_soon(wait_job)

    async def _feed(self) -> None:
        while True:
            job = await self._next_job()
            if job.expires_at_ms <= self._clock_ms():
                self.results.add(Result(job, Expired()))
                continue
            ready = self.pool.ready()  # the steady state: no wait, no cancel scope
            if ready is not None:
                conn = ready
            else:
                # While no connection can be opened this may wait long: take_back() can take
                # the job from here too.
                self._awaiting_slot = job
                with anyio.CancelScope() as self._slot_scope:
                    conn = await self.pool.slot()
                if self._awaiting_slot is not job:
                    continue  # taken back
                self._awaiting_slot = None
            try:
                block, body = await self.build(job)
            except CredentialError as exc:
                self.results.add(Result(job, TransportFailure(f"credentials: {exc}")))
                continue
            if body is None:
                self.results.add(Result(job, Rejected("PayloadTooLarge", 413, "permanent")))
                continue
            if conn.available <= 0:  # the await above let others take the slot
                self._requeue(job)
                continue
            job.sent_at = anyio.current_time()
            conn.submit(block, body, (job, conn))
            self.inflight += 1

    async def build(self, job: Job) -> tuple[bytes, bytes | None]:
        raise NotImplementedError

    def interpret(self, job: Job, conn: Connection, response: Response) -> Outcome | None:
        """The outcome, or None when the job was requeued (credential renewal)."""
        raise NotImplementedError

    def _renew_once(self, job: Job, refused: Rejected,
                    forget: Callable[[str], None]) -> Outcome | None:
        """The provider refused the credential the request carried: the first time, ``forget``
        it (a new one is made) and send again; the second time the refusal is permanent."""
        if job.auth_retried:
            return Rejected(refused.reason, refused.status, "permanent")
        job.auth_retried = True
        forget(job.credential)
        self._requeue(job)
        return None

    def _requeue(self, job: Job) -> None:
        self._retry.append(job)
        self._retry_event.set()

    def take_back(self) -> list[Job]:
        """Every job waiting here for a stream (queued, to be resent, or waiting for a
        connection), taken out unsent: the caller gives them back to the outbox while the
        provider is unavailable."""
        jobs = list(self._retry)
        self._retry.clear()
        if self._awaiting_slot is not None:
            jobs.append(self._awaiting_slot)
            self._awaiting_slot = None
            if self._slot_scope is not None:
                self._slot_scope.cancel()
        while True:
            try:
                jobs.append(self._jobs.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                return jobs

    def take_back_where(self, held: Callable[[Job], bool]) -> list[Job]:
        """The waiting jobs ``held`` picks, taken out unsent; the others stay, in their order
        (the pump gives back the jobs of one held push service, not the whole route's)."""
        jobs = self.take_back()
        out = [job for job in jobs if held(job)]
        keep = [job for job in jobs if not held(job)]
        if keep:
            self._retry.extend(keep)
            self._retry_event.set()
        return out

    # -- Sink --------------------------------------------------------------------------------

    def on_response(self, tag: Any, response: Response) -> None:
        job, conn = tag
        self.inflight -= 1
        latency = anyio.current_time() - job.sent_at
        self.latency.observe(latency)
        outcome = self.interpret(job, conn, response)
        if outcome is not None:
            self.results.add(Result(job, outcome, latency))

    def on_unsent(self, tag: Any) -> None:
        job, _conn = tag
        self.inflight -= 1
        self.resent += 1
        self._requeue(job)  # never processed: resending is free

    def on_lost(self, tag: Any) -> None:
        job, _conn = tag
        self.inflight -= 1
        job.tries += 1
        if job.tries < LOCAL_TRIES:
            self.resent += 1
            self._requeue(job)
        else:
            self.results.add(Result(job, TransportFailure("connection lost")))


async def stop_senders(senders: Iterable[ProviderSender], grace: float = DRAIN_GRACE_S) -> None:
    """Stop every sender at once (see :meth:`ProviderSender.aclose`)."""
    async with anyio.create_task_group() as tg:
        for sender in senders:
            tg.start_soon(sender.aclose, grace)


class ApnsSender(ProviderSender):
    name = "apns"
    stream_cap = 1000
    initial_streams = 1

    def __init__(self, origin: Origin, ssl_context: ssl.SSLContext | None, results: ResultBuffer,
                 jwt_source: ApnsTokens, topic: str, *, watch_topic: str | None = None,
                 **kw: Any) -> None:
        super().__init__(origin, ssl_context, results, **kw)
        self.jwt_source = jwt_source
        self.topic = topic
        self.watch_topic = watch_topic or topic
        self._headers: dict[tuple[str, str], A.HeaderBuilder] = {}

    async def _header_builder(self, platform: str = "", push_type: str = "") -> A.HeaderBuilder:
        jwt = await self.jwt_source.token()
        topic = self.watch_topic if platform == "watchos" else self.topic
        if push_type == LA.PUSH_TYPE:  # Apple wants the app's topic with this suffix
            topic += LA.TOPIC_SUFFIX
        key = (topic, push_type or "alert")
        hb = self._headers.get(key)
        if hb is None or hb.jwt != jwt:
            hb = self._headers[key] = A.HeaderBuilder(self.origin.authority, topic, jwt,
                                                      key[1])
        return hb

    async def build(self, job: Job) -> tuple[bytes, bytes | None]:
        hb = await self._header_builder(job.platform, job.push_type)
        template: A.PayloadTemplate = job.template
        block = hb.block(job.token, job.delivery_id, low_priority=job.low_priority,
                         expiration_s=job.expires_at_ms // 1000)
        job.credential = hb.jwt
        return block, template.render(job.delivery_id, ack_device_key(job.device_key))

    def interpret(self, job: Job, conn: Connection, response: Response) -> Outcome | None:
        if response.status == 200:
            # APNs answers with the apns-id the request carried: no need to decode the
            # response's headers (the steady state's largest cost when they were).
            return Delivered(A.apns_id_of(job.delivery_id))
        outcome = A.interpret(response.status, response.headers, response.body)
        if isinstance(outcome, Rejected) and outcome.kind == "provider_token":
            if not job.auth_retried:
                conn.drain()  # its streams carry the refused JWT
            return self._renew_once(job, outcome, self.jwt_source.expired)
        return outcome


class FcmSender(ProviderSender):
    name = "fcm"
    stream_cap = 100
    initial_streams = 100

    def __init__(self, origin: Origin, ssl_context: ssl.SSLContext | None, results: ResultBuffer,
                 token_source: FcmTokens, **kw: Any) -> None:
        super().__init__(origin, ssl_context, results, **kw)
        self.token_source = token_source
        self._headers: FC.HeaderBuilder | None = None

    async def build(self, job: Job) -> tuple[bytes, bytes | None]:
        token = await self.token_source.token()
        hb = self._headers
        if hb is None or hb.access_token != token:
            hb = self._headers = FC.HeaderBuilder(self.origin.authority,
                                                  self.token_source.project_id, token)
        full, wake = job.template
        ttl_s = max(0, (job.expires_at_ms - self._clock_ms()) // 1000)
        body = full.render(job.token, job.delivery_id, ttl_s,
                           ack_device_key(job.device_key))
        if len(body) > FC.PAYLOAD_LIMIT:
            body = wake.render(job.token, job.delivery_id, ttl_s) if wake is not None else None
            if body is not None and len(body) > FC.PAYLOAD_LIMIT:
                body = None
        job.credential = token
        return hb.with_length(len(body) if body else 0), body

    def interpret(self, job: Job, conn: Connection, response: Response) -> Outcome | None:
        outcome = FC.interpret(response.status, response.headers, response.body)
        if isinstance(outcome, Rejected) and outcome.kind == "provider_token":
            return self._renew_once(job, outcome, self.token_source.invalidate)
        return outcome
