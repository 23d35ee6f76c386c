"""The HTTP API routes (the README's API table). Thin: decode, call a service, encode."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from pushgo.api.envelope import body_as, convert, ok, query_params, read_body
from pushgo.api.page import render_index
from pushgo.api.private_ws import private_enabled, transport_hints
from pushgo.delivery.private import PrivateStreams
from pushgo.errors import GatewayError, InvalidInput, codes
from pushgo.protocol import fields as field_rules
from pushgo.protocol import liveactivity as LA
from pushgo.protocol import operations as OPS
from pushgo.protocol import wire
from pushgo.service import Services
from pushgo.service.sendstatus import send_status

Handler = Callable[[Request], Awaitable[Response]]


def build_routes(svc: Services, streams: PrivateStreams,
                 not_ready: Callable[[], Awaitable[str | None]]) -> list[BaseRoute]:
    return [*_gateway_routes(svc, not_ready), *_device_routes(svc, streams),
            *_send_routes(svc)]


def _json_route(kind: type[Any], call: Callable[[Any], Awaitable[Any]]) -> Handler:
    async def handler(request: Request) -> Response:
        return ok(await call(await body_as(request, kind)))

    return handler


def _send_routes(svc: Services) -> list[BaseRoute]:
    """POST/GET /message, /event/*, /thing/*: decode, check the password is there, send."""

    async def post_message(request: Request) -> Response:
        req = await body_as(request, OPS.MessageIn)
        password = OPS.require_password(req.password)
        spec = OPS.message_spec(req)
        return ok((await svc.publisher.send(spec, password)).wire())

    async def get_message(request: Request) -> Response:
        fields = set(OPS.MessageQuery.__struct_fields__)
        query = convert(query_params(request, fields), OPS.MessageQuery)
        req = OPS.message_from_query(query)
        password = OPS.require_password(req.password)
        return ok((await svc.publisher.send(OPS.message_spec(req), password)).wire())

    def lifecycle_route(kind: type[Any], to_spec: Callable[[Any], OPS.OpSpec]) -> Handler:
        async def handler(request: Request) -> Response:
            req = await body_as(request, kind)
            password = OPS.require_password(req.password)
            return ok((await svc.publisher.send(to_spec(req), password)).wire())

        return handler

    def event_route(action: str) -> Callable[[Any], OPS.OpSpec]:
        return lambda req: OPS.event_spec(req, action, now_ms=svc.ctx.now())

    async def thing_event_close(request: Request) -> Response:
        req = await body_as(request, OPS.EventCloseIn)
        req = OPS.scoped_to_thing(req, request.path_params["thing_id"])
        password = OPS.require_password(req.password)
        spec = OPS.event_spec(req, "close", now_ms=svc.ctx.now())
        return ok((await svc.publisher.send(spec, password)).wire())

    async def get_send_status(request: Request) -> Response:
        query_params(request)
        return ok(send_status(await svc.status.get(request.path_params["op_id"])))

    async def cancel_operation(request: Request) -> Response:
        # No body at all: a gateway token cancels every operation of the op_id.
        if request.headers.get("content-type"):
            req = await body_as(request, OPS.CancelIn)
        elif (await read_body(request)).strip():
            raise InvalidInput(codes.MISSING_JSON_CONTENT_TYPE,
                               "missing Content-Type: application/json")
        else:
            req = OPS.CancelIn()
        return ok(await svc.schedules.cancel(request.path_params["op_id"], req))

    routes: list[BaseRoute] = [
        Route("/message", post_message, methods=["POST"]),
        Route("/message", get_message, methods=["GET"]),
        Route("/thing/{thing_id}/event/close", thing_event_close, methods=["POST"]),
        Route("/send_status/{op_id}", get_send_status, methods=["GET"]),
        Route("/operations/{op_id}/cancel", cancel_operation, methods=["POST"]),
    ]
    routes += [Route(f"/event/{a}", lifecycle_route(kind, event_route(a)),
                     methods=["POST"]) for a, kind in OPS.EVENT_ACTIONS.items()]
    routes += [Route(f"/thing/{a}", lifecycle_route(kind, partial(OPS.thing_spec, action=a)),
                     methods=["POST"]) for a, kind in OPS.THING_ACTIONS.items()]
    return routes


def _device_routes(svc: Services, streams: PrivateStreams) -> list[BaseRoute]:
    """Devices, their routes and subscriptions, their inbox and private stream."""

    async def channel_exists(request: Request) -> Response:
        query = query_params(request, {"channel_id"})
        if "channel_id" not in query:
            raise InvalidInput(codes.CHANNEL_ID_REQUIRED, "channel id must not be empty")
        return ok(await svc.channels.exists(query["channel_id"]))

    async def private_stream(request: Request) -> Response:
        query = query_params(request, {"device_key"})
        key = field_rules.device_key(query.get("device_key", ""))
        await svc.devices.require(key)
        last = request.headers.get("last-event-id")
        return StreamingResponse(
            streams.stream(key, last), media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    def post(path: str, kind: type[Any], call: Callable[[Any], Awaitable[Any]]) -> Route:
        return Route(path, _json_route(kind, call), methods=["POST"])

    return [
        post("/device/register", wire.DeviceRegisterIn, svc.devices.register),
        post("/channel/device", wire.DeviceRouteIn, svc.devices.set_route),
        post("/channel/device/delete", wire.DeviceRouteDeleteIn, svc.devices.clear_route),
        post("/channel/device/provider-token/retire", wire.TokenRetireIn, svc.devices.retire_token),
        post("/device/liveactivity/start-token", LA.StartTokenIn,
             svc.live_activities.set_start_token),
        post("/device/liveactivity/start-token/delete", LA.StartTokenDeleteIn,
             svc.live_activities.clear_start_token),
        post("/device/liveactivity/token", LA.ActivityTokenIn,
             svc.live_activities.set_activity_token),
        post("/device/liveactivity/token/delete", LA.ActivityTokenDeleteIn,
             svc.live_activities.clear_activity_token),
        post("/v1/activity/register", LA.ActivityRegisterIn,
             svc.live_activities.register_keyed),
        post("/v1/activity/unregister", LA.ActivityUnregisterIn,
             svc.live_activities.unregister_keyed),
        post("/channel/subscribe", wire.SubscribeIn, svc.channels.subscribe),
        post("/channel/unsubscribe", wire.UnsubscribeIn, svc.channels.unsubscribe),
        post("/channel/sync", wire.SyncIn, svc.channels.sync),
        Route("/channel/exists", channel_exists, methods=["GET"]),
        post("/channel/rename", wire.RenameIn, svc.channels.rename),
        post("/messages/pull", wire.PullIn, svc.inbox.pull),
        post("/messages/ack", wire.AckIn, svc.inbox.ack),
        post("/v2/messages/pull", wire.PullIn, svc.inbox.pull_v2),
        post("/v2/messages/ack", wire.AckV2In, svc.inbox.ack_v2),
        Route("/private/stream", private_stream, methods=["GET"]),
    ]


def _gateway_routes(svc: Services,
                    not_ready: Callable[[], Awaitable[str | None]]) -> list[BaseRoute]:
    """The index page, health, readiness and the gateway profile."""
    settings = svc.ctx.settings

    async def healthz(_request: Request) -> Response:
        return ok({"status": "ok", "private_channel_enabled": private_enabled(settings),
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
        private = private_enabled(settings)  # a warp-link transport listens
        return ok({
            "private_channel_enabled": private,
            "private_enabled": private,
            "transport": {
                "sse_enabled": True,
                "sse_path": "/private/stream",
                # Omitted, not null, without a public base URL (as v1.2.9's wss_url).
                **({"sse_url": f"{base.rstrip('/')}/private/stream"} if base else {}),
                **transport_hints(settings),
            },
            "apns_enabled": settings.apns_configured,
            "fcm_enabled": settings.fcm_configured,
            "mcp_enabled": settings.mcp_enabled,
        })

    async def index(request: Request) -> Response:
        return HTMLResponse(render_index(settings, request.app.routes))

    return [
        Route("/", index, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/gateway/profile", profile, methods=["GET"]),
    ]
