"""The warp-link front door: ``/private/ws`` (warp-link over WebSocket), ``/private/readyz``
and the transport hints of ``GET /gateway/profile``.

``/private/ws``: subprotocol ``pushgo-private.v1`` (required, as PushGo Gateway v1.2.9: 400
``missing_websocket_subprotocol`` without it), one binary message per frame. The gateway token
may come as ``Authorization: Bearer`` on the upgrade (then the ClientHello need not repeat it)
or in the ClientHello; the session (``pushgo.delivery.private_link``) decides. A text message
or one over the frame limit ends the session with an Error frame. With WSS not among
``PUSHGO_PRIVATE_TRANSPORTS`` the route answers 503 ``private_wss_transport_disabled``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from pushgo.api.envelope import error_response, ok
from pushgo.api.front import bearer_matches
from pushgo.delivery.private_link import FrameRefused, LinkClosed, PrivateLinks
from pushgo.errors import GatewayError, codes
from pushgo.protocol import warplink as W
from pushgo.settings import Settings

SUBPROTOCOL = "pushgo-private.v1"
PATH = "/private/ws"
#: How long the closing handshake may take once the session has ended.
CLOSE_TIMEOUT_S = 2.0


class WebSocketLink:
    """A :class:`~pushgo.delivery.private_link.Link` over one accepted WebSocket."""

    transport = "wss"
    __slots__ = ("max_frame", "token_accepted", "ws")

    def __init__(self, ws: WebSocket, max_frame_bytes: int, token_accepted: bool) -> None:
        self.ws = ws
        self.max_frame = max_frame_bytes + 2  # the type and flags bytes
        self.token_accepted = token_accepted

    async def send(self, frame: bytes) -> None:
        try:
            await self.ws.send_bytes(frame)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise LinkClosed(str(exc)) from exc

    async def receive(self) -> bytes:
        try:
            message = await self.ws.receive()
        except (RuntimeError, OSError) as exc:
            raise LinkClosed(str(exc)) from exc
        if message["type"] == "websocket.disconnect":
            raise LinkClosed("websocket closed")
        data = message.get("bytes")
        if data is None:
            raise FrameRefused(W.E_INVALID_FRAME, "text messages are not frames")
        if len(data) > self.max_frame:
            raise FrameRefused(W.E_FRAME_TOO_LARGE, f"frame of {len(data)} bytes")
        return bytes(data)


def private_enabled(settings: Settings) -> bool:
    """Whether any warp-link transport serves: what the apps' private mode needs."""
    return bool(settings.private_transports)


def wss_port(public_base_url: str | None) -> int:
    """The port the apps dial for WSS: the public base URL's (its scheme's default), else
    443 (as PushGo Gateway v1.2.9)."""
    if not public_base_url:
        return 443
    parts = urlsplit(public_base_url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return port or (80 if parts.scheme == "http" else 443)


def transport_hints(settings: Settings) -> dict[str, Any]:
    """The warp-link fields of the profile's ``transport`` (v1.2.9's names): only the
    transports that listen are enabled; ``wss_url`` is omitted without a public base URL."""
    wss = "wss" in settings.private_transports
    base = settings.public_base_url
    hints: dict[str, Any] = {
        # As v1.2.9: the QUIC port only when QUIC listens, the TCP port always.
        "quic_enabled": "quic" in settings.private_transports,
        "quic_port": settings.private_quic_port if "quic" in settings.private_transports
        else None,
        "tcp_enabled": "tcp" in settings.private_transports,
        "tcp_port": settings.private_tcp_port,
        "wss_enabled": wss, "wss_port": wss_port(base), "wss_path": PATH,
        "ws_subprotocol": SUBPROTOCOL,
    }
    if wss and base:
        scheme, rest = base.split("://", 1)
        hints["wss_url"] = f"{'wss' if scheme == 'https' else 'ws'}://{rest.rstrip('/')}{PATH}"
    return hints


async def _deny(ws: WebSocket, err: GatewayError) -> None:
    """Refuse an upgrade with an HTTP answer (403 where the server cannot send one)."""
    try:
        await ws.send_denial_response(error_response(err))
    except RuntimeError:
        await ws.close(code=1008)


def private_routes(settings: Settings, links: PrivateLinks | None) -> list[BaseRoute]:
    """``/private/ws`` and ``/private/readyz``; ``links`` is None when WSS is off."""

    async def readyz(_request: Request) -> Response:
        if not private_enabled(settings):
            err = GatewayError(codes.PRIVATE_CHANNEL_RUNTIME_UNAVAILABLE,
                               "private runtime unavailable")
            err.retry_after = 60
            raise err
        return ok({"status": "ok", "private_channel_enabled": True,
                   "private_runtime_ready": True})

    async def disabled(ws: WebSocket) -> None:
        err = GatewayError(codes.PRIVATE_WSS_TRANSPORT_DISABLED,
                           "private wss transport is disabled")
        err.retry_after = 3600
        await _deny(ws, err)

    endpoint = disabled if links is None else _ws_endpoint(links)
    return [Route("/private/readyz", readyz, methods=["GET"]),
            WebSocketRoute(PATH, endpoint)]


def _ws_endpoint(links: PrivateLinks) -> Any:
    async def endpoint(ws: WebSocket) -> None:
        offered = ws.scope.get("subprotocols") or []
        if SUBPROTOCOL not in offered:
            await _deny(ws, GatewayError(codes.MISSING_WEBSOCKET_SUBPROTOCOL,
                                         f"missing websocket subprotocol `{SUBPROTOCOL}`"))
            return
        await ws.accept(subprotocol=SUBPROTOCOL)
        token = links.config.token
        accepted = token is not None and bearer_matches(ws.headers.get("authorization"), token)
        await links.serve(WebSocketLink(ws, links.config.max_frame_bytes, accepted))
        with anyio.move_on_after(CLOSE_TIMEOUT_S):
            try:
                await ws.close()
            except (RuntimeError, OSError):
                pass  # already closed by the peer

    return endpoint
