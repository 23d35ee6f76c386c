"""The MCP conformance fixtures on pushgo's own MCP engine: an ASGI app serving, at ``/mcp``,
the tools and resources the official conformance suite (``@modelcontextprotocol/conformance``)
calls by name, through the same dispatcher and Streamable HTTP transport as the gateway's
``/mcp`` (pushgo.mcp.dispatcher, pushgo.mcp.transport). Only the tool and resource tables
differ; no store, no gateway services.

    python -m pushgo.testing.mcp_fixtures --port 7798     # then: conformance server --url …/mcp

Tools: ``test_simple_text``, ``test_image_content``, ``test_audio_content``,
``test_embedded_resource``, ``test_multiple_content_types``, ``test_error_handling``,
``test_tool_with_progress``, ``json_schema_2020_12_tool``, ``test_reconnection`` (ends its
SSE response early and answers on the resumed stream, SEP-1699), ``test_missing_capability``
(needs the client's ``sampling`` capability: -32021 without it) and ``test_logging_tool``
(never logs: the engine sends no ``notifications/message``). Resources ``test://static-text``,
``test://static-binary``, ``test://watched-resource`` (takes resources/subscribe) and the
template ``test://template/{id}/data``.

For tests and the conformance run only: no authentication (bind it to loopback).
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio

from pushgo import __version__
from pushgo.mcp.auth import SCOPE_TOOLS, LegacyAuth, Principal
from pushgo.mcp.dispatcher import Dispatcher
from pushgo.mcp.http import Receive, Scope, Send
from pushgo.mcp.resources import not_found
from pushgo.mcp.sessions import Notifier, SessionStore
from pushgo.mcp.tools import Handler, ToolContext, ToolDef, ToolResult
from pushgo.mcp.transport import McpEndpoint
from pushgo.protocol import jsonrpc as J
from pushgo.protocol import mcp as M

SERVER_INFO = M.Implementation(name="pushgo-mcp-fixtures", title="pushgo MCP conformance fixtures",
                               version=__version__)
INSTRUCTIONS = "Fixture tools and resources of the MCP conformance suite, served by pushgo's MCP engine."

def _png(rgba: bytes = b"\xff\x00\x00\xff") -> bytes:
    """A 1x1 RGBA PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + \
        chunk(b"IDAT", zlib.compress(b"\x00" + rgba)) + chunk(b"IEND", b"")


def _wav(samples: int = 80, rate: int = 8000) -> bytes:
    data = b"\x00\x00" * samples
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + \
        struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


PNG_1X1 = base64.b64encode(_png()).decode()
WAV_SILENCE = base64.b64encode(_wav()).decode()  # 16-bit mono, 8 kHz, 80 samples

STATIC_TEXT = "This is the content of the static text resource."
WATCHED = "test://watched-resource"
WATCHED_TEXT = "A resource that takes subscriptions."
TEMPLATE = "test://template/{id}/data"
_TEMPLATE_PREFIX, _TEMPLATE_SUFFIX = "test://template/", "/data"

NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
#: Keywords a server must pass through untouched (SEP-1613, SEP-2106): $schema, $defs with
#: an $anchor, additionalProperties, allOf/anyOf and if/then/else.
JSON_SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {"address": {"$anchor": "address", "type": "object", "properties": {
        "street": {"type": "string"}, "city": {"type": "string"}}}},
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"},
                   "contact": {"type": "string"}, "kind": {"enum": ["person", "company"]}},
    "allOf": [{"anyOf": [{"required": ["name"]}, {"required": ["contact"]}]}],
    "if": {"properties": {"kind": {"const": "company"}}, "required": ["kind"]},
    "then": {"required": ["address"]},
    "else": {},
    "additionalProperties": False,
}


def _text(text: str) -> ToolResult:
    return ToolResult([M.TextContent(text)])


async def simple_text(_args: dict[str, Any], _ctx: ToolContext) -> ToolResult:
    return _text("This is a simple text response for testing.")


async def image_content(_args: dict[str, Any], _ctx: ToolContext) -> ToolResult:
    return ToolResult([M.ImageContent(PNG_1X1, "image/png")])


async def audio_content(_args: dict[str, Any], _ctx: ToolContext) -> ToolResult:
    return ToolResult([M.AudioContent(WAV_SILENCE, "audio/wav")])


def _embedded() -> M.EmbeddedResource:
    return M.EmbeddedResource(M.TextResourceContents(
        uri="test://embedded-resource", mimeType="text/plain",
        text="This is an embedded resource content."))


async def embedded_resource(_args: dict[str, Any], _ctx: ToolContext) -> ToolResult:
    return ToolResult([_embedded()])


async def multiple_content_types(_args: dict[str, Any], _ctx: ToolContext) -> ToolResult:
    return ToolResult([M.TextContent("Multiple content types test:"),
                       M.ImageContent(PNG_1X1, "image/png"), _embedded()])


async def error_handling(_args: dict[str, Any], _ctx: ToolContext) -> ToolResult:
    return ToolResult([M.TextContent("This tool intentionally returns an error for testing")],
                      is_error=True)


async def tool_with_progress(_args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    for done in (0, 50, 100):
        await ctx.progress(done, 100, f"step {done // 50 + 1} of 3")
        await anyio.sleep(0.05)
    return _text("Progress test completed")


async def json_schema_tool(args: dict[str, Any], _ctx: ToolContext) -> ToolResult:
    return _text("Received: " + json.dumps(args, sort_keys=True))


async def reconnection(_args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    """Ends its SSE response (the client polls back with Last-Event-ID), then answers."""
    if await ctx.end_response():
        await anyio.sleep(0.5)
    return _text("Reconnection test completed")


async def missing_capability(_args: dict[str, Any], _ctx: ToolContext) -> ToolResult:
    return _text("The client declares sampling.")


async def logging_tool(_args: dict[str, Any], _ctx: ToolContext) -> ToolResult:
    return _text("Nothing was logged: this server sends no notifications/message.")


def _tool(name: str, description: str, handler: Handler, *,
          schema: dict[str, Any] | None = None, requires: dict[str, Any] | None = None
          ) -> ToolDef:
    return ToolDef(name=name, title=name, description=description,
                   input_schema=schema or NO_ARGS, output_schema=None,
                   annotations=M.ToolAnnotations(readOnlyHint=True), scope=SCOPE_TOOLS,
                   handler=handler, requires=requires)


TOOLS = [
    _tool("test_simple_text", "Returns one text content item.", simple_text),
    _tool("test_image_content", "Returns one PNG image.", image_content),
    _tool("test_audio_content", "Returns one WAV audio clip.", audio_content),
    _tool("test_embedded_resource", "Returns an embedded text resource.", embedded_resource),
    _tool("test_multiple_content_types", "Returns text, an image and an embedded resource.",
          multiple_content_types),
    _tool("test_error_handling", "Returns a tool error (isError).", error_handling),
    _tool("test_tool_with_progress", "Reports progress three times, then answers.",
          tool_with_progress),
    _tool("json_schema_2020_12_tool", "Takes arguments described by JSON Schema 2020-12.",
          json_schema_tool, schema=JSON_SCHEMA_2020_12),
    _tool("test_reconnection", "Ends its SSE response early; the answer follows on the "
          "stream resumed with Last-Event-ID.", reconnection),
    _tool("test_missing_capability", "Needs the client's sampling capability.",
          missing_capability, requires={"sampling": {}}),
    _tool("test_logging_tool", "Sends no log messages.", logging_tool),
]


class FixtureTools:
    def __init__(self, tools: Sequence[ToolDef] = TOOLS) -> None:
        self._tools = {t.name: t for t in tools}
        self._wire = [t.wire() for t in tools]

    def wire(self, oauth: bool | None = None) -> list[M.Tool]:
        return self._wire

    def get(self, name: str) -> ToolDef:
        tool = self._tools.get(name)
        if tool is None:
            raise J.RpcError(J.INVALID_PARAMS, f"Unknown tool: {name}", {"name": name})
        return tool


class FixtureResources:
    def templates(self) -> list[M.ResourceTemplate]:
        return [M.ResourceTemplate(uriTemplate=TEMPLATE, name="template-data",
                                   title="Template data", mimeType="application/json",
                                   description="Data for the id in the URI.")]

    async def listed(self, principal: Principal) -> list[M.Resource]:
        return [M.Resource(uri="test://static-text", name="static-text", mimeType="text/plain",
                           title="Static text"),
                M.Resource(uri="test://static-binary", name="static-binary",
                           mimeType="image/png", title="Static binary")]

    def watchable(self, uri: str) -> bool:
        return uri == WATCHED

    async def watch(self, uri: str, principal: Principal) -> AsyncIterator[None]:
        """The watched resource never changes by itself: its watcher waits until the
        client unsubscribes or leaves."""
        await anyio.sleep_forever()
        yield None

    async def read(self, uri: str, principal: Principal, *, modern: bool
                   ) -> list[M.ResourceContents]:
        if uri == WATCHED:
            return [M.TextResourceContents(uri=uri, mimeType="text/plain", text=WATCHED_TEXT)]
        if uri == "test://static-text":
            return [M.TextResourceContents(uri=uri, mimeType="text/plain", text=STATIC_TEXT)]
        if uri == "test://static-binary":
            return [M.BlobResourceContents(uri=uri, mimeType="image/png", blob=PNG_1X1)]
        if uri.startswith(_TEMPLATE_PREFIX) and uri.endswith(_TEMPLATE_SUFFIX):
            rid = uri[len(_TEMPLATE_PREFIX):-len(_TEMPLATE_SUFFIX)]
            if rid and "/" not in rid:
                doc = {"id": rid, "templateTest": True, "data": f"Data for ID: {rid}"}
                return [M.TextResourceContents(uri=uri, mimeType="application/json",
                                               text=json.dumps(doc))]
        raise not_found(uri, modern=modern)


class FixtureApp:
    """ASGI: ``/mcp`` (the engine), ``/healthz``; anything else 404."""

    def __init__(self, *, keepalive_s: float = 15.0) -> None:
        auth = LegacyAuth(None)
        self.dispatcher = Dispatcher(FixtureTools(), FixtureResources(), auth,
                                     server_info=SERVER_INFO, instructions=INSTRUCTIONS)
        self.sessions = SessionStore()
        self.notifier = Notifier()
        self.endpoint = McpEndpoint(self.dispatcher, auth, self.sessions, self.notifier,
                                    public_base_url=None, keepalive_s=keepalive_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    self.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"] == "/mcp":
            await self.endpoint(scope, receive, send)
            return
        status = 200 if scope["path"] == "/healthz" else 404
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok" if status == 200 else b""})

    def close(self) -> None:
        self.notifier.close()
        self.sessions.close_all()


def main(argv: list[str] | None = None) -> None:
    """Serve the MCP conformance fixtures on pushgo's MCP engine until interrupted."""
    import argparse

    from hypercorn.config import Config

    parser = argparse.ArgumentParser(prog="python -m pushgo.testing.mcp_fixtures",
                                     description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7798)
    parser.add_argument("--backend", choices=("trio", "asyncio"), default="trio")
    args = parser.parse_args(argv)
    config = Config()
    config.bind = [f"{args.host}:{args.port}"]
    config.accesslog = None
    config.graceful_timeout = 1
    app: Any = FixtureApp()  # an ASGI callable; hypercorn types its own scope dicts

    async def run() -> None:
        if args.backend == "trio":
            from hypercorn.trio import serve
        else:
            from hypercorn.asyncio import serve  # type: ignore[assignment]
        print(f"mcp fixtures on http://{args.host}:{args.port}/mcp", flush=True)
        await serve(app, config)

    try:
        anyio.run(run, backend=args.backend)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
