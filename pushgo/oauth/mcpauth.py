"""Who is calling /mcp in OAuth mode: an access token issued here for this server's ``/mcp``
resource (an OAuth principal: scopes and channel grants, no passwords), or — as v1.2.9 —
the gateway token when one is set (a legacy principal: password in every tool call).

A 401 carries ``WWW-Authenticate: Bearer resource_metadata="<base>/.well-known/oauth-
protected-resource/mcp"`` so clients can discover the authorization server.
"""

from __future__ import annotations

import contextvars
import hmac
from collections.abc import Mapping

from pushgo.errors import codes
from pushgo.mcp.auth import LegacyAuth, Principal, Unauthorized, bearer_token
from pushgo.oauth.binding import owner_of
from pushgo.oauth.keys import InvalidToken
from pushgo.oauth.tokens import Tokens
from pushgo.protocol import oauth as oauth_wire
from pushgo.settings import Settings

PRM_PATH = "/.well-known/oauth-protected-resource/mcp"

#: The resource-metadata URL of the request being served (set by ``authenticate``, read by
#: ``insufficient_scope`` in the same request's tasks).
_metadata_url: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pushgo_oauth_metadata_url", default=None)


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


class OAuthAuth:
    oauth = True

    def __init__(self, settings: Settings, tokens: Tokens) -> None:
        self.settings = settings
        self.tokens = tokens

    def _challenge(self, metadata_url: str, error: str | None = None,
                   description: str | None = None, scope: str | None = None) -> str:
        parts = []
        if error is not None:
            parts.append(f'error="{error}"')
            if description is not None:
                parts.append(f'error_description="{_quoted(description)}"')
        parts.append(f'scope="{scope or " ".join(oauth_wire.SCOPES)}"')
        parts.append(f'resource_metadata="{_quoted(metadata_url)}"')
        return "Bearer " + ", ".join(parts)

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        base = oauth_wire.request_base_url(self.settings.public_base_url, headers)
        metadata_url = base + PRM_PATH
        _metadata_url.set(metadata_url)
        raw = headers.get("authorization")
        token = bearer_token(raw)
        if token is None:
            description = "a Bearer access token is required"
            error = codes.OAUTH_INVALID_REQUEST if raw else None
            raise Unauthorized(error or codes.OAUTH_INVALID_TOKEN, description,
                               self._challenge(metadata_url, error.code if error else None,
                                               description if error else None), status=401)
        gateway_token = self.settings.token
        if gateway_token is not None and hmac.compare_digest(token.encode(),
                                                             gateway_token.encode()):
            return LegacyAuth.PRINCIPAL
        try:
            claims = await self.tokens.verify(token, base, base + "/mcp")
        except InvalidToken as exc:
            raise Unauthorized(codes.OAUTH_INVALID_TOKEN, str(exc),
                               self._challenge(metadata_url, codes.OAUTH_INVALID_TOKEN.code,
                                               str(exc))) from None
        return Principal(key=owner_of(claims.grant_id), oauth=True, subject=claims.grant_id,
                         scopes=claims.scopes)

    def insufficient_scope(self, scope: str) -> Unauthorized:
        description = f"scope {scope} is required"
        url = _metadata_url.get()
        parts = [f'error="{codes.OAUTH_INSUFFICIENT_SCOPE.code}"', f'scope="{scope}"',
                 f'error_description="{description}"']
        if url is not None:
            parts.append(f'resource_metadata="{_quoted(url)}"')
        return Unauthorized(codes.OAUTH_INSUFFICIENT_SCOPE, description,
                            "Bearer " + ", ".join(parts))
