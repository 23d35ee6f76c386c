"""The twelve MCP tools: definitions (schemas, annotations) and what each does.

Send tools decode their arguments into the HTTP API's request Structs and call the same
sending service as the API; none re-implements a step. Failures are raised as GatewayError
(business) or RpcError (unknown tool); the dispatcher turns them into results or errors.

Must not import starlette or pushgo.api.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from pushgo.errors import GatewayError, InvalidInput, codes
from pushgo.mcp import schemas
from pushgo.mcp.auth import SCOPE_CHANNELS, SCOPE_TOOLS, ChannelBinding, Principal
from pushgo.mcp.elicit import InputRequired, bind_start
from pushgo.mcp.progress import report_delivery
from pushgo.protocol import fields as field_rules
from pushgo.protocol import operations as OPS
from pushgo.protocol.jsonrpc import INVALID_PARAMS, RpcError
from pushgo.protocol.mcp import Content, TextContent, Tool, ToolAnnotations
from pushgo.service import Services

Progress = Callable[[float, float | None, str | None], Awaitable[None]]
#: Ask the transport to end the current SSE response early (the client resumes with
#: Last-Event-ID); False when this request cannot be resumed (JSON answer, no session).
EndResponse = Callable[[], Awaitable[bool]]


#: Send the client a request on the current request's stream and await its result
#: (initialize era: ``elicitation/create``); RpcError when the client answers an error.
Ask = Callable[[str, dict[str, Any]], Awaitable[Any]]
Notify = Callable[[bytes], Awaitable[None]]


async def _no_progress(_p: float, _t: float | None, _m: str | None) -> None:
    return None


async def _no_notify(_frame: bytes) -> None:
    return None


async def _no_end_response() -> bool:
    return False


@dataclass
class ToolContext:
    principal: Principal
    progress: Progress = _no_progress
    end_response: EndResponse = _no_end_response
    #: The client passed a progressToken: send tools then follow their deliveries a while.
    wants_progress: bool = False
    modern: bool = False
    client_capabilities: dict[str, Any] = field(default_factory=dict)
    ask: Ask | None = None
    notify: Notify = _no_notify  # a notification on this request's stream
    #: 2026-07-28 multi round-trip: the client's answers and the state it echoes back.
    input_responses: dict[str, Any] | None = None
    request_state: str | None = None


@dataclass(frozen=True)
class ToolResult:
    """A result with content of its own (images, audio, embedded resources); a handler
    returning a plain dict gets it as ``structuredContent`` mirrored as text instead."""

    content: list[Content]
    structured: dict[str, Any] | None = None
    is_error: bool = False

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"content": self.content, "isError": self.is_error}
        if self.structured is not None:
            out["structuredContent"] = self.structured
        return out


Handler = Callable[[dict[str, Any], ToolContext],
                   Awaitable[dict[str, Any] | ToolResult | InputRequired]]


@dataclass(frozen=True)
class ToolDef:
    name: str
    title: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    annotations: ToolAnnotations
    scope: str
    handler: Handler
    #: Client capabilities the tool needs (e.g. ``{"sampling": {}}``); a client that did
    #: not declare them gets -32021 before the handler runs.
    requires: dict[str, Any] | None = None

    def wire(self) -> Tool:
        return Tool(name=self.name, title=self.title, description=self.description,
                    inputSchema=self.input_schema,
                    outputSchema=schemas.admit_errors(self.output_schema),
                    annotations=self.annotations)


def _json_text(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def _convert(arguments: dict[str, Any], kind: type[Any]) -> Any:
    try:
        return msgspec.convert(arguments, kind)
    except msgspec.ValidationError as exc:
        raise InvalidInput(codes.INVALID_ARGUMENTS, f"invalid arguments: {exc}") from None


def _annotations(title: str, *, read_only: bool = False, destructive: bool = False,
                 idempotent: bool = False, open_world: bool = False) -> ToolAnnotations:
    if read_only:
        return ToolAnnotations(title=title, readOnlyHint=True, openWorldHint=open_world)
    return ToolAnnotations(title=title, readOnlyHint=False, destructiveHint=destructive,
                           idempotentHint=idempotent, openWorldHint=open_world)


_SEND_NOTE = (" Delivery to the channel's devices is asynchronous; `accepted` means the gateway "
              "stored it. Pass the same op_id to retry safely.")


#: The channel-grant tools: listed only to an OAuth caller.
CHANNEL_TOOL_PREFIX = "pushgo.channel."


class Tools:
    """The tool table for one gateway. ``oauth``: schemas without ``password`` and sends
    authorized by channel grants instead of passwords."""

    def __init__(self, svc: Services, binding: ChannelBinding, *, oauth: bool) -> None:
        self.svc = svc
        self.binding = binding
        self.oauth = oauth
        self._tools: dict[str, ToolDef] = {t.name: t for t in self._build()}
        # An OAuth-mode gateway also takes the gateway token (a legacy caller, as v1.2.9):
        # that caller is shown the schemas with ``password``, and not the channel tools,
        # which need a grant (called anyway, they answer oauth_required).
        self._wires = {kind: self._wire_for(kind) for kind in (True, False)}
        self._wire = self._wires[oauth]

    def _wire_for(self, oauth: bool) -> list[Tool]:
        saved, self.oauth = self.oauth, oauth
        try:
            return [t.wire() for t in self._build()
                    if oauth or not t.name.startswith(CHANNEL_TOOL_PREFIX)]
        finally:
            self.oauth = saved

    def wire(self, oauth: bool | None = None) -> list[Tool]:
        """The tools as a caller of this kind (OAuth or legacy) sees them."""
        return self._wire if oauth is None else self._wires[oauth]

    def get(self, name: str) -> ToolDef:
        tool = self._tools.get(name)
        if tool is None:
            raise RpcError(INVALID_PARAMS, f"Unknown tool: {name}", {"name": name})
        return tool

    # --- sending ------------------------------------------------------------------------------

    async def _send(self, spec: OPS.OpSpec, password: str | None, ctx: ToolContext) -> Any:
        await ctx.progress(0, 1, "sending")
        if not ctx.principal.oauth:
            accepted = await self.svc.publisher.send(spec, OPS.require_password(password))
        else:
            if password is not None:
                raise InvalidInput(codes.PASSWORD_FORBIDDEN_IN_OAUTH_MODE,
                                   "password must not be passed in OAuth mode: channels are "
                                   "authorized by binding them (pushgo.channel.bind.start)")
            if not await self.binding.is_granted(ctx.principal, spec.channel_id):
                raise GatewayError(codes.CHANNEL_NOT_BOUND,
                                   "this channel is not bound to your authorization; bind it "
                                   "with pushgo.channel.bind.start")
            accepted = await self.svc.publisher.send_granted(spec)
        out = msgspec.to_builtins(accepted.wire())
        delivery, summary = await report_delivery(self.svc.status, accepted, ctx.progress,
                                                  follow=ctx.wants_progress)
        out["delivery"] = delivery
        out["summary"] = summary
        return ToolResult([TextContent(text=_json_text(out)), TextContent(text=summary)], out)

    def _message_tool(self) -> ToolDef:
        async def run(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
            req = _convert(args, OPS.MessageIn)
            return await self._send(OPS.message_spec(req), req.password, ctx)  # type: ignore[no-any-return]

        return ToolDef(
            name="pushgo.message.send", title="Send a notification",
            description="Send a one-off Message (title, body, url, images, severity, ttl, "
                        "metadata, thing_id…) to every device subscribed to a channel."
                        + _SEND_NOTE,
            input_schema=schemas.input_schema(schemas.MESSAGE, ["channel_id", "title"],
                                        password=not self.oauth),
            output_schema=schemas.send_output("message_id"),
            annotations=_annotations("Send a notification", open_world=True),
            scope=SCOPE_TOOLS, handler=run)

    def _event_tool(self, action: str) -> ToolDef:
        kind = OPS.EVENT_ACTIONS[action]

        async def run(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
            req = _convert(args, kind)
            return await self._send(OPS.event_spec(req, action), req.password, ctx)  # type: ignore[no-any-return]

        what = {"create": ("Create an event", "Create a lifecycle Event (ONGOING) for long-"
                           "running work and get its event_id."),
                "update": ("Update an event", "Update an ongoing Event's status, message, "
                           "severity and attributes."),
                "close": ("Close an event", "Close an Event (CLOSED); a closed event cannot be "
                          "updated again.")}[action]
        return ToolDef(
            name=f"pushgo.event.{action}", title=what[0],
            description=what[1] + " Devices on the channel are notified." + _SEND_NOTE,
            input_schema=schemas.input_schema(schemas.EVENT[action], schemas.EVENT_REQUIRED[action],
                                        password=not self.oauth),
            output_schema=schemas.send_output("event_id"),
            annotations=_annotations(what[0], destructive=action != "create", open_world=True),
            scope=SCOPE_TOOLS, handler=run)

    def _thing_tool(self, action: str) -> ToolDef:
        kind = OPS.THING_ACTIONS[action]

        async def run(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
            req = _convert(args, kind)
            return await self._send(OPS.thing_spec(req, action), req.password, ctx)  # type: ignore[no-any-return]

        what = {"create": ("Create a thing", "Create a persistent Thing (a service, device or "
                           "task) and get its thing_id."),
                "update": ("Update a thing", "Update a Thing's attributes, tags, images, "
                           "location or external ids."),
                "archive": ("Archive a thing", "Archive a Thing (it stays readable)."),
                "delete": ("Delete a thing", "Delete (retire) a Thing; it cannot be changed "
                           "afterwards.")}[action]
        return ToolDef(
            name=f"pushgo.thing.{action}", title=what[0],
            description=what[1] + " Devices on the channel are notified." + _SEND_NOTE,
            input_schema=schemas.input_schema(schemas.THING[action], schemas.THING_REQUIRED[action],
                                        password=not self.oauth),
            output_schema=schemas.send_output("thing_id"),
            annotations=_annotations(what[0], destructive=action != "create", open_world=True),
            scope=SCOPE_TOOLS, handler=run)

    # --- channel grants (OAuth mode) ----------------------------------------------------------

    def _channel_tools(self) -> list[ToolDef]:
        binding = self.binding

        async def start(args: dict[str, Any],
                        ctx: ToolContext) -> dict[str, Any] | InputRequired:
            req = _convert(args, BindStartIn)
            if req.action not in ("bind", "revoke"):
                raise InvalidInput(codes.INVALID_ACTION, "action must be bind or revoke")
            requested = field_rules.channel_id(req.requested_channel_id) \
                if field_rules.blank_to_none(req.requested_channel_id) else None
            return await bind_start(binding, ctx, action=req.action,
                                    requested_channel_id=requested,
                                    redirect_uri=field_rules.blank_to_none(req.redirect_uri),
                                    lang=field_rules.blank_to_none(req.lang))

        async def bind_status(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
            req = _convert(args, BindStatusIn)
            return await binding.status(ctx.principal, req.bind_session_id.strip())

        async def list_channels(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
            _convert(args, ListIn)
            return {"channels": await binding.list_channels(ctx.principal)}

        async def unbind(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
            req = _convert(args, UnbindIn)
            return await binding.unbind(ctx.principal, field_rules.channel_id(req.channel_id))

        note = " Needs OAuth mode; in legacy mode it answers oauth_required."
        return [
            ToolDef("pushgo.channel.bind.start", "Start binding a channel",
                    "Create a bind (or revoke) session and return bind_url: the user opens it "
                    "in a browser and enters the channel id and password, so the password "
                    "never reaches the assistant. Then poll pushgo.channel.bind.status. A "
                    "client that can open URLs (URL-mode elicitation) is asked to open the "
                    "page itself, and the call answers once the user has finished there."
                    + note,
                    schemas.BIND_START_IN, schemas.BIND_START_OUT,
                    _annotations("Start binding a channel"), SCOPE_CHANNELS, start),
            ToolDef("pushgo.channel.bind.status", "Check a bind session",
                    "Check whether the user completed a bind or revoke session." + note,
                    schemas.BIND_STATUS_IN, schemas.BIND_STATUS_OUT,
                    _annotations("Check a bind session", read_only=True), SCOPE_CHANNELS,
                    bind_status),
            ToolDef("pushgo.channel.list", "List bound channels",
                    "List the channels currently authorized for this client." + note,
                    schemas.LIST_IN, schemas.LIST_OUT,
                    _annotations("List bound channels", read_only=True), SCOPE_CHANNELS,
                    list_channels),
            ToolDef("pushgo.channel.unbind", "Unbind a channel",
                    "Revoke this client's authorization for a channel." + note,
                    schemas.UNBIND_IN, schemas.UNBIND_OUT,
                    _annotations("Unbind a channel", destructive=True, idempotent=True),
                    SCOPE_CHANNELS, unbind),
        ]

    def _cancel_tool(self) -> ToolDef:
        async def run(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
            req = _convert(args, CancelToolIn)
            if not ctx.principal.oauth:
                return await self.svc.schedules.cancel(req.op_id, OPS.CancelIn(
                    channel_id=req.channel_id, password=OPS.require_password(req.password)))
            if req.password is not None:
                raise InvalidInput(codes.PASSWORD_FORBIDDEN_IN_OAUTH_MODE,
                                   "password must not be passed in OAuth mode: channels are "
                                   "authorized by binding them (pushgo.channel.bind.start)")
            channel_id = field_rules.channel_id(req.channel_id)
            if not await self.binding.is_granted(ctx.principal, channel_id):
                raise GatewayError(codes.CHANNEL_NOT_BOUND,
                                   "this channel is not bound to your authorization; bind it "
                                   "with pushgo.channel.bind.start")
            return await self.svc.schedules.cancel_granted(req.op_id, channel_id)

        return ToolDef(
            name="pushgo.operation.cancel", title="Cancel a scheduled send",
            description="Cancel whatever has not gone out yet of an operation (a send made "
                        "with deliver_at, or deliveries still waiting): its deliveries end "
                        "cancelled. Safe to repeat; once everything went out it says so and "
                        "changes nothing.",
            input_schema=schemas.cancel_input(password=not self.oauth),
            output_schema=schemas.CANCEL_OUT,
            annotations=_annotations("Cancel a scheduled send", destructive=True,
                                     idempotent=True, open_world=True),
            scope=SCOPE_TOOLS, handler=run)

    def _build(self) -> list[ToolDef]:
        return [self._message_tool(),
                *(self._event_tool(a) for a in OPS.EVENT_ACTIONS),
                *(self._thing_tool(a) for a in OPS.THING_ACTIONS),
                self._cancel_tool(),
                *self._channel_tools()]


class CancelToolIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    op_id: str
    channel_id: str
    password: str | None = None


class BindStartIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    requested_channel_id: str | None = None
    redirect_uri: str | None = None
    action: str = "bind"
    lang: str | None = None


class BindStatusIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    bind_session_id: str


class ListIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class UnbindIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    channel_id: str
