"""The Streamable HTTP endpoint on ``/mcp`` serving both protocol eras (a plain ASGI app).

Every request: Origin (403), authentication (401), then by method. A POST is routed by era:
an ``MCP-Protocol-Version`` header of 2026-07-28 (or, without a session, of no handshake
revision), or a sessionless request declaring its version in ``_meta``, is 2026-07-28:
stateless, checked by the request ladder, errors mapped to HTTP statuses. Everything else is
the initialize era: ``initialize`` opens a session (``Mcp-Session-Id``), later requests need
it (missing 400, unknown or ended 404), GET opens the session's notification stream, DELETE
ends it.

A request is answered as application/json, or as text/event-stream when the client takes
only that or asked for progress; a 2026-07-28 stream closed by the client cancels its
request, and in the initialize era ``notifications/cancelled`` does.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from anyio.abc import TaskGroup

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
from pushgo.mcp.sessions import Notifier, Session, SessionStore
from pushgo.protocol import jsonrpc as J
from pushgo.protocol import mcp as M

log = logging.getLogger("pushgo.mcp")

MAX_BODY = 32 * 1024
RETRY_MS = 3000
#: Code for a request answered after the client cancelled it (outside the ranges JSON-RPC
#: and MCP reserve; the client ignores the answer to a request it cancelled anyway).
REQUEST_CANCELLED = -32800

MODERN_STATUS = {J.PARSE_ERROR: 400, J.INVALID_REQUEST: 400, J.INVALID_PARAMS: 400,
                 J.HEADER_MISMATCH: 400, J.MISSING_REQUIRED_CLIENT_CAPABILITY: 400,
                 J.UNSUPPORTED_PROTOCOL_VERSION: 400, J.METHOD_NOT_FOUND: 404}
ROUTING_HEADERS = (M.H_PROTOCOL_VERSION, M.H_METHOD, M.H_NAME)


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
        except Exception:
            log.exception("mcp transport failed")
            if not reply.started:
                await reply.error(500, J.INTERNAL_ERROR, "Internal error")

    async def _handle(self, req: Incoming, receive: Receive, reply: Reply) -> None:
        origin = req.headers.get("origin")
        if origin is not None and not origin_allowed(origin, self.public_base_url):
            await reply.error(403, J.INVALID_REQUEST, "Forbidden: Origin not allowed")
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
            await reply.error(405, J.INVALID_REQUEST, "Method not allowed",
                              headers=[(b"allow", b"GET, POST, DELETE")])

    @staticmethod
    async def _unauthorized(reply: Reply, exc: Unauthorized) -> None:
        body = J.encode({"error": exc.error, "error_description": exc.description})
        await reply.json(exc.status, body, [(b"www-authenticate", exc.challenge.encode())])

    def _modern_header(self, req: Incoming) -> bool:
        """A 2026-07-28 version header, or (sessionless) one no handshake revision has: the
        modern ladder then answers it with -32022."""
        version = req.headers.get(M.H_PROTOCOL_VERSION)
        if version is None:
            return False
        return version in M.MODERN_VERSIONS or (version not in M.HANDSHAKE_VERSIONS
                                                 and M.H_SESSION_ID not in req.headers)

    # --- POST ---------------------------------------------------------------------------------

    async def _post(self, req: Incoming, principal: Principal, receive: Receive,
                    reply: Reply) -> None:
        if not is_json_content_type(req.headers.get("content-type")):
            await reply.error(415, J.INVALID_REQUEST,
                              "Unsupported Media Type: Content-Type must be application/json")
            return
        accept = Accept.parse(req.headers.get("accept"))
        if not (accept.json or accept.sse):
            await reply.error(406, J.INVALID_REQUEST, "Not Acceptable: the client must accept "
                              "application/json or text/event-stream")
            return
        body = await read_body(receive, req.headers, self.max_body)
        if body is None:
            await reply.error(413, J.INVALID_REQUEST,
                              f"Request body exceeds {self.max_body} bytes")
            return
        try:
            msg = J.parse_message(body)
        except J.RpcError as exc:
            await reply.error(400, exc.code, exc.message, request_id=J.salvage_id(body))
            return
        # Body-primary too: a sessionless request declaring its version in _meta is modern
        # whatever its header says, so a client that disagrees with itself is told so.
        modern = self._modern_header(req) or (
            M.H_SESSION_ID not in req.headers and isinstance(msg, J.Request)
            and msg.method != "initialize" and M.declares_version(msg.params))
        if modern:
            await self._modern_post(req, principal, accept, msg, receive, reply)
        else:
            await self._legacy_post(req, principal, accept, msg, receive, reply)

    async def _legacy_post(self, req: Incoming, principal: Principal, accept: Accept,
                           msg: J.Message, receive: Receive, reply: Reply) -> None:
        if isinstance(msg, J.Request) and msg.method == "initialize":
            try:
                params = M.decode_params(msg.params, M.InitializeParams)
            except J.RpcError as exc:
                await reply.error(400, exc.code, exc.message, request_id=msg.id)
                return
            version = M.negotiate(params.protocolVersion)
            session = self.sessions.create(principal.key, version, params.capabilities)
            body = J.encode_result(msg.id, self.dispatcher.initialize_result(version))
            headers = [(M.H_SESSION_ID.encode(), session.id.encode())]
            if accept.json:
                await reply.json(200, body, headers)
            else:
                await self._sse_single(reply, session, body, headers)
            return
        rid = msg.id if isinstance(msg, J.Request) else None
        sid = req.headers.get(M.H_SESSION_ID)
        if sid is None:
            await reply.error(400, J.INVALID_REQUEST,
                              "Bad Request: Mcp-Session-Id header is required", request_id=rid)
            return
        found = self.sessions.get(sid, principal.key)
        if found is None:
            await reply.error(404, J.INVALID_REQUEST, "Session not found", request_id=rid)
            return
        session = found
        header_version = req.headers.get(M.H_PROTOCOL_VERSION)
        if header_version is not None and header_version != session.protocol_version:
            await reply.error(400, J.INVALID_REQUEST, "Bad Request: unsupported "
                              f"MCP-Protocol-Version {header_version!r}; this session uses "
                              f"{session.protocol_version}", request_id=rid)
            return
        if isinstance(msg, J.Notification):
            self._legacy_notification(session, msg)
            await reply.empty(202)
            return
        if isinstance(msg, J.ClientReply):
            await reply.empty(202)  # pushgo sends no requests; nothing awaits this
            return
        call = Call(msg, principal, modern=False, protocol_version=session.protocol_version,
                    client_capabilities=session.client_capabilities)
        await self._run(call, accept, receive, reply, session)

    def _legacy_notification(self, session: Session, msg: J.Notification) -> None:
        if msg.method == "notifications/initialized":
            session.initialized = True
        elif msg.method == "notifications/cancelled":
            try:
                params = M.decode_params(msg.params, M.CancelledParams)
            except J.RpcError:
                return
            if params.requestId is not None:
                session.cancel(params.requestId)

    async def _modern_post(self, req: Incoming, principal: Principal, accept: Accept,
                           msg: J.Message, receive: Receive, reply: Reply) -> None:
        if isinstance(msg, J.ClientReply):
            await reply.error(400, J.INVALID_REQUEST, "Clients must not send responses")
            return
        if isinstance(msg, J.Notification):
            version = req.headers.get(M.H_PROTOCOL_VERSION, "")
            if version not in M.MODERN_VERSIONS:
                exc = M.unsupported_version(version)
                await reply.error(400, exc.code, exc.message, data=exc.data)
                return
            await reply.empty(202)  # no client notifications exist at 2026-07-28
            return
        try:
            env = M.check_modern_request(msg.method, msg.params, req.headers,
                                         req.duplicated(ROUTING_HEADERS))
        except J.RpcError as exc:
            await reply.error(MODERN_STATUS.get(exc.code, 400), exc.code, exc.message,
                              request_id=msg.id, data=exc.data)
            return
        if msg.method == "subscriptions/listen":
            if not accept.sse:
                await reply.error(406, J.INVALID_REQUEST, "Not Acceptable: subscriptions/"
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
        """Dispatch ``call`` and answer it as JSON or SSE. The response commits to SSE only
        when the first notification is ready (or a keep-alive is due), so errors that come
        before any notification keep their HTTP status."""
        req = call.request
        progress = req.method == "tools/call" and progress_token(req.params) is not None
        use_sse = accept.sse and (not accept.json or progress)
        send_ch, recv_ch = anyio.create_memory_object_stream[bytes](16)
        done: list[Outcome | Unauthorized] = []
        cancelled = anyio.CancelScope()
        if session is not None:
            if req.id in session.inflight:
                await reply.error(400, J.INVALID_REQUEST, "Request id already in use",
                                  request_id=req.id)
                return
            session.inflight[req.id] = cancelled

        async def notify(frame: bytes) -> None:
            if use_sse:
                try:
                    await send_ch.send(frame)
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    pass

        call.notify = notify

        async def run_call() -> None:
            async with send_ch:
                with cancelled:
                    try:
                        done.append(await self.dispatcher.dispatch(call))
                    except Unauthorized as exc:
                        done.append(exc)

        try:
            async with anyio.create_task_group() as tg:
                if call.modern:
                    tg.start_soon(_cancel_on_disconnect, receive, cancelled)
                tg.start_soon(run_call)
                async with recv_ch:
                    await self._answer(call, use_sse, recv_ch, done, reply, session)
                tg.cancel_scope.cancel()
        finally:
            if session is not None:
                session.inflight.pop(req.id, None)

    async def _answer(self, call: Call, use_sse: bool, frames: Any,
                      done: list[Outcome | Unauthorized], reply: Reply,
                      session: Session | None) -> None:
        first: bytes | None = None
        ended = False
        if use_sse:
            with anyio.move_on_after(self.keepalive_s):
                try:
                    first = await frames.receive()
                except anyio.EndOfStream:
                    ended = True
        else:
            async for _ in frames:  # JSON answers carry no notifications
                pass
            ended = True
        if ended:
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
        await reply.start(200, SSE_HEADERS)
        event_id = _event_ids(session)
        if session is not None and session.protocol_version >= "2025-11-25":
            await reply.body(sse_priming(event_id(), RETRY_MS), more=True)
        while not ended:
            if first is not None:
                await reply.body(sse_message(first, event_id()), more=True)
                first = None
            with anyio.move_on_after(self.keepalive_s) as wait:
                try:
                    first = await frames.receive()
                except anyio.EndOfStream:
                    ended = True
            if wait.cancelled_caught:
                await reply.body(KEEPALIVE, more=True)
        result = done[0] if done else None
        if isinstance(result, Outcome):
            await reply.body(sse_message(result.body, event_id()))
        else:
            await reply.body(b"")

    async def _sse_single(self, reply: Reply, session: Session, body: bytes,
                          headers: list[tuple[bytes, bytes]]) -> None:
        await reply.start(200, [*SSE_HEADERS, *headers])
        event_id = _event_ids(session)
        if session.protocol_version >= "2025-11-25":
            await reply.body(sse_priming(event_id(), RETRY_MS), more=True)
        await reply.body(sse_message(body, event_id()))

    # --- streams of server notifications ------------------------------------------------------

    async def _listen(self, msg: J.Request, principal: Principal, receive: Receive,
                      reply: Reply) -> None:
        """2026-07-28 ``subscriptions/listen``: acknowledge, then forward what was asked for
        and is offered (resource list changes), until the client closes the stream."""
        try:
            params = M.decode_params(msg.params, M.ListenParams)
        except J.RpcError as exc:
            await reply.error(400, exc.code, exc.message, request_id=msg.id)
            return
        honored = M.SubscriptionFilter(
            resourcesListChanged=True if params.notifications.resourcesListChanged else None)
        wanted = {"notifications/resources/list_changed"} if honored.resourcesListChanged \
            else set()
        sub_meta = {M.META_SUBSCRIPTION_ID: msg.id}
        # Subscribed before the acknowledgement goes out: nothing published after the client
        # has read it can be missed.
        with self.notifier.subscribe(principal.key) as inbox:
            await reply.start(200, SSE_HEADERS)
            ack = J.encode_notification("notifications/subscriptions/acknowledged",
                                        {"_meta": sub_meta, "notifications": honored})
            await reply.body(sse_message(ack), more=True)

            async def forward(tg: TaskGroup) -> None:
                while True:
                    with anyio.move_on_after(self.keepalive_s) as wait:
                        try:
                            method, note = await inbox.receive()
                        except anyio.EndOfStream:
                            # The server is stopping: end the subscription gracefully.
                            result = {"resultType": "complete", "_meta": sub_meta}
                            await reply.body(sse_message(J.encode_result(msg.id, result)))
                            tg.cancel_scope.cancel()
                            return
                    if wait.cancelled_caught:
                        await reply.body(KEEPALIVE, more=True)
                    elif method in wanted:
                        params = {**(note or {}), "_meta": sub_meta}
                        await reply.body(sse_message(J.encode_notification(method, params)),
                                         more=True)

            await _stream_until_gone(receive, forward)

    async def _get(self, req: Incoming, principal: Principal, receive: Receive,
                   reply: Reply) -> None:
        if self._modern_header(req):
            await reply.error(405, J.INVALID_REQUEST, "Method not allowed: 2026-07-28 serves "
                              "POST only", headers=[(b"allow", b"POST")])
            return
        if not Accept.parse(req.headers.get("accept")).sse:
            await reply.error(406, J.INVALID_REQUEST,
                              "Not Acceptable: the GET stream is text/event-stream")
            return
        session = await self._session_of(req, principal, reply)
        if session is None:
            return
        if session.stream_open:
            await reply.error(409, J.INVALID_REQUEST,
                              "Conflict: this session already has a GET stream open")
            return
        session.stream_open = True
        try:
            with self.notifier.subscribe(principal.key) as inbox:
                await reply.start(200, SSE_HEADERS)
                event_id = _event_ids(session)
                if session.protocol_version >= "2025-11-25":
                    await reply.body(sse_priming(event_id(), RETRY_MS), more=True)
                else:
                    await reply.body(KEEPALIVE, more=True)

                async def forward(tg: TaskGroup) -> None:
                    tg.start_soon(_cancel_when, session.ended, tg.cancel_scope)
                    while True:
                        with anyio.move_on_after(self.keepalive_s) as wait:
                            try:
                                method, note = await inbox.receive()
                            except anyio.EndOfStream:
                                tg.cancel_scope.cancel()
                                return
                        if wait.cancelled_caught:
                            await reply.body(KEEPALIVE, more=True)
                        else:
                            frame = J.encode_notification(method, note)
                            await reply.body(sse_message(frame, event_id()), more=True)

                await _stream_until_gone(receive, forward)
            with anyio.CancelScope(shield=True):
                try:
                    await reply.body(b"")
                except Exception:  # the connection may be gone already
                    log.debug("mcp GET stream ended after its connection")
        finally:
            session.stream_open = False

    async def _delete(self, req: Incoming, principal: Principal, reply: Reply) -> None:
        if self._modern_header(req):
            await reply.error(405, J.INVALID_REQUEST, "Method not allowed: 2026-07-28 has no "
                              "sessions", headers=[(b"allow", b"POST")])
            return
        session = await self._session_of(req, principal, reply)
        if session is None:
            return
        self.sessions.end(session.id)
        await reply.empty(200)

    async def _session_of(self, req: Incoming, principal: Principal,
                          reply: Reply) -> Session | None:
        sid = req.headers.get(M.H_SESSION_ID)
        if sid is None:
            await reply.error(400, J.INVALID_REQUEST,
                              "Bad Request: Mcp-Session-Id header is required")
            return None
        session = self.sessions.get(sid, principal.key)
        if session is None:
            await reply.error(404, J.INVALID_REQUEST, "Session not found")
        return session


def _event_ids(session: Session | None) -> Any:
    if session is None:
        return lambda: None
    return session.next_event_id


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def _cancel_when(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


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
