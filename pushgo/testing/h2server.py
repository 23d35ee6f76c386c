"""A small HTTP/2-over-TLS test server on AnyIO (Trio or asyncio), built on python-hyper h2;
clients that negotiate `http/1.1` over ALPN are served by h11conn.

Owns: the accept loop and one task per connection; per connection the h2 state machine, one
coalescing writer (all pending frames go out in one write per wake-up), flow control both
ways, request assembly and dispatch of each complete request to the pluggable async handler
in its own task; applying the outcome it returns (exchange.py: `Response`, `ResetStream`,
`GoAway`, `Drop`, `Delay`); refusing streams over MAX_CONCURRENT_STREAMS with REFUSED_STREAM
and the APNs-like schedule (1, then 1000 after the first 2xx); connection rules decided at
dispatch time (GOAWAY or a drop after N requests, deterministic whatever order handler tasks
run in); and the records (`requests`, `connections`) with waiters.

Nothing in the gateway imports this; it imports nothing from pushgo outside pushgo.testing.
"""

from __future__ import annotations

import itertools
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute, TLSStream
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame

from pushgo.testing.exchange import (
    IO_ERRORS,
    READ_SIZE,
    ConnectionInfo,
    Delay,
    Drop,
    GoAway,
    H2Settings,
    Handler,
    Outcome,
    Request,
    ResetStream,
    Response,
    Silence,
    abort_socket,
    header_text,
)
from pushgo.testing.h11conn import serve_http11
from pushgo.testing.records import Recorder

log = logging.getLogger("pushgo.testing")


@dataclass
class _ConnRule:
    after: int
    action: GoAway | Drop | Silence
    every_connection: bool
    used: bool = False


class MockServerError(Exception):
    """A handler raised; the server answered 500 and re-raises this when `serving()` exits."""


# --------------------------------------------------------------------------- server


class H2Server:
    """Serve `handler` over TLS. Start with `async with server.serving() as (host, port)`."""

    def __init__(self, handler: Handler, *, ssl_context: ssl.SSLContext, host: str = "127.0.0.1",
                 port: int = 0, settings: H2Settings | None = None, handshake_timeout: float = 10.0) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.host = host
        self.port = port
        self.settings = settings or H2Settings()
        self.handshake_timeout = handshake_timeout
        self.requests: Recorder[Request] = Recorder()
        self.connections: Recorder[ConnectionInfo] = Recorder()
        self.handler_errors: list[BaseException] = []
        self.handshake_failures = 0
        self._conn_ids = itertools.count(1)
        self._request_index = 0
        self._live: dict[int, _H2Conn] = {}
        self._rules: list[_ConnRule] = []
        #: While set, a new TCP connection is closed at once, before TLS (the provider is down).
        self.refusing = False
        self.refused_connections = 0
        self._scopes: dict[int, anyio.CancelScope] = {}

    @property
    def origin(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def request_count(self) -> int:
        """Requests dispatched so far (the `index` of the last one)."""
        return self._request_index

    # -- lifecycle

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[tuple[str, int]]:
        """Listen in a task group; yield (host, port); on exit cancel every connection."""
        async with anyio.create_task_group() as tg:
            await tg.start(self.serve)
            try:
                yield self.host, self.port
            finally:
                tg.cancel_scope.cancel()
        if self.handler_errors:
            errors, self.handler_errors = self.handler_errors, []
            raise MockServerError(f"{len(errors)} handler error(s), first: {errors[0]!r}") from errors[0]

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled (for `task_group.start(server.serve)`)."""
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self.port)
        async with listener:
            self.port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
            task_status.started()
            await listener.serve(self._on_tcp)

    # -- connection rules (decided at dispatch, in arrival order)

    def goaway_after(self, requests: int, *, error_code: int = ErrorCodes.NO_ERROR, debug_data: bytes = b"",
                     close: bool = True, send_first: bool = False, every_connection: bool = False) -> None:
        """When a connection receives its `requests`-th request, GOAWAY with that stream as
        last_stream_id: it and earlier ones are answered, later ones are not processed; then
        close. Once, or on every connection. `send_first`: see `GoAway`."""
        action = GoAway(error_code=error_code, debug_data=debug_data, close=close, send_first=send_first)
        self._rules.append(_ConnRule(requests, action, every_connection))

    def drop_after(self, requests: int, *, reset: bool = False, every_connection: bool = False) -> None:
        """After a connection has received `requests` requests, the next one closes it without
        GOAWAY: the earlier ones are answered first, then TCP FIN (or RST with `reset`)."""
        self._rules.append(_ConnRule(requests, Drop(reset=reset), every_connection))

    def silent_after(self, requests: int, *, every_connection: bool = False) -> None:
        """After a connection has received `requests` requests, the next one makes it silent
        (see `Silence`): that request and any later ones are never answered, nor is anything
        else; connections opened later are served normally (unless `every_connection`)."""
        self._rules.append(_ConnRule(requests, Silence(), every_connection))

    def clear_rules(self) -> None:
        self._rules.clear()

    def go_down(self) -> None:
        """The provider goes away: every live connection is cut (no GOAWAY) and new ones are
        closed before their TLS handshake until `come_up()`."""
        self.refusing = True
        for scope in list(self._scopes.values()):
            scope.cancel()

    def come_up(self) -> None:
        """New connections are served again."""
        self.refusing = False

    def goaway_all(self, *, error_code: int = ErrorCodes.NO_ERROR, debug_data: bytes = b"",
                   close: bool = True, send_first: bool = False) -> None:
        """GOAWAY on every live HTTP/2 connection, last_stream_id = highest stream received."""
        for conn in list(self._live.values()):
            conn.goaway(GoAway(error_code, debug_data, conn.h2.highest_inbound_stream_id, None, close,
                               send_first))

    def _rule_for(self, sequence: int) -> GoAway | Drop | Silence | None:
        for rule in self._rules:
            if rule.used:
                continue
            fire_at = rule.after if isinstance(rule.action, GoAway) else rule.after + 1
            if sequence == fire_at:
                rule.used = not rule.every_connection
                return rule.action
        return None

    # -- plumbing shared by the HTTP/2 and HTTP/1.1 paths

    def _next_index(self) -> int:
        self._request_index += 1
        return self._request_index

    async def _call(self, request: Request) -> Outcome:
        try:
            return await self.handler(request)
        except Exception as exc:
            log.exception("mock handler failed on %s %s", request.method, request.path)
            self.handler_errors.append(exc)
            return Response(500, [("content-type", "text/plain")], b"mock handler error")

    async def _on_tcp(self, tcp: anyio.abc.SocketStream) -> None:
        if self.refusing:
            self.refused_connections += 1
            await anyio.aclose_forcefully(tcp)
            return
        with anyio.CancelScope() as scope:
            conn_id = next(self._conn_ids)
            self._scopes[conn_id] = scope
            try:
                await self._serve_tcp(tcp, conn_id)
            finally:
                del self._scopes[conn_id]

    async def _serve_tcp(self, tcp: anyio.abc.SocketStream, conn_id: int) -> None:
        try:
            with anyio.fail_after(self.handshake_timeout):
                stream = await TLSStream.wrap(tcp, server_side=True, ssl_context=self.ssl_context,
                                              standard_compatible=False)
        except (*IO_ERRORS, TimeoutError):
            self.handshake_failures += 1
            await anyio.aclose_forcefully(tcp)
            return
        alpn = stream.extra(TLSAttribute.alpn_protocol, None)
        peer = str(stream.extra(anyio.abc.SocketAttribute.remote_address, ""))
        http11 = alpn == "http/1.1"
        info = ConnectionInfo(conn_id, "1.1" if http11 else "2", alpn, peer)
        self.connections.append(info)
        try:
            if http11:
                await serve_http11(self, stream, info)
            else:
                conn = _H2Conn(self, stream, info)
                self._live[conn_id] = conn
                try:
                    await conn.run()
                finally:
                    del self._live[conn_id]
        except IO_ERRORS:
            pass
        finally:
            info.closed = True
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(stream)


# --------------------------------------------------------------------------- HTTP/2 connection


class _LimitSettings(Settings):
    """Local settings whose MAX_CONCURRENT_STREAMS check h2 can be told to skip: a stream over
    the limit (a client that has not read our SETTINGS yet) is then refused with RST_STREAM
    REFUSED_STREAM, as real servers do, instead of h2 raising TooManyStreamsError mid-buffer
    (which loses the HPACK state and the connection)."""

    bypass = False

    @property
    def max_concurrent_streams(self) -> int:
        if self.bypass:
            return 2**31 - 1
        return int(self.get(SettingCodes.MAX_CONCURRENT_STREAMS, 2**32 + 1))

    @max_concurrent_streams.setter
    def max_concurrent_streams(self, value: int) -> None:
        self[SettingCodes.MAX_CONCURRENT_STREAMS] = value


class _ServerH2(H2Connection):
    def __init__(self, settings: H2Settings) -> None:
        super().__init__(H2Configuration(client_side=False, header_encoding=None))
        self.limits = _LimitSettings(client=False, initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
            SettingCodes.MAX_HEADER_LIST_SIZE: settings.max_header_list_size,
        })
        self.local_settings = self.limits
        self.over_limit: set[int] = set()

    def _receive_headers_frame(self, frame: HeadersFrame) -> tuple[list[Frame], list[Event]]:
        if frame.stream_id in self.streams or self.open_inbound_streams < self.limits.max_concurrent_streams:
            return super()._receive_headers_frame(frame)
        self.over_limit.add(frame.stream_id)
        self.limits.bypass = True
        try:
            return super()._receive_headers_frame(frame)
        finally:
            self.limits.bypass = False


@dataclass(eq=False)
class _Partial:
    headers: list[tuple[str, str]]
    body: bytearray = field(default_factory=bytearray)


class _H2Conn:
    def __init__(self, server: H2Server, stream: anyio.abc.ByteStream, info: ConnectionInfo) -> None:
        self.server = server
        self.stream = stream
        self.info = info
        self.h2 = _ServerH2(server.settings)
        self.partial: dict[int, _Partial] = {}
        self.inflight: dict[int, anyio.CancelScope] = {}
        self.bodies: dict[int, memoryview] = {}
        self.raw_out = bytearray()
        self.wake = anyio.Event()
        self.goaway_last: int | None = None
        self.pending_goaway: bytes | None = None
        self.close_when_drained = False
        self.drop_when_drained: Drop | None = None
        self.silent = False
        self.raised = False
        self.tg: anyio.abc.TaskGroup | None = None

    async def run(self) -> None:
        self.h2.initiate_connection()
        async with anyio.create_task_group() as tg:
            self.tg = tg
            tg.start_soon(self._writer)
            self.kick()
            await self._reader()
            tg.cancel_scope.cancel()

    def kick(self) -> None:
        self.wake.set()

    # -- reading

    async def _reader(self) -> None:
        while True:
            try:
                data = await self.stream.receive(READ_SIZE)
            except IO_ERRORS:
                return
            try:
                events = self.h2.receive_data(data)
            except ProtocolError as exc:
                log.info("mock h2 connection %d: protocol error %r", self.info.id, exc)
                self.h2.close_connection(error_code=ErrorCodes.PROTOCOL_ERROR)
                self.close_when_drained = True
                self._cancel_above(0)
                self.kick()
                await anyio.sleep_forever()  # the writer flushes the GOAWAY, closes, cancels us
            for event in events:
                if self._on_event(event):
                    return
            if self.silent:
                await anyio.sleep_forever()  # reads nothing more; the server's exit ends it
            self.kick()

    def _on_event(self, event: Event) -> bool:
        if isinstance(event, RequestReceived):
            sid = event.stream_id
            if sid in self.h2.over_limit:
                self.h2.over_limit.discard(sid)
                self.info.refused_over_limit += 1
                self.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            elif self.goaway_last is None or sid <= self.goaway_last:
                self.partial[sid] = _Partial([(header_text(k), header_text(v)) for k, v in event.headers])
        elif isinstance(event, DataReceived):
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            part = self.partial.get(event.stream_id)
            if part is not None:
                part.body += event.data
        elif isinstance(event, StreamEnded):
            part = self.partial.pop(event.stream_id, None)
            if part is not None:
                self._dispatch(event.stream_id, part)
        elif isinstance(event, StreamReset):
            self.partial.pop(event.stream_id, None)
            self.bodies.pop(event.stream_id, None)
            scope = self.inflight.get(event.stream_id)
            if scope is not None:
                scope.cancel()
        elif isinstance(event, WindowUpdated | RemoteSettingsChanged):
            self._flush_bodies()
        elif isinstance(event, ConnectionTerminated):
            return True
        return False

    def _dispatch(self, sid: int, part: _Partial) -> None:
        if self.silent or self.drop_when_drained is not None or (
                self.goaway_last is not None and sid > self.goaway_last):
            return
        self.info.requests += 1
        rule = self.server._rule_for(self.info.requests)
        if isinstance(rule, Silence):
            self.info.requests -= 1
            self.silent = self.info.silenced = True
            return
        if isinstance(rule, Drop):
            self.info.requests -= 1
            self.drop_when_drained = rule
            self.kick()
            return
        pseudo = {k: v for k, v in part.headers if k.startswith(":")}
        request = Request(
            connection_id=self.info.id, stream_id=sid, index=self.server._next_index(),
            sequence=self.info.requests, http_version="2", method=pseudo.get(":method", ""),
            path=pseudo.get(":path", ""), authority=pseudo.get(":authority", ""),
            headers=tuple((k, v) for k, v in part.headers if not k.startswith(":")), body=bytes(part.body),
        )
        self.server.requests.append(request)
        assert self.tg is not None
        scope = anyio.CancelScope()
        self.inflight[sid] = scope
        self.tg.start_soon(self._handle, request, scope)
        if isinstance(rule, GoAway):
            self.goaway(rule, last_stream_id=sid)

    # -- handling

    async def _handle(self, request: Request, scope: anyio.CancelScope) -> None:
        try:
            with scope:
                outcome = await self.server._call(request)
                await self._apply(request.stream_id, outcome)
        finally:
            self.inflight.pop(request.stream_id, None)
            self.kick()

    async def _apply(self, sid: int, outcome: Outcome) -> None:
        while isinstance(outcome, Delay):
            await anyio.sleep(outcome.seconds)
            outcome = outcome.then
        if isinstance(outcome, Response):
            self.respond(sid, outcome)
        elif isinstance(outcome, ResetStream):
            try:
                self.h2.reset_stream(sid, outcome.error_code)
            except ProtocolError:
                pass  # the client reset it first
        elif isinstance(outcome, GoAway):
            if outcome.response is not None:
                self.respond(sid, outcome.response)
            last = outcome.last_stream_id
            if last is None:
                last = sid if outcome.response is not None else max(sid - 2, 0)
            self.goaway(outcome, last_stream_id=last, exclude=sid)
        else:
            if outcome.reset:
                abort_socket(self.stream)
            await anyio.aclose_forcefully(self.stream)
            assert self.tg is not None
            self.tg.cancel_scope.cancel()
        self.kick()

    def respond(self, sid: int, response: Response) -> None:
        headers: list[tuple[bytes, bytes]] = [(b":status", str(response.status).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in response.headers]
        if response.body:
            headers.append((b"content-length", str(len(response.body)).encode()))
        try:
            self.h2.send_headers(sid, headers, end_stream=not response.body)
        except ProtocolError:
            return  # reset by the client meanwhile
        if response.body:
            self.bodies[sid] = memoryview(response.body)
            self._flush_bodies()
        self.info.responses += 1
        self._schedule_streams(response.status)

    def _schedule_streams(self, status: int) -> None:
        s = self.server.settings
        if s.raise_max_concurrent_streams_to is None:
            return
        if 200 <= status < 300 and not self.raised:
            self.raised = True
            self.h2.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: s.raise_max_concurrent_streams_to})
        elif status >= 400 and self.raised and s.lower_after_rejection:
            self.raised = False
            self.h2.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: s.max_concurrent_streams})

    def _flush_bodies(self) -> None:
        for sid in list(self.bodies):
            data = self.bodies[sid]
            try:
                while data:
                    room = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
                    if room <= 0:
                        break
                    chunk, data = data[:room], data[room:]
                    self.h2.send_data(sid, chunk.tobytes(), end_stream=not data)
            except ProtocolError:
                data = memoryview(b"")
            if data:
                self.bodies[sid] = data
            else:
                del self.bodies[sid]

    def goaway(self, action: GoAway, *, last_stream_id: int | None = None,
               exclude: int | None = None) -> None:
        """Stop taking streams above `last_stream_id` and queue the GOAWAY frame. It is written
        outside h2's state machine: after h2's own close_connection it would refuse to send the
        answers still owed to streams <= last_stream_id."""
        last = action.last_stream_id if last_stream_id is None else last_stream_id
        last = self.h2.highest_inbound_stream_id if last is None else last
        if self.goaway_last is not None:
            last = min(last, self.goaway_last)
        self.goaway_last = last
        self.info.goaway_sent = True
        frame = GoAwayFrame(0, last_stream_id=last, error_code=action.error_code,
                            additional_data=action.debug_data).serialize()
        if action.send_first:
            self.raw_out += self.h2.data_to_send() + frame
        else:
            self.pending_goaway = frame  # written once the streams it covers are answered
        self._cancel_above(last, exclude)
        if action.close:
            self.close_when_drained = True
        self.kick()

    def _cancel_above(self, last_stream_id: int, exclude: int | None = None) -> None:
        for sid in [s for s in self.partial if s > last_stream_id]:
            del self.partial[sid]
        for sid, scope in list(self.inflight.items()):
            if sid > last_stream_id and sid != exclude:
                scope.cancel()

    def _drained(self) -> bool:
        # A stream whose request is still arriving is owed an answer too (GOAWAY covers it).
        return not self.inflight and not self.bodies and not self.partial

    # -- writing

    async def _writer(self) -> None:
        try:
            while True:
                await self.wake.wait()
                self.wake = anyio.Event()
                if self.silent:
                    await anyio.sleep_forever()  # writes nothing more, PING ACKs included
                if self.pending_goaway is not None and self._drained():
                    self.raw_out += self.h2.data_to_send() + self.pending_goaway
                    self.pending_goaway = None
                data = self._take_output()
                if data:
                    await self.stream.send(data)
                if (self.close_when_drained or self.drop_when_drained is not None) and self._drained():
                    # Drained while the send above was in progress: the GOAWAY still goes out.
                    if self.pending_goaway is not None:
                        self.raw_out += self.h2.data_to_send() + self.pending_goaway
                        self.pending_goaway = None
                    data = self._take_output()
                    if data:
                        await self.stream.send(data)
                    if self.drop_when_drained is not None and self.drop_when_drained.reset:
                        abort_socket(self.stream)
                    await anyio.aclose_forcefully(self.stream)
                    break
        except IO_ERRORS:
            pass
        assert self.tg is not None
        self.tg.cancel_scope.cancel()

    def _take_output(self) -> bytes:
        if self.raw_out:
            data = bytes(self.raw_out) + self.h2.data_to_send()
            self.raw_out.clear()
            return data
        return self.h2.data_to_send()
