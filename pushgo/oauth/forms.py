"""What the authorize and bind pages share: the page request behind every rendered form (its
CSRF token, bound to the browser that opened it by a cookie), checking channel id + password
pairs under the rate limits, and the live check endpoint the pages' script calls.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from pushgo.errors import GatewayError, RateLimited, codes
from pushgo.oauth.config import digest
from pushgo.oauth.pages import t
from pushgo.oauth.ratelimit import Limiter
from pushgo.oauth.web import OAuthError, json_response, read_json
from pushgo.protocol import fields as field_rules
from pushgo.protocol import oauth as oauth_wire
from pushgo.service import Services

COOKIE_PREFIX = "pgcsrf_"
#: Rows one authorize form may carry.
MAX_ROWS = 20


class PageProblem(Exception):
    """A form that cannot be accepted at all (expired, used, CSRF): ``key`` names the text."""

    def __init__(self, key: str, status: int = 400) -> None:
        super().__init__(key)
        self.key = key
        self.status = status


@dataclass(frozen=True)
class PageRequest:
    request_id: str
    kind: str
    params: dict[str, Any]


class PageRequests:
    def __init__(self, svc: Services, limiter: Limiter) -> None:
        self.svc = svc
        self.limiter = limiter

    async def open(self, kind: str, params: dict[str, Any], ttl_ms: int, address: str
                   ) -> tuple[str, str, int]:
        """A new page request: (request_id, csrf_token, ttl seconds). Each is a row, so one
        address may open only so many (PageProblem ``busy``, 429)."""
        if self.limiter.take(("page", address)):
            raise PageProblem("busy", 429)
        request_id = secrets.token_urlsafe(18)
        token = secrets.token_urlsafe(24)
        now = self.svc.ctx.now()
        await self.svc.oauth.insert_request(
            request_id=request_id, kind=kind, csrf_hash=digest(token), params=params,
            now=now, expires_at=now + ttl_ms)
        return request_id, token, max(1, ttl_ms // 1000)

    async def check(self, request: Request, request_id: str | None, token: str | None,
                    kinds: tuple[str, ...]) -> PageRequest:
        """The live, unused page request a submitted form belongs to, if its CSRF token
        matches both the request and this browser's cookie."""
        if not request_id or not token or len(request_id) > 64 or len(token) > 64:
            raise PageProblem("csrf", 403)
        row = await self.svc.oauth.request(request_id)
        if row is None or row.kind not in kinds:
            raise PageProblem("expired")
        cookie = request.cookies.get(COOKIE_PREFIX + request_id, "")
        if not (hmac.compare_digest(cookie.encode(), token.encode())
                and hmac.compare_digest(digest(token), row.csrf_hash)):
            raise PageProblem("csrf", 403)
        if row.used_at is not None or row.expires_at <= self.svc.ctx.now():
            raise PageProblem("expired")
        return PageRequest(row.request_id, row.kind, json.loads(row.params))

    @staticmethod
    def set_cookie(response: Response, request_id: str, token: str, max_age: int, *,
                   secure: bool) -> None:
        response.set_cookie(COOKIE_PREFIX + request_id, token, max_age=max_age, path="/",
                            httponly=True, samesite="strict", secure=secure)


@dataclass(frozen=True)
class Checked:
    channel_id: str | None
    channel_name: str | None = None
    #: Text key of what went wrong, and the wait for "too_many".
    error: str | None = None
    retry_after: int = 0

    def message(self, locale: str) -> str | None:
        if self.error is None:
            return None
        if self.error == "too_many":
            return t(locale, "too_many", seconds=str(self.retry_after))
        return t(locale, self.error)


class ChannelCheck:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    async def check(self, raw_id: str, password: str) -> Checked:
        """Does ``password`` open the channel? Failed checks are limited per client address
        and per (channel, address), as on every path (pushgo.service.throttle): guesses
        from one address never lock the owner out from another. A refused attempt runs no
        KDF."""
        try:
            cid = field_rules.channel_id(raw_id)
        except GatewayError:
            return Checked(None, error="bad_id")
        try:
            row = await self.svc.channels.authorize(cid, password)
        except RateLimited as exc:
            return Checked(cid, error="too_many", retry_after=exc.retry_after or 1)
        except GatewayError as exc:
            if exc.error in (codes.CHANNEL_NOT_FOUND, codes.PASSWORD_MISMATCH, codes.INVALID_PASSWORD):
                return Checked(cid, error="wrong")
            raise
        return Checked(cid, str(row.channel_name))


def pairs(form: dict[str, list[str]]) -> list[tuple[str, str]]:
    """The (channel_id, password) rows of a submitted form, in order, blanks dropped."""
    ids = form.get("channel_id", [])
    passwords = form.get("password", [])
    if len(ids) > MAX_ROWS or len(passwords) > MAX_ROWS:
        raise OAuthError(codes.OAUTH_INVALID_REQUEST, f"at most {MAX_ROWS} channels at once")
    rows = []
    for i in range(max(len(ids), len(passwords))):
        cid = ids[i].strip() if i < len(ids) else ""
        password = passwords[i] if i < len(passwords) else ""
        if cid or password:
            rows.append((cid[:64], password[:256]))
    return rows


class LiveCheck:
    """``POST /oauth/channel/validate`` ``{request_id, csrf_token, channel_id, password,
    lang?}`` → ``{valid, channel_name?, error_code?, message?}``: only for a page this
    browser opened."""

    def __init__(self, requests: PageRequests, checker: ChannelCheck,
                 locale_of: Callable[[Request, str | None], str]) -> None:
        self.requests = requests
        self.checker = checker
        self.locale_of = locale_of

    async def endpoint(self, request: Request) -> Response:
        try:
            doc = await read_json(request)
        except OAuthError as exc:
            return json_response({"valid": False, "error_code": exc.code,
                                  "message": exc.description}, exc.status, cors=False)
        if not isinstance(doc, dict):
            doc = {}

        def text(key: str) -> str | None:
            value = doc.get(key)
            return value if isinstance(value, str) else None

        locale = self.locale_of(request, text("lang"))
        try:
            await self.requests.check(request, text("request_id"), text("csrf_token"),
                                      ("authorize", "bind", "revoke"))
        except PageProblem as exc:
            return json_response({"valid": False, "error_code": exc.key,
                                  "message": t(locale, exc.key)}, exc.status, cors=False)
        cid, password = (text("channel_id") or "").strip(), text("password") or ""
        if not cid or not password:
            return json_response({"valid": False, "error_code": codes.INCOMPLETE.code,
                                  "message": t(locale, "incomplete")}, cors=False)
        result = await self.checker.check(cid[:64], password[:256])
        if result.error == "too_many":
            return json_response({"valid": False, "error_code": codes.TOO_MANY_ATTEMPTS.code,
                                  "message": result.message(locale)}, codes.TOO_MANY_ATTEMPTS.status,
                                 {"retry-after": str(result.retry_after)}, cors=False)
        if result.error is not None:
            # A failed check is an answer, not a failed request: 200 with valid false.
            code = (codes.INVALID_CHANNEL_ID if result.error == "bad_id"
                    else codes.CHANNEL_PASSWORD_MISMATCH)
            return json_response({"valid": False, "error_code": code.code,
                                  "message": result.message(locale)}, cors=False)
        return json_response({"valid": True, "channel_id": result.channel_id,
                              "channel_name": result.channel_name}, cors=False)


def locale_for(request: Request, lang: str | None) -> str:
    q = request.query_params
    return oauth_wire.pick_locale(lang or q.get("lang"), q.get("ui_locales"),
                         request.headers.get("accept-language"))
