"""Operator routes beyond v1.2.9, used by ``pushgo channel create|info``: create a channel
without subscribing a device, and read a channel's name, times and subscriber count.

Behind the gateway token like every API route. Thin: decode, call a service, encode.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pushgo.api.envelope import TOKEN_QUERY, body_as, ok
from pushgo.errors import InvalidInput, codes
from pushgo.service import Services


class ChannelCreateIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    channel_name: str
    password: str


def admin_routes(svc: Services) -> list[BaseRoute]:
    async def create(request: Request) -> Response:
        req = await body_as(request, ChannelCreateIn)
        return ok(await svc.channels.create(req.channel_name, req.password))

    async def info(request: Request) -> Response:
        params = request.query_params
        if (any(k not in ("channel_id", TOKEN_QUERY) for k in params)
                or "\x00" in params.get("channel_id", "")):
            raise InvalidInput(codes.INVALID_QUERY, "only channel_id is accepted")
        if not params.get("channel_id", "").strip():
            raise InvalidInput(codes.CHANNEL_ID_REQUIRED, "channel id must not be empty")
        return ok(await svc.channels.info(params["channel_id"]))

    return [
        Route("/channel/create", create, methods=["POST"]),
        Route("/channel/info", info, methods=["GET"]),
    ]
