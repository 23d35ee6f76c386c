"""OAuth 2.1 rules that need no I/O: scopes, PKCE formats, redirect-URI rules (RFC 8252),
the public base URL of a request, query building, form and Basic-credential decoding, and the
page locale.

Pure: stdlib only, no clock, no hashing. The authorization server (pushgo.oauth) applies
these.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit, urlunsplit

SCOPE_TOOLS = "mcp:tools"
SCOPE_CHANNELS = "mcp:channels:manage"
#: Every scope pushgo grants, in the order they are written back.
SCOPES = (SCOPE_TOOLS, SCOPE_CHANNELS)

LOCALES = ("en", "zh-CN")

MAX_URI = 2048
MAX_STATE = 2048
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]*")
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(:\d{1,5})?")
#: A loopback redirect URI as RFC 8252 §7.3 writes it: lower-case ``http``, the host exactly
#: ``127.0.0.1``, ``[::1]`` or ``localhost``, an optional port, then the path and query. No
#: user information, no fragment, no backslash: anything else is not loopback here.
_LOOPBACK = re.compile(r"http://(127\.0\.0\.1|\[::1\]|localhost)(?::([0-9]{1,5}))?"
                       r"((?:[/?][^#\\]*)?)")


# --- scopes -----------------------------------------------------------------------------------


def parse_scope(raw: str | None) -> tuple[frozenset[str], list[str]]:
    """(known scopes, unknown tokens) of a space-separated ``scope`` value."""
    tokens = (raw or "").split()
    known = frozenset(t for t in tokens if t in SCOPES)
    return known, [t for t in tokens if t not in SCOPES]


def scope_text(scopes: Iterable[str]) -> str:
    have = set(scopes)
    return " ".join(s for s in SCOPES if s in have)


# --- PKCE -------------------------------------------------------------------------------------


def valid_challenge(challenge: str) -> bool:
    """An S256 challenge is the unpadded base64url of a SHA-256 digest: 43 characters."""
    return _CHALLENGE.fullmatch(challenge) is not None


def valid_verifier(verifier: str) -> bool:
    """RFC 7636 §4.1: 43-128 unreserved characters."""
    return _VERIFIER.fullmatch(verifier) is not None


# --- redirect URIs ----------------------------------------------------------------------------


def _printable(uri: str) -> bool:
    return uri.isascii() and all(0x21 <= ord(c) < 0x7F for c in uri)


def redirect_uri_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be registered as a redirect URI, or None when it can: HTTPS, loopback
    HTTP on any port (RFC 8252 §7.3, written as ``loopback_parts`` reads it), or a private-use
    scheme with a dot (RFC 8252 §7.1); never user information, a fragment or a backslash."""
    if not uri or len(uri) > MAX_URI or not _printable(uri):
        return "must be a URI of printable ASCII, at most 2048 characters"
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        return "is not a valid URI"
    if parts.fragment or "#" in uri:
        return "must not contain a fragment"
    if "@" in parts.netloc or "\\" in uri:
        return "must not contain user information or a backslash"
    scheme = parts.scheme.lower()
    if scheme == "https":
        return None if parts.hostname else "needs a host"
    if scheme == "http":
        if loopback_parts(uri) is not None:
            return None
        return ("plain http is allowed only for loopback hosts, written http://127.0.0.1, "
                "http://[::1] or http://localhost")
    if _SCHEME.fullmatch(scheme) and "." in scheme:
        return None
    return "must be https, loopback http, or a private-use scheme such as com.example.app:"


def loopback_parts(uri: str) -> tuple[str, int | None, str] | None:
    """(host, port, path and query) of a loopback redirect URI, or None when ``uri`` is not
    one exactly as RFC 8252 §7.3 writes it (see ``_LOOPBACK``)."""
    m = _LOOPBACK.fullmatch(uri)
    if m is None:
        return None
    port = int(m.group(2)) if m.group(2) is not None else None
    if port is not None and not 0 < port <= 65535:
        return None
    return m.group(1), port, m.group(3)


def is_loopback(uri: str) -> bool:
    return loopback_parts(uri) is not None


def redirect_matches(registered: Iterable[str], given: str) -> bool:
    """OAuth 2.1 §2.3.1: the exact string of a registered URI; for a registered loopback URI
    (RFC 8252 §7.3) any port, everything else exact: scheme, host (``localhost`` is not
    ``127.0.0.1``), path and query."""
    if redirect_uri_problem(given) is not None:
        return False
    given_loop = loopback_parts(given)
    for uri in registered:
        if uri == given:
            return True
        loop = loopback_parts(uri)
        if loop is not None and given_loop is not None \
                and (loop[0], loop[2]) == (given_loop[0], given_loop[2]):
            return True
    return False


def loopback_allowed(given: str) -> bool:
    """A client with no registered redirect URIs (a predefined client configured without
    them) may return only to the user's own machine: any loopback URI."""
    return redirect_uri_problem(given) is None and is_loopback(given)


def with_query(uri: str, params: Iterable[tuple[str, str]]) -> str:
    """``uri`` with ``params`` appended to its query (its own query kept)."""
    parts = urlsplit(uri)
    extra = urlencode(list(params), quote_via=quote)
    if not extra:
        return uri
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def origin_of(uri: str) -> str | None:
    """What a CSP ``form-action`` source must name for ``uri``: its origin, or ``scheme:``
    for a private-use scheme."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return f"{scheme}://{parts.netloc}" if parts.netloc else None
    return f"{scheme}:" if _SCHEME.fullmatch(scheme) else None


# --- the request's public base URL ------------------------------------------------------------


def _first(value: str | None) -> str:
    return (value or "").split(",")[0].strip()


def request_base_url(public_base_url: str | None, headers: Mapping[str, str]) -> str:
    """The issuer and the root of every advertised URL: ``PUSHGO_PUBLIC_BASE_URL`` when set,
    else ``X-Forwarded-Proto``/``X-Forwarded-Host`` (a reverse proxy's), else ``Host`` over
    plain HTTP (pushgo itself serves no TLS). Lowercase header names."""
    if public_base_url:
        return public_base_url.rstrip("/")
    host = _first(headers.get("x-forwarded-host")) or _first(headers.get("host"))
    if not host or _HOST.fullmatch(host) is None:
        host = "localhost"
    proto = _first(headers.get("x-forwarded-proto")).lower()
    scheme = proto if proto in ("http", "https") else "http"
    return f"{scheme}://{host.lower()}"


# --- bodies and credentials -------------------------------------------------------------------


def parse_form(body: bytes) -> dict[str, list[str]]:
    """An ``application/x-www-form-urlencoded`` body; ValueError when it is not one."""
    text = body.decode("utf-8")  # UnicodeDecodeError is a ValueError
    return parse_qs(text, keep_blank_values=True, strict_parsing=False, errors="strict",
                    max_num_fields=200)


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(client_id, client_secret) of an ``Authorization: Basic`` header (RFC 6749 §2.3.1:
    each part form-urlencoded), or None when the header is not Basic."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("malformed Basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise ValueError("malformed Basic credentials")
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


# --- locale -----------------------------------------------------------------------------------


def _locale_tag(raw: str) -> str | None:
    tag = raw.strip().lower().replace("_", "-")
    if tag == "zh" or tag.startswith(("zh-cn", "zh-sg", "zh-hans")):
        return "zh-CN"
    if tag == "en" or tag.startswith("en-"):
        return "en"
    return None


def pick_locale(lang: str | None, ui_locales: str | None, accept_language: str | None) -> str:
    """``lang``, then ``ui_locales`` (space-separated, OIDC), then ``Accept-Language``."""
    if lang and (found := _locale_tag(lang)):
        return found
    for tag in (ui_locales or "").split():
        if found := _locale_tag(tag):
            return found
    for part in (accept_language or "").split(","):
        if found := _locale_tag(part.split(";")[0]):
            return found
    return "en"
