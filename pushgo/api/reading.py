"""The request body as the front door sees it: a deadline on its arrival, what is left unread
when the answer goes out, and a client that went away in the middle of it.

Hypercorn bounds how long a client may take over a request's headers (see
pushgo.hypercorn_guard) but has no deadline for a body: :class:`BodyReader` wraps the ASGI
``receive`` of one request so that waiting for the body counts against a budget of
``PUSHGO_HTTP_BODY_TIMEOUT_S`` plus one second per 64 KiB received (a large bulk upload at a
fair rate is never cut, a trickle is). Only the time spent waiting for the client counts, not
the time the gateway spends on what it has read. Past the budget the read raises
``request_timeout`` (408); the answer carries ``connection: close`` and Hypercorn closes the
connection, whose body was never finished.

An answer that goes out before the body was read (a 401, 404, 413, 415) would leave the
rest of the body on a keep-alive connection. :meth:`BodyReader.response_headers` decides at
the start of the answer: a small declared remainder is drained before the answer ends, so the
connection stays usable; anything else (a large or chunked body) is answered with
``connection: close``.
"""

from __future__ import annotations

import anyio
from starlette.types import Message, Receive, Scope

from pushgo.errors import GatewayError, codes

#: Budget added per byte received: one second per 64 KiB.
GRACE_BYTES_PER_S = 64 * 1024
#: The largest unread remainder drained so that a keep-alive connection can go on.
DRAIN_MAX = 64 * 1024


class RequestTimeout(GatewayError):
    default = codes.REQUEST_TIMEOUT
    default_message = "the request body did not arrive in time"


def _declared_length(scope: Scope) -> int | None:
    """The body's declared length: Content-Length, 0 without one, None when chunked."""
    length: int | None = 0
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            length = int(value) if value.isdigit() else None
    return length


class BodyReader:
    """The ``receive`` of one HTTP request, with the body deadline and its bookkeeping."""

    def __init__(self, scope: Scope, receive: Receive, timeout_s: float | None) -> None:
        self._receive = receive
        self.timeout_s = timeout_s
        self.declared = _declared_length(scope)
        self.received = 0
        self.waited = 0.0
        self.complete = False  # the last body message has arrived
        self.gone = False  # the client disconnected before the body ended
        self.timed_out = False
        self.drain = False  # decided when the answer starts

    @property
    def unfinished(self) -> bool:
        return not (self.complete or self.gone or self.timed_out)

    async def __call__(self) -> Message:
        if not self.unfinished or self.timeout_s is None:
            message = await self._receive()
        else:
            budget = self.timeout_s + self.received / GRACE_BYTES_PER_S - self.waited
            started = anyio.current_time()
            with anyio.move_on_after(max(budget, 0.0)):
                message = await self._receive()
                self.waited += anyio.current_time() - started
                self._note(message)
                return message
            self.timed_out = True
            raise RequestTimeout()
        self._note(message)
        return message

    def _note(self, message: Message) -> None:
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.complete = True
        elif message["type"] == "http.disconnect" and not self.complete:
            self.gone = True

    def response_headers(self, http_version: str) -> list[tuple[bytes, bytes]]:
        """Extra headers of the answer now starting: ``connection: close`` when the rest of
        the body will not be read (HTTP/1 only: HTTP/2 has no such header)."""
        if http_version >= "2":  # streams end on their own; the connection goes on
            return []
        if not self.unfinished:
            return [(b"connection", b"close")] if self.timed_out else []
        left = None if self.declared is None else self.declared - self.received
        self.drain = left is not None and left <= DRAIN_MAX
        return [] if self.drain else [(b"connection", b"close")]

    async def finish(self) -> None:
        """Read and drop what is left of a small body before the answer ends."""
        if not (self.drain and self.unfinished):
            return
        try:
            while self.unfinished:
                await self()
        except RequestTimeout:
            pass
