"""WNS (Windows Push Notification Services): raw notifications to the PushGo Windows app.

- The body is the operation's flat string→string map (the same map FCM carries as ``data``,
  ``delivery_id`` included) in the compact binary map encoding the Windows app reads, as
  v1.2.9 sends it: the entry count as an unsigned LEB128 varint, then per entry the key and
  the value, each a varint byte length followed by its UTF-8 bytes.
- Headers: ``X-WNS-Type: wns/raw``, ``Content-Type: application/octet-stream``, the Bearer
  access token, ``X-WNS-Priority`` from the severity (critical/high 1, normal 2, low 3) and
  ``X-WNS-TTL`` (the delivery's remaining seconds).
- A body must stay under 5 KB (5120 bytes, exclusive); past it the wake-up map goes instead
  (the app pulls the full payload), and a 413 to a full body is answered the same way.
- The channel URI names its own host on ``*.notify.windows.com``; any other URI is never
  contacted (the access token would go with it).

Pure: the access token and times are passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from pushgo.protocol.outcomes import Delivered, Kind, ProviderOutcome, Rejected, retry_after

#: A raw notification's body must be shorter than this many bytes.
PAYLOAD_LIMIT = 5120
#: Where channel URIs live; a URI on another host is refused before any request.
CHANNEL_DOMAIN = "notify.windows.com"
RAW_TYPE = "wns/raw"
CONTENT_TYPE = "application/octet-stream"
#: The documented OAuth endpoint for a Store app's package SID and secret.
LOGIN_URL = "https://login.live.com/accesstoken.srf"
SCOPE = "notify.windows.com"
#: The scope when the token comes from a Microsoft Entra ID (v2.0) token endpoint.
ENTRA_SCOPE = "https://wns.notify.windows.com/.default"

_PRIORITY = {"critical": 1, "high": 1, "normal": 2, "low": 3}

#: status → (reason, what to do); other 4xx are permanent, other 5xx retried.
ANSWERS: dict[int, tuple[str, Kind]] = {
    400: ("BadRequest", "permanent"),
    401: ("Unauthorized", "provider_token"),
    403: ("Forbidden", "provider_token"),
    404: ("ChannelNotFound", "dead_token"),
    405: ("MethodNotAllowed", "permanent"),
    406: ("Throttled", "retry"),
    410: ("ChannelExpired", "dead_token"),
    413: ("PayloadTooLarge", "permanent"),
    429: ("TooManyRequests", "retry"),
    500: ("InternalServerError", "retry"),
    503: ("ServiceUnavailable", "retry"),
}


def priority(severity: str) -> int:
    """``X-WNS-Priority`` for a severity (unknown ones count as normal)."""
    return _PRIORITY.get(severity.strip().lower(), 2)


def scope_for(token_url: str) -> str:
    host = (urlsplit(token_url).hostname or "").lower()
    return ENTRA_SCOPE if host.endswith("microsoftonline.com") else SCOPE


# -- the binary map -------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _text(value: str) -> bytes:
    raw = value.encode()
    return _varint(len(raw)) + raw


def encode_entries(items: Iterable[tuple[str, str]]) -> bytes:
    """The entries alone (no count): key, value, key, value…"""
    return b"".join(_text(k) + _text(v) for k, v in items)


def encode_map(data: dict[str, str]) -> bytes:
    return _varint(len(data)) + encode_entries(data.items())


class MapError(ValueError):
    pass


def _read_varint(body: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(body) or shift > 63:
            raise MapError("truncated or oversized varint")
        byte = body[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _read_text(body: bytes, pos: int) -> tuple[str, int]:
    n, pos = _read_varint(body, pos)
    if pos + n > len(body):
        raise MapError("truncated string")
    try:
        return body[pos:pos + n].decode(), pos + n
    except UnicodeDecodeError:
        raise MapError("string is not UTF-8") from None


def decode_map(body: bytes) -> dict[str, str]:
    """The map a body carries; ``MapError`` when it is not exactly one well-formed map."""
    count, pos = _read_varint(body, 0)
    out: dict[str, str] = {}
    for _ in range(count):
        key, pos = _read_text(body, pos)
        out[key], pos = _read_text(body, pos)
    if pos != len(body):
        raise MapError("bytes after the map")
    return out


# -- requests -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PayloadTemplate:
    """An operation's map (without ``delivery_id``) encoded once; per device only the delivery
    id is added in front."""

    entries: bytes
    count: int
    priority: int
    wakeup: bool

    @classmethod
    def build(cls, data: dict[str, str], priority: int, *, wakeup: bool = False,
              ) -> PayloadTemplate:
        items = [(k, v) for k, v in data.items() if k != "delivery_id"]
        return cls(encode_entries(items), len(items), priority, wakeup)

    def render(self, delivery_id: str) -> bytes:
        return (_varint(self.count + 1) + _text("delivery_id") + _text(delivery_id)
                + self.entries)


def fits(body: bytes) -> bool:
    return len(body) < PAYLOAD_LIMIT


def choose(full: PayloadTemplate, wake: PayloadTemplate | None, delivery_id: str,
           ) -> tuple[bytes, PayloadTemplate] | None:
    """The body to send (the full map when it fits, else the wake-up map) and its template;
    None when neither fits."""
    body = full.render(delivery_id)
    if fits(body):
        return body, full
    if wake is not None:
        body = wake.render(delivery_id)
        if fits(body):
            return body, wake
    return None


def headers(access_token: str, priority: int, ttl_s: int | None) -> dict[str, str]:
    out = {
        "authorization": "Bearer " + access_token,
        "content-type": CONTENT_TYPE,
        "x-wns-type": RAW_TYPE,
        "x-wns-priority": str(priority),
    }
    if ttl_s is not None:
        out["x-wns-ttl"] = str(max(1, ttl_s))
    return out


def channel_target(channel_uri: str, endpoint: str | None = None) -> str | None:
    """Where to POST for a channel URI: the URI itself when it is an https URL on
    ``*.notify.windows.com`` (with ``endpoint``, an origin like ``https://host:port``, in place
    of its scheme, host and port: a test double); None for any other URI."""
    try:
        parts = urlsplit(channel_uri.strip())
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if (parts.scheme != "https" or parts.username is not None or parts.password is not None
            or not (host == CHANNEL_DOMAIN or host.endswith("." + CHANNEL_DOMAIN))):
        return None
    path = parts.path or "/"
    query = "?" + parts.query if parts.query else ""
    if endpoint is not None:
        return endpoint.rstrip("/") + path + query
    return f"https://{parts.netloc}{path}{query}"


# -- answers --------------------------------------------------------------------------------


def interpret(status: int, headers: dict[bytes, bytes]) -> ProviderOutcome:
    """A WNS answer as an outcome. ``headers`` are lower-case names."""
    if status == 200:
        msg_id = headers.get(b"x-wns-msg-id") or b""
        return Delivered(msg_id.decode("latin-1"))
    reason, kind = ANSWERS.get(status) or (
        f"HTTP {status}", "retry" if status >= 500 else "permanent")
    return Rejected(reason, status, kind, None, retry_after(headers.get(b"retry-after")))
