"""Who is calling /mcp, and what they may do with channels: the small interfaces the MCP
transport and tools depend on, with the legacy-mode implementations.

Legacy mode: the bearer is ``PUSHGO_TOKEN`` when one is set, the channel password
travels in every send tool call, there are no scopes and no channel grants. OAuth mode
plugs in its own :class:`McpAuth` (access tokens, scopes) and :class:`ChannelBinding`
(grants, bind sessions) without touching the transport or the tools.

Must not import starlette, pushgo.api or pushgo.oauth.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pushgo.errors import ErrorCode, GatewayError, codes

MAX_TOKEN = 4096

SCOPE_TOOLS = "mcp:tools"
SCOPE_CHANNELS = "mcp:channels:manage"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``key`` identifies whose sessions and streams these are
    (legacy: every token holder is one caller)."""

    key: str
    oauth: bool = False
    subject: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)

    def allows(self, scope: str) -> bool:
        return not self.oauth or scope in self.scopes


class Unauthorized(Exception):
    """401 (no or bad credentials) or 403 (insufficient scope), with its challenge: an RFC 6750
    ``error`` (``codes.OAUTH_*``); the status is the code's unless given (a missing token is
    ``invalid_request`` answered 401)."""

    def __init__(self, error: ErrorCode, description: str, challenge: str, *,
                 status: int | None = None) -> None:
        super().__init__(description)
        self.status = error.status if status is None else status
        self.error = error
        self.description = description
        self.challenge = challenge

    @property
    def code(self) -> str:
        return self.error.code


class McpAuth(Protocol):
    @property
    def oauth(self) -> bool:
        """True when tool calls are authorized by grants, not channel passwords."""
        ...

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller of one HTTP request (lowercase header names), or Unauthorized."""
        ...

    def insufficient_scope(self, scope: str) -> Unauthorized:
        """The 403 for a caller lacking ``scope``."""
        ...


def bearer_token(header: str | None) -> str | None:
    if not header or not header.isascii():
        return None
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer" or len(parts[1]) > MAX_TOKEN:
        return None
    return parts[1]


class LegacyAuth:
    """Bearer = the gateway token when one is set; anyone when none is (as the HTTP API)."""

    oauth = False
    PRINCIPAL = Principal(key="legacy")

    def __init__(self, token: str | None) -> None:
        self.token = token

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        if self.token is None:
            return self.PRINCIPAL
        given = bearer_token(headers.get("authorization"))
        if given is None:
            raise Unauthorized(codes.OAUTH_INVALID_REQUEST, "a Bearer token is required", "Bearer",
                               status=401)
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise Unauthorized(codes.OAUTH_INVALID_TOKEN, "the Bearer token is not valid",
                               f'Bearer error="{codes.OAUTH_INVALID_TOKEN.code}"')
        return self.PRINCIPAL

    def insufficient_scope(self, scope: str) -> Unauthorized:
        return Unauthorized(codes.OAUTH_INSUFFICIENT_SCOPE, f"scope {scope} is required",
                            f'Bearer error="{codes.OAUTH_INSUFFICIENT_SCOPE.code}", scope="{scope}"')


def oauth_required() -> GatewayError:
    return GatewayError(
        codes.OAUTH_REQUIRED,
        "channel binding needs OAuth mode: this gateway runs MCP in legacy mode, where send "
        "tools take the channel password in each call and there are no channel grants")


class ChannelBinding(Protocol):
    """Channel grants of OAuth mode: the channel tools and resources call these."""

    async def is_granted(self, principal: Principal, channel_id: str) -> bool: ...

    async def list_channels(self, principal: Principal) -> list[dict[str, Any]]:
        """``[{channel_id, channel_name, granted_at, status}]``"""
        ...

    async def start(self, principal: Principal, *, action: str, requested_channel_id: str | None,
                    redirect_uri: str | None, lang: str | None) -> dict[str, Any]: ...

    async def status(self, principal: Principal, bind_session_id: str) -> dict[str, Any]: ...

    async def unbind(self, principal: Principal, channel_id: str) -> dict[str, Any]: ...


class NoBinding:
    """Legacy mode: no grants exist; every channel tool answers ``oauth_required``."""

    async def is_granted(self, principal: Principal, channel_id: str) -> bool:
        return False

    async def list_channels(self, principal: Principal) -> list[dict[str, Any]]:
        raise oauth_required()

    async def start(self, principal: Principal, *, action: str, requested_channel_id: str | None,
                    redirect_uri: str | None, lang: str | None) -> dict[str, Any]:
        raise oauth_required()

    async def status(self, principal: Principal, bind_session_id: str) -> dict[str, Any]:
        raise oauth_required()

    async def unbind(self, principal: Principal, channel_id: str) -> dict[str, Any]:
        raise oauth_required()
