"""The MCP dispatcher: one JSON-RPC request in, one encoded response out, for either era.

This is the single place where exceptions become wire errors: a GatewayError raised by a
tool becomes an ``isError`` tool result carrying the gateway ``error_code``; an RpcError
becomes a JSON-RPC error; anything unexpected is logged and answered without its details.
It also owns what each era adds to results (2026-07-28: ``resultType``, the server identity
in ``_meta``, ``ttlMs``/``cacheScope`` on list and read results; ``input_required`` results of
multi round-trip tools), pagination cursors, the client-capability check of tools that need
one (-32021), and ``resources/subscribe``/``unsubscribe`` on the session's set.

The tools and resources are pluggable (:class:`ToolSet`, :class:`ResourceSet`): /mcp serves
pushgo's own (pushgo.mcp.tools, pushgo.mcp.resources); the conformance fixture app
(pushgo.testing.mcp_fixtures) serves the official suite's fixtures on the same engine.

Must not import starlette; the transport (pushgo.mcp.transport) owns HTTP.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from pushgo import __version__
from pushgo.errors import GatewayError, codes
from pushgo.mcp.auth import SCOPE_CHANNELS, McpAuth, Principal, Unauthorized
from pushgo.mcp.elicit import InputRequired
from pushgo.mcp.tools import Ask, EndResponse, ToolContext, ToolDef, ToolResult
from pushgo.mcp.watch import MAX_SUBSCRIPTIONS, limit_error
from pushgo.protocol import jsonrpc
from pushgo.protocol import mcp as mcp_wire

log = logging.getLogger("pushgo.mcp")

PAGE_SIZE = 50
LIST_TTL_MS = 300_000

#: Methods of each era pushgo serves through the dispatcher (the transport serves
#: initialize and subscriptions/listen itself). Anything else is Method not found.
LEGACY_METHODS = frozenset({"ping", "tools/list", "tools/call", "resources/list",
                            "resources/templates/list", "resources/read",
                            "resources/subscribe", "resources/unsubscribe"})
MODERN_METHODS = frozenset({"server/discover", "tools/list", "tools/call", "resources/list",
                            "resources/templates/list", "resources/read"})

SERVER_INFO = mcp_wire.Implementation(name="pushgo", title="PushGo Gateway", version=__version__,
                               description="Self-hosted push-notification gateway")
INSTRUCTIONS = (
    "pushgo sends push notifications to the devices subscribed to a channel. Use "
    "pushgo.message.send for a one-off notification (for example when a task finishes), "
    "pushgo.event.* to track long-running work as an Event, and pushgo.thing.* to keep a "
    "service, device or task up to date. Read pushgo://channels/{channel_id} for a channel's "
    "recent history.")
LEGACY_HINT = " This gateway runs in legacy mode: pass the channel password in every call."

Notify = Callable[[bytes], Awaitable[None]]


async def _no_notify(_frame: bytes) -> None:
    return None


async def _no_end_response() -> bool:
    return False


class ToolSet(Protocol):
    def wire(self, oauth: bool | None = None) -> Sequence[mcp_wire.Tool]:
        """The tools as a caller of that kind (OAuth or legacy) sees them; None: the
        gateway's own mode."""
        ...

    def get(self, name: str) -> ToolDef:
        """The tool, or RpcError INVALID_PARAMS for an unknown name."""
        ...


class ResourceSet(Protocol):
    def templates(self) -> Sequence[mcp_wire.ResourceTemplate]: ...

    async def listed(self, principal: Principal) -> Sequence[mcp_wire.Resource]: ...

    async def read(self, uri: str, principal: Principal, *, modern: bool
                   ) -> Sequence[mcp_wire.ResourceContents]:
        """The contents, or RpcError (resource not found) for an unknown uri."""
        ...

    def watchable(self, uri: str) -> bool:
        """Whether the resource can be subscribed to (pushgo.mcp.watch)."""
        ...

    def watch(self, uri: str, principal: Principal) -> AsyncIterator[None]:
        """One item per change of ``uri``, ending when it cannot change any more."""
        ...


class Subscriptions(Protocol):
    """A session's resource subscriptions (pushgo.mcp.sessions.Session)."""

    def subscribe(self, uri: str, limit: int) -> bool: ...

    def unsubscribe(self, uri: str) -> None: ...


@dataclass
class Call:
    request: jsonrpc.Request
    principal: Principal
    modern: bool
    protocol_version: str
    notify: Notify = _no_notify
    client_capabilities: dict[str, Any] = field(default_factory=dict)
    end_response: EndResponse = _no_end_response
    #: The initialize era's session (resources/subscribe), and how a tool sends the client
    #: a request on this request's stream (elicitation/create); None when it cannot.
    subscriptions: Subscriptions | None = None
    ask: Ask | None = None


@dataclass(frozen=True)
class Outcome:
    body: bytes
    error_code: int | None = None


def capabilities() -> dict[str, Any]:
    return {"tools": {"listChanged": False},
            "resources": {"listChanged": True, "subscribe": True}}


def _text(doc: Any) -> mcp_wire.TextContent:
    return mcp_wire.TextContent(text=json.dumps(doc, ensure_ascii=False, separators=(",", ":")))


def tool_result(structured: dict[str, Any]) -> dict[str, Any]:
    return {"content": [_text(structured)], "structuredContent": structured, "isError": False}


def tool_error(exc: GatewayError) -> dict[str, Any]:
    doc: dict[str, Any] = {"error_code": exc.code, "error": exc.message, "status": exc.status}
    if exc.retry_after is not None:
        doc["retry_after"] = exc.retry_after
    return {"content": [_text(doc)], "structuredContent": doc, "isError": True}


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("o:") or not text[2:].isdigit():
            raise ValueError(text)
        return int(text[2:])
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise jsonrpc.RpcError(jsonrpc.INVALID_PARAMS, "Invalid cursor") from None


def paginate(items: Sequence[Any], cursor: str | None, key: str) -> dict[str, Any]:
    start = decode_cursor(cursor)
    if start > len(items):
        raise jsonrpc.RpcError(jsonrpc.INVALID_PARAMS, "Invalid cursor")
    page: dict[str, Any] = {key: list(items[start:start + PAGE_SIZE])}
    if start + PAGE_SIZE < len(items):
        page["nextCursor"] = encode_cursor(start + PAGE_SIZE)
    return page


class Dispatcher:
    def __init__(self, tools: ToolSet, resources: ResourceSet, auth: McpAuth, *,
                 server_info: mcp_wire.Implementation = SERVER_INFO,
                 instructions: str | None = None) -> None:
        self.tools = tools
        self.resources = resources
        self.auth = auth
        self.server_info = server_info
        self.instructions = instructions if instructions is not None else (
            INSTRUCTIONS + ("" if auth.oauth else LEGACY_HINT))

    def initialize_result(self, version: str) -> dict[str, Any]:
        return {"protocolVersion": version, "capabilities": capabilities(),
                "serverInfo": self.server_info, "instructions": self.instructions}

    def discover_result(self) -> dict[str, Any]:
        return {"supportedVersions": list(mcp_wire.SUPPORTED_VERSIONS), "capabilities": capabilities(),
                "instructions": self.instructions}

    def server_meta(self) -> dict[str, Any]:
        return {mcp_wire.META_SERVER_INFO: self.server_info}

    def finish(self, result: dict[str, Any], *, modern: bool,
               cache: mcp_wire.CacheHint | None = None) -> dict[str, Any]:
        """What the era adds to a result (2026-07-28: resultType, _meta, cache hints)."""
        if modern:
            result.setdefault("resultType", "complete")
            result["_meta"] = self.server_meta()
            if cache is not None:
                result["ttlMs"] = cache.ttl_ms
                result["cacheScope"] = cache.scope
        return result

    async def dispatch(self, call: Call) -> Outcome:
        """Answer one request; never raises but for cancellation and Unauthorized (scope)."""
        req = call.request
        try:
            result, cache = await self._route(call)
            return Outcome(jsonrpc.encode_result(req.id, self.finish(result, modern=call.modern,
                                                               cache=cache)))
        except jsonrpc.RpcError as exc:
            return Outcome(jsonrpc.encode_rpc_error(req.id, exc), exc.code)
        except GatewayError as exc:
            # A store outage outside a tool call: a server error, with the gateway code.
            log.warning("mcp request failed", extra={"fields": {
                "method": req.method, "error_code": exc.code}})
            return Outcome(jsonrpc.encode_error(req.id, jsonrpc.INTERNAL_ERROR, exc.message,
                                          {"error_code": exc.code}), jsonrpc.INTERNAL_ERROR)
        except Unauthorized:
            raise  # insufficient scope: the transport answers 403 with its challenge
        except Exception:
            log.exception("mcp request failed", extra={"fields": {"method": req.method}})
            return Outcome(jsonrpc.encode_error(req.id, jsonrpc.INTERNAL_ERROR, "Internal error"),
                           jsonrpc.INTERNAL_ERROR)

    async def _route(self, call: Call) -> tuple[dict[str, Any], mcp_wire.CacheHint | None]:
        method, params = call.request.method, call.request.params
        allowed = MODERN_METHODS if call.modern else LEGACY_METHODS
        if method not in allowed:
            raise jsonrpc.RpcError(jsonrpc.METHOD_NOT_FOUND, f"Method not found: {method}",
                             {"method": method})
        if method == "ping":
            return {}, None
        if method == "server/discover":
            return self.discover_result(), mcp_wire.CacheHint(LIST_TTL_MS, "public")
        if method == "tools/list":
            p = mcp_wire.decode_params(params, mcp_wire.PaginatedParams)
            tools = self.tools.wire(call.principal.oauth)
            return paginate(tools, p.cursor, "tools"), mcp_wire.CacheHint(LIST_TTL_MS, "public")
        if method == "tools/call":
            return await self._call_tool(call), None
        if method == "resources/list":
            p = mcp_wire.decode_params(params, mcp_wire.PaginatedParams)
            self._require(call.principal, SCOPE_CHANNELS)
            items = await self.resources.listed(call.principal)
            return paginate(items, p.cursor, "resources"), mcp_wire.CacheHint(0, "private")
        if method == "resources/templates/list":
            p = mcp_wire.decode_params(params, mcp_wire.PaginatedParams)
            return (paginate(self.resources.templates(), p.cursor, "resourceTemplates"),
                    mcp_wire.CacheHint(LIST_TTL_MS, "public"))
        if method in ("resources/subscribe", "resources/unsubscribe"):
            return await self._subscribe(call, method == "resources/subscribe"), None
        assert method == "resources/read"
        r = mcp_wire.decode_params(params, mcp_wire.ReadResourceParams)
        self._require(call.principal, SCOPE_CHANNELS)
        contents = await self.resources.read(r.uri, call.principal, modern=call.modern)
        return {"contents": contents}, mcp_wire.CacheHint(0, "private")

    async def _subscribe(self, call: Call, on: bool) -> dict[str, Any]:
        """resources/subscribe: the caller must be able to read the resource now (an unknown
        or ungranted one is not found), and it must be one that changes."""
        r = mcp_wire.decode_params(call.request.params, mcp_wire.ReadResourceParams)
        self._require(call.principal, SCOPE_CHANNELS)
        holder = call.subscriptions
        if holder is None:
            raise jsonrpc.RpcError(jsonrpc.INVALID_REQUEST, "resource subscriptions need a session")
        if not on:
            holder.unsubscribe(r.uri)
            return {}
        await self.resources.read(r.uri, call.principal, modern=False)
        if not self.resources.watchable(r.uri):
            raise jsonrpc.RpcError(jsonrpc.INVALID_PARAMS, "This resource does not take "
                                   "subscriptions (resources/list_changed announces it)",
                                   {"uri": r.uri})
        if not holder.subscribe(r.uri, MAX_SUBSCRIPTIONS):
            raise limit_error(MAX_SUBSCRIPTIONS)
        return {}

    def _require(self, principal: Principal, scope: str) -> None:
        if not principal.allows(scope):
            raise self.auth.insufficient_scope(scope)

    async def _call_tool(self, call: Call) -> dict[str, Any]:
        p = mcp_wire.decode_params(call.request.params, mcp_wire.CallToolParams)
        tool = self.tools.get(p.name)
        self._require(call.principal, tool.scope)
        if tool.requires:
            missing = mcp_wire.missing_capabilities(tool.requires, call.client_capabilities)
            if missing:
                raise mcp_wire.missing_capability_error(missing)
        token = p.meta.progressToken if p.meta is not None else None

        async def progress(done: float, total: float | None, message: str | None) -> None:
            if token is None:
                return
            params: dict[str, Any] = {"progressToken": token, "progress": done}
            if total is not None:
                params["total"] = total
            if message is not None:
                params["message"] = message
            await call.notify(jsonrpc.encode_notification("notifications/progress", params))

        ctx = ToolContext(call.principal, progress, end_response=call.end_response,
                          wants_progress=token is not None, modern=call.modern,
                          client_capabilities=call.client_capabilities, ask=call.ask,
                          notify=call.notify, input_responses=p.inputResponses,
                          request_state=p.requestState)
        try:
            out = await tool.handler(p.arguments or {}, ctx)
        except jsonrpc.RpcError:
            raise  # a protocol error (a requestState not issued here): a JSON-RPC error
        except GatewayError as exc:
            return tool_error(exc)
        except Exception:
            log.exception("mcp tool failed", extra={"fields": {"tool": p.name}})
            return tool_error(GatewayError(codes.INTERNAL_ERROR, "internal error"))
        if isinstance(out, (ToolResult, InputRequired)):
            return out.wire()
        return tool_result(out)


def progress_token(params: msgspec.Raw | None) -> str | int | None:
    try:
        p = mcp_wire.decode_params(params, mcp_wire.CallToolParams)
    except jsonrpc.RpcError:
        return None
    return p.meta.progressToken if p.meta is not None else None
