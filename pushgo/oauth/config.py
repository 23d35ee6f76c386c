"""Lifetimes by runtime profile, identifier formats, secret hashing, the PKCE S256 check and
the predefined-client setting. Imports nothing from pushgo but settings and protocol.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from pushgo.protocol import oauth as oauth_wire
from pushgo.settings import Settings, SettingsError

MINUTE = 60_000
DAY = 86_400_000


@dataclass(frozen=True)
class Lifetimes:
    """Milliseconds. Owned by PUSHGO_RUNTIME_PROFILE, not separate knobs; these defaults are
    the ``small`` profile's."""

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


#: ``small``: a self-hosted gateway for a few people. ``public``: a gateway many people's
#: assistants use, where a leaked token must be worth less: access tokens live 5 minutes, a
#: refresh token unused for 3 days (or older than 14) is dead, bind links and codes are short.
PROFILES = {
    "small": Lifetimes(),
    "public": Lifetimes(access=5 * MINUTE, refresh_absolute=14 * DAY, refresh_idle=3 * DAY,
                        bind_session=5 * MINUTE, code=1 * MINUTE),
}


def lifetimes(settings: Settings) -> Lifetimes:
    return PROFILES[settings.runtime_profile]


def _loopback_host(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def base_url_warning(settings: Settings) -> str | None:
    """Why PUSHGO_PUBLIC_BASE_URL needs a look at start-up (one log line), or None: unset
    while listening beyond loopback (issuer and bind links then follow each request's Host
    and X-Forwarded-* headers), or plain http on a host that is not loopback."""
    base = settings.public_base_url
    if base is None:
        if _loopback_host(settings.http_host):
            return None
        return (f"PUSHGO_PUBLIC_BASE_URL is unset while listening on {settings.http_addr}: "
                "the OAuth issuer and bind links follow each request's Host and X-Forwarded-* "
                "headers; set it to the gateway's external https root URL")
    parts = urlsplit(base)
    if parts.scheme == "http" and not _loopback_host(parts.hostname):
        return ("PUSHGO_PUBLIC_BASE_URL is plain http on a host that is not loopback: tokens "
                "and channel passwords would cross the network unencrypted; use https")
    return None


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


#: Secrets a predefined client may hold at once: the new and the old one of a rotation.
MAX_SECRETS = 2
_NAME = "PUSHGO_MCP_PREDEFINED_CLIENTS"
#: Where a client's redirect URIs begin: the first ``@`` followed by a URI scheme.
_URIS_AT = re.compile(r"@(?=[A-Za-z][A-Za-z0-9+.\-]*:)")


@dataclass(frozen=True)
class PredefinedClient:
    """A client from the setting: its secrets (newest first; two during a rotation) and the
    redirect URIs it may use (none configured: loopback only)."""

    client_id: str
    secrets: tuple[str, ...]
    redirect_uris: tuple[str, ...] = ()

    @property
    def secret(self) -> str:
        return self.secrets[0]


def _bad(why: str) -> SettingsError:
    return SettingsError(f"invalid {_NAME}: {why}")


def _entry(item: str) -> tuple[str, str, list[str]]:
    """``id:secret`` or ``id:secret@uri|uri…``: (id, secret, redirect URIs)."""
    client_id, sep, rest = item.partition(":")
    client_id = client_id.strip()
    m = _URIS_AT.search(rest)
    secret, uris_text = (rest[:m.start()], rest[m.end():]) if m else (rest, "")
    secret = secret.strip()
    if not sep or not client_id or not secret:
        raise _bad("expected id:secret or id:secret@redirect_uri|redirect_uri entries "
                   "separated by newlines or ;")
    if len(client_id) > 128 or not client_id.isprintable() or " " in client_id \
            or client_id.startswith(("http:", "https:")):
        raise _bad("a client id must be printable, without spaces, at most 128 characters, "
                   "not a URL")
    if len(secret) < 16:
        raise _bad("a client secret must be at least 16 characters")
    uris = [u.strip() for u in uris_text.split("|") if u.strip()]
    for uri in uris:
        problem = oauth_wire.redirect_uri_problem(uri)
        if problem is not None:
            raise _bad(f"client {client_id}: redirect URI {uri[:100]!r} {problem}")
    return client_id, secret, uris


def predefined_clients(settings: Settings) -> list[PredefinedClient]:
    """PUSHGO_MCP_PREDEFINED_CLIENTS: entries separated by newlines or ``;``, each
    ``id:secret`` or ``id:secret@https://app.example/cb|http://127.0.0.1/cb``. The same id
    given twice holds both secrets (a rotation: the first entry is the new secret), and its
    redirect URIs are the union of the entries'."""
    raw = settings.mcp_predefined_clients
    if not raw:
        return []
    secrets_of: dict[str, list[str]] = {}
    uris_of: dict[str, list[str]] = {}
    for item in raw.replace("\n", ";").split(";"):
        if not item.strip():
            continue
        client_id, secret, uris = _entry(item.strip())
        held = secrets_of.setdefault(client_id, [])
        if secret not in held:
            held.append(secret)
        if len(held) > MAX_SECRETS:
            raise _bad(f"client {client_id} has more than {MAX_SECRETS} secrets (a rotation "
                       "keeps the new and the old one)")
        known = uris_of.setdefault(client_id, [])
        known.extend(u for u in uris if u not in known)
    return [PredefinedClient(cid, tuple(held), tuple(uris_of[cid]))
            for cid, held in secrets_of.items()]
