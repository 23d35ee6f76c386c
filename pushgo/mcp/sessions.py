"""Legacy-era sessions (``Mcp-Session-Id``), the SSE streams they keep for resumption, and
the notifier that fans server notifications (``notifications/resources/list_changed`` after a
bind or unbind) out to open streams. A session also holds its resource subscriptions (which
its GET stream watches, pushgo.mcp.watch) and the requests the server sent its client
(``elicitation/create``) until the client's answer arrives.

Every SSE stream of a session (a POST's response, or a GET stream) is an
:class:`EventStream`: its messages carry event ids ``<stream>-<seq>`` and are kept (bounded)
so that a client that lost the connection, or whose response the server ended early
(SEP-1699 polling), reconnects with ``GET`` + ``Last-Event-ID`` and gets what followed.

Sessions live in this process's memory: a restart or another worker answers an unknown
session with 404, and the client starts a new one, as the transport spec says it must.
Must not import starlette.
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from pushgo.protocol.ids import is_digits
from pushgo.protocol.jsonrpc import RequestId, RpcError

log = logging.getLogger("pushgo.mcp")

#: Notifications buffered per open stream; a stream that falls this far behind loses the
#: oldest kind of news there is (list_changed: the client re-lists anyway).
STREAM_BUFFER = 32
#: Messages an EventStream keeps for a client that reconnects with Last-Event-ID.
STREAM_EVENTS = 256
#: Streams a session keeps that nobody writes any more (finished, or GET streams whose
#: connection is gone), for late resumption; older ones are forgotten.
IDLE_STREAMS = 8

Note = tuple[str, dict[str, Any] | None]


@dataclass(eq=False)
class _Subscriber:
    owner: str
    send: MemoryObjectSendStream[Note]
    group: str | None = None


class Notifier:
    def __init__(self) -> None:
        self._subs: dict[_Subscriber, None] = {}  # insertion-ordered: newest last

    @contextmanager
    def subscribe(self, owner: str, *, group: str | None = None
                  ) -> Iterator[MemoryObjectReceiveStream[Note]]:
        """A stream of ``owner``'s notifications. Subscribers sharing a ``group`` (the GET
        streams of one session) get each notification once between them: the newest
        subscriber that has room takes it, as a message must not be broadcast to several
        streams of one session."""
        send, receive = anyio.create_memory_object_stream[Note](STREAM_BUFFER)
        sub = _Subscriber(owner, send, group)
        self._subs[sub] = None
        try:
            with receive:
                yield receive
        finally:
            self._subs.pop(sub, None)
            send.close()

    def publish(self, method: str, params: dict[str, Any] | None = None, *,
                owner: str | None = None) -> int:
        """Queue a notification for every open stream (or group of streams) of ``owner``
        (None: everyone). Returns how many streams took it. Never blocks."""
        taken = 0
        served: set[str] = set()
        for sub in reversed(list(self._subs)):
            if owner is not None and sub.owner != owner:
                continue
            if sub.group is not None and sub.group in served:
                continue
            try:
                sub.send.send_nowait((method, params))
                taken += 1
                if sub.group is not None:
                    served.add(sub.group)
            except anyio.WouldBlock:
                log.debug("mcp stream lagging; notification dropped")
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                self._subs.pop(sub, None)
        return taken

    def close(self) -> None:
        """End every open stream (shutdown)."""
        for sub in list(self._subs):
            sub.send.close()
        self._subs.clear()


@dataclass(eq=False)
class EventStream:
    """The messages of one SSE stream, in order, with what connection writes them.

    ``resumable`` streams (those of a session) number their events ``<number>-<seq>``;
    seq 0 is the priming event. A connection *attaches* to write the stream from some seq
    on; a later attach takes the stream over (the client reconnected), and
    :meth:`end_response` asks the current connection to end its response early while the
    stream goes on (the client polls back with Last-Event-ID)."""

    number: int
    resumable: bool = True
    standalone: bool = False  # a GET stream (server notifications), not a request's answer
    events: deque[tuple[int, bytes]] = field(
        default_factory=lambda: deque(maxlen=STREAM_EVENTS))
    seq: int = 0
    finished: bool = False  # nothing more will be appended
    committed: bool = False  # the answer went out as SSE (not as one JSON body)
    writer: int = 0  # generation of the connection that writes the stream now
    attached: int = 0  # connections writing it now (the old one lingers briefly)
    ends: int = 0  # how many times the server ended a response of this stream early
    wants_sse: bool = False  # a request to the client is on it: the answer must stream
    _changed: anyio.Event = field(default_factory=anyio.Event)

    def event_id(self, seq: int) -> str | None:
        return f"{self.number}-{seq}" if self.resumable else None

    def changed(self) -> anyio.Event:
        """Set at the next change; take it before looking at the state, then wait on it."""
        return self._changed

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def append(self, data: bytes) -> None:
        if self.finished:
            return
        self.seq += 1
        self.events.append((self.seq, data))
        self._wake()

    def finish(self) -> None:
        if not self.finished:
            self.finished = True
            self._wake()

    def after(self, seq: int) -> list[tuple[int, bytes]]:
        return [e for e in self.events if e[0] > seq]

    def attach(self) -> int:
        self.writer += 1
        self.attached += 1
        self._wake()
        return self.writer

    def detach(self) -> None:
        self.attached -= 1

    def end_response(self) -> None:
        self.ends += 1
        self._wake()

    @property
    def idle(self) -> bool:
        """Nobody writes it and nothing will: only kept for a late Last-Event-ID."""
        return self.attached == 0 and (self.finished or self.standalone)


class Answer:
    """The client's answer to one request the server sent it."""

    def __init__(self) -> None:
        self._done = anyio.Event()
        self.result: Any = None
        self.error: Any = None

    def settle(self, result: Any, error: Any) -> None:
        if not self._done.is_set():
            self.result, self.error = result, error
            self._done.set()

    async def wait(self) -> Any:
        """The result; RpcError when the client answered with an error."""
        await self._done.wait()
        if self.error is not None:
            err = self.error if isinstance(self.error, dict) else {}
            code = err.get("code")
            raise RpcError(code if isinstance(code, int) else -32603,
                           str(err.get("message") or "the client refused the request"))
        return self.result


@dataclass(eq=False)
class Session:
    id: str
    owner: str
    protocol_version: str
    client_capabilities: dict[str, Any]
    last_seen: float
    initialized: bool = False
    inflight: dict[RequestId, anyio.CancelScope] = field(default_factory=dict)
    ended: anyio.Event = field(default_factory=anyio.Event)
    streams: dict[int, EventStream] = field(default_factory=dict)
    _streams: int = 0
    #: Resources the client subscribed to (resources/subscribe), watched by one GET stream.
    subscriptions: dict[str, None] = field(default_factory=dict)
    watching: int | None = None  # the GET stream whose connection runs the watchers
    _subs_changed: anyio.Event = field(default_factory=anyio.Event)
    #: Requests the server sent the client (elicitation/create), awaiting its answer.
    asked: dict[RequestId, Answer] = field(default_factory=dict)
    _asked: int = 0

    # --- resource subscriptions (pushgo.mcp.watch.WatchSet) ---------------------------------

    def wanted(self) -> list[str]:
        return list(self.subscriptions)

    def changed(self) -> anyio.Event:
        return self._subs_changed

    def _subs_wake(self) -> None:
        self._subs_changed.set()
        self._subs_changed = anyio.Event()

    def subscribe(self, uri: str, limit: int) -> bool:
        """Add ``uri``; False when the session already watches ``limit`` resources."""
        if uri not in self.subscriptions:
            if len(self.subscriptions) >= limit:
                return False
            self.subscriptions[uri] = None
            self._subs_wake()
        return True

    def unsubscribe(self, uri: str) -> None:
        if self.subscriptions.pop(uri, 0) is None:
            self._subs_wake()

    def finished(self, uri: str) -> None:
        self.unsubscribe(uri)

    # --- requests to the client ---------------------------------------------------------------

    def ask(self) -> tuple[RequestId, Answer]:
        """A fresh id for a request to the client, and where its answer will arrive."""
        self._asked += 1
        rid = f"pushgo-{self._asked}"
        answer = Answer()
        self.asked[rid] = answer
        return rid, answer

    def answered(self, rid: RequestId | None, result: Any, error: Any) -> bool:
        answer = self.asked.pop(rid, None) if rid is not None else None
        if answer is None:
            return False
        answer.settle(result, error)
        return True

    @property
    def primes(self) -> bool:
        """2025-11-25 (SEP-1699): SSE streams start with a priming event (an id, empty
        data, ``retry``), and the server may end a response early for the client to poll."""
        return self.protocol_version >= "2025-11-25"

    @property
    def streaming(self) -> bool:
        return any(s.attached for s in self.streams.values())

    def open_stream(self, *, standalone: bool = False) -> EventStream:
        self._streams += 1
        stream = EventStream(self._streams, standalone=standalone)
        self.streams[stream.number] = stream
        idle = [s for s in self.streams.values() if s.idle]
        for old in idle[:max(0, len(idle) - IDLE_STREAMS)]:
            self.streams.pop(old.number, None)
        return stream

    def drop_stream(self, stream: EventStream) -> None:
        """Forget a stream the client never saw an event id of (answered as JSON)."""
        self.streams.pop(stream.number, None)

    def find_stream(self, last_event_id: str) -> tuple[EventStream, int] | None:
        """The stream a ``Last-Event-ID`` belongs to, and the seq it names."""
        number, sep, seq = last_event_id.strip().partition("-")
        if not sep or not is_digits(number) or not is_digits(seq) or len(last_event_id) > 40:
            return None
        stream = self.streams.get(int(number))
        return None if stream is None else (stream, int(seq))

    def end(self) -> None:
        self.ended.set()
        self.subscriptions.clear()
        self._subs_wake()
        for answer in self.asked.values():
            answer.settle(None, {"code": -32603, "message": "session ended"})
        self.asked.clear()
        for scope in self.inflight.values():
            scope.cancel()
        for stream in self.streams.values():
            stream.finish()

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
        if now - session.last_seen > self.idle_timeout_s and not session.streaming:
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
            if now - session.last_seen > self.idle_timeout_s and not session.streaming \
                    and not session.inflight:
                self.end(session.id)
