"""OAuth clients: dynamic registration (RFC 7591), predefined clients from
``PUSHGO_MCP_PREDEFINED_CLIENTS``, Client ID Metadata Documents, the redirect-URI rule of each
kind, and client authentication at the token and revocation endpoints (``none``,
``client_secret_post``, ``client_secret_basic``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from pushgo.errors import codes
from pushgo.oauth import cimd
from pushgo.oauth.config import Lifetimes, PredefinedClient, digest, digest_matches, new_id
from pushgo.oauth.web import OAuthError, single
from pushgo.protocol import oauth as oauth_wire
from pushgo.protocol.ids import redact
from pushgo.service.oauth import OAuthRecords

log = logging.getLogger("pushgo.oauth")

AUTH_METHODS = ("none", "client_secret_post", "client_secret_basic")
GRANT_TYPES = ["authorization_code", "refresh_token"]
MAX_REDIRECT_URIS = 20
_TEXT_FIELDS = ("client_name", "software_id", "software_version", "application_type")
_URL_FIELDS = ("client_uri", "logo_uri", "tos_uri", "policy_uri")


@dataclass(frozen=True)
class Client:
    client_id: str
    kind: str
    auth_method: str
    secret_hash: str | None = None
    redirect_uris: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    expires_at: int | None = None
    #: Every secret hash accepted (a predefined client's two during a rotation).
    secret_hashes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return str(self.metadata.get("client_name") or self.client_id)

    @property
    def registered_scope(self) -> frozenset[str]:
        return oauth_wire.parse_scope(self.metadata.get("scope"))[0]

    def redirect_allowed(self, uri: str) -> bool:
        """Exact match against the registration (loopback: any port); a predefined client
        configured without redirect URIs may return to loopback only."""
        if self.kind == "predefined" and not self.redirect_uris:
            return oauth_wire.loopback_allowed(uri)
        return oauth_wire.redirect_matches(self.redirect_uris, uri)

    def trusts_redirect(self, uri: str) -> bool:
        """Whether an error may go to ``uri`` before the user has seen the page (RFC 9700
        §4.11.2): the operator configured it (a predefined client), or it is the user's own
        machine (loopback). A URI anyone could register (DCR, a metadata document) gets an
        error page instead, so the authorization endpoint is no open redirector."""
        if not self.redirect_allowed(uri):
            return False
        return self.kind == "predefined" or oauth_wire.is_loopback(uri)

    def secret_matches(self, secret: str) -> bool:
        hashes = self.secret_hashes or ((self.secret_hash,) if self.secret_hash else ())
        return any(digest_matches(secret, h) for h in hashes)

    @classmethod
    def of(cls, row: Any) -> Client:
        return cls(row.client_id, row.kind, row.auth_method, row.secret_hash,
                   json.loads(row.redirect_uris), json.loads(row.metadata), row.expires_at)


def _invalid(description: str) -> OAuthError:
    return OAuthError(codes.OAUTH_INVALID_CLIENT_METADATA, description)


def _registration_metadata(doc: dict[str, Any]) -> dict[str, Any]:
    """The descriptive fields pushgo keeps and echoes; anything else is ignored."""
    out: dict[str, Any] = {}
    for key in _TEXT_FIELDS:
        value = doc.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > 256:
            raise _invalid(f"{key} must be a string of at most 256 characters")
        if value.strip():
            out[key] = value.strip()
    for key in _URL_FIELDS:
        value = doc.get(key)
        if value in (None, ""):
            continue
        if not isinstance(value, str) or len(value) > oauth_wire.MAX_URI \
                or not value.startswith(("https://", "http://")):
            raise _invalid(f"{key} must be an http(s) URL")
        out[key] = value
    contacts = doc.get("contacts")
    if contacts is not None:
        if not isinstance(contacts, list) or len(contacts) > 10 \
                or not all(isinstance(c, str) and len(c) <= 256 for c in contacts):
            raise _invalid("contacts must be a list of at most 10 strings")
        out["contacts"] = contacts
    scope = doc.get("scope")
    if scope is not None:
        if not isinstance(scope, str):
            raise _invalid("scope must be a space-separated string")
        known, _unknown = oauth_wire.parse_scope(scope)
        if known:
            out["scope"] = oauth_wire.scope_text(known)
    return out


class Clients:
    def __init__(self, records: OAuthRecords, lifetimes: Lifetimes, *,
                 allow_loopback_cimd: bool) -> None:
        self.records = records
        self.lifetimes = lifetimes
        self.allow_loopback_cimd = allow_loopback_cimd
        #: The setting's clients: their secrets and redirect URIs are read from here, the row
        #: (what grants hang on) holds the newest secret's hash.
        self.predefined: dict[str, PredefinedClient] = {}

    async def sync_predefined(self, predefined: list[PredefinedClient], now: int) -> None:
        """Make the predefined-client rows match the setting; a client removed from it loses
        its grants; a secret rotated keeps them."""
        self.predefined = {c.client_id: c for c in predefined}
        await self.records.sync_predefined({c.client_id: digest(c.secret) for c in predefined},
                                           now)

    def _of(self, row: Any) -> Client:
        client = Client.of(row)
        conf = self.predefined.get(client.client_id) if client.kind == "predefined" else None
        if conf is None:
            return client
        return Client(client.client_id, client.kind, client.auth_method, client.secret_hash,
                      list(conf.redirect_uris), client.metadata, client.expires_at,
                      tuple(digest(s) for s in conf.secrets))

    # --- lookup -------------------------------------------------------------------------------

    async def get(self, client_id: str, now: int, *, fresh: bool = True) -> Client | None:
        """A known client. A metadata-document client is fetched when unknown, or (``fresh``)
        when its cached copy is older than the cache lifetime; OAuthError when that fails."""
        row = await self.records.client(client_id)
        if row is not None and (row.kind != "cimd" or not fresh
                                or (row.expires_at or 0) > now):
            return self._of(row)
        if not cimd.looks_like_cimd(client_id):
            return None
        try:
            doc = await cimd.fetch(client_id, allow_loopback=self.allow_loopback_cimd)
        except cimd.CimdError as exc:
            raise OAuthError(codes.OAUTH_INVALID_CLIENT, str(exc)) from None
        expires = now + self.lifetimes.cimd_cache
        await self.records.put_client(
            client_id=client_id, kind="cimd", secret_hash=None, auth_method="none",
            redirect_uris=doc.redirect_uris, metadata=doc.metadata, now=now, expires_at=expires)
        return Client(client_id, "cimd", "none", None, doc.redirect_uris, doc.metadata, expires)

    # --- dynamic registration -----------------------------------------------------------------

    async def register(self, doc: Any, now: int) -> dict[str, Any]:
        if not isinstance(doc, dict):
            raise _invalid("the registration request must be a JSON object")
        uris = doc.get("redirect_uris")
        if not isinstance(uris, list) or not uris or len(uris) > MAX_REDIRECT_URIS \
                or not all(isinstance(u, str) for u in uris):
            raise OAuthError(codes.OAUTH_INVALID_REDIRECT_URI,
                             f"redirect_uris must list 1 to {MAX_REDIRECT_URIS} URIs")
        for uri in uris:
            problem = oauth_wire.redirect_uri_problem(uri)
            if problem is not None:
                raise OAuthError(codes.OAUTH_INVALID_REDIRECT_URI, f"redirect URI {uri[:200]!r} {problem}")
        method = doc.get("token_endpoint_auth_method", "client_secret_basic")
        if method not in AUTH_METHODS:
            raise _invalid("token_endpoint_auth_method must be one of " + ", ".join(AUTH_METHODS))
        grant_types = doc.get("grant_types", ["authorization_code"])
        if not isinstance(grant_types, list) or "authorization_code" not in grant_types:
            raise _invalid("grant_types must include authorization_code")
        response_types = doc.get("response_types", ["code"])
        if not isinstance(response_types, list) or "code" not in response_types:
            raise _invalid("response_types must include code")
        metadata = _registration_metadata(doc)
        client_id = new_id("pgc", 16)
        secret = new_id("pgcs", 32) if method != "none" else None
        await self.records.insert_client(
            client_id=client_id, kind="dcr",
            secret_hash=digest(secret) if secret else None, auth_method=method,
            redirect_uris=list(dict.fromkeys(uris)), metadata=metadata, now=now)
        log.info("client registered", extra={"fields": {"client": redact(client_id), "method": method}})
        out: dict[str, Any] = {"client_id": client_id, "client_id_issued_at": now // 1000}
        if secret is not None:
            out["client_secret"] = secret
            out["client_secret_expires_at"] = 0
        out.update(redirect_uris=list(dict.fromkeys(uris)), token_endpoint_auth_method=method,
                   grant_types=GRANT_TYPES, response_types=["code"], **metadata)
        return out

    # --- authenticating a client at the token and revocation endpoints ------------------------

    async def authenticate(self, form: dict[str, list[str]], authorization: str | None,
                           now: int) -> Client:
        try:
            basic = oauth_wire.basic_credentials(authorization)
        except ValueError:
            raise self._unauthorized("malformed Basic credentials", basic=True) from None
        body_id = single(form, "client_id", max_len=oauth_wire.MAX_URI)
        body_secret = single(form, "client_secret", max_len=512)
        if basic is not None:
            if body_secret is not None:
                raise OAuthError(codes.OAUTH_INVALID_REQUEST, "use one client authentication method")
            if body_id is not None and body_id != basic[0]:
                raise OAuthError(codes.OAUTH_INVALID_REQUEST, "client_id differs from the credentials")
            client_id: str = basic[0]
            secret: str | None = basic[1]
        elif body_id is not None:
            client_id, secret = body_id, body_secret
        else:
            raise self._unauthorized("client authentication is required")
        client = await self.get(client_id, now, fresh=False)
        if client is None:
            raise self._unauthorized("unknown client", basic=basic is not None)
        if client.auth_method == "none":
            if secret is not None:
                raise self._unauthorized("this client is public and has no secret",
                                         basic=basic is not None)
            return client
        if secret is None or not client.secret_matches(secret):
            raise self._unauthorized("client authentication failed", basic=basic is not None)
        return client

    @staticmethod
    def _unauthorized(description: str, *, basic: bool = False) -> OAuthError:
        headers = {"www-authenticate": 'Basic realm="pushgo"'} if basic else {}
        return OAuthError(codes.OAUTH_INVALID_CLIENT, description, 401, headers)
