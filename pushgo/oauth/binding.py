"""Channel grants in OAuth mode: the :class:`ChannelBinding` the MCP channel tools and
resources use, and the one-time bind and revoke pages a ``bind_url`` opens.

``pushgo.channel.bind.start`` makes a bind session (10 minutes) and answers its URL; the user
opens it, enters the channel id and password, and the channel is bound to (or unbound from)
the caller's grant; ``bind.status`` then reads ``completed``. After a change every open MCP
stream of that grant gets ``notifications/resources/list_changed``.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from pushgo.errors import InvalidInput, NotFound, codes
from pushgo.mcp.auth import Principal, oauth_required
from pushgo.oauth.authorize import redirect_to
from pushgo.oauth.clients import Clients
from pushgo.oauth.config import Lifetimes, new_id
from pushgo.oauth.forms import ChannelCheck, PageProblem, PageRequests, locale_for, pairs
from pushgo.oauth.pages import Form, Row, bind_page, language_links, message_page, t
from pushgo.oauth.web import (
    OAuthError,
    base_url,
    client_address,
    new_nonce,
    page_response,
    read_form,
    single,
)
from pushgo.protocol import oauth as oauth_wire
from pushgo.service import Services
from pushgo.settings import Settings

log = logging.getLogger("pushgo.oauth")

LIST_CHANGED = "notifications/resources/list_changed"
PATHS = {"bind": "/mcp/bind/session", "revoke": "/mcp/revoke/session"}
POLL_AFTER_MS = 1500


class Publisher(Protocol):
    def publish(self, method: str, params: dict[str, Any] | None = None, *,
                owner: str | None = None) -> int: ...


def owner_of(grant_id: str) -> str:
    """The MCP principal key of a grant: whose streams hear about its changes."""
    return f"oauth:{grant_id}"


def session_not_found() -> NotFound:
    return NotFound(codes.BIND_SESSION_NOT_FOUND, "bind session not found")


class OAuthBinding:
    def __init__(self, svc: Services, settings: Settings, clients: Clients,
                 lifetimes: Lifetimes, requests: PageRequests, checker: ChannelCheck) -> None:
        self.svc = svc
        self.settings = settings
        self.records = svc.oauth
        self.clients = clients
        self.lifetimes = lifetimes
        self.requests = requests
        self.checker = checker
        self.notifier: Publisher | None = None

    def _changed(self, grant_id: str) -> None:
        if self.notifier is not None:
            self.notifier.publish(LIST_CHANGED, None, owner=owner_of(grant_id))

    @staticmethod
    def _grant_id(principal: Principal) -> str:
        if not principal.oauth or principal.subject is None:
            raise oauth_required()
        return principal.subject

    # --- ChannelBinding -----------------------------------------------------------------------

    async def is_granted(self, principal: Principal, channel_id: str) -> bool:
        if not principal.oauth or principal.subject is None:
            return False
        return await self.records.is_granted(principal.subject, channel_id, self.svc.ctx.now())

    async def list_channels(self, principal: Principal) -> list[dict[str, Any]]:
        rows = await self.records.granted_channels(self._grant_id(principal))
        return [{"channel_id": r.channel_id, "channel_name": r.channel_name or "",
                 "granted_at": r.granted_at,
                 "status": "active" if r.channel_name is not None else "missing"}
                for r in rows]

    async def start(self, principal: Principal, *, action: str, requested_channel_id: str | None,
                    redirect_uri: str | None, lang: str | None) -> dict[str, Any]:
        grant_id = self._grant_id(principal)
        grant = await self.records.grant(grant_id)
        if grant is None:
            raise oauth_required()
        if redirect_uri is not None:
            client = await self.clients.get(grant.client_id, self.svc.ctx.now(), fresh=False)
            if client is None or not client.redirect_allowed(redirect_uri):
                raise InvalidInput(codes.INVALID_REDIRECT_URI,
                                   "redirect_uri must be one of this client's registered "
                                   "redirect URIs")
        locale = oauth_wire.pick_locale(lang, None, None)
        now = self.svc.ctx.now()
        session_id = new_id("pgbs", 18)
        expires_at = now + self.lifetimes.bind_session
        await self.records.insert_bind_session(
            bind_session_id=session_id, grant_id=grant_id, action=action,
            requested_channel_id=requested_channel_id, redirect_uri=redirect_uri, lang=locale,
            status="pending", created_at=now, expires_at=expires_at)
        query = f"bind_session_id={session_id}" + ("" if locale == "en" else f"&lang={locale}")
        return {"bind_session_id": session_id,
                "bind_url": f"{grant.issuer}{PATHS[action]}?{query}",
                "expires_at": expires_at, "poll_after_ms": POLL_AFTER_MS}

    async def status(self, principal: Principal, bind_session_id: str) -> dict[str, Any]:
        grant_id = self._grant_id(principal)
        row = await self.records.bind_session(bind_session_id[:64])
        if row is None or row.grant_id != grant_id:
            raise session_not_found()
        status = row.status
        if status == "pending" and row.expires_at <= self.svc.ctx.now():
            await self.records.finish_bind_session(row.bind_session_id, "expired", None,
                                                   self.svc.ctx.now())
            status = "expired"
        out: dict[str, Any] = {"status": status, "action": row.action,
                               "expires_at": row.expires_at}
        if row.channel_id is not None:
            out["channel_id"] = row.channel_id
            channel = await self.svc.channels.exists(row.channel_id)
            if channel.channel_name is not None:
                out["channel_name"] = channel.channel_name
        return out

    async def unbind(self, principal: Principal, channel_id: str) -> dict[str, Any]:
        grant_id = self._grant_id(principal)
        removed = await self.records.ungrant_channel(grant_id, channel_id)
        if removed:
            self._changed(grant_id)
        return {"removed": removed, "channel_id": channel_id}

    # --- the pages ----------------------------------------------------------------------------

    def _message(self, locale: str, title_key: str, message: str, status: int) -> Response:
        nonce = new_nonce()
        return page_response(message_page(locale, title_key, message, nonce), status,
                             nonce=nonce)

    async def _session(self, session_id: str | None, action: str) -> Any:
        if not session_id or len(session_id) > 64:
            return None
        row = await self.records.bind_session(session_id)
        if row is None or row.action != action or row.status != "pending" \
                or row.expires_at <= self.svc.ctx.now():
            return None
        return row

    async def _grant_view(self, grant_id: str) -> tuple[str, list[str]]:
        """The client's name and the grant's scopes, as the page shows them."""
        grant = await self.records.grant(grant_id)
        if grant is None:
            return "?", []
        client = await self.clients.get(grant.client_id, self.svc.ctx.now(), fresh=False)
        scopes = oauth_wire.parse_scope(grant.scope)[0]
        return (client.name if client is not None else grant.client_id,
                [s for s in oauth_wire.SCOPES if s in scopes])

    def page_get(self, action: str) -> Any:
        async def endpoint(request: Request) -> Response:
            locale = locale_for(request, None)
            session_id = request.query_params.get("bind_session_id")
            row = await self._session(session_id, action)
            if row is None:
                return self._message(locale, "error_title", t(locale, "expired"), 404)
            if "lang" not in request.query_params and "ui_locales" not in request.query_params \
                    and "accept-language" not in request.headers:
                locale = row.lang
            ttl = min(self.lifetimes.page, row.expires_at - self.svc.ctx.now())
            try:
                request_id, token, max_age = await self.requests.open(
                    action, {"bind_session_id": row.bind_session_id}, ttl,
                    client_address(request))
            except PageProblem as exc:
                return self._message(locale, "error_title", t(locale, exc.key), exc.status)
            form = Form(locale, PATHS[action], request_id, token,
                        rows=[Row(row.requested_channel_id or "")],
                        languages=language_links(PATHS[action],
                                                 {"bind_session_id": row.bind_session_id},
                                                 locale))
            response = self._render(form, action, await self._grant_view(row.grant_id),
                                    row.redirect_uri)
            base = base_url(self.settings, request)
            self.requests.set_cookie(response, request_id, token, max_age,
                                     secure=base.startswith("https:"))
            return response

        return endpoint

    def _render(self, form: Form, action: str, view: tuple[str, list[str]],
                redirect_uri: str | None, status: int = 200, retry_after: int = 0
                ) -> Response:
        nonce = new_nonce()
        target = oauth_wire.origin_of(redirect_uri) if redirect_uri else None
        if retry_after:  # the password throttle said no: 429, as everywhere
            status = codes.TOO_MANY_ATTEMPTS.status
        return page_response(bind_page(form, action=action, client_name=view[0],
                                       scopes=view[1], nonce=nonce),
                             status, nonce=nonce, form_targets=[target] if target else [],
                             headers={"retry-after": str(retry_after)} if retry_after else None)

    def page_post(self, action: str) -> Any:
        async def endpoint(request: Request) -> Response:
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
                page_req = await self.requests.check(request, request_id, token, (action,))
            except PageProblem as exc:
                return self._message(locale, "error_title", t(locale, exc.key), exc.status)
            row = await self._session(page_req.params["bind_session_id"], action)
            if row is None:
                return self._message(locale, "error_title", t(locale, "expired"), 400)
            cid, password = rows[0] if rows else ("", "")
            page = Form(locale, PATHS[action], page_req.request_id, token or "", [Row(cid)])
            retry_after = 0
            if not cid or not password:
                page.rows[0].error = t(locale, "incomplete")
            else:
                checked = await self.checker.check(cid, password)
                page.rows[0].channel_id = checked.channel_id or cid
                if checked.error is not None:
                    page.rows[0].error = checked.message(locale)
                    retry_after = checked.retry_after if checked.error == "too_many" else 0
                else:
                    return await self._apply(row, page_req.request_id, action, checked, locale)
            return self._render(page, action, await self._grant_view(row.grant_id),
                                row.redirect_uri, status=400, retry_after=retry_after)

        return endpoint

    async def _apply(self, row: Any, request_id: str, action: str, checked: Any,
                     locale: str) -> Response:
        cid: str = checked.channel_id
        now = self.svc.ctx.now()

        changed = await self.records.complete_bind_session(request_id, row.bind_session_id,
                                                           row.grant_id, cid, action, now)
        if changed is None:
            return self._message(locale, "error_title", t(locale, "expired"), 400)
        if changed:
            self._changed(row.grant_id)
        log.info("bind session completed", extra={"fields": {"action": action,
                                                              "changed": changed}})
        if row.redirect_uri:
            return redirect_to(row.redirect_uri, [])
        name = f"{checked.channel_name} ({cid})" if checked.channel_name else cid
        key = "bound" if action == "bind" else ("unbound" if changed else "not_bound")
        return self._message(locale, "done_title", t(locale, key, channel=name), 200)

