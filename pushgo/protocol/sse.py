"""Server-sent events: encoding frames and parsing a stream (for tests and clients).

Pure: bytes in, events out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from pushgo.protocol.ids import is_digits


def encode_event(data: bytes, *, event_id: str | None = None, event: str | None = None,
                 retry_ms: int | None = None) -> bytes:
    """One SSE frame. ``data`` may contain newlines; each line becomes a ``data:`` line."""
    parts: list[bytes] = []
    if event_id is not None:
        parts.append(b"id: " + event_id.encode() + b"\n")
    if event is not None:
        parts.append(b"event: " + event.encode() + b"\n")
    if retry_ms is not None:
        parts.append(b"retry: " + str(retry_ms).encode() + b"\n")
    for line in data.split(b"\n"):
        parts.append(b"data: " + line.rstrip(b"\r") + b"\n")
    parts.append(b"\n")
    return b"".join(parts)


def encode_comment(text: str = "") -> bytes:
    return b": " + text.encode() + b"\n\n"


@dataclass
class Event:
    data: str = ""
    event: str = "message"
    id: str | None = None
    retry: int | None = None


@dataclass
class SSEParser:
    """Incremental parser: ``feed(bytes)`` yields complete events (comments are dropped)."""

    _buf: bytes = b""
    _data: list[str] = field(default_factory=list)
    _event: str = ""
    _id: str | None = None
    _retry: int | None = None
    comments: int = 0

    def feed(self, chunk: bytes) -> Iterator[Event]:
        self._buf += chunk
        while True:
            idx = self._buf.find(b"\n")
            if idx < 0:
                return
            raw, self._buf = self._buf[:idx], self._buf[idx + 1 :]
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if line == "":
                # As EventSource: a block without data lines (a keep-alive after an event
                # with an id, a lone retry:) dispatches nothing.
                if self._data:
                    yield Event("\n".join(self._data), self._event or "message", self._id,
                                self._retry)
                self._data, self._event = [], ""
                continue
            if line.startswith(":"):
                self.comments += 1
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._event = value
            elif name == "id":
                self._id = value
            elif name == "retry" and is_digits(value):
                self._retry = int(value)
