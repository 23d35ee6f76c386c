"""The access tokens a mock provider's OAuth endpoint issues, and the Bearer check of its send
endpoint: opaque tokens with an expiry on the mock's clock, revocable, expirable.

Owns `AccessTokens`, shared by MockFCM and MockWNS. Imports nothing from pushgo.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable


class AccessTokens:
    """Tokens issued so far, each with its expiry (``clock()`` seconds)."""

    def __init__(self, prefix: str, clock: Callable[[], float]) -> None:
        self.prefix = prefix
        self.clock = clock
        self._expiry: dict[str, float] = {}

    def issue(self, lifetime: float) -> str:
        """A new token valid for ``lifetime`` seconds."""
        token = self.prefix + secrets.token_urlsafe(24)
        self._expiry[token] = self.clock() + lifetime
        return token

    def revoke(self) -> None:
        """Every token issued so far is refused from now on."""
        self._expiry.clear()

    def expire(self) -> None:
        """Every token issued so far is past its expiry (still known)."""
        now = self.clock()
        for token, expiry in self._expiry.items():
            self._expiry[token] = min(expiry, now - 1)

    def valid(self) -> list[str]:
        now = self.clock()
        return [token for token, expiry in self._expiry.items() if expiry > now]

    def accepts(self, authorization: str | None, *, check: bool = True) -> bool:
        """Whether an ``Authorization`` header value carries a Bearer token issued here and not
        expired; with ``check=False`` any non-empty Bearer token does."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        if not check:
            return True
        expiry = self._expiry.get(token)
        return expiry is not None and expiry > self.clock()
