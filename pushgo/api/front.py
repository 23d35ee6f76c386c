"""The front door of every HTTP request (pure ASGI middleware): request id, the optional
gateway token, unknown routes, the per-request JSON log line, and the last-resort 500.

Logs never carry query strings (GET /message has the password there) or bodies.
"""

from __future__ import annotations

import hmac
import logging
import random
import time
from collections.abc import Callable

from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pushgo.api.envelope import error_body, locale_of
from pushgo.errors import AuthenticationFailed, GatewayError, NotFound

log = logging.getLogger("pushgo.http")

MAX_TOKEN = 4096


_random = random.Random()  # seeded from os.urandom


def _header(scope: Scope, name: bytes) -> str | None:
    """A request header's value (the last one of that name), or None."""
    value: str | None = None
    for key, raw in scope["headers"]:
        if key == name:
            value = raw.decode("latin-1")
    return value


def bearer_matches(header: str | None, token: str) -> bool:
    if not header or not header.isascii():
        return False
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer" or len(parts[1]) > MAX_TOKEN:
        return False
    return hmac.compare_digest(parts[1].encode(), token.encode())


class Front:
    def __init__(self, app: ASGIApp, router: Router, *, token: str | None,
                 exempt: Callable[[str], bool] = lambda _p: False,
                 on_request: Callable[[str, str, int], None] | None = None) -> None:
        self.app = app
        self.router = router
        self.token = token
        self.exempt = exempt
        # Told (method, route template, status) once per request, after it ends (metrics).
        self.on_request = on_request
        self._static: dict[str, str] = {}  # path → template, for routes without parameters

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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # A correlation id, not a secret: 128 bits from the process's PRNG (no syscall).
        rid = f"{_random.getrandbits(128):032x}"
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", rid.encode())]
            await send(message)

        async def reply(exc: GatewayError) -> None:
            locale = locale_of(_header(scope, b"accept-language"))
            extra = [(b"www-authenticate", b"Bearer")] if exc.status == 401 else []
            await send_with_id({
                "type": "http.response.start", "status": exc.status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-language", locale.encode()), *extra],
            })
            await send_with_id({"type": "http.response.body",
                                "body": error_body(exc, rid, locale)})

        path: str = scope["path"]
        template: str | None = None
        try:
            template = self._template(scope)
            if template is None:
                await reply(NotFound("404 Not Found", code="route_not_found"))
            elif (self.token is not None and not self.exempt(path)
                  and not bearer_matches(_header(scope, b"authorization"), self.token)):
                await reply(AuthenticationFailed("authentication failed"))
            else:
                await self.app(scope, receive, send_with_id)
        except Exception:
            # Starlette's handler has already logged and answered a 500 it could answer; what
            # is left is a failure before any response, or in the middle of a stream.
            if status != 500:
                log.exception("unhandled error",
                              extra={"fields": {"request_id": rid, "path": path}})
            if status == 0:
                await reply(GatewayError("internal error", code="internal_error", status=500))
        finally:
            if self.on_request is not None:
                self.on_request(scope["method"], template or "unmatched", status)
            if log.isEnabledFor(logging.INFO):
                log.info("request", extra={"fields": {
                    "method": scope["method"], "path": path, "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "request_id": rid,
                }})

