"""Small HTTP pieces of the MCP transport on raw ASGI: request headers, ``Accept`` and
``Origin`` rules, bounded body reads, JSON and SSE responses.

Must not import starlette (the endpoint is a plain ASGI app mounted by pushgo.app).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pushgo.protocol import jsonrpc
from pushgo.protocol.ids import is_digits
from pushgo.protocol.sse import encode_comment, encode_event

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

SSE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]


class ClientGone(Exception):
    """The client disconnected while its request body was being read."""


@dataclass(frozen=True)
class Incoming:
    method: str
    headers: dict[str, str]  # lowercase names, first value, surrounding whitespace stripped
    raw_headers: list[tuple[str, str]]

    @classmethod
    def of(cls, scope: Scope) -> Incoming:
        raw = [(k.decode("latin-1").lower(), v.decode("latin-1").strip())
               for k, v in scope["headers"]]
        headers: dict[str, str] = {}
        for k, v in raw:
            headers.setdefault(k, v)
        return cls(scope["method"], headers, raw)

    def duplicated(self, names: tuple[str, ...]) -> frozenset[str]:
        seen: set[str] = set()
        dup: set[str] = set()
        for k, _ in self.raw_headers:
            if k in names:
                (dup if k in seen else seen).add(k)
        return frozenset(dup)


@dataclass(frozen=True)
class Accept:
    json: bool
    sse: bool

    @classmethod
    def parse(cls, value: str | None) -> Accept:
        """Which of the two MCP media types the client takes; no header means anything."""
        if value is None or not value.strip():
            return cls(True, True)
        json_ok = sse_ok = False
        for part in value.split(","):
            mime, *params = part.split(";")
            if any(_zero_q(p) for p in params):
                continue
            mime = mime.strip().lower()
            if mime == "*/*":
                json_ok = sse_ok = True
            elif mime in ("application/json", "application/*"):
                json_ok = True
            elif mime in ("text/event-stream", "text/*"):
                sse_ok = True
        return cls(json_ok, sse_ok)


def _zero_q(param: str) -> bool:
    name, _, value = param.partition("=")
    if name.strip().lower() != "q":
        return False
    try:
        return float(value.strip()) <= 0
    except ValueError:
        return False


def is_json_content_type(value: str | None) -> bool:
    mime = (value or "").split(";")[0].strip().lower()
    return mime == "application/json"


def _origin_parts(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)


def origin_allowed(origin: str, public_base_url: str | None) -> bool:
    """Browsers send Origin; a page on another origin (a DNS-rebinding attack included) must
    not reach /mcp. Loopback origins and the public base URL's origin are allowed."""
    parts = _origin_parts(origin)
    if parts is None:
        return False
    if parts[1] in LOOPBACK_HOSTS or parts[1] == "[::1]":
        return True
    if public_base_url:
        return parts == _origin_parts(public_base_url)
    return False


async def read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes | None:
    """The whole body, or None when it is over ``limit`` bytes (not buffered past it)."""
    length = headers.get("content-length")
    if length is not None and is_digits(length) and int(length) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class Reply:
    """One HTTP response, written once; remembers whether it has started."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.ended = False

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.started = True
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def body(self, data: bytes, *, more: bool = False) -> None:
        if self.ended:
            return
        self.ended = not more
        await self._send({"type": "http.response.body", "body": data, "more_body": more})

    async def json(self, status: int, body: bytes,
                   headers: list[tuple[bytes, bytes]] | None = None) -> None:
        await self.start(status, [(b"content-type", b"application/json"), *(headers or [])])
        await self.body(body)

    async def empty(self, status: int, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        await self.start(status, list(headers or []))
        await self.body(b"")

    async def error(self, status: int, code: int, message: str, *,
                    request_id: jsonrpc.RequestId | None = None, data: Any = None,
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
        await self.json(status, jsonrpc.encode_error(request_id, code, message, data), headers)


def sse_message(data: bytes, event_id: str | None = None) -> bytes:
    return encode_event(data, event_id=event_id, event="message")


def sse_priming(event_id: str, retry_ms: int) -> bytes:
    """The first event of a 2025-11-25 stream: an id and empty data, so a client can resume."""
    return encode_event(b"", event_id=event_id, retry_ms=retry_ms)


KEEPALIVE = encode_comment("keep-alive")
