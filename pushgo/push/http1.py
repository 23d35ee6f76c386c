"""A provider sender over one bounded HTTP/1.1 client, for providers whose every device names
its own host (WNS channel URIs, Web Push endpoints), so there is no single origin to hold
HTTP/2 streams to: requests go through httpx (keep-alive connections per host, at most
``max_in_flight`` requests at once). Everything else is the provider sender's contract: jobs in
from the outbox pump, one :class:`~pushgo.push.sender.Result` per job out, expired jobs never
sent, a lost or timed-out request retried here up to ``LOCAL_TRIES`` times, every request under
a deadline. A subclass builds and judges one request (``_attempt``).
"""

from __future__ import annotations

import ssl
from typing import Any

import anyio
import anyio.abc
import httpx

from pushgo.push.connection import ConnectionFailed, Origin
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


class HttpSender(ProviderSender):
    #: Who a failed connection names ("cannot connect to …").
    display = "the provider"

    def __init__(self, origin: Origin, results: ResultBuffer, *,
                 ssl_context: ssl.SSLContext | None = None, max_in_flight: int = MAX_IN_FLIGHT,
                 transport: httpx.AsyncBaseTransport | None = None, **kw: Any) -> None:
        super().__init__(origin, None, results, **kw)
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
        raise NotImplementedError

    async def _post(self, job: Job, url: str, body: bytes, headers: dict[str, str],
                    ) -> tuple[httpx.Response | None, Outcome | None]:
        """POST under the sender's deadline: the response, or the outcome of a failed request
        (None when it was queued again here)."""
        job.sent_at = anyio.current_time()
        try:
            assert self._client is not None
            with anyio.fail_after(self.deadline_s):
                return await self._client.post(url, content=body, headers=headers), None
        except httpx.ConnectError as exc:
            return None, self._connect_failed(job, exc)
        except (httpx.TimeoutException, TimeoutError):
            self.pool.unresponsive += 1
            return None, self._lost(job, "timeout")
        except httpx.TransportError:
            return None, self._lost(job, "connection lost")

    def _lost(self, job: Job, reason: str) -> Outcome | None:
        job.tries += 1
        if job.tries < LOCAL_TRIES:
            self.resent += 1
            self._requeue(job)
            return None
        return TransportFailure(reason)

    def _connect_failed(self, job: Job, exc: BaseException) -> Outcome | None:
        self.pool.connect_failures += 1
        failure = ConnectionFailed(f"cannot connect to {self.display}")
        failure.__cause__ = exc
        self.pool.last_error = str(failure)
        if self.pool.on_connect_failed is not None:
            self.pool.on_connect_failed(failure)
        return self._lost(job, "connect failed")
