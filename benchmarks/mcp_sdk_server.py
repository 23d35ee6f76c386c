"""The ``mcp`` peer: the official MCP Python SDK server (PyPI ``mcp``, ``MCPServer``) over
Streamable HTTP, served the SDK's own way (uvicorn), hosting an equivalent
``pushgo.message.send``: the same arguments, checked the same way, doing the same work — it calls
an in-process pushgo gateway's send pipeline (its own SQLite database), so the two rows differ
only in the MCP server around the tool.

    python -m benchmarks.mcp_sdk_server --port 8000 --db sqlite:///tmp/x.db
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


def build(db_url: str) -> Any:
    import msgspec
    from mcp.server.mcpserver import MCPServer

    from pushgo.app import Gateway
    from pushgo.protocol import operations as OPS
    from pushgo.settings import Settings

    gateway = Gateway(Settings(db_url=db_url, log_level="warning"))

    @asynccontextmanager
    async def lifespan(_server: Any) -> AsyncIterator[None]:
        async with gateway.running():
            yield

    server = MCPServer("pushgo-bench-peer", lifespan=lifespan)

    @server.tool(name="pushgo.message.send", description="Send a notification to a channel")
    async def send(channel_id: str, password: str, title: str, body: str | None = None,
                   severity: str | None = None) -> dict[str, Any]:
        args = {k: v for k, v in {"channel_id": channel_id, "password": password, "title": title,
                                  "body": body, "severity": severity}.items() if v is not None}
        req = msgspec.convert(args, OPS.MessageIn)
        accepted = await gateway.services.publisher.send(OPS.message_spec(req),
                                                      OPS.require_password(req.password))
        out: dict[str, Any] = msgspec.to_builtins(accepted.wire())
        return out

    return server, gateway


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.mcp_sdk_server")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--db", required=True)
    args = p.parse_args()
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    server, _gateway = build(args.db)
    mcp_app = server.streamable_http_app()

    async def ready(_request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    # The SDK's app (its lifespan starts the session manager and, through ours, the gateway),
    # plus a readiness route for the harness.
    app = Starlette(routes=[Route("/readyz", ready), Mount("/", app=mcp_app)],
                    lifespan=lambda _app: mcp_app.router.lifespan_context(mcp_app))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
