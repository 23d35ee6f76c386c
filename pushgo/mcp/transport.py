"""The Streamable HTTP endpoint on ``/mcp`` serving both protocol eras (a plain ASGI app).

Every request: Origin (403), authentication (401), then by method. A POST is routed by era:
an ``MCP-Protocol-Version`` header of 2026-07-28 (or, without a session, of no handshake
revision), or a sessionless request declaring its version in ``_meta``, is 2026-07-28:
stateless, checked by the request ladder, errors mapped to HTTP statuses. Everything else is
the initialize era: ``initialize`` opens a session (``Mcp-Session-Id``), later requests need
it (missing 400, unknown or ended 404), GET opens a notification stream (several may be
open; each notification goes to one), DELETE ends it.

A request is answered as application/json, or as text/event-stream when the client takes
only that or asked for progress; a 2026-07-28 stream closed by the client cancels its
request, and in the initialize era ``notifications/cancelled`` does. Initialize-era streams
are resumable (SEP-1699): events carry ids, a 2025-11-25 stream starts with a priming event
and ``retry``, a tool may end its response early while it works on, and GET with
``Last-Event-ID`` replays what followed that event and goes on with the stream. A tool may
send the client a request on its call's stream (URL elicitation); the client's answer comes
back as a POST and is handed to the waiting call. Resource subscriptions are watched by the
session's GET stream, or by the 2026-07-28 listen stream that names them (pushgo.mcp.watch).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import anyio
from anyio.abc import TaskGroup

from pushgo.errors import GatewayError
from pushgo.mcp.auth import McpAuth, Principal, Unauthorized
from pushgo.mcp.dispatcher import Call, Dispatcher, Outcome, progress_token
from pushgo.mcp.http import (
    KEEPALIVE,
    SSE_HEADERS,
    Accept,
    ClientGone,
    Incoming,
    Receive,
    Reply,
    Scope,
    Send,
    is_json_content_type,
    origin_allowed,
    read_body,
    sse_message,
    sse_priming,
)
from pushgo.mcp.sessions import EventStream, Notifier, Session, SessionStore
from pushgo.mcp.watch import (
    UPDATED,
    Bound,
    FixedWatches,
    listen_uris,
    run_watchers,
    watch_session,
)
from pushgo.protocol import jsonrpc
from pushgo.protocol import mcp as mcp_wire

log = logging.getLogger("pushgo.mcp")

MAX_BODY = 32 * 1024
RETRY_MS = 3000
#: Code for a request answered after the client cancelled it (outside the ranges JSON-RPC
#: and MCP reserve; the client ignores the answer to a request it cancelled anyway).
REQUEST_CANCELLED = -32800

MODERN_STATUS = {jsonrpc.PARSE_ERROR: 400, jsonrpc.INVALID_REQUEST: 400, jsonrpc.INVALID_PARAMS: 400,
                 jsonrpc.HEADER_MISMATCH: 400, jsonrpc.MISSING_REQUIRED_CLIENT_CAPABILITY: 400,
                 jsonrpc.UNSUPPORTED_PROTOCOL_VERSION: 400, jsonrpc.METHOD_NOT_FOUND: 404}
ROUTING_HEADERS = (mcp_wire.H_PROTOCOL_VERSION, mcp_wire.H_METHOD, mcp_wire.H_NAME)


def _status(outcome: Outcome, modern: bool) -> int:
    if modern and outcome.error_code is not None:
        return MODERN_STATUS.get(outcome.error_code, 200)
    return 200


class McpEndpoint:
    def __init__(self, dispatcher: Dispatcher, auth: McpAuth, sessions: SessionStore,
                 notifier: Notifier, *, public_base_url: str | None,
                 keepalive_s: float = 15.0, max_body: int = MAX_BODY) -> None:
        self.dispatcher = dispatcher
        self.auth = auth
        self.sessions = sessions
        self.notifier = notifier
        self.public_base_url = public_base_url
        self.keepalive_s = keepalive_s
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reply = Reply(send)
        try:
            await self._handle(Incoming.of(scope), receive, reply)
        except ClientGone:
            pass
        except GatewayError as exc:  # the front door's body deadline (408 request_timeout)
            if not reply.started:
                await reply.error(exc.status, jsonrpc.INVALID_REQUEST, exc.message)
        except Exception:
            log.exception("mcp transport failed")
            if not reply.started:
                await reply.error(500, jsonrpc.INTERNAL_ERROR, "Internal error")

    async def _handle(self, req: Incoming, receive: Receive, reply: Reply) -> None:
        origin = req.headers.get("origin")
        if origin is not None and not origin_allowed(origin, self.public_base_url):
            await reply.error(403, jsonrpc.INVALID_REQUEST, "Forbidden: Origin not allowed")
            return
        try:
            principal = await self.auth.authenticate(req.headers)
        except Unauthorized as exc:
            await self._unauthorized(reply, exc)
            return
        if req.method == "POST":
            await self._post(req, principal, receive, reply)
        elif req.method == "GET":
            await self._get(req, principal, receive, reply)
        elif req.method == "DELETE":
            await self._delete(req, principal, reply)
        else:
            await reply.error(405, jsonrpc.INVALID_REQUEST, "Method not allowed",
                              headers=[(b"allow", b"GET, POST, DELETE")])

    @staticmethod
    async def _unauthorized(reply: Reply, exc: Unauthorized) -> None:
        body = jsonrpc.encode({"error": exc.code, "error_description": exc.description})
        await reply.json(exc.status, body, [(b"www-authenticate", exc.challenge.encode())])

    def _modern_header(self, req: Incoming) -> bool:
        """A 2026-07-28 version header, or (sessionless) one no handshake revision has: the
        modern ladder then answers it with -32022."""
        version = req.headers.get(mcp_wire.H_PROTOCOL_VERSION)
        if version is None:
            return False
        return version in mcp_wire.MODERN_VERSIONS or (version not in mcp_wire.HANDSHAKE_VERSIONS
                                                 and mcp_wire.H_SESSION_ID not in req.headers)

    # --- POST ---------------------------------------------------------------------------------

    async def _post(self, req: Incoming, principal: Principal, receive: Receive,
                    reply: Reply) -> None:
        if not is_json_content_type(req.headers.get("content-type")):
            await reply.error(415, jsonrpc.INVALID_REQUEST,
                              "Unsupported Media Type: Content-Type must be application/json")
            return
        accept = Accept.parse(req.headers.get("accept"))
        if not (accept.json or accept.sse):
            await reply.error(406, jsonrpc.INVALID_REQUEST, "Not Acceptable: the client must accept "
                              "application/json or text/event-stream")
            return
        body = await read_body(receive, req.headers, self.max_body)
        if body is None:
            await reply.error(413, jsonrpc.INVALID_REQUEST,
                              f"Request body exceeds {self.max_body} bytes")
            return
        try:
            msg = jsonrpc.parse_message(body)
        except jsonrpc.RpcError as exc:
            await reply.error(400, exc.code, exc.message, request_id=jsonrpc.salvage_id(body))
            return
        # Body-primary too: a sessionless request declaring its version in _meta is modern
        # whatever its header says, so a client that disagrees with itself is told so.
        modern = self._modern_header(req) or (
            mcp_wire.H_SESSION_ID not in req.headers and isinstance(msg, jsonrpc.Request)
            and msg.method != "initialize" and mcp_wire.declares_version(msg.params))
        if modern:
            await self._modern_post(req, principal, accept, msg, receive, reply)
        else:
            await self._legacy_post(req, principal, accept, msg, receive, reply)

    async def _legacy_post(self, req: Incoming, principal: Principal, accept: Accept,
                           msg: jsonrpc.Message, receive: Receive, reply: Reply) -> None:
        if isinstance(msg, jsonrpc.Request) and msg.method == "initialize":
            try:
                params = mcp_wire.decode_params(msg.params, mcp_wire.InitializeParams)
            except jsonrpc.RpcError as exc:
                await reply.error(400, exc.code, exc.message, request_id=msg.id)
                return
            version = mcp_wire.negotiate(params.protocolVersion)
            session = self.sessions.create(principal.key, version, params.capabilities)
            body = jsonrpc.encode_result(msg.id, self.dispatcher.initialize_result(version))
            headers = [(mcp_wire.H_SESSION_ID.encode(), session.id.encode())]
            if accept.json:
                await reply.json(200, body, headers)
            else:
                await self._sse_single(reply, session, body, headers)
            return
        rid = msg.id if isinstance(msg, jsonrpc.Request) else None
        sid = req.headers.get(mcp_wire.H_SESSION_ID)
        if sid is None:
            await reply.error(400, jsonrpc.INVALID_REQUEST,
                              "Bad Request: Mcp-Session-Id header is required", request_id=rid)
            return
        found = self.sessions.get(sid, principal.key)
        if found is None:
            await reply.error(404, jsonrpc.INVALID_REQUEST, "Session not found", request_id=rid)
            return
        session = found
        # The header SHOULD repeat the negotiated revision; one of another initialize-era
        # revision is served as the session's (clients of the 2025-03-26 wire send theirs),
        # anything else is 400.
        header_version = req.headers.get(mcp_wire.H_PROTOCOL_VERSION)
        if header_version is not None and header_version not in mcp_wire.HANDSHAKE_VERSIONS:
            await reply.error(400, jsonrpc.INVALID_REQUEST, "Bad Request: unsupported "
                              f"MCP-Protocol-Version {header_version!r}; this session uses "
                              f"{session.protocol_version}", request_id=rid)
            return
        if isinstance(msg, jsonrpc.Notification):
            self._legacy_notification(session, msg)
            await reply.empty(202)
            return
        if isinstance(msg, jsonrpc.ClientReply):
            # The answer to a request pushgo sent (elicitation/create); one nobody awaits
            # any more (cancelled, or a stranger's id) is dropped.
            session.answered(msg.id, msg.result, msg.error)
            await reply.empty(202)
            return
        call = Call(msg, principal, modern=False, protocol_version=session.protocol_version,
                    client_capabilities=session.client_capabilities, subscriptions=session)
        await self._run(call, accept, receive, reply, session)

    def _legacy_notification(self, session: Session, msg: jsonrpc.Notification) -> None:
        if msg.method == "notifications/initialized":
            session.initialized = True
        elif msg.method == "notifications/cancelled":
            try:
                params = mcp_wire.decode_params(msg.params, mcp_wire.CancelledParams)
            except jsonrpc.RpcError:
                return
            if params.requestId is not None:
                session.cancel(params.requestId)

    async def _modern_post(self, req: Incoming, principal: Principal, accept: Accept,
                           msg: jsonrpc.Message, receive: Receive, reply: Reply) -> None:
        if isinstance(msg, jsonrpc.ClientReply):
            await reply.error(400, jsonrpc.INVALID_REQUEST, "Clients must not send responses")
            return
        if isinstance(msg, jsonrpc.Notification):
            version = req.headers.get(mcp_wire.H_PROTOCOL_VERSION, "")
            if version not in mcp_wire.MODERN_VERSIONS:
                exc = mcp_wire.unsupported_version(version)
                await reply.error(400, exc.code, exc.message, data=exc.data)
                return
            await reply.empty(202)  # no client notifications exist at 2026-07-28
            return
        try:
            env = mcp_wire.check_modern_request(msg.method, msg.params, req.headers,
                                         req.duplicated(ROUTING_HEADERS))
        except jsonrpc.RpcError as exc:
            await reply.error(MODERN_STATUS.get(exc.code, 400), exc.code, exc.message,
                              request_id=msg.id, data=exc.data)
            return
        if msg.method == "subscriptions/listen":
            if not accept.sse:
                await reply.error(406, jsonrpc.INVALID_REQUEST, "Not Acceptable: subscriptions/"
                                  "listen answers with text/event-stream", request_id=msg.id)
                return
            await self._listen(msg, principal, receive, reply)
            return
        call = Call(msg, principal, modern=True, protocol_version=env.protocol_version,
                    client_capabilities=env.client_capabilities)
        await self._run(call, accept, receive, reply, None)

    # --- running one request ------------------------------------------------------------------

    async def _run(self, call: Call, accept: Accept, receive: Receive, reply: Reply,
                   session: Session | None) -> None:
        """Dispatch ``call`` and answer it as JSON or SSE.

        The request's messages (progress notifications, then its answer) go into an
        :class:`EventStream`. The response commits to SSE only when the first notification
        is ready, a keep-alive is due, or a tool ends the response early (SEP-1699), so
        errors that come before any of those keep their HTTP status. A legacy-era request
        outlives its response: ended early or disconnected, it runs on, and the client
        resumes its stream with GET + Last-Event-ID."""
        req = call.request
        progress = req.method == "tools/call" and progress_token(req.params) is not None
        use_sse = accept.sse and (not accept.json or progress)
        can_end_early = accept.sse and session is not None and session.primes
        stream = session.open_stream() if session is not None else \
            EventStream(0, resumable=False)
        done: list[Outcome | Unauthorized] = []
        cancelled = anyio.CancelScope()
        if session is not None:
            if req.id in session.inflight:
                session.drop_stream(stream)
                await reply.error(400, jsonrpc.INVALID_REQUEST, "Request id already in use",
                                  request_id=req.id)
                return
            session.inflight[req.id] = cancelled

        async def notify(frame: bytes) -> None:
            if use_sse or stream.committed or stream.wants_sse:
                stream.append(frame)

        async def end_response() -> bool:
            if not can_end_early or stream.finished:
                return False
            stream.end_response()
            return True

        async def ask(method: str, params: dict[str, Any]) -> Any:
            assert session is not None
            rid, answer = session.ask()
            stream.wants_sse = True
            stream.append(jsonrpc.encode_request(rid, method, params))
            try:
                return await answer.wait()
            finally:
                session.asked.pop(rid, None)

        call.notify = notify
        call.end_response = end_response
        if session is not None and accept.sse:
            call.ask = ask

        async def run_call() -> None:
            try:
                with cancelled:
                    try:
                        result: Outcome | Unauthorized = await self.dispatcher.dispatch(call)
                    except Unauthorized as exc:
                        result = exc
                    done.append(result)
                    if isinstance(result, Outcome):
                        stream.append(result.body)
            finally:
                stream.finish()

        watching = anyio.CancelScope()
        try:
            async with anyio.create_task_group() as tg:
                if call.modern:
                    tg.start_soon(_cancel_on_disconnect, receive, cancelled, watching)
                tg.start_soon(run_call)
                await self._answer(call, use_sse, stream, done, reply, session)
                watching.cancel()
                # A response ended early leaves the request running: the task group waits.
        finally:
            if session is not None:
                session.inflight.pop(req.id, None)
                if not stream.committed:
                    session.drop_stream(stream)

    async def _answer(self, call: Call, use_sse: bool, stream: EventStream,
                      done: list[Outcome | Unauthorized], reply: Reply,
                      session: Session | None) -> None:
        with anyio.move_on_after(self.keepalive_s if use_sse else math.inf) as wait:
            while True:
                changed = stream.changed()
                if stream.finished or stream.ends or \
                        ((use_sse or stream.wants_sse) and stream.events):
                    break
                await changed.wait()
        keepalive_due = wait.cancelled_caught
        use_sse = use_sse or stream.wants_sse
        notes = len(stream.events) - (1 if done and isinstance(done[0], Outcome) else 0)
        if stream.finished and not stream.ends and not (use_sse and notes > 0):
            result = done[0] if done else None
            if isinstance(result, Unauthorized):
                await self._unauthorized(reply, result)
                return
            if result is None:  # cancelled before an answer
                if not call.modern:
                    await reply.error(200, REQUEST_CANCELLED, "Request cancelled",
                                      request_id=call.request.id)
                return
            status = _status(result, call.modern)
            if not use_sse or status != 200:
                await reply.json(status, result.body)
                return
        stream.committed = True
        await reply.start(200, SSE_HEADERS)
        if session is not None and session.primes:
            await reply.body(sse_priming(_id(stream.event_id(0)), RETRY_MS), more=True)
        if keepalive_due:
            await reply.body(KEEPALIVE, more=True)
        await self._pump(stream, reply, 0, ends=0)

    async def _pump(self, stream: EventStream, reply: Reply, after: int,
                    ends: int | None = None) -> None:
        """Write ``stream``'s messages after seq ``after``, then follow it until it finishes,
        the server ends this response early (``stream.ends`` passes ``ends``, by default
        its value now), or a newer connection takes the stream over; keep-alive comments
        while it is quiet. Ends the response."""
        me = stream.attach()
        ends = stream.ends if ends is None else ends
        try:
            while True:
                changed = stream.changed()
                for seq, data in stream.after(after):
                    await reply.body(sse_message(data, stream.event_id(seq)), more=True)
                    after = seq
                if stream.writer != me or stream.ends != ends:
                    break
                if stream.finished and not stream.after(after):
                    break
                if changed.is_set():
                    continue
                with anyio.move_on_after(self.keepalive_s) as wait:
                    await changed.wait()
                if wait.cancelled_caught:
                    await reply.body(KEEPALIVE, more=True)
        finally:
            stream.detach()
        await reply.body(b"")

    async def _sse_single(self, reply: Reply, session: Session, body: bytes,
                          headers: list[tuple[bytes, bytes]]) -> None:
        stream = session.open_stream()
        stream.committed = True
        stream.append(body)
        stream.finish()
        await reply.start(200, [*SSE_HEADERS, *headers])
        if session.primes:
            await reply.body(sse_priming(_id(stream.event_id(0)), RETRY_MS), more=True)
        await self._pump(stream, reply, 0)

    # --- streams of server notifications ------------------------------------------------------

    async def _listen(self, msg: jsonrpc.Request, principal: Principal, receive: Receive,
                      reply: Reply) -> None:
        """2026-07-28 ``subscriptions/listen``: acknowledge, then forward what was asked for
        and is offered (resource list changes), until the client closes the stream."""
        try:
            params = mcp_wire.decode_params(msg.params, mcp_wire.ListenParams)
        except jsonrpc.RpcError as exc:
            await reply.error(400, exc.code, exc.message, request_id=msg.id)
            return
        uris = await listen_uris(self.dispatcher.resources,
                                 params.notifications.resourceSubscriptions or [], principal)
        honored = mcp_wire.SubscriptionFilter(
            resourcesListChanged=True if params.notifications.resourcesListChanged else None,
            resourceSubscriptions=uris or None)
        wanted = {"notifications/resources/list_changed"} if honored.resourcesListChanged \
            else set()
        sub_meta = {mcp_wire.META_SUBSCRIPTION_ID: msg.id}
        writing = anyio.Lock()  # the watchers and the forwarder share one response

        async def updated(uri: str) -> None:
            note = jsonrpc.encode_notification(UPDATED, {"uri": uri, "_meta": sub_meta})
            async with writing:
                await reply.body(sse_message(note), more=True)
        # Subscribed before the acknowledgement goes out: nothing published after the client
        # has read it can be missed.
        with self.notifier.subscribe(principal.key) as inbox:
            await reply.start(200, SSE_HEADERS)
            ack = jsonrpc.encode_notification("notifications/subscriptions/acknowledged",
                                        {"_meta": sub_meta, "notifications": honored})
            await reply.body(sse_message(ack), more=True)

            async def forward(tg: TaskGroup) -> None:
                if uris:
                    tg.start_soon(run_watchers, FixedWatches(uris),
                                  Bound(self.dispatcher.resources, principal), updated)
                while True:
                    with anyio.move_on_after(self.keepalive_s) as wait:
                        try:
                            method, note = await inbox.receive()
                        except anyio.EndOfStream:
                            # The server is stopping: end the subscription gracefully.
                            result = {"resultType": "complete", "_meta": sub_meta}
                            async with writing:
                                await reply.body(sse_message(
                                    jsonrpc.encode_result(msg.id, result)))
                            tg.cancel_scope.cancel()
                            return
                    async with writing:
                        if wait.cancelled_caught:
                            await reply.body(KEEPALIVE, more=True)
                        elif method in wanted:
                            params = {**(note or {}), "_meta": sub_meta}
                            await reply.body(sse_message(
                                jsonrpc.encode_notification(method, params)), more=True)

            await _stream_until_gone(receive, forward)

    async def _get(self, req: Incoming, principal: Principal, receive: Receive,
                   reply: Reply) -> None:
        """A GET stream of server notifications (a session may hold several; each
        notification goes to one of them), or with ``Last-Event-ID`` the resumption of a
        stream the client lost or the server ended early: what followed that event, then
        the stream goes on live."""
        if self._modern_header(req):
            await reply.error(405, jsonrpc.INVALID_REQUEST, "Method not allowed: 2026-07-28 serves "
                              "POST only", headers=[(b"allow", b"POST")])
            return
        if not Accept.parse(req.headers.get("accept")).sse:
            await reply.error(406, jsonrpc.INVALID_REQUEST,
                              "Not Acceptable: the GET stream is text/event-stream")
            return
        session = await self._session_of(req, principal, reply)
        if session is None:
            return
        last = req.headers.get("last-event-id")
        found = session.find_stream(last) if last is not None else None
        if found is not None and not found[0].standalone:
            stream, after = found
            await reply.start(200, SSE_HEADERS)

            async def resume(tg: TaskGroup) -> None:
                await self._pump(stream, reply, after)

            await _stream_until_gone(receive, resume)
            await _end_quietly(reply)
            return
        stream, after = found if found is not None else \
            (session.open_stream(standalone=True), 0)
        with self.notifier.subscribe(principal.key, group=session.id) as inbox:
            await reply.start(200, SSE_HEADERS)
            if found is None:
                if session.primes:
                    await reply.body(sse_priming(_id(stream.event_id(0)), RETRY_MS),
                                     more=True)
                else:
                    await reply.body(KEEPALIVE, more=True)

            async def forward(tg: TaskGroup) -> None:
                async def feed() -> None:
                    async for method, note in inbox:
                        stream.append(jsonrpc.encode_notification(method, note))
                    tg.cancel_scope.cancel()  # the server is stopping

                tg.start_soon(feed)
                tg.start_soon(watch_session, session, stream,
                              Bound(self.dispatcher.resources, principal))
                await self._pump(stream, reply, after)

            await _stream_until_gone(receive, forward)
        await _end_quietly(reply)

    async def _delete(self, req: Incoming, principal: Principal, reply: Reply) -> None:
        if self._modern_header(req):
            await reply.error(405, jsonrpc.INVALID_REQUEST, "Method not allowed: 2026-07-28 has no "
                              "sessions", headers=[(b"allow", b"POST")])
            return
        session = await self._session_of(req, principal, reply)
        if session is None:
            return
        self.sessions.end(session.id)
        await reply.empty(200)

    async def _session_of(self, req: Incoming, principal: Principal,
                          reply: Reply) -> Session | None:
        sid = req.headers.get(mcp_wire.H_SESSION_ID)
        if sid is None:
            await reply.error(400, jsonrpc.INVALID_REQUEST,
                              "Bad Request: Mcp-Session-Id header is required")
            return None
        session = self.sessions.get(sid, principal.key)
        if session is None:
            await reply.error(404, jsonrpc.INVALID_REQUEST, "Session not found")
        return session


def _id(event_id: str | None) -> str:
    assert event_id is not None, "a session's streams number their events"
    return event_id


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope,
                                watching: anyio.CancelScope) -> None:
    with watching:
        while (await receive())["type"] != "http.disconnect":
            pass
        scope.cancel()


async def _end_quietly(reply: Reply) -> None:
    """End a stream's response if it is not ended yet; the connection may be gone."""
    if reply.ended:
        return
    with anyio.CancelScope(shield=True):
        try:
            await reply.body(b"")
        except Exception:
            log.debug("mcp stream ended after its connection")


async def _stream_until_gone(receive: Receive, body: Any) -> None:
    """Run ``body(task_group)`` until it returns, cancels the group, or the client leaves."""
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        async def run() -> None:
            await body(tg)
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        tg.start_soon(run)
