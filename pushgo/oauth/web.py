"""HTTP plumbing shared by the OAuth endpoints and pages: RFC 6749 JSON errors, JSON and
HTML responses (pages carry anti-framing and a strict CSP with a per-response nonce), bounded
body reading, form decoding, the client address, the request's base URL and CORS.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from pushgo.errors import ErrorCode, codes
from pushgo.protocol import jsondepth
from pushgo.protocol import oauth as oauth_wire
from pushgo.protocol.ids import is_digits
from pushgo.service.throttle import current_client
from pushgo.settings import Settings

MAX_FORM = 16 * 1024
MAX_JSON = 32 * 1024

#: Browser-based MCP clients call these from another origin.
CORS = {"access-control-allow-origin": "*",
        "access-control-allow-methods": "GET, POST, OPTIONS",
        "access-control-allow-headers": "authorization, content-type, mcp-protocol-version",
        "access-control-max-age": "600"}
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}


class OAuthError(Exception):
    """An RFC 6749 §5.2 error: a registered ``error`` code (``codes.OAUTH_*``), description,
    HTTP status (the code's unless given: invalid_client answers 401 with a challenge)."""

    def __init__(self, error: ErrorCode, description: str, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = error.status if status is None else status
        self.headers = headers or {}

    @property
    def code(self) -> str:
        return self.error.code


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None,
                  *, cors: bool = True) -> Response:
    merged = {**(CORS if cors else {}), **NO_STORE, **(headers or {})}
    return Response(json.dumps(doc, ensure_ascii=False, separators=(",", ":")),
                    status_code=status, media_type="application/json", headers=merged)


def error_response(exc: OAuthError) -> Response:
    return json_response({"error": exc.code, "error_description": exc.description},
                         exc.status, exc.headers)


def preflight() -> Response:
    return Response(status_code=204, headers=CORS)


def page_response(html: str, status: int = 200, *, nonce: str,
                  form_targets: Iterable[str] = (), headers: dict[str, str] | None = None
                  ) -> Response:
    """An HTML page nobody can frame, running only its own inline script and style."""
    targets = " ".join(["'self'", *dict.fromkeys(form_targets)])
    csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
           f"connect-src 'self'; img-src 'self' data:; form-action {targets}; "
           "frame-ancestors 'none'; base-uri 'none'")
    merged = {"content-security-policy": csp, "x-frame-options": "DENY",
              "x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
              **NO_STORE, **(headers or {})}
    return Response(html, status_code=status, media_type="text/html; charset=utf-8",
                    headers=merged)


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def headers_of(request: Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def base_url(settings: Settings, request: Request) -> str:
    return oauth_wire.request_base_url(settings.public_base_url, headers_of(request))


def client_address(_request: Request) -> str:
    """The address the limits key on: computed once per request by the front door
    (pushgo.service.throttle.client_address, which honours PUSHGO_TRUSTED_PROXIES)."""
    return current_client()


async def read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and is_digits(length) and int(length) > limit:
        raise OAuthError(codes.OAUTH_INVALID_REQUEST, f"request body over {limit} bytes", 413)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise OAuthError(codes.OAUTH_INVALID_REQUEST, f"request body over {limit} bytes", 413)
    return body


async def read_form(request: Request) -> dict[str, list[str]]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise OAuthError(codes.OAUTH_INVALID_REQUEST,
                         "the body must be application/x-www-form-urlencoded")
    try:
        return oauth_wire.parse_form(await read_body(request, MAX_FORM))
    except ValueError:
        raise OAuthError(codes.OAUTH_INVALID_REQUEST, "the form body is malformed") from None


async def read_json(request: Request) -> Any:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise OAuthError(codes.OAUTH_INVALID_REQUEST, "the body must be application/json")
    try:
        return jsondepth.loads(await read_body(request, MAX_JSON))
    except jsondepth.TooDeep as exc:
        raise OAuthError(codes.OAUTH_INVALID_REQUEST, f"the body is not valid JSON: {exc}") from None
    except ValueError:
        raise OAuthError(codes.OAUTH_INVALID_REQUEST, "the body is not valid JSON") from None


def single(form: dict[str, list[str]], name: str, *, required: bool = False,
           max_len: int = 4096) -> str | None:
    """One parameter: repeated is invalid (RFC 6749 §3.1), empty counts as absent."""
    values = form.get(name) or []
    if len(values) > 1:
        raise OAuthError(codes.OAUTH_INVALID_REQUEST, f"parameter {name} is repeated")
    value = values[0] if values else ""
    if len(value) > max_len:
        raise OAuthError(codes.OAUTH_INVALID_REQUEST, f"parameter {name} is too long")
    if not value:
        if required:
            raise OAuthError(codes.OAUTH_INVALID_REQUEST, f"parameter {name} is required")
        return None
    return value


def query_form(request: Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        out.setdefault(key, []).append(value)
    return out
