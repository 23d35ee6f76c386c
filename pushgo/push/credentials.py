"""Provider credentials shared by every connection of a provider.

- APNs: one ES256 JWT per key (``kid`` = key id, ``iss`` = team id, ``iat``), renewed every
  30 minutes (Apple wants 20-60), never more often than every 20 minutes unless Apple says it
  expired, and then at most once a minute.
- FCM: an OAuth access token from the service account (RS256 assertion to its ``token_uri``),
  cached until 5 minutes before expiry; a 401 invalidates it once.
- WNS: an OAuth access token for the package SID (client id) and secret (client-credentials
  grant), cached until 5 minutes before expiry; a 401 invalidates it once.
- Remote: each fetched from PUSHGO_TOKEN_SERVICE_URL when no local credentials are given.

``now`` is injected (wall-clock seconds) so tests control ``iat``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from pushgo.protocol.fcm import SCOPE

APNS_RENEW_S = 30 * 60
APNS_MIN_RENEW_S = 20 * 60
APNS_FORCED_MIN_S = 60
FCM_EARLY_S = 5 * 60
#: WNS tokens last a day; used when the token endpoint names no lifetime.
WNS_DEFAULT_LIFETIME_S = 86400.0

Clock = Callable[[], float]
PostForm = Callable[[str, dict[str, str]], Awaitable[dict[str, Any]]]


class CredentialError(Exception):
    """Credentials could not be loaded or a token could not be obtained."""


class ApnsJwtSource:
    def __init__(self, key_pem: bytes, key_id: str, team_id: str, *,
                 clock: Clock = time.time) -> None:
        try:
            self._key = ECKey.import_key(key_pem)
        except Exception as exc:
            raise CredentialError(f"cannot read the APNs key: {exc}") from None
        self.key_id = key_id
        self.team_id = team_id
        self._clock = clock
        self._jwt: str | None = None
        self._iat = 0.0
        self.generation = 0

    @classmethod
    def from_file(cls, path: str, key_id: str, team_id: str, *,
                  clock: Clock = time.time) -> ApnsJwtSource:
        with open(path, "rb") as f:
            return cls(f.read(), key_id, team_id, clock=clock)

    def _mint(self, now: float) -> str:
        self._iat = now
        self._jwt = jwt.encode({"alg": "ES256", "kid": self.key_id},
                               {"iss": self.team_id, "iat": int(now)}, self._key)
        self.generation += 1
        return self._jwt

    def current(self) -> str:
        now = self._clock()
        if self._jwt is None or now - self._iat >= APNS_RENEW_S:
            return self._mint(now)
        return self._jwt

    async def token(self) -> str:
        return self.current()

    def expired(self, jwt_seen: str) -> str:
        """Apple said ``jwt_seen`` expired: renew once (not again within a minute)."""
        now = self._clock()
        if self._jwt == jwt_seen and now - self._iat >= APNS_FORCED_MIN_S:
            return self._mint(now)
        return self.current()


@dataclass(frozen=True)
class ServiceAccount:
    project_id: str
    client_email: str
    private_key: str
    private_key_id: str | None
    token_uri: str

    @classmethod
    def from_file(cls, path: str) -> ServiceAccount:
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
            return cls(project_id=str(doc["project_id"]), client_email=str(doc["client_email"]),
                       private_key=str(doc["private_key"]),
                       private_key_id=doc.get("private_key_id"),
                       token_uri=str(doc.get("token_uri")
                                     or "https://oauth2.googleapis.com/token"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CredentialError(f"cannot read the FCM service account: {exc}") from None


class _CachedAccessToken:
    """An OAuth access token fetched by :meth:`_fetch`, kept until ``FCM_EARLY_S`` before it
    expires; concurrent callers share one fetch; :meth:`invalidate` forgets a refused one."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._token: str | None = None
        self._expires = 0.0
        self._lock: anyio.Lock | None = None

    async def _fetch(self, now: float) -> tuple[str, float]:
        """A new token and its lifetime in seconds."""
        raise NotImplementedError

    async def token(self) -> str:
        if self._token is not None and self._clock() < self._expires - FCM_EARLY_S:
            return self._token
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            now = self._clock()
            if self._token is not None and now < self._expires - FCM_EARLY_S:
                return self._token
            token, lifetime = await self._fetch(now)
            self._token = token
            self._expires = now + lifetime
            return token

    def invalidate(self, token: str) -> None:
        if self._token == token:
            self._token = None


class FcmTokenSource(_CachedAccessToken):
    def __init__(self, account: ServiceAccount, post_form: PostForm, *,
                 clock: Clock = time.time) -> None:
        super().__init__(clock)
        self.account = account
        try:
            self._key = RSAKey.import_key(account.private_key)
        except Exception as exc:
            raise CredentialError(f"cannot read the FCM private key: {exc}") from None
        self._post = post_form

    def assertion(self, now: float) -> str:
        header: dict[str, Any] = {"alg": "RS256"}
        if self.account.private_key_id:
            header["kid"] = self.account.private_key_id
        claims = {"iss": self.account.client_email, "scope": SCOPE,
                  "aud": self.account.token_uri, "iat": int(now), "exp": int(now) + 3600}
        return jwt.encode(header, claims, self._key)

    async def _fetch(self, now: float) -> tuple[str, float]:
        doc = await self._post(self.account.token_uri, {
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": self.assertion(now),
        })
        token = doc.get("access_token")
        if not isinstance(token, str) or not token:
            raise CredentialError("token endpoint answered without access_token")
        return token, float(doc.get("expires_in", 3600))

    @property
    def project_id(self) -> str:
        return self.account.project_id


class WnsTokenSource(_CachedAccessToken):
    """WNS access tokens for a package SID (``client_id``) and secret: the client-credentials
    grant to ``token_url`` (form encoded; the secret travels only in that request body)."""

    def __init__(self, client_id: str, client_secret: str, token_url: str, scope: str,
                 post_form: PostForm, *, clock: Clock = time.time) -> None:
        super().__init__(clock)
        self.token_url = token_url
        self._form = {"grant_type": "client_credentials", "client_id": client_id,
                      "client_secret": client_secret, "scope": scope}
        self._post = post_form

    async def _fetch(self, now: float) -> tuple[str, float]:
        doc = await self._post(self.token_url, dict(self._form))
        token = doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise CredentialError("WNS token endpoint answered without access_token")
        try:
            lifetime = float(doc.get("expires_in") or WNS_DEFAULT_LIFETIME_S)
        except (TypeError, ValueError):
            lifetime = WNS_DEFAULT_LIFETIME_S
        return token, lifetime


class WnsTokens(Protocol):
    """What the WNS sender needs: a bearer token, and a way to say WNS refused it."""

    async def token(self) -> str: ...

    def invalidate(self, token: str) -> None: ...


class ApnsTokens(Protocol):
    """What the APNs sender needs: a bearer JWT, and a way to say Apple refused it."""

    async def token(self) -> str: ...

    def expired(self, token: str) -> Any: ...


class FcmTokens(Protocol):
    @property
    def project_id(self) -> str: ...

    async def token(self) -> str: ...

    def invalidate(self, token: str) -> None: ...


GetJson = Callable[[str], Awaitable[dict[str, Any]]]
REMOTE_EARLY_S = 60


class RemoteTokens:
    """Provider bearer tokens from a PushGo-style token service (PUSHGO_TOKEN_SERVICE_URL):
    ``GET {base}/provider/token/{production|sandbox}?provider=apns`` and
    ``GET {base}/provider/token?provider=fcm`` (and ``provider=wns``) answer
    ``{"success": true, "data": {"token", "expires_in", "project_id"?}}``. Cached until a minute
    before expiry; a token the provider refused is fetched anew."""

    def __init__(self, base_url: str, provider: str, get_json: GetJson, *,
                 sandbox: bool = False, clock: Clock = time.time) -> None:
        base = base_url.rstrip("/")
        if provider == "apns":
            path = "/provider/token/sandbox" if sandbox else "/provider/token/production"
        else:
            path = "/provider/token"
        self.url = f"{base}{path}?provider={provider}"
        self._get = get_json
        self._clock = clock
        self._token: str | None = None
        self._expires = 0.0
        self._project_id: str | None = None
        self._lock: anyio.Lock | None = None

    @property
    def project_id(self) -> str:
        if not self._project_id:
            raise CredentialError("the token service has not named the FCM project yet")
        return self._project_id

    async def token(self) -> str:
        if self._token is not None and self._clock() < self._expires - REMOTE_EARLY_S:
            return self._token
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self._token is not None and self._clock() < self._expires - REMOTE_EARLY_S:
                return self._token
            doc = await self._get(self.url)
            data = doc.get("data") if isinstance(doc, dict) else None
            if not (isinstance(doc, dict) and doc.get("success") and isinstance(data, dict)):
                raise CredentialError(f"token service refused: {doc.get('error', 'no data')}")
            token = str(data.get("token") or "").strip()
            if not token:
                raise CredentialError("token service answered without a token")
            self._token = token
            self._expires = self._clock() + float(data.get("expires_in") or 0)
            project = str(data.get("project_id") or "").strip()
            if project:
                self._project_id = project
            return token

    def invalidate(self, token: str) -> None:
        if self._token == token:
            self._token = None

    def expired(self, token: str) -> None:
        self.invalidate(token)
