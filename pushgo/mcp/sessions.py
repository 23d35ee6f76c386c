"""Legacy-era sessions (``Mcp-Session-Id``) and the notifier that fans server notifications
(``notifications/resources/list_changed`` after a bind or unbind) out to open streams.

Sessions live in this process's memory: a restart or another worker answers an unknown
session with 404, and the client starts a new one, as the transport spec says it must.
Must not import starlette.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from pushgo.protocol.jsonrpc import RequestId

log = logging.getLogger("pushgo.mcp")

#: Notifications buffered per open stream; a stream that falls this far behind loses the
#: oldest kind of news there is (list_changed: the client re-lists anyway).
STREAM_BUFFER = 32

Note = tuple[str, dict[str, Any] | None]


@dataclass(eq=False)
class _Subscriber:
    owner: str
    send: MemoryObjectSendStream[Note]


class Notifier:
    def __init__(self) -> None:
        self._subs: set[_Subscriber] = set()

    @contextmanager
    def subscribe(self, owner: str) -> Iterator[MemoryObjectReceiveStream[Note]]:
        send, receive = anyio.create_memory_object_stream[Note](STREAM_BUFFER)
        sub = _Subscriber(owner, send)
        self._subs.add(sub)
        try:
            with receive:
                yield receive
        finally:
            self._subs.discard(sub)
            send.close()

    def publish(self, method: str, params: dict[str, Any] | None = None, *,
                owner: str | None = None) -> int:
        """Queue a notification for every open stream of ``owner`` (None: every stream).
        Returns how many streams took it. Never blocks."""
        taken = 0
        for sub in list(self._subs):
            if owner is not None and sub.owner != owner:
                continue
            try:
                sub.send.send_nowait((method, params))
                taken += 1
            except anyio.WouldBlock:
                log.debug("mcp stream lagging; notification dropped")
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                self._subs.discard(sub)
        return taken

    def close(self) -> None:
        """End every open stream (shutdown)."""
        for sub in list(self._subs):
            sub.send.close()
        self._subs.clear()


@dataclass(eq=False)
class Session:
    id: str
    owner: str
    protocol_version: str
    client_capabilities: dict[str, Any]
    last_seen: float
    initialized: bool = False
    stream_open: bool = False
    inflight: dict[RequestId, anyio.CancelScope] = field(default_factory=dict)
    ended: anyio.Event = field(default_factory=anyio.Event)
    _events: int = 0

    def next_event_id(self) -> str:
        """SSE event ids unique across every stream of this session."""
        self._events += 1
        return f"{self._events}"

    def end(self) -> None:
        self.ended.set()
        for scope in self.inflight.values():
            scope.cancel()

    def cancel(self, request_id: RequestId) -> bool:
        scope = self.inflight.get(request_id)
        if scope is None:
            return False
        scope.cancel()
        return True


class SessionStore:
    def __init__(self, *, max_sessions: int = 10_000, idle_timeout_s: float = 3600.0,
                 clock: Callable[[], float] = anyio.current_time) -> None:
        self.max_sessions = max_sessions
        self.idle_timeout_s = idle_timeout_s
        self.clock = clock
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, owner: str, protocol_version: str,
               client_capabilities: dict[str, Any]) -> Session:
        now = self.clock()
        self._sweep(now)
        if len(self._sessions) >= self.max_sessions:
            oldest = min(self._sessions.values(), key=lambda s: s.last_seen)
            self.end(oldest.id)
        session = Session(secrets.token_urlsafe(24), owner, protocol_version,
                          client_capabilities, last_seen=now)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str, owner: str) -> Session | None:
        """The live session with this id belonging to ``owner``; None when unknown, ended,
        idle too long, or someone else's (all answered 404 alike)."""
        session = self._sessions.get(session_id)
        if session is None or session.owner != owner:
            return None
        now = self.clock()
        if now - session.last_seen > self.idle_timeout_s and not session.stream_open:
            self.end(session_id)
            return None
        session.last_seen = now
        return session

    def end(self, session_id: str) -> bool:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        session.end()
        return True

    def close_all(self) -> None:
        for sid in list(self._sessions):
            self.end(sid)

    def _sweep(self, now: float) -> None:
        for session in list(self._sessions.values()):
            if now - session.last_seen > self.idle_timeout_s and not session.stream_open \
                    and not session.inflight:
                self.end(session.id)
