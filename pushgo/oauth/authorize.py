"""``/oauth/authorize``: the authorization code flow with PKCE S256, exact redirect-URI
matching, ``state`` echoed, ``resource`` (RFC 8707) bound into the token audience and ``iss``
in the response (RFC 9207). Its page is the bind page: the user enters one or more channel id
+ password pairs and confirms; the grant then holds exactly those channels.

An unknown client or a redirect URI that does not match its registration exactly is answered
with an error page (400) and never redirected. An error found after that match goes back to
the redirect URI (RFC 6749 §4.1.2.1, with ``state`` and ``iss``) only when the URI is trusted
(``Client.trusts_redirect``: configured by the operator, or loopback); a URI anyone could
register gets the error page too, so this endpoint is no open redirector (RFC 9700 §4.11.2).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from pushgo.errors import ErrorCode, codes
from pushgo.oauth.clients import Client, Clients
from pushgo.oauth.config import Lifetimes, digest, new_id
from pushgo.oauth.forms import ChannelCheck, PageProblem, PageRequests, locale_for, pairs
from pushgo.oauth.pages import Form, Row, authorize_page, language_links, message_page, t
from pushgo.oauth.web import (
    OAuthError,
    base_url,
    client_address,
    new_nonce,
    page_response,
    query_form,
    read_form,
    single,
)
from pushgo.protocol import oauth as oauth_wire
from pushgo.protocol.ids import redact
from pushgo.service import Services
from pushgo.service.oauth import NewGrant
from pushgo.settings import Settings

log = logging.getLogger("pushgo.oauth")

PATH = "/oauth/authorize"


class PageError(Exception):
    """An error shown on a page because it cannot safely go back to the client."""

    def __init__(self, key: str, status: int = 400) -> None:
        super().__init__(key)
        self.key = key
        self.status = status


@dataclass(frozen=True)
class AuthRequest:
    client: Client
    redirect_uri: str
    state: str | None
    code_challenge: str
    scopes: frozenset[str]
    resource: str
    issuer: str

    def params(self, locale: str) -> dict[str, Any]:
        return {"client_id": self.client.client_id, "redirect_uri": self.redirect_uri,
                "state": self.state, "code_challenge": self.code_challenge,
                "scope": oauth_wire.scope_text(self.scopes), "resource": self.resource,
                "issuer": self.issuer, "locale": locale}


def redirect_to(uri: str, params: list[tuple[str, str]]) -> Response:
    return RedirectResponse(oauth_wire.with_query(uri, params), status_code=303,
                            headers={"cache-control": "no-store", "referrer-policy": "no-referrer"})


class Authorize:
    def __init__(self, svc: Services, settings: Settings, clients: Clients, lifetimes: Lifetimes,
                 requests: PageRequests, checker: ChannelCheck) -> None:
        self.svc = svc
        self.settings = settings
        self.clients = clients
        self.lifetimes = lifetimes
        self.requests = requests
        self.checker = checker

    # --- checking the request -----------------------------------------------------------------

    async def _client_and_redirect(self, form: dict[str, list[str]]) -> tuple[Client, str]:
        try:
            client_id = single(form, "client_id", max_len=oauth_wire.MAX_URI)
            redirect_uri = single(form, "redirect_uri", max_len=oauth_wire.MAX_URI)
        except OAuthError:
            raise PageError("unknown_client") from None
        if client_id is None:
            raise PageError("unknown_client")
        try:
            client = await self.clients.get(client_id, self.svc.ctx.now())
        except OAuthError:
            client = None
        if client is None:
            raise PageError("unknown_client")
        if redirect_uri is None or not client.redirect_allowed(redirect_uri):
            raise PageError("bad_redirect")
        return client, redirect_uri

    async def check(self, form: dict[str, list[str]], base: str) -> AuthRequest:
        client, redirect_uri = await self._client_and_redirect(form)
        state = None
        try:
            state = single(form, "state", max_len=oauth_wire.MAX_STATE)
            response_type = single(form, "response_type")
            challenge = single(form, "code_challenge", max_len=128)
            method = single(form, "code_challenge_method", max_len=16)
            scope = single(form, "scope", max_len=1024)
            resources = form.get("resource", [])
        except OAuthError as exc:
            raise _Redirect(client, redirect_uri, state, base, codes.OAUTH_INVALID_REQUEST,
                            exc.description) from None
        req = (client, redirect_uri, state, base)
        if response_type != "code":
            raise _Redirect(*req, codes.OAUTH_UNSUPPORTED_RESPONSE_TYPE, "response_type must be code")
        if challenge is None:
            raise _Redirect(*req, codes.OAUTH_INVALID_REQUEST, "PKCE is required: send code_challenge "
                            "with code_challenge_method=S256")
        if method != "S256":
            raise _Redirect(*req, codes.OAUTH_INVALID_REQUEST, "code_challenge_method must be S256")
        if not oauth_wire.valid_challenge(challenge):
            raise _Redirect(*req, codes.OAUTH_INVALID_REQUEST, "code_challenge must be 43 base64url "
                            "characters (S256)")
        resource = f"{base}/mcp"
        if any(r.rstrip("/") != resource for r in resources):
            raise _Redirect(*req, codes.OAUTH_INVALID_TARGET, f"the only resource here is {resource}")
        if scope is None:
            scopes = client.registered_scope or frozenset(oauth_wire.SCOPES)
        else:
            scopes, _unknown = oauth_wire.parse_scope(scope)
            if not scopes:
                raise _Redirect(*req, codes.OAUTH_INVALID_SCOPE, "scope must include "
                                + " or ".join(oauth_wire.SCOPES))
        return AuthRequest(client, redirect_uri, state, challenge, scopes, resource, base)

    # --- GET: the page ------------------------------------------------------------------------

    async def get(self, request: Request) -> Response:
        base = base_url(self.settings, request)
        form = query_form(request)
        locale = locale_for(request, None)
        try:
            auth = await self.check(form, base)
        except PageError as exc:
            return self._message(locale, "error_title", t(locale, exc.key), exc.status)
        except _Redirect as exc:
            if exc.trusted:
                return exc.response()
            return self._message(locale, "error_title",
                                 t(locale, "bad_request", error=exc.params[0][1],
                                   description=exc.params[1][1]), 400)
        try:
            request_id, token, max_age = await self.requests.open(
                "authorize", auth.params(locale), self.lifetimes.page, client_address(request))
        except PageProblem as exc:
            return self._message(locale, "error_title", t(locale, exc.key), exc.status)
        params = {k: v[0] for k, v in form.items() if v and k != "lang"}
        page = Form(locale, PATH, request_id, token,
                    languages=language_links(PATH, params, locale))
        response = self._render(page, auth.client, auth.redirect_uri, auth.scopes)
        self.requests.set_cookie(response, request_id, token, max_age,
                                 secure=base.startswith("https:"))
        return response

    def _render(self, page: Form, client: Client, redirect_uri: str, scopes: frozenset[str],
                status: int = 200, retry_after: int = 0) -> Response:
        nonce = new_nonce()
        html = authorize_page(page, client_name=client.name, client_id=client.client_id,
                              redirect_uri=redirect_uri,
                              scopes=[s for s in oauth_wire.SCOPES if s in scopes], nonce=nonce)
        target = oauth_wire.origin_of(redirect_uri)
        if retry_after:  # the password throttle said no: 429, as everywhere
            status = codes.TOO_MANY_ATTEMPTS.status
        return page_response(html, status, nonce=nonce, form_targets=[target] if target else [],
                             headers={"retry-after": str(retry_after)} if retry_after else None)

    def _message(self, locale: str, title_key: str, message: str, status: int) -> Response:
        nonce = new_nonce()
        return page_response(message_page(locale, title_key, message, nonce), status,
                             nonce=nonce)

    # --- POST: the user's answer --------------------------------------------------------------

    async def post(self, request: Request) -> Response:
        try:
            form = await read_form(request)
            lang = single(form, "lang", max_len=16)
            request_id = single(form, "request_id", max_len=64)
            token = single(form, "csrf_token", max_len=64)
            rows = pairs(form)
        except OAuthError:
            locale = locale_for(request, None)
            return self._message(locale, "error_title", t(locale, "csrf"), 400)
        locale = locale_for(request, lang)
        try:
            page_req = await self.requests.check(request, request_id, token, ("authorize",))
        except PageProblem as exc:
            return self._message(locale, "error_title", t(locale, exc.key), exc.status)
        params = page_req.params
        client = await self.clients.get(params["client_id"], self.svc.ctx.now(), fresh=False)
        if client is None:
            return self._message(locale, "error_title", t(locale, "unknown_client"), 400)
        redirect_uri: str = params["redirect_uri"]
        scopes = oauth_wire.parse_scope(params["scope"])[0]
        answer = [("state", params["state"])] if params["state"] is not None else []
        answer.append(("iss", params["issuer"]))
        page = Form(locale, PATH, page_req.request_id, token or "",
                    rows=[Row(cid) for cid, _pw in rows] or [Row()])

        if "add_row" in form:
            page.rows.append(Row())
            return self._render(page, client, redirect_uri, scopes)
        if single(form, "decision") == "deny":
            if not await self.svc.oauth.use_request(page_req.request_id, self.svc.ctx.now()):
                return self._message(locale, "error_title", t(locale, "expired"), 400)
            return redirect_to(redirect_uri, [("error", codes.OAUTH_ACCESS_DENIED.code),
                                              ("error_description", "the user denied access"),
                                              *answer])

        names: list[tuple[str, str]] = []
        failed, retry_after = False, 0
        for row, (cid, password) in zip(page.rows, rows, strict=False):
            if not cid or not password:
                row.error, failed = t(locale, "incomplete"), True
                continue
            checked = await self.checker.check(cid, password)
            row.channel_id = checked.channel_id or cid
            if checked.error is not None:
                row.error, failed = checked.message(locale), True
                if checked.error == "too_many":
                    retry_after = max(retry_after, checked.retry_after)
                continue
            assert checked.channel_id is not None
            names.append((checked.channel_id, checked.channel_name or ""))
        if not rows:
            page.error, failed = t(locale, "none"), True
        if failed:
            return self._render(page, client, redirect_uri, scopes, status=400,
                                retry_after=retry_after)

        code = new_id("pgac", 32)
        now = self.svc.ctx.now()
        lt = self.lifetimes

        grant = NewGrant(grant_id=new_id("pgg", 18), client_id=client.client_id,
                         scope=oauth_wire.scope_text(scopes), resource=params["resource"],
                         issuer=params["issuer"], expires_at=now + lt.refresh_absolute,
                         channel_ids=tuple(cid for cid, _name in names),
                         code_hash=digest(code), redirect_uri=redirect_uri,
                         code_challenge=params["code_challenge"], code_expires_at=now + lt.code)
        if not await self.svc.oauth.grant_authorization(page_req.request_id, grant, now):
            return self._message(locale, "error_title", t(locale, "expired"), 400)
        log.info("authorization granted", extra={"fields": {
            "client": redact(client.client_id), "channels": len(names)}})
        return redirect_to(redirect_uri, [("code", code), *answer])


class _Redirect(Exception):
    def __init__(self, client: Client, redirect_uri: str, state: str | None, issuer: str,
                 error: ErrorCode, description: str) -> None:
        super().__init__(description)
        self.trusted = client.trusts_redirect(redirect_uri)
        self.redirect_uri = redirect_uri
        self.params = [("error", error.code), ("error_description", description)]
        if state is not None:
            self.params.append(("state", state))
        self.params.append(("iss", issuer))

    def response(self) -> Response:
        return redirect_to(self.redirect_uri, self.params)
