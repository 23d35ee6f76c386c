"""The WNS sender: raw notifications to each device's channel URI over HTTP/1.1.

WNS takes one POST per notification at the channel URI itself, and each URI names its own
host under ``*.notify.windows.com``: requests go through the bounded HTTP/1.1 client of
:mod:`pushgo.push.http1` (the provider sender's contract, deadlines, local retries). Here: a
refused access token renewed once, a 413 to the full payload answered by sending the wake-up
map.
A channel URI on any other host is never contacted (the access token would go with it).
"""

from __future__ import annotations

import ssl
from typing import Any

import anyio
import httpx

from pushgo.protocol import wns as W
from pushgo.protocol.outcomes import Rejected
from pushgo.push.connection import Origin
from pushgo.push.credentials import CredentialError, WnsTokens
from pushgo.push.http1 import MAX_IN_FLIGHT, HttpSender, ssl_context
from pushgo.push.sender import Job, Outcome, ResultBuffer, TransportFailure

__all__ = ["WnsSender", "ssl_context"]


class WnsSender(HttpSender):
    name = "wns"
    display = "WNS"

    def __init__(self, results: ResultBuffer, tokens: WnsTokens, *,
                 endpoint: str | None = None, ssl_context: ssl.SSLContext | None = None,
                 max_in_flight: int = MAX_IN_FLIGHT,
                 transport: httpx.AsyncBaseTransport | None = None, **kw: Any) -> None:
        super().__init__(Origin.parse(endpoint or "https://" + W.CHANNEL_DOMAIN), results,
                         ssl_context=ssl_context, max_in_flight=max_in_flight,
                         transport=transport, **kw)
        self.tokens = tokens
        #: Tests: every channel URI's scheme, host and port replaced by this origin.
        self.endpoint = endpoint

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
        response, failed = await self._post(job, url, body, headers)
        if response is None:
            return failed, 0.0
        latency = anyio.current_time() - job.sent_at
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
