"""The operator console: ``GET /console``, one self-contained page (console.html: its CSS,
script and charts inline, nothing fetched from elsewhere), and the admin routes it reads:

- ``GET /admin/console/operations?limit=N``: the newest operations, newest first, with
  their deliveries counted by state (the page then follows those still in flight on
  ``GET /deliveries/{op_id}/stream``);
- ``GET /admin/console/stats``: provider queue depth now and the last hour's samples of
  queue depth and sends (pushgo.service.console, pushgo.delivery.sampler);
- ``GET /admin/console/providers``: each provider's breaker state;
- ``GET /admin/console/failures``: the last hour's failed deliveries by reason.

The page itself needs no credential (it holds no data: like the Web Push page and /docs);
it asks for the gateway token or an admin key, keeps it in the tab's sessionStorage and
sends it as ``Authorization: Bearer`` on every call. The data routes need the admin scope.
Thin: decode, call the console service, encode.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from pushgo.api.envelope import ok, query_params
from pushgo.errors import InvalidInput, codes
from pushgo.service.console import DEFAULT_OPERATIONS, MAX_OPERATIONS, Console

PAGE_PATH = "/console"
PUBLIC_PATHS = frozenset({PAGE_PATH})

#: Nothing but the gateway's own origin, and no script or style from anywhere else.
_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; form-action 'none'; "
        "frame-ancestors 'none'; base-uri 'none'")


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_OPERATIONS
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_OPERATIONS:
        raise InvalidInput(codes.INVALID_QUERY,
                           f"limit must be a whole number from 1 to {MAX_OPERATIONS}")
    return int(raw)


def console_routes(console: Console) -> list[BaseRoute]:
    page = resources.files("pushgo.api").joinpath("console.html").read_text("utf-8")

    async def console_page(_request: Request) -> Response:
        return HTMLResponse(page, headers={"cache-control": "no-cache",
                                           "content-security-policy": _CSP,
                                           "referrer-policy": "no-referrer"})

    async def operations(request: Request) -> Response:
        query = query_params(request, {"limit"})
        return ok(await console.operations(_limit(query.get("limit"))))

    async def stats(request: Request) -> Response:
        query_params(request)
        return ok(await console.stats())

    async def providers(request: Request) -> Response:
        query_params(request)
        return ok(await console.providers())

    async def failures(request: Request) -> Response:
        query_params(request)
        return ok(await console.failures())

    return [
        Route(PAGE_PATH, console_page, methods=["GET"]),
        Route("/admin/console/operations", operations, methods=["GET"]),
        Route("/admin/console/stats", stats, methods=["GET"]),
        Route("/admin/console/providers", providers, methods=["GET"]),
        Route("/admin/console/failures", failures, methods=["GET"]),
    ]
