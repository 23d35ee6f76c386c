"""The Web Push sender: each message encrypted for its browser subscription (RFC 8291) and
POSTed to the subscription's endpoint (RFC 8030) with a VAPID ``Authorization`` (RFC 8292).

Each endpoint names its own push service host, so requests go through the bounded HTTP/1.1
client of :mod:`pushgo.push.http1` (deadlines, local retries of lost requests, the provider
sender's job/result contract). Per message: a fresh sender key pair and salt (never reused),
``TTL`` from the delivery's remaining lifetime, ``Urgency`` from the severity and, for events
and things, a ``Topic``. A VAPID JWT is made per push service origin and reused until an hour
before it expires. A 413 to a full document is answered by sending the wake-up document.
Only https endpoints on public hosts are contacted (``allow_local``: tests on loopback).
"""

from __future__ import annotations

import os
import ssl
from typing import Any

import anyio
import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from pushgo.protocol import webpush as W
from pushgo.protocol.outcomes import Rejected
from pushgo.push.connection import Origin
from pushgo.push.http1 import MAX_IN_FLIGHT, HttpSender
from pushgo.push.sender import Job, Outcome, ResultBuffer, TransportFailure

#: A cached VAPID authorization is renewed this long before its JWT expires (seconds).
RENEW_BEFORE_S = 3600
#: Push service origins whose authorization is remembered.
MAX_AUDIENCES = 1024


class WebPushSender(HttpSender):
    name = "webpush"
    display = "the push service"

    def __init__(self, results: ResultBuffer, *, subject: str, allow_local: bool = False,
                 ssl_context: ssl.SSLContext | None = None, max_in_flight: int = MAX_IN_FLIGHT,
                 transport: httpx.AsyncBaseTransport | None = None, **kw: Any) -> None:
        super().__init__(Origin("push.invalid", 443), results, ssl_context=ssl_context,
                         max_in_flight=max_in_flight, transport=transport, **kw)
        self.subject = subject
        self.allow_local = allow_local
        #: The gateway's application server key, set once the store is open.
        self.vapid: W.VapidKey | None = None
        self._auth: dict[str, tuple[str, int]] = {}

    def authorization(self, audience: str) -> str:
        """The ``Authorization`` value for a push service origin (cached)."""
        assert self.vapid is not None
        now_s = self._clock_ms() // 1000
        cached = self._auth.get(audience)
        if cached is not None and cached[1] - now_s > RENEW_BEFORE_S:
            return cached[0]
        if len(self._auth) >= MAX_AUDIENCES:
            self._auth.clear()
        value, expires = W.authorization(self.vapid, audience, self.subject, now_s)
        self._auth[audience] = (value, expires)
        return value

    async def _attempt(self, job: Job) -> tuple[Outcome | None, float]:
        if self.vapid is None:
            return TransportFailure("web push key not loaded"), 0.0
        try:
            sub = W.parse_token(job.token, allow_local=self.allow_local)
        except W.SubscriptionError:
            return Rejected("InvalidSubscription", 0, "dead_token"), 0.0
        full, wake = job.template
        picked = W.choose(full, wake, job.delivery_id)
        if picked is None:
            return Rejected("PayloadTooLarge", 413, "permanent"), 0.0
        plain, template = picked
        body = W.encrypt(plain, sub.p256dh, sub.auth,
                         as_private=ec.generate_private_key(ec.SECP256R1()),
                         salt=os.urandom(W.SALT_LEN))
        ttl_s = max(0, (job.expires_at_ms - self._clock_ms()) // 1000)
        headers = W.headers(self.authorization(sub.audience), ttl_s=ttl_s,
                            urgency_value=template.urgency, topic=template.topic)
        response, failed = await self._post(job, sub.endpoint, body, headers)
        if response is None:
            return failed, 0.0
        latency = anyio.current_time() - job.sent_at
        self.latency.observe(latency)
        answer = {k.lower(): v for k, v in response.headers.raw}
        outcome = W.interpret(response.status_code, answer)
        if (isinstance(outcome, Rejected) and outcome.status == 413 and not template.wakeup
                and wake is not None):
            job.template = (wake, None)  # the push service found it too large: the wake-up
            self._requeue(job)
            return None, latency
        return outcome, latency
