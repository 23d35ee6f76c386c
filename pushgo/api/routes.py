"""The HTTP API routes (the README's API table). Thin: decode, call a service, encode."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from pushgo.api.envelope import body_as, convert, ok
from pushgo.api.page import render_index
from pushgo.delivery.private import PrivateStreams
from pushgo.errors import GatewayError, InvalidInput, codes
from pushgo.protocol import fields as F
from pushgo.protocol import operations as OPS
from pushgo.protocol import wire as W
from pushgo.service import Services

Handler = Callable[[Request], Awaitable[Response]]


def _query(request: Request, allowed: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key not in allowed:
            raise InvalidInput(codes.INVALID_QUERY, f"unknown query parameter {key!r}")
        if "\x00" in value:  # as JSON bodies (envelope.decode): PostgreSQL cannot store it
            raise InvalidInput(codes.INVALID_QUERY, f"query parameter {key!r} contains U+0000")
        out.setdefault(key, value)
    return out


def build_routes(svc: Services, streams: PrivateStreams,
                 not_ready: Callable[[], Awaitable[str | None]]) -> list[BaseRoute]:
    settings = svc.ctx.settings

    def json_route(kind: type[Any], call: Callable[[Any], Awaitable[Any]]) -> Handler:
        async def handler(request: Request) -> Response:
            return ok(await call(await body_as(request, kind)))

        return handler

    # --- sending ------------------------------------------------------------------------------

    async def post_message(request: Request) -> Response:
        req = await body_as(request, OPS.MessageIn)
        password = OPS.require_password(req.password)
        spec = OPS.message_spec(req)
        return ok((await svc.publisher.send(spec, password)).wire())

    async def get_message(request: Request) -> Response:
        fields = set(OPS.MessageQuery.__struct_fields__)
        query = convert(_query(request, fields), OPS.MessageQuery)
        req = OPS.message_from_query(query)
        password = OPS.require_password(req.password)
        return ok((await svc.publisher.send(OPS.message_spec(req), password)).wire())

    def event_route(action: str) -> Handler:
        kind = OPS.EVENT_ACTIONS[action]

        async def handler(request: Request) -> Response:
            req = await body_as(request, kind)
            password = OPS.require_password(req.password)
            spec = OPS.event_spec(req, action)
            return ok((await svc.publisher.send(spec, password)).wire())

        return handler

    def thing_route(action: str) -> Handler:
        kind = OPS.THING_ACTIONS[action]

        async def handler(request: Request) -> Response:
            req = await body_as(request, kind)
            password = OPS.require_password(req.password)
            spec = OPS.thing_spec(req, action)
            return ok((await svc.publisher.send(spec, password)).wire())

        return handler

    # --- channels -----------------------------------------------------------------------------

    async def channel_exists(request: Request) -> Response:
        query = _query(request, {"channel_id"})
        if "channel_id" not in query:
            raise InvalidInput(codes.CHANNEL_ID_REQUIRED, "channel id must not be empty")
        return ok(await svc.channels.exists(query["channel_id"]))

    # --- private stream -----------------------------------------------------------------------

    async def private_stream(request: Request) -> Response:
        query = _query(request, {"device_key"})
        key = F.device_key(query.get("device_key", ""))
        await svc.devices.require(key)
        last = request.headers.get("last-event-id")
        return StreamingResponse(
            streams.stream(key, last), media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    # --- gateway ------------------------------------------------------------------------------

    async def healthz(_request: Request) -> Response:
        return ok({"status": "ok", "private_channel_enabled": True,
                   "private_runtime_ready": True})

    async def readyz(_request: Request) -> Response:
        # From the gateway's last health probe: answers at once, whatever the database does.
        problem = await not_ready()
        if problem is not None:
            err = GatewayError(codes.NOT_READY, problem)
            err.retry_after = 1
            raise err
        return ok({"status": "ok"})

    async def profile(_request: Request) -> Response:
        base = settings.public_base_url
        return ok({
            "private_channel_enabled": True,
            "private_enabled": True,
            "transport": {
                "sse_enabled": True,
                "sse_path": "/private/stream",
                # Omitted, not null, without a public base URL (as v1.2.9's wss_url).
                **({"sse_url": f"{base.rstrip('/')}/private/stream"} if base else {}),
                "quic_enabled": False, "quic_port": None,
                "tcp_enabled": False, "wss_enabled": False,
            },
            "apns_enabled": settings.apns_configured,
            "fcm_enabled": settings.fcm_configured,
            "mcp_enabled": settings.mcp_enabled,
        })

    async def index(_request: Request) -> Response:
        return HTMLResponse(render_index(settings))

    routes: list[BaseRoute] = [
        Route("/", index, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/gateway/profile", profile, methods=["GET"]),
        Route("/device/register", json_route(W.DeviceRegisterIn, svc.devices.register),
              methods=["POST"]),
        Route("/channel/device", json_route(W.DeviceRouteIn, svc.devices.set_route),
              methods=["POST"]),
        Route("/channel/device/delete",
              json_route(W.DeviceRouteDeleteIn, svc.devices.clear_route), methods=["POST"]),
        Route("/channel/device/provider-token/retire",
              json_route(W.TokenRetireIn, svc.devices.retire_token), methods=["POST"]),
        Route("/channel/subscribe", json_route(W.SubscribeIn, svc.channels.subscribe),
              methods=["POST"]),
        Route("/channel/unsubscribe", json_route(W.UnsubscribeIn, svc.channels.unsubscribe),
              methods=["POST"]),
        Route("/channel/sync", json_route(W.SyncIn, svc.channels.sync), methods=["POST"]),
        Route("/channel/exists", channel_exists, methods=["GET"]),
        Route("/channel/rename", json_route(W.RenameIn, svc.channels.rename), methods=["POST"]),
        Route("/message", post_message, methods=["POST"]),
        Route("/message", get_message, methods=["GET"]),
        Route("/messages/pull", json_route(W.PullIn, svc.inbox.pull), methods=["POST"]),
        Route("/messages/ack", json_route(W.AckIn, svc.inbox.ack), methods=["POST"]),
        Route("/private/stream", private_stream, methods=["GET"]),
    ]
    routes += [Route(f"/event/{a}", event_route(a), methods=["POST"]) for a in OPS.EVENT_ACTIONS]
    routes += [Route(f"/thing/{a}", thing_route(a), methods=["POST"]) for a in OPS.THING_ACTIONS]
    return routes
