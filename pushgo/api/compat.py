"""The compat ingress routes (``/ntfy/…``, ``/serverchan/…``, ``/bark/…``). Thin: match the
raw path, read the query, headers or body, map them (pushgo.protocol.compat) and send the
message through the Publisher like ``POST /message`` (password check, throttle, op_id
idempotency), answering as it does.

Each prefix is one route whose segments are split on the raw path, so a percent-encoded
``/`` (``%2F``) in a key stays inside its segment.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pushgo.api.envelope import body_as, ok, read_body
from pushgo.errors import GatewayError, codes
from pushgo.protocol import compat
from pushgo.protocol import operations as OPS
from pushgo.service import Services

_FORM = "application/x-www-form-urlencoded"
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
#: The gateway token's query fallback, checked by the front door: not a message field.
_TOKEN_QUERY = "token"  # noqa: S105 - a parameter name, not a secret


def _matched(request: Request, prefix: bytes,
             match: Callable[[list[str]], compat.CompatRoute | None]) -> compat.CompatRoute:
    """The compat route of this request's raw path: 404 when no shape fits, 405 (with
    ``Allow``) for a method the shape does not take — as every other route answers."""
    raw = request.scope.get("raw_path") or quote(request.scope["path"]).encode()
    segments = compat.path_segments(raw, prefix)
    route = match(segments) if segments is not None else None
    if route is None:
        raise HTTPException(404)
    if request.method not in route.methods:
        raise HTTPException(405, headers={"allow": ", ".join(sorted(route.methods))})
    return route


def _headers(request: Request) -> dict[str, str]:
    """Header values as UTF-8 text (lower-case names, the first of a repeated one)."""
    out: dict[str, str] = {}
    for name, value in request.scope.get("headers", []):
        try:
            out.setdefault(name.decode("latin-1").lower(), value.decode("utf-8"))
        except UnicodeDecodeError:
            continue
    return out


def _query(request: Request, allowed: frozenset[str]) -> dict[str, str]:
    items = [(k, v) for k, v in request.query_params.multi_items() if k != _TOKEN_QUERY]
    return compat.query_fields(items, allowed)


def _is_form(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == _FORM


def compat_routes(svc: Services) -> list[BaseRoute]:

    async def send(req: OPS.MessageIn) -> Response:
        password = OPS.require_password(req.password)
        return ok((await svc.publisher.send(OPS.message_spec(req), password)).wire())

    async def ntfy(request: Request) -> Response:
        route = _matched(request, b"/ntfy/", compat.match_ntfy)
        query = _query(request, compat.NTFY_QUERY)
        body = None if request.method == "GET" else await read_body(request)
        return await send(compat.ntfy_message(route.key, query, _headers(request), body))

    async def serverchan(request: Request) -> Response:
        route = _matched(request, b"/serverchan/", compat.match_serverchan)
        if request.method == "GET":
            fields = _query(request, compat.SERVERCHAN_FIELDS)
        elif _is_form(request.headers.get("content-type")):
            fields = compat.form_fields(await read_body(request), compat.SERVERCHAN_FIELDS)
        else:
            raise GatewayError(codes.UNSUPPORTED_MEDIA_TYPE,
                               f"expected Content-Type: {_FORM}")
        return await send(compat.serverchan_message(route.key, fields))

    async def bark(request: Request) -> Response:
        route = _matched(request, b"/bark/", compat.match_bark)
        if route.dialect == "bark_push":
            req = await body_as(request, compat.BarkPushIn)
            return await send(compat.bark_push_message(req))
        query = _query(request, compat.BARK_QUERY)
        return await send(compat.bark_message(route, query))

    # Every method reaches the handler, which answers 405 itself for the shape it matched.
    return [Route(f"/{prefix}/{{rest:path}}", handler, methods=_METHODS)
            for prefix, handler in (("ntfy", ntfy), ("serverchan", serverchan), ("bark", bark))]
