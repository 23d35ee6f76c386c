"""The OAuth 2.1 authorization server of /mcp: discovery metadata, clients (dynamic
registration, predefined, metadata documents), the authorize page that binds channels, the
token, revocation and JWKS endpoints, bind sessions, the McpAuth/ChannelBinding pair the MCP
endpoint plugs in, and the maintenance task (purge of expired rows, key rotation).

``OAuthServer`` wires them for app.py. Must not be imported by pushgo.mcp.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pushgo.errors import codes
from pushgo.oauth import metadata
from pushgo.oauth.authorize import Authorize
from pushgo.oauth.binding import PATHS, OAuthBinding, Publisher
from pushgo.oauth.clients import Clients
from pushgo.oauth.config import MINUTE, base_url_warning, lifetimes, predefined_clients
from pushgo.oauth.forms import ChannelCheck, LiveCheck, PageRequests, locale_for
from pushgo.oauth.keys import KeyRing
from pushgo.oauth.mcpauth import OAuthAuth
from pushgo.oauth.ratelimit import default_limiter
from pushgo.oauth.tokens import Tokens
from pushgo.oauth.web import (
    OAuthError,
    base_url,
    client_address,
    error_response,
    json_response,
    preflight,
    read_json,
)
from pushgo.protocol.ids import redact
from pushgo.service import Services

log = logging.getLogger("pushgo.oauth")

#: How often expired rows are purged and the signing key's age is checked (seconds).
MAINTAIN_EVERY_S = 300.0

Endpoint = Callable[[Request], Awaitable[Response]]


def _cors(handler: Endpoint) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        if request.method == "OPTIONS":
            return preflight()
        return await handler(request)

    return endpoint


class OAuthServer:
    def __init__(self, svc: Services) -> None:
        settings = svc.ctx.settings
        self.svc = svc
        self.settings = settings
        self.records = svc.oauth
        self.lifetimes = lifetimes(settings)
        self.predefined = predefined_clients(settings)  # a bad setting stops start-up here
        self.keys = KeyRing(self.records)
        self.clients = Clients(self.records, self.lifetimes,
                               allow_loopback_cimd=settings.mcp_cimd_allow_loopback)
        self.limiter = default_limiter()
        self.requests = PageRequests(svc, self.limiter)
        self.checker = ChannelCheck(svc)
        self.tokens = Tokens(svc, self.keys, self.clients, self.lifetimes)
        self.authorize = Authorize(svc, settings, self.clients, self.lifetimes, self.requests,
                                   self.checker)
        self.binding = OAuthBinding(svc, settings, self.clients, self.lifetimes, self.requests,
                                    self.checker)
        self.auth = OAuthAuth(settings, self.tokens)
        self.live_check = LiveCheck(self.requests, self.checker, locale_for)

    def attach(self, notifier: Publisher) -> None:
        """Where bind and unbind announce ``notifications/resources/list_changed``."""
        self.binding.notifier = notifier

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load (or create) the signing key and make the predefined clients match the
        setting; runs before the gateway serves."""
        warning = base_url_warning(self.settings)
        if warning is not None:
            log.warning(warning)
        now = self.svc.ctx.now()
        await self.keys.ensure(now)
        await self.clients.sync_predefined(self.predefined, now)

    async def rotate_key(self) -> str:
        """Sign with a new key from now on; the old one verifies until its tokens expire."""
        kid = await self.keys.rotate(self.svc.ctx.now(), self.lifetimes.access + 10 * MINUTE)
        log.info("signing key rotated", extra={"fields": {"kid": redact(kid)}})
        return kid

    async def maintain(self) -> dict[str, int]:
        now = self.svc.ctx.now()
        lt = self.lifetimes
        counts = await self.records.purge(now, bind_keep_ms=lt.bind_keep,
                                          unactivated_ms=lt.code + lt.page,
                                          client_idle_ms=lt.client_idle)
        await self.keys.reload(now)
        age = self.keys.signing_age(now)
        if age is None:
            await self.keys.ensure(now)
        elif age >= lt.key_rotation:
            await self.rotate_key()
        if any(counts.values()):
            log.info("oauth rows purged", extra={"fields": counts})
        return counts

    async def maintain_forever(self) -> None:
        while True:
            await anyio.sleep(MAINTAIN_EVERY_S)
            try:
                await self.maintain()
            except Exception:
                log.exception("oauth maintenance failed")

    # --- metadata and small endpoints ---------------------------------------------------------

    async def _protected_resource(self, request: Request) -> Response:
        return json_response(metadata.protected_resource(base_url(self.settings, request)))

    async def _authorization_server(self, request: Request) -> Response:
        return json_response(metadata.authorization_server(base_url(self.settings, request),
                                                    dcr=self.settings.mcp_dcr_enabled))

    async def _openid_configuration(self, request: Request) -> Response:
        return json_response(metadata.openid_configuration(base_url(self.settings, request),
                                                    dcr=self.settings.mcp_dcr_enabled))

    async def _jwks(self, _request: Request) -> Response:
        return json_response(self.keys.jwks())

    async def _register(self, request: Request) -> Response:
        try:
            wait = self.limiter.take(("register", client_address(request)))
            if wait:
                raise OAuthError(codes.OAUTH_TOO_MANY_REQUESTS, "too many registrations; retry later",
                                 429, {"retry-after": str(wait)})
            doc = await read_json(request)
            registered = await self.clients.register(doc, self.svc.ctx.now())
        except OAuthError as exc:
            if exc.error == codes.OAUTH_INVALID_REQUEST:
                exc = OAuthError(codes.OAUTH_INVALID_CLIENT_METADATA, exc.description, exc.status)
            return error_response(exc)
        return json_response(registered, 201)

    def routes(self) -> list[BaseRoute]:
        get = ["GET", "OPTIONS"]
        post = ["POST", "OPTIONS"]
        routes: list[BaseRoute] = []
        for path in ("/.well-known/oauth-protected-resource",
                     "/.well-known/oauth-protected-resource/{rest:path}"):
            routes.append(Route(path, _cors(self._protected_resource), methods=get))
        for path in ("/.well-known/oauth-authorization-server",
                     "/.well-known/oauth-authorization-server/{rest:path}"):
            routes.append(Route(path, _cors(self._authorization_server), methods=get))
        for path in ("/.well-known/openid-configuration",
                     "/.well-known/openid-configuration/{rest:path}"):
            routes.append(Route(path, _cors(self._openid_configuration), methods=get))
        routes += [
            Route("/oauth/jwks.json", _cors(self._jwks), methods=get),
            Route("/oauth/token", _cors(self.tokens.token_endpoint), methods=post),
            Route("/oauth/revoke", _cors(self.tokens.revoke_endpoint), methods=post),
            Route("/oauth/authorize", self.authorize.get, methods=["GET"]),
            Route("/oauth/authorize", self.authorize.post, methods=["POST"]),
            Route("/oauth/channel/validate", self.live_check.endpoint, methods=["POST"]),
        ]
        if self.settings.mcp_dcr_enabled:
            routes.append(Route("/oauth/register", _cors(self._register), methods=post))
        for action, path in PATHS.items():
            routes.append(Route(path, self.binding.page_get(action), methods=["GET"]))
            routes.append(Route(path, self.binding.page_post(action), methods=["POST"]))
        return routes


__all__ = ["OAuthServer"]

