"""``/oauth/token`` (authorization_code and refresh_token grants), ``/oauth/revoke``
(RFC 7009), and the verification of access tokens presented at /mcp.

Access tokens are JWTs (``iss``, ``aud`` = the resource, ``sub`` = the grant, ``client_id``,
``scope``, ``iat``, ``exp``, ``jti``) signed by the key ring. Refresh tokens rotate on every
use and are always returned; presenting a rotated one again revokes the whole grant (the
family) unless it comes within a few seconds (a retried request). Errors are RFC 6749 JSON.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from pushgo.errors import codes
from pushgo.oauth.clients import Client, Clients
from pushgo.oauth.config import Lifetimes, digest, new_id, pkce_matches
from pushgo.oauth.keys import InvalidToken, KeyRing
from pushgo.oauth.web import (
    CORS,
    OAuthError,
    error_response,
    json_response,
    read_form,
    single,
)
from pushgo.protocol import oauth as oauth_wire
from pushgo.protocol.ids import redact
from pushgo.service import Services
from pushgo.service.oauth import NewRefresh

log = logging.getLogger("pushgo.oauth")


@dataclass(frozen=True)
class AccessClaims:
    grant_id: str
    client_id: str
    scopes: frozenset[str]
    issuer: str


def _invalid_grant(description: str) -> OAuthError:
    return OAuthError(codes.OAUTH_INVALID_GRANT, description)


class Tokens:
    def __init__(self, svc: Services, keys: KeyRing, clients: Clients,
                 lifetimes: Lifetimes) -> None:
        self.svc = svc
        self.records = svc.oauth
        self.keys = keys
        self.clients = clients
        self.lifetimes = lifetimes

    def now(self) -> int:
        return self.svc.ctx.now()

    # --- issuing ------------------------------------------------------------------------------

    def _access_token(self, grant: Any, scopes: frozenset[str], now: int) -> dict[str, Any]:
        iat = now // 1000
        claims = {"iss": grant.issuer, "aud": grant.resource, "sub": grant.grant_id,
                  "client_id": grant.client_id, "scope": oauth_wire.scope_text(scopes), "iat": iat,
                  "exp": iat + self.lifetimes.access // 1000, "jti": secrets.token_hex(16)}
        return {"access_token": self.keys.sign(claims), "token_type": "Bearer",
                "expires_in": self.lifetimes.access // 1000}

    def _new_refresh(self, grant: Any, now: int) -> tuple[str, NewRefresh]:
        """A new refresh token of ``grant``: the token, and what to store of it."""
        raw = new_id("pgrt", 32)
        return raw, NewRefresh(token_hash=digest(raw), grant_id=grant.grant_id,
                               idle_expires_at=min(now + self.lifetimes.refresh_idle,
                                                   grant.expires_at))

    # --- /oauth/token -------------------------------------------------------------------------

    async def token_endpoint(self, request: Request) -> Response:
        try:
            form = await read_form(request)
            grant_type = single(form, "grant_type", required=True)
            client = await self.clients.authenticate(form, request.headers.get("authorization"),
                                                     self.now())
            if grant_type == "authorization_code":
                doc = await self._authorization_code(client, form)
            elif grant_type == "refresh_token":
                doc = await self._refresh(client, form)
            else:
                raise OAuthError(codes.OAUTH_UNSUPPORTED_GRANT_TYPE,
                                 "grant_type must be authorization_code or refresh_token")
        except OAuthError as exc:
            log.info("token request refused", extra={"fields": {"error": exc.code}})
            return error_response(exc)
        return json_response(doc)

    async def _authorization_code(self, client: Client, form: dict[str, list[str]]
                                  ) -> dict[str, Any]:
        code = single(form, "code", required=True, max_len=256)
        redirect_uri = single(form, "redirect_uri", required=True, max_len=oauth_wire.MAX_URI)
        verifier = single(form, "code_verifier", required=True, max_len=256)
        resource = single(form, "resource", max_len=oauth_wire.MAX_URI)
        assert code is not None and verifier is not None
        code_hash = digest(code)
        now = self.now()
        row = await self.records.code(code_hash)
        if row is None:
            raise _invalid_grant("the authorization code is unknown or expired")
        if row.used_at is not None:
            # A code presented twice may have been stolen: what it bought is revoked.
            await self.records.revoke_grant(row.grant_id, now)
            log.warning("authorization code reused; grant revoked",
                        extra={"fields": {"client": redact(client.client_id)}})
            raise _invalid_grant("the authorization code was already used")

        async def burn(error: OAuthError) -> OAuthError:
            """A code that failed a check is spent: nobody gets a second guess at it."""
            await self.records.use_code(code_hash, now)
            return error

        if row.expires_at <= now:
            raise _invalid_grant("the authorization code has expired")
        if row.client_id != client.client_id:
            raise await burn(_invalid_grant("the authorization code was issued to another "
                                            "client"))
        if row.redirect_uri != redirect_uri:
            raise await burn(_invalid_grant("redirect_uri differs from the one of the "
                                            "authorization request"))
        if not pkce_matches(row.code_challenge, verifier):
            raise await burn(_invalid_grant("code_verifier does not match the code_challenge"))
        grant = await self.records.grant(row.grant_id)
        if grant is None or grant.revoked_at is not None:
            raise _invalid_grant("the authorization was revoked")
        if resource is not None and resource.rstrip("/") != grant.resource:
            raise await burn(OAuthError(codes.OAUTH_INVALID_TARGET,
                                        "resource differs from the one authorized"))

        refresh, stored = self._new_refresh(grant, now)
        if not await self.records.exchange_code(code_hash, client.client_id, stored, now):
            raise _invalid_grant("the authorization code was already used")
        scopes = oauth_wire.parse_scope(grant.scope)[0]
        log.info("authorization code exchanged", extra={"fields": {"client": redact(client.client_id)}})
        return {**self._access_token(grant, scopes, now), "refresh_token": refresh,
                "scope": oauth_wire.scope_text(scopes)}

    async def _refresh(self, client: Client, form: dict[str, list[str]]) -> dict[str, Any]:
        token = single(form, "refresh_token", required=True, max_len=256)
        scope = single(form, "scope", max_len=512)
        resource = single(form, "resource", max_len=oauth_wire.MAX_URI)
        assert token is not None
        token_hash = digest(token)
        now = self.now()
        row = await self.records.refresh_token(token_hash)
        grant = None if row is None else await self.records.grant(row.grant_id)
        if row is None or grant is None or grant.client_id != client.client_id:
            raise _invalid_grant("the refresh token is unknown, expired or not this client's")
        if grant.revoked_at is not None or grant.expires_at <= now:
            raise _invalid_grant("the authorization was revoked or has expired")
        if row.rotated_at is not None and now - row.rotated_at > self.lifetimes.refresh_grace:
            await self.records.revoke_grant(grant.grant_id, now)
            log.warning("rotated refresh token reused; grant revoked",
                        extra={"fields": {"client": redact(client.client_id)}})
            raise _invalid_grant("the refresh token was already used; the authorization is "
                                 "revoked")
        if row.idle_expires_at <= now:
            raise _invalid_grant("the refresh token has expired")
        granted = oauth_wire.parse_scope(grant.scope)[0]
        scopes = granted
        if scope is not None:
            wanted, unknown = oauth_wire.parse_scope(scope)
            if unknown or not wanted or not wanted <= granted:
                raise OAuthError(codes.OAUTH_INVALID_SCOPE,
                                 "scope may only narrow what was granted: " + grant.scope)
            scopes = wanted
        if resource is not None and resource.rstrip("/") != grant.resource:
            raise OAuthError(codes.OAUTH_INVALID_TARGET, "resource differs from the one authorized")

        # A concurrent exchange of the same token is a retry: both get a successor.
        refresh, stored = self._new_refresh(grant, now)
        await self.records.rotate_refresh(token_hash, stored, now)
        return {**self._access_token(grant, scopes, now), "refresh_token": refresh,
                "scope": oauth_wire.scope_text(scopes)}

    # --- /oauth/revoke ------------------------------------------------------------------------

    async def revoke_endpoint(self, request: Request) -> Response:
        """RFC 7009: revoking a refresh or access token revokes its whole grant. Unknown
        tokens, and tokens of another client, are answered 200 and left alone."""
        try:
            form = await read_form(request)
            now = self.now()
            client = await self.clients.authenticate(form, request.headers.get("authorization"),
                                                     now)
            token = single(form, "token", required=True, max_len=4096)
            assert token is not None
            grant_id = await self._grant_of(token, now)
            if grant_id is not None:
                grant = await self.records.grant(grant_id)
                if grant is not None and grant.client_id == client.client_id:
                    await self.records.revoke_grant(grant_id, now)
                    log.info("grant revoked", extra={"fields": {"client": redact(client.client_id)}})
        except OAuthError as exc:
            return error_response(exc)
        return Response(status_code=200, headers={**CORS, "cache-control": "no-store"})

    async def _grant_of(self, token: str, now: int) -> str | None:
        row = await self.records.refresh_token(digest(token))
        if row is not None:
            return str(row.grant_id)
        try:
            claims = await self.keys.verify(token, now)
        except InvalidToken:
            return None
        sub = claims.get("sub")
        return sub if isinstance(sub, str) else None

    # --- access tokens at /mcp ----------------------------------------------------------------

    async def verify(self, token: str, issuer: str, resource: str) -> AccessClaims:
        """The claims of a live access token for this issuer and resource; InvalidToken
        (with a reason safe to show) otherwise."""
        now = self.now()
        claims = await self.keys.verify(token, now)
        if claims.get("iss") != issuer:
            raise InvalidToken("issued by another authorization server")
        aud = claims.get("aud")
        if aud != resource and not (isinstance(aud, list) and resource in aud):
            raise InvalidToken("issued for another resource")
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int) or not isinstance(iat, int):
            raise InvalidToken("malformed token")
        if exp * 1000 <= now:
            raise InvalidToken("the access token has expired")
        if iat * 1000 > now + 60_000:
            raise InvalidToken("the access token is not valid yet")
        sub, client_id, scope = claims.get("sub"), claims.get("client_id"), claims.get("scope")
        if not isinstance(sub, str) or not isinstance(client_id, str) \
                or not isinstance(scope, str):
            raise InvalidToken("malformed token")
        grant = await self.records.live_grant(sub, now)
        if grant is None:
            raise InvalidToken("the authorization was revoked or has expired")
        return AccessClaims(sub, client_id, oauth_wire.parse_scope(scope)[0], issuer)
