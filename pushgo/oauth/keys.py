"""The access-token signing keys: ES256 (P-256), created once and persisted as rows, rotated
by age. The newest active key signs; every key not yet expired verifies and is published at
/oauth/jwks.json, so tokens signed before a rotation stay valid until they expire.

Other processes sharing the database see a rotation at their next reload (the maintenance
task, or a token whose ``kid`` is unknown here).
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import anyio
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from pushgo.protocol.ids import redact
from pushgo.service.oauth import OAuthRecords

log = logging.getLogger("pushgo.oauth")

ALG = "ES256"
TOKEN_TYPE = "at+jwt"  # noqa: S105 - the JWT typ of access tokens (RFC 9068)
#: A token with a ``kid`` unknown here reloads the keys at most this often (seconds).
RELOAD_EVERY_S = 5.0


@dataclass(frozen=True)
class _Key:
    kid: str
    private: ECKey
    created_at: int
    retired: bool


class InvalidToken(Exception):
    """A bearer token that does not verify; the message says why (never the token)."""


class KeyRing:
    def __init__(self, records: OAuthRecords) -> None:
        self.records = records
        self._keys: dict[str, _Key] = {}
        self._signing: _Key | None = None
        self._last_reload = float("-inf")

    # --- loading, creating, rotating ----------------------------------------------------------

    def _load(self, rows: list[Any]) -> None:
        loaded: dict[str, _Key] = {}
        for row in rows:
            try:
                key = ECKey.import_key(json.loads(row.private_jwk))
            except (ValueError, JoseError):
                log.error("unreadable signing key skipped", extra={"fields": {"kid": redact(row.kid)}})
                continue
            loaded[row.kid] = _Key(row.kid, key, row.created_at, row.retired_at is not None)
        self._keys = loaded
        active = [k for k in loaded.values() if not k.retired]
        # The oldest active key: two processes creating one at once agree on which signs.
        self._signing = min(active, key=lambda k: (k.created_at, k.kid)) if active else None

    async def reload(self, now: int) -> None:
        self._last_reload = anyio.current_time()
        self._load(await self.records.live_keys(now))

    async def ensure(self, now: int) -> None:
        """Load the keys; create the first one when there is none."""
        await self.reload(now)
        if self._signing is None:
            await self._create(now)

    async def _create(self, now: int) -> str:
        kid = secrets.token_urlsafe(12)
        key = ECKey.generate_key("P-256", parameters={"kid": kid, "alg": ALG, "use": "sig"},
                                 private=True)
        await self.records.insert_key(kid, ALG, json.dumps(key.as_dict(private=True)), now)
        log.info("signing key created", extra={"fields": {"kid": redact(kid)}})
        await self.reload(now)
        return kid

    async def rotate(self, now: int, verify_for_ms: int) -> str:
        """Create a new signing key and retire the others; they keep verifying for
        ``verify_for_ms`` (the access-token lifetime plus a margin)."""
        kid = await self._create(now)
        await self.records.retire_keys(kid, now, now + verify_for_ms)
        await self.reload(now)
        return kid

    def signing_age(self, now: int) -> int | None:
        return None if self._signing is None else now - self._signing.created_at

    # --- JWKS ---------------------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        out = []
        for key in sorted(self._keys.values(), key=lambda k: (k.created_at, k.kid)):
            public = key.private.as_dict(private=False)
            public.update(kid=key.kid, alg=ALG, use="sig")
            out.append(public)
        return {"keys": out}

    # --- signing and verifying ----------------------------------------------------------------

    def sign(self, claims: dict[str, Any]) -> str:
        key = self._signing
        if key is None:
            raise RuntimeError("no signing key loaded")
        header = {"alg": ALG, "kid": key.kid, "typ": TOKEN_TYPE}
        return jwt.encode(header, claims, key.private)

    async def verify(self, token: str, now: int) -> dict[str, Any]:
        """The claims of a token signed by one of these keys; InvalidToken otherwise. Claims
        (issuer, audience, expiry) are the caller's to check."""
        kid = _kid_of(token)
        if kid is None:
            raise InvalidToken("malformed token")
        if kid not in self._keys and anyio.current_time() - self._last_reload >= RELOAD_EVERY_S:
            await self.reload(now)
        key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("signed by an unknown key")
        try:
            decoded = jwt.decode(token, key.private, algorithms=[ALG])
        except (JoseError, ValueError) as exc:
            raise InvalidToken("bad signature or malformed token") from exc
        if decoded.header.get("typ") != TOKEN_TYPE:
            raise InvalidToken("not an access token")
        return dict(decoded.claims)


def _kid_of(token: str) -> str | None:
    """The ``kid`` of a compact JWS header, or None when it has none."""
    head = token.split(".", 1)[0]
    if not head or len(head) > 1024:
        return None
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, TypeError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None
