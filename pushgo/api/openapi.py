"""``GET /openapi.json`` (OpenAPI 3.1) and ``GET /docs`` (the reference page that renders it).

The document is built from the app's own router and the route declarations of
pushgo.api.catalog: every route the app serves is in it (a route without a declaration is
listed and marked ``x-pushgo-undescribed``, which tests/api/test_openapi.py refuses), and its
schemas are msgspec's JSON Schema (2020-12, the dialect of OpenAPI 3.1) of the very Structs
the routes decode and encode, so the document cannot drift from the wire. Built once per app,
on first request. Both routes answer without the gateway token: they describe the API and
hold nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any, Generic, Literal, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from pushgo import __version__
from pushgo.api.catalog import EXTRA_TYPES, JSON, OPS_BY_ROUTE, Op
from pushgo.api.envelope import Problem
from pushgo.errors import codes as C
from pushgo.settings import Settings

T = TypeVar("T")

OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"
#: Methods of a route registered without a list (an ASGI endpoint such as /mcp).
ANY_METHODS = ("GET", "POST", "DELETE")
_SKIPPED = {"HEAD", "OPTIONS"}  # answered by every GET route / CORS preflights: not operations
_WITH_BODY = {"POST", "PUT", "PATCH"}
_REF = "#/components/schemas/{name}"


class Ok(msgspec.Struct, Generic[T]):
    """The success envelope of a route whose ``data`` is ``T``."""

    success: Literal[True]
    data: T


def _ok(data: type[Any]) -> Any:
    return Ok[data]  # type: ignore[valid-type]


class Failed(msgspec.Struct):
    """The error envelope: ``error_code`` is one of the registry's codes."""

    success: Literal[False]
    error: str
    error_code: str
    problem: Problem


#: Codes any route of the API envelope can answer.
COMMON = (C.METHOD_NOT_ALLOWED.code, C.INTERNAL_ERROR.code, C.STORE_UNAVAILABLE.code,
          C.SERVER_BUSY.code)
#: Codes any route with a JSON body can answer.
BODY = (C.MISSING_JSON_CONTENT_TYPE.code, C.INVALID_JSON_SYNTAX.code, C.INVALID_JSON_DATA.code,
        C.JSON_TOO_DEEP.code, C.PAYLOAD_TOO_LARGE.code, C.REQUEST_TIMEOUT.code)


def template(route: Route | WebSocketRoute) -> str:
    """The route's path as OpenAPI spells it (``{rest:path}`` → ``{rest}``)."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)


def route_methods(route: Route) -> list[str]:
    return sorted(set(route.methods or ANY_METHODS) - _SKIPPED)


def declared(method: str, path: str) -> Op | None:
    return OPS_BY_ROUTE.get((method, path)) or OPS_BY_ROUTE.get(("*", path))


def operations(routes: Iterable[BaseRoute]) -> list[tuple[str, str, Op | None]]:
    """Every (method, path, declaration) the app serves, in the router's order."""
    out: list[tuple[str, str, Op | None]] = []
    for route in routes:
        if isinstance(route, Route):
            path = template(route)
            out += [(m, path, declared(m, path)) for m in route_methods(route)]
        elif isinstance(route, WebSocketRoute):  # an upgrade: a GET with its own protocol
            path = template(route)
            out.append(("GET", path, declared("GET", path)))
    return out


def operation_id(method: str, path: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "index"
    return f"{method.lower()}_{slug}"


class _Schemas:
    """Struct types → ``$ref``s, with one msgspec pass over all of them at the end."""

    def __init__(self) -> None:
        self.types: list[Any] = [Failed, *EXTRA_TYPES]

    def ref(self, kind: Any) -> dict[str, Any]:
        if kind not in self.types:
            self.types.append(kind)
        return {"$ref": f"#/components/schemas/{_name(kind)}"}

    def components(self) -> dict[str, Any]:
        _refs, components = msgspec.json.schema_components(self.types, ref_template=_REF)
        return dict(sorted(components.items()))


def _name(kind: Any) -> str:
    """The component name msgspec gives ``kind`` (``Ok[SendOut]`` → ``Ok_SendOut_``)."""
    refs, _ = msgspec.json.schema_components([kind], ref_template="{name}")
    return str(refs[0]["$ref"])


def _query_parameters(kind: type[Any]) -> list[dict[str, Any]]:
    _refs, comps = msgspec.json.schema_components([kind], ref_template=_REF)
    schema = comps[_name(kind)]
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema.get("properties", {}).items():
        prop = {k: v for k, v in prop.items() if k != "default"}
        out.append({"name": name, "in": "query", "required": name in required,
                    "schema": prop})
    return out


def _error_responses(found: Iterable[str]) -> dict[str, Any]:
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(found):
        by_status.setdefault(C.by_code(code).status, []).append(code)
    out: dict[str, Any] = {}
    for status, names in sorted(by_status.items()):
        resp: dict[str, Any] = {
            "description": "error_code: " + ", ".join(names),
            "x-error-codes": names,
            "content": {JSON: {"schema": {"$ref": "#/components/schemas/Failed"}}},
        }
        if status in (429, 503):
            resp["headers"] = {"Retry-After": {"description": "seconds to wait",
                                               "schema": {"type": "integer"}}}
        out[str(status)] = resp
    return out


def _codes_of(op: Op, method: str, path: str, token: bool, public: bool) -> list[str]:
    found = [*COMMON, *op.codes]
    if not public:  # an API key (any gateway), the gateway token (when set)
        found += [C.AUTHENTICATION_FAILED.code, C.SCOPE_REQUIRED.code]
    elif token:
        found.append(C.AUTHENTICATION_FAILED.code)
    if op.body is not None and method in _WITH_BODY:
        found += BODY
    if op.query is not None:
        found.append(C.INVALID_QUERY.code)
    if "{" in path:
        found.append(C.ROUTE_NOT_FOUND.code)
    return found


def _loose(op: Op) -> dict[str, Any]:
    return {str(s): {"description": f"{s} (the format of its own protocol)",
                     "content": {"*/*": {"schema": {}}}} for s in op.loose}


def _operation(method: str, path: str, op: Op | None, schemas: _Schemas, *,
               token: bool, public: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": operation_id(method, path)}
    params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
              for n in re.findall(r"\{(\w+)\}", path)]
    if op is None:
        out.update(summary="(undescribed)", **{"x-pushgo-undescribed": True},
                   responses={"default": {"description": "undescribed"}})
        return out
    out.update(summary=op.summary, tags=[op.tag])
    if op.query is not None:
        params += _query_parameters(op.query)
    if params:
        out["parameters"] = params
    if method in _WITH_BODY:
        if op.body is not None:
            out["requestBody"] = {"required": True,
                                  "content": {JSON: {"schema": schemas.ref(op.body)}}}
        elif op.raw_body is not None:
            out["requestBody"] = {"content": {m: {"schema": s} for m, s in op.raw_body.items()}}
    if public:
        out["security"] = []
    if op.loose:
        out["responses"] = _loose(op)
        return out
    if op.data is not None:
        ok: dict[str, Any] = {"description": "success",
                              "content": {JSON: {"schema": schemas.ref(_ok(op.data))}}}
    else:
        ok = {"description": "success",
              "content": {op.media or JSON: {"schema": op.media_schema}}}
    out["responses"] = {str(op.status): ok,
                        **_error_responses(_codes_of(op, method, path, token, public))}
    return out


def _link(target: tuple[str, str, dict[str, str], dict[str, Any] | None],
          known: set[str]) -> dict[str, Any] | None:
    method, path, params, body = target
    oid = operation_id(method, path)
    if oid not in known:
        return None
    out: dict[str, Any] = {"operationId": oid}
    if params:
        out["parameters"] = params
    if body is not None:
        out["requestBody"] = body
    return out


def build_document(routes: Iterable[BaseRoute], settings: Settings,
                   public: Callable[[str], bool]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of these routes. ``public``: paths served without the token."""
    token = settings.token is not None
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    ops = operations(routes)
    known = {operation_id(m, p) for m, p, _ in ops}
    for method, path, op in ops:
        entry = _operation(method, path, op, schemas, token=token, public=public(path))
        if op is not None and op.links and "200" in entry["responses"]:
            links = {name: link for name, target in op.links.items()
                     if (link := _link(target, known)) is not None}
            if links:
                entry["responses"]["200"]["links"] = links
        paths.setdefault(path, {})[method.lower()] = entry
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "pushgo gateway", "version": __version__,
                 "description": _DESCRIPTION},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "servers": [{"url": settings.public_base_url.rstrip("/")
                     if settings.public_base_url else "/"}],
        "paths": paths,
        "components": {"schemas": schemas.components(), "securitySchemes": _SECURITY},
    }
    if token:
        doc["security"] = [{"gatewayToken": []}, {"tokenQuery": []}]
    return doc


_DESCRIPTION = (
    "Every route answers JSON in the envelope {success, data, error, error_code, problem} "
    "unless its media type says otherwise; each error response lists the error codes it "
    "can carry. No string may contain U+0000 (400 invalid_json_data, or invalid_query). "
    "With PUSHGO_TOKEN set, every route but the public ones needs the gateway "
    "token: Authorization: Bearer <token>, or ?token=<token> on a request without an "
    "Authorization header.")

_SECURITY = {
    "gatewayToken": {"type": "http", "scheme": "bearer",
                     "description": "the gateway token (PUSHGO_TOKEN)"},
    "tokenQuery": {"type": "apiKey", "in": "query", "name": "token",
                   "description": "the gateway token, on a request without Authorization"},
}


def docs_routes(settings: Settings, public: Callable[[str], bool]) -> list[BaseRoute]:
    """``GET /openapi.json`` and ``GET /docs``; the document is built once per app."""
    encoder = msgspec.json.Encoder()
    page = resources.files("pushgo.api").joinpath("docs.html").read_text("utf-8")

    async def openapi(request: Request) -> Response:
        body = getattr(request.app.state, "openapi_json", None)
        if body is None:
            doc = build_document(request.app.routes, settings, public)
            body = request.app.state.openapi_json = encoder.encode(doc)
        return Response(body, media_type=JSON)

    async def docs(_request: Request) -> Response:
        return HTMLResponse(page)

    return [Route(OPENAPI_PATH, openapi, methods=["GET"]),
            Route(DOCS_PATH, docs, methods=["GET"])]
