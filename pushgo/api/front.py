"""The front door of every HTTP request (pure ASGI middleware): request id, the client address
the rate limits key on (``PUSHGO_TRUSTED_PROXIES``), the optional gateway token, unknown
routes, the request body's deadline and leftovers (pushgo.api.reading), the per-request JSON
log line (status 499 for a client that went away in the middle of its body), and the
last-resort 500.

Logs never carry query strings (GET /message has the password there, and any request may
carry the gateway token there) or bodies.

The gateway token: ``Authorization: Bearer <token>`` first; a request without an
Authorization header may carry it as ``?token=<token>`` instead (PushGo Gateway v1.3's
fallback, for senders that cannot set headers). The same places may carry a scoped API key
(``pgk_…``, pushgo.service.keys) instead: it is looked up on every request (a revoked key
fails at once, in every process), the request then acts as its Principal (the ``PRINCIPAL``
context variable, reset after the request) and needs the route's scope
(pushgo.api.scopes); an unknown or revoked key is 401, a missing scope 403. The gateway
token is compared in memory, as before: no database read. The request's path is logged and counted by
its route template, never with its query string, so the token never reaches a log line, a
metrics label or an error message; the routes skip the ``token`` parameter.
"""

from __future__ import annotations

import hmac
import logging
import random
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.routing import Match, Router, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from pushgo.api.envelope import TOKEN_QUERY, error_body, locale_of
from pushgo.api.reading import BodyReader, RequestTimeout
from pushgo.api.scopes import scope_of
from pushgo.errors import (
    AuthenticationFailed,
    Forbidden,
    GatewayError,
    NotFound,
    QuotaExceeded,
    codes,
)
from pushgo.protocol.compat import loggable_path
from pushgo.service.principal import PRINCIPAL, Principal, current, key_id_of
from pushgo.service.quotas import Quotas, Usage
from pushgo.service.throttle import CLIENT, client_address, networks

log = logging.getLogger("pushgo.http")

MAX_TOKEN = 4096
#: The status counted and logged for a request whose client went away before its body ended.
CLIENT_CLOSED = 499


_random = random.Random()  # seeded from os.urandom


def _header(scope: Scope, name: bytes) -> str | None:
    """A request header's value (the last one of that name), or None."""
    value: str | None = None
    for key, raw in scope["headers"]:
        if key == name:
            value = raw.decode("latin-1")
    return value


def _encoded(headers: tuple[tuple[str, str], ...]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in headers]


def bearer_matches(header: str | None, token: str) -> bool:
    if not header or not header.isascii():
        return False
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer" or len(parts[1]) > MAX_TOKEN:
        return False
    return hmac.compare_digest(parts[1].encode(), token.encode())


def query_token_matches(scope: Scope, token: str) -> bool:
    """The request has no Authorization header and its query's ``token`` is the gateway
    token (the last one when repeated, as for headers)."""
    raw: bytes = scope.get("query_string", b"")
    if not raw:
        return False
    given: str | None = None
    for key, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if key == TOKEN_QUERY:
            given = value
    if given is None or not given.isascii() or len(given) > MAX_TOKEN:
        return False
    return hmac.compare_digest(given.encode(), token.encode())


def _query_token(scope: Scope) -> str | None:
    raw: bytes = scope.get("query_string", b"")
    given: str | None = None
    if raw and TOKEN_QUERY.encode() in raw:
        for key, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
            if key == TOKEN_QUERY:
                given = value
    return given


def api_key_given(scope: Scope) -> str | None:
    """The API key the request carries (``Authorization: Bearer pgk_…``, or ``?token=pgk_…``
    without an Authorization header), or None when it carries none."""
    header = _header(scope, b"authorization")
    if header is not None:
        parts = header.split()
        given = parts[1] if len(parts) == 2 and parts[0].lower() == "bearer" else None
    else:
        given = _query_token(scope)
    return given if given is not None and key_id_of(given) is not None else None


def token_accepted(scope: Scope, token: str) -> bool:
    header = _header(scope, b"authorization")
    if header is not None:
        return bearer_matches(header, token)
    return query_token_matches(scope, token)


class Front:
    def __init__(self, app: ASGIApp, router: Router, *, token: str | None,
                 exempt: Callable[[str], bool] = lambda _p: False,
                 on_request: Callable[[str, str, int], None] | None = None,
                 trusted_proxies: tuple[str, ...] = (),
                 body_timeout_s: float | None = None,
                 resolve: Callable[[str], Awaitable[Principal | None]] | None = None,
                 quotas: Quotas | None = None) -> None:
        self.app = app
        # An API key → its Principal (None: unknown or revoked); None: no API keys here.
        self.resolve = resolve
        #: Per-key request rates, taken right after authentication (pushgo.service.quotas).
        self.quotas = quotas
        # The request body's arrival deadline (pushgo.api.reading); None: no deadline.
        self.body_timeout_s = body_timeout_s
        self.trusted = networks(trusted_proxies)
        self.router = router
        self.token = token
        self.exempt = exempt
        # Told (method, route template, status) once per request, after it ends (metrics).
        self.on_request = on_request
        self._static: dict[str, str] = {}  # path → template, for routes without parameters
        # WebSocket endpoints by path (routes without parameters), called straight from here:
        # a long-lived WebSocket (thousands of idle warp-link sessions) then holds no frames
        # of the router and middleware stack. Their endpoints answer their own errors.
        self._sockets: dict[str, Callable[[WebSocket], Awaitable[None]]] = {
            route.path: route.endpoint for route in router.routes
            if isinstance(route, WebSocketRoute) and not route.param_convertors}

    def _template(self, scope: Scope) -> str | None:
        """The matching route's path template, or None for an unknown route."""
        path = scope["path"]
        known = self._static.get(path)
        if known is not None:
            return known
        for route in self.router.routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                template = str(getattr(route, "path", "") or "other")
                if template == path:  # a route without parameters: at most one entry each
                    self._static[path] = template
                return template
        return None

    async def _principal(self, key: str, template: str,
                         reply: Callable[[GatewayError], Awaitable[None]]) -> Principal | None:
        """The API key's principal, if the key is live and has the route's scope; else the
        refusal is answered and None returned."""
        assert self.resolve is not None
        try:
            principal = await self.resolve(key)
        except GatewayError as exc:  # the store cannot say: 503, never a pass
            await reply(exc)
            return None
        if principal is None:
            await reply(AuthenticationFailed())
            return None
        need = scope_of(template)
        if need is not None and not principal.may(need):
            await reply(Forbidden(codes.SCOPE_REQUIRED,
                                  f"this API key lacks the {need.value!r} scope"))
            return None
        return principal

    def _admit(self) -> Usage | QuotaExceeded | None:
        """The request's principal takes its key's rate: the refusal, the Usage whose
        RateLimit-* fields the answer carries, or None (nothing limits this caller)."""
        if self.quotas is None:
            return None
        try:
            return self.quotas.admit(current())
        except QuotaExceeded as exc:
            return exc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            endpoint = self._sockets.get(scope["path"]) if scope["type"] == "websocket" else None
            if endpoint is not None:
                await endpoint(WebSocket(scope, receive, send))
                return
            await self.app(scope, receive, send)
            return
        # A correlation id, not a secret: 128 bits from the process's PRNG (no syscall).
        rid = f"{_random.getrandbits(128):032x}"
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = 0
        body = BodyReader(scope, receive, self.body_timeout_s)
        usage: Usage | QuotaExceeded | None = None  # the limits this request used

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers", [])
                # A quota's refusal names its own limit; other answers the request's usage.
                limits = (usage.headers() if isinstance(usage, Usage)
                          and not any(k == b"ratelimit-limit" for k, _ in headers) else ())
                message["headers"] = [*headers, (b"x-request-id", rid.encode()),
                                      *_encoded(limits),
                                      *body.response_headers(scope.get("http_version", "1.1"))]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                await body.finish()  # a small unread body: the connection stays usable
            await send(message)

        async def reply(exc: GatewayError) -> None:
            locale = locale_of(_header(scope, b"accept-language"))
            extra = [(b"www-authenticate", b"Bearer")] if exc.status == 401 else []
            if exc.retry_after is not None:
                extra.append((b"retry-after", str(exc.retry_after).encode()))
            extra += _encoded(exc.headers)
            await send_with_id({
                "type": "http.response.start", "status": exc.status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-language", locale.encode()), *extra],
            })
            await send_with_id({"type": "http.response.body",
                                "body": error_body(exc, rid, locale)})

        async def serve() -> None:
            """The app, once the caller's key (its PRINCIPAL) has taken its request rate."""
            nonlocal usage
            usage = self._admit()
            if isinstance(usage, QuotaExceeded):
                await reply(usage)
            elif usage is None:
                await self.app(scope, body, send_with_id)
            else:
                with usage.active():
                    await self.app(scope, body, send_with_id)

        path: str = scope["path"]
        template: str | None = None
        peer = scope.get("client")
        forwarded = [raw.decode("latin-1") for key, raw in scope["headers"]
                     if key == b"x-forwarded-for"] if self.trusted else []
        client = CLIENT.set(client_address(str(peer[0]) if peer else None, forwarded,
                                           self.trusted))
        try:
            template = self._template(scope)
            key = (api_key_given(scope) if self.resolve is not None and template is not None
                   and not self.exempt(path) else None)
            if template is None:
                await reply(NotFound(codes.ROUTE_NOT_FOUND, "404 Not Found"))
            elif key is not None:
                principal = await self._principal(key, template, reply)
                if principal is not None:
                    as_key = PRINCIPAL.set(principal)
                    try:
                        await serve()
                    finally:
                        PRINCIPAL.reset(as_key)
            elif (self.token is not None and not self.exempt(path)
                  and not token_accepted(scope, self.token)):
                await reply(AuthenticationFailed())
            else:
                await serve()
        except Exception:
            # Starlette's handler has already logged and answered a 500 it could answer; what
            # is left is a failure before any response, or in the middle of a stream. A client
            # gone in the middle of its body, or too slow with it, is not a server error.
            if status != 500 and not (body.gone or body.timed_out):
                log.exception("unhandled error",
                              extra={"fields": {"request_id": rid,
                                                "path": loggable_path(path)}})
            if status == 0 and not body.gone:
                await reply(RequestTimeout() if body.timed_out
                            else GatewayError(codes.INTERNAL_ERROR, "internal error"))
        finally:
            CLIENT.reset(client)
            if body.gone:  # counted and logged apart from the answers the gateway gave
                status = CLIENT_CLOSED
            if self.on_request is not None:
                self.on_request(scope["method"], template or "unmatched", status)
            if log.isEnabledFor(logging.INFO):
                log.info("request", extra={"fields": {
                    "method": scope["method"], "path": loggable_path(path), "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "request_id": rid,
                    **({"client_disconnected": True} if body.gone else {}),
                }})

