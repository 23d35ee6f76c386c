"""Lifetimes by runtime profile, identifier formats, secret hashing, the PKCE S256 check and
the predefined-client setting. Imports nothing from pushgo but settings and protocol.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from pushgo.protocol import oauth as oauth_wire
from pushgo.settings import Settings, SettingsError

MINUTE = 60_000
DAY = 86_400_000


@dataclass(frozen=True)
class Lifetimes:
    """Milliseconds. Owned by PUSHGO_RUNTIME_PROFILE, not separate knobs."""

    access: int = 15 * MINUTE
    refresh_absolute: int = 30 * DAY
    refresh_idle: int = 7 * DAY
    bind_session: int = 10 * MINUTE
    code: int = 5 * MINUTE
    #: An authorize page may be submitted this long after it was opened.
    page: int = 10 * MINUTE
    #: A rotated refresh token presented again this soon is a retried request, not a theft.
    refresh_grace: int = 10_000
    #: How long a fetched Client ID Metadata Document is trusted.
    cimd_cache: int = 60 * MINUTE
    #: Signing keys are rotated this often.
    key_rotation: int = 90 * DAY
    #: Bind sessions stay readable by bind.status this long after they end.
    bind_keep: int = DAY
    #: Registered clients without a grant are forgotten after this long unused.
    client_idle: int = 30 * DAY


PROFILES = {"small": Lifetimes(), "public": Lifetimes()}


def lifetimes(settings: Settings) -> Lifetimes:
    return PROFILES[settings.runtime_profile]


def digest(raw: str) -> str:
    """How secrets are stored: SHA-256 hex. Every stored secret pushgo mints carries at least
    128 random bits, so a fast hash is enough to make a leaked table useless."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def digest_matches(raw: str, stored: str | None) -> bool:
    return stored is not None and hmac.compare_digest(digest(raw), stored)


def s256(verifier: str) -> str:
    digest_ = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest_).rstrip(b"=").decode("ascii")


def pkce_matches(challenge: str, verifier: str) -> bool:
    """RFC 7636 S256: BASE64URL(SHA256(verifier)) == challenge."""
    return oauth_wire.valid_verifier(verifier) and hmac.compare_digest(s256(verifier), challenge)


def new_id(prefix: str, nbytes: int = 24) -> str:
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"


@dataclass(frozen=True)
class PredefinedClient:
    client_id: str
    secret: str


def predefined_clients(settings: Settings) -> list[PredefinedClient]:
    """``id:secret`` pairs separated by newlines or ``;`` (PUSHGO_MCP_PREDEFINED_CLIENTS)."""
    raw = settings.mcp_predefined_clients
    if not raw:
        return []
    out: dict[str, PredefinedClient] = {}
    for item in raw.replace("\n", ";").split(";"):
        item = item.strip()
        if not item:
            continue
        client_id, sep, secret = item.partition(":")
        client_id, secret = client_id.strip(), secret.strip()
        if not sep or not client_id or not secret:
            raise SettingsError("invalid PUSHGO_MCP_PREDEFINED_CLIENTS: expected id:secret "
                                "pairs separated by newlines or ;")
        if len(client_id) > 128 or not client_id.isprintable() or " " in client_id \
                or client_id.startswith(("http:", "https:")):
            raise SettingsError("invalid PUSHGO_MCP_PREDEFINED_CLIENTS: a client id must be "
                                "printable, without spaces, at most 128 characters, not a URL")
        if len(secret) < 16:
            raise SettingsError("invalid PUSHGO_MCP_PREDEFINED_CLIENTS: a client secret must "
                                "be at least 16 characters")
        out[client_id] = PredefinedClient(client_id, secret)
    return list(out.values())
