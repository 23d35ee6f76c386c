"""The values exchanged between the test server and its handlers: the assembled `Request`,
the `Response`, and the other outcomes a handler may choose (`ResetStream`, `GoAway`, `Drop`,
`Delay`), plus `ConnectionInfo` and the server `H2Settings`.

Also the few transport helpers both connection kinds share (`IO_ERRORS`, `abort_socket`).
Imports h2 only for its error codes and nothing from pushgo.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import anyio
import anyio.abc
from h2.errors import ErrorCodes

IO_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, ssl.SSLError, OSError)
READ_SIZE = 65536

Header: TypeAlias = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Request:
    """One complete request. `index` counts requests server-wide (1-based) and `sequence` on
    its connection, both in arrival order."""

    connection_id: int
    stream_id: int
    index: int
    sequence: int
    http_version: str
    method: str
    path: str
    authority: str
    headers: tuple[Header, ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header `name` (lower-case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


@dataclass(frozen=True, slots=True)
class Response:
    """A response. An empty body is sent as one HEADERS frame with END_STREAM (no DATA frame),
    which is how APNs answers 200."""

    status: int = 200
    headers: Sequence[Header] = ()
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class ResetStream:
    """Answer with RST_STREAM (HTTP/1.1: close the connection)."""

    error_code: int = ErrorCodes.REFUSED_STREAM


@dataclass(frozen=True, slots=True)
class GoAway:
    """GOAWAY. `last_stream_id` defaults to this stream when `response` is given (the stream is
    answered) and to the stream before it otherwise (it was not processed). Streams above it
    are never answered; streams at or below it still in flight are answered, then the GOAWAY
    frame goes out, then the connection is closed (`close=True`) or left for the client to close.

    `send_first=True` sends the GOAWAY frame at once, before those answers. RFC 9113 allows it,
    but python-h2 clients (httpx/httpcore included) fail on it: h2 moves to CLOSED when it
    receives GOAWAY and then rejects the HEADERS still owed to it.
    """

    error_code: int = ErrorCodes.NO_ERROR
    debug_data: bytes = b""
    last_stream_id: int | None = None
    response: Response | None = None
    close: bool = True
    send_first: bool = False


@dataclass(frozen=True, slots=True)
class Drop:
    """Drop the TCP connection now, no GOAWAY; `reset=True` sends a TCP RST (SO_LINGER 0)."""

    reset: bool = True


@dataclass(frozen=True, slots=True)
class Silence:
    """A connection rule, not an answer: the connection goes silent — it reads nothing more
    and never writes again (no answers, no PING ACKs), as a half-open connection looks to the
    client. It stays so until the server stops."""


@dataclass(frozen=True, slots=True)
class Delay:
    """Wait `seconds`, then apply `then`."""

    seconds: float
    then: Outcome


Outcome: TypeAlias = Response | ResetStream | GoAway | Drop | Delay
Handler: TypeAlias = Callable[[Request], Awaitable[Outcome]]


@dataclass
class ConnectionInfo:
    """What the server knows about one accepted connection (mutated while it lives)."""

    id: int
    http_version: str
    alpn: str | None
    peer: str
    requests: int = 0
    responses: int = 0
    refused_over_limit: int = 0
    goaway_sent: bool = False
    silenced: bool = False
    closed: bool = False


@dataclass
class H2Settings:
    """Server SETTINGS. With `raise_max_concurrent_streams_to` set, a connection starts at
    `max_concurrent_streams` and announces the higher value (a new SETTINGS frame) after its
    first 2xx response, like APNs; `lower_after_rejection` drops it back after a >= 400."""

    max_concurrent_streams: int = 100
    raise_max_concurrent_streams_to: int | None = None
    lower_after_rejection: bool = False
    max_header_list_size: int = 65536


def json_response(status: int, doc: Any, headers: Sequence[Header] = ()) -> Response:
    """A JSON response (compact encoding, content-type application/json)."""
    body = json.dumps(doc, separators=(",", ":")).encode()
    return Response(status, [("content-type", "application/json"), *headers], body)


def header_text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def abort_socket(stream: anyio.abc.AnyByteStream) -> None:
    """Make the next close of `stream` send a TCP RST instead of a FIN."""
    sock = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
