"""Client ID Metadata Documents: a ``client_id`` that is an HTTPS URL names a JSON document
describing the client, fetched from there.

Fetching a URL an anonymous caller chose is a server-side request forgery risk, so: HTTPS
only, the host resolved once and every address checked to be public (no loopback, private,
link-local, multicast or reserved targets), the connection made to the checked address (TLS
still verified against the host name), no redirects, a 64 KiB cap and a 5 s deadline.
``PUSHGO_MCP_CIMD_ALLOW_LOOPBACK`` (tests only) admits loopback targets, over plain HTTP too.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx

from pushgo.protocol import jsondepth
from pushgo.protocol import oauth as oauth_wire

MAX_DOCUMENT = 64 * 1024
FETCH_TIMEOUT_S = 5.0


class CimdError(Exception):
    """Why a metadata document cannot be used (safe to show the caller)."""


@dataclass(frozen=True)
class Document:
    redirect_uris: list[str]
    metadata: dict[str, Any]


def looks_like_cimd(client_id: str) -> bool:
    return client_id.startswith(("https://", "http://"))


def check_url(client_id: str, *, allow_loopback: bool) -> tuple[str, str, int]:
    """(scheme, host, port) of a usable document URL; CimdError otherwise."""
    if len(client_id) > oauth_wire.MAX_URI or not client_id.isascii():
        raise CimdError("client_id URL is too long or not ASCII")
    try:
        parts = urlsplit(client_id)
        port = parts.port
    except ValueError:
        raise CimdError("client_id is not a valid URL") from None
    host = parts.hostname
    if not host or parts.username or parts.password or parts.fragment:
        raise CimdError("client_id URL must have a host and no credentials or fragment")
    if parts.path in ("", "/"):
        raise CimdError("client_id URL must have a path")
    scheme = parts.scheme.lower()
    if scheme != "https" and not (allow_loopback and scheme == "http"
                                  and host in oauth_wire.LOOPBACK_HOSTS):
        raise CimdError("client_id URL must be https")
    return scheme, host, port or (443 if scheme == "https" else 80)


def _allowed(address: str, allow_loopback: bool) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if allow_loopback and ip.is_loopback:
        return True
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local)


async def _resolve(host: str, port: int, allow_loopback: bool) -> str:
    try:
        infos = await anyio.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except OSError:
        raise CimdError("client_id host does not resolve") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise CimdError("client_id host does not resolve")
    for address in addresses:
        if not _allowed(address, allow_loopback):
            raise CimdError("client_id host resolves to a non-public address")
    return addresses[0]


async def fetch(client_id: str, *, allow_loopback: bool) -> Document:
    scheme, host, port = check_url(client_id, allow_loopback=allow_loopback)
    address = await _resolve(host, port, allow_loopback)
    parts = urlsplit(client_id)
    shown = f"[{address}]" if ":" in address else address
    target = urlunsplit((scheme, f"{shown}:{port}", parts.path, parts.query, ""))
    extensions = {"sni_hostname": host} if scheme == "https" else {}
    try:
        with anyio.fail_after(FETCH_TIMEOUT_S):
            async with httpx.AsyncClient(follow_redirects=False, timeout=FETCH_TIMEOUT_S,
                                         trust_env=False) as http, http.stream("GET", target, headers={
                    "host": parts.netloc.rsplit("@", 1)[-1],
                    "accept": "application/json"}, extensions=extensions) as resp:
                if resp.status_code != 200:
                    raise CimdError(f"client metadata document answered {resp.status_code}")
                body = b""
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT:
                        raise CimdError("client metadata document is over 64 KiB")
    except TimeoutError:
        raise CimdError("client metadata document took too long") from None
    except httpx.HTTPError:
        raise CimdError("client metadata document could not be fetched") from None
    return parse(client_id, body)


def parse(client_id: str, body: bytes) -> Document:
    try:
        doc = jsondepth.loads(body)
    except ValueError:
        raise CimdError("client metadata document is not JSON") from None
    if not isinstance(doc, dict):
        raise CimdError("client metadata document is not a JSON object")
    if doc.get("client_id") != client_id:
        raise CimdError("client metadata document names another client_id")
    method = doc.get("token_endpoint_auth_method", "none")
    if method != "none":
        raise CimdError("client metadata documents are for public clients "
                        "(token_endpoint_auth_method none)")
    if "client_secret" in doc:
        raise CimdError("a client metadata document must not carry a client_secret")
    uris = doc.get("redirect_uris")
    if not isinstance(uris, list) or not uris or len(uris) > 20 \
            or not all(isinstance(u, str) for u in uris):
        raise CimdError("client metadata document needs redirect_uris")
    for uri in uris:
        problem = oauth_wire.redirect_uri_problem(uri)
        if problem is not None:
            raise CimdError(f"redirect URI {uri[:200]!r} {problem}")
    name = doc.get("client_name")
    metadata: dict[str, Any] = {}
    if isinstance(name, str) and name.strip():
        metadata["client_name"] = name.strip()[:256]
    for key in ("client_uri", "logo_uri"):
        value = doc.get(key)
        if isinstance(value, str) and value.startswith("https://") and len(value) <= oauth_wire.MAX_URI:
            metadata[key] = value
    return Document(list(uris), metadata)
