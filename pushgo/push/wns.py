"""The WNS sender: raw notifications to each device's channel URI over HTTP/1.1.

WNS takes one POST per notification at the channel URI itself, and each URI names its own
host under ``*.notify.windows.com``, so there is no single origin to hold HTTP/2 streams to:
requests go through one bounded HTTP/1.1 client (httpx; keep-alive connections per host, at
most ``max_in_flight`` requests at once). Everything else is the provider sender's contract:
jobs in from the outbox pump, one :class:`~pushgo.push.sender.Result` per job out, expired jobs
never sent, a lost or timed-out request retried here up to ``LOCAL_TRIES`` times, a refused
access token renewed once, a 413 to the full payload answered by sending the wake-up map.
A channel URI on any other host is never contacted (the access token would go with it).
"""

from __future__ import annotations

import ssl
from typing import Any

import anyio
import anyio.abc
import httpx

from pushgo.protocol import wns as W
from pushgo.protocol.outcomes import Rejected
from pushgo.push.connection import ConnectionFailed, Origin
from pushgo.push.credentials import CredentialError, WnsTokens
from pushgo.push.sender import (
    DRAIN_GRACE_S,
    LOCAL_TRIES,
    Expired,
    Job,
    Outcome,
    ProviderSender,
    Result,
    ResultBuffer,
    TransportFailure,
)

#: Requests in flight at once (HTTP/1.1: also the most connections kept open).
MAX_IN_FLIGHT = 32
CONNECT_TIMEOUT_S = 10.0


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """A client context of its own: the HTTP client sets its ALPN (http/1.1) on it."""
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    return ctx


class WnsSender(ProviderSender):
    name = "wns"

    def __init__(self, results: ResultBuffer, tokens: WnsTokens, *,
                 endpoint: str | None = None, ssl_context: ssl.SSLContext | None = None,
                 max_in_flight: int = MAX_IN_FLIGHT,
                 transport: httpx.AsyncBaseTransport | None = None, **kw: Any) -> None:
        super().__init__(Origin.parse(endpoint or "https://" + W.CHANNEL_DOMAIN), None,
                         results, **kw)
        self.tokens = tokens
        #: Tests: every channel URI's scheme, host and port replaced by this origin.
        self.endpoint = endpoint
        self._ssl = ssl_context
        self._transport = transport
        self.max_in_flight = max_in_flight
        self._slots = anyio.Semaphore(max_in_flight)
        self._client: httpx.AsyncClient | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._closing = False
        self._idle = anyio.Event()
        liveness = self.pool.liveness
        self.deadline_s = CONNECT_TIMEOUT_S + liveness.response_s
        self._timeout = httpx.Timeout(connect=CONNECT_TIMEOUT_S, read=liveness.response_s,
                                      write=liveness.write_s, pool=liveness.response_s)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                  ) -> None:
        limits = httpx.Limits(max_connections=self.max_in_flight,
                              max_keepalive_connections=self.max_in_flight, keepalive_expiry=60)
        verify: ssl.SSLContext | bool = self._ssl if self._ssl is not None else True
        async with httpx.AsyncClient(verify=verify, http1=True, http2=False, limits=limits,
                                     timeout=self._timeout, transport=self._transport,
                                     trust_env=False, follow_redirects=False) as client:
            self._client = client
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._scope = tg.cancel_scope
                task_status.started()
                await self._feed()

    async def aclose(self, grace: float = DRAIN_GRACE_S) -> None:
        """Send nothing more, let the requests in flight finish for at most ``grace`` seconds
        (their results are reported), then end ``run()``."""
        self._closing = True
        with anyio.move_on_after(grace):
            while self.inflight:
                self._idle = anyio.Event()
                await self._idle.wait()
        if self._scope is not None:
            self._scope.cancel()

    async def _feed(self) -> None:
        assert self._tg is not None
        while True:
            job = await self._next_job()
            if job.expires_at_ms <= self._clock_ms():
                self.results.add(Result(job, Expired()))
                continue
            await self._slots.acquire()
            if self._closing:  # not reported: the pump's lease brings it back
                self._slots.release()
                await anyio.sleep_forever()
            self.inflight += 1
            self._tg.start_soon(self._send, job)

    async def _send(self, job: Job) -> None:
        latency = 0.0
        try:
            outcome, latency = await self._attempt(job)
        finally:
            self.inflight -= 1
            self._slots.release()
            if not self.inflight:
                self._idle.set()
        if outcome is not None:
            self.results.add(Result(job, outcome, latency))

    async def _attempt(self, job: Job) -> tuple[Outcome | None, float]:
        """One request for ``job``: its outcome, or None when it was queued again here."""
        url = W.channel_target(job.token, self.endpoint)
        if url is None:
            return Rejected("InvalidChannelUri", 0, "dead_token"), 0.0
        full, wake = job.template
        picked = W.choose(full, wake, job.delivery_id)
        if picked is None:
            return Rejected("PayloadTooLarge", 413, "permanent"), 0.0
        body, template = picked
        try:
            token = await self.tokens.token()
        except CredentialError as exc:
            return TransportFailure(f"credentials: {exc}"), 0.0
        job.credential = token
        ttl_s = max(0, (job.expires_at_ms - self._clock_ms()) // 1000)
        headers = W.headers(token, template.priority, ttl_s)
        job.sent_at = started = anyio.current_time()
        try:
            assert self._client is not None
            with anyio.fail_after(self.deadline_s):
                response = await self._client.post(url, content=body, headers=headers)
        except httpx.ConnectError as exc:
            return self._connect_failed(job, exc), 0.0
        except (httpx.TimeoutException, TimeoutError):
            self.pool.unresponsive += 1
            return self._lost(job, "timeout"), 0.0
        except httpx.TransportError:
            return self._lost(job, "connection lost"), 0.0
        latency = anyio.current_time() - started
        self.latency.observe(latency)
        answer = {k.lower(): v for k, v in response.headers.raw}
        return self._judge(job, W.interpret(response.status_code, answer), template, wake), latency

    def _judge(self, job: Job, outcome: Outcome, sent: W.PayloadTemplate,
               wake: W.PayloadTemplate | None) -> Outcome | None:
        if not isinstance(outcome, Rejected):
            return outcome
        if outcome.kind == "provider_token":
            return self._renew_once(job, outcome, self.tokens.invalidate)
        if outcome.status == 413 and not sent.wakeup and wake is not None:
            job.template = (wake, None)  # WNS found the full map too large: the wake-up map
            self._requeue(job)
            return None
        return outcome

    def _lost(self, job: Job, reason: str) -> Outcome | None:
        job.tries += 1
        if job.tries < LOCAL_TRIES:
            self.resent += 1
            self._requeue(job)
            return None
        return TransportFailure(reason)

    def _connect_failed(self, job: Job, exc: BaseException) -> Outcome | None:
        self.pool.connect_failures += 1
        failure = ConnectionFailed("cannot connect to WNS")
        failure.__cause__ = exc
        self.pool.last_error = str(failure)
        if self.pool.on_connect_failed is not None:
            self.pool.on_connect_failed(failure)
        return self._lost(job, "connect failed")
