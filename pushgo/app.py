"""Wiring: settings → store → services → senders → routes, and the root task group that owns
every background task for the life of the gateway (the lifespan).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from pushgo.api.admin import key_routes
from pushgo.api.apps import app_routes
from pushgo.api.bulk import build_bulk_routes
from pushgo.api.compat import compat_routes
from pushgo.api.console import PUBLIC_PATHS as CONSOLE_PUBLIC_PATHS
from pushgo.api.console import console_routes
from pushgo.api.envelope import error_response
from pushgo.api.front import Front
from pushgo.api.openapi import DOCS_PATH, OPENAPI_PATH, docs_routes
from pushgo.api.operator import admin_routes
from pushgo.api.private_ws import private_routes
from pushgo.api.receipts import receipt_routes
from pushgo.api.routes import build_routes
from pushgo.api.webpush import PUBLIC_PATHS as WEBPUSH_PUBLIC_PATHS
from pushgo.api.webpush import webpush_routes
from pushgo.delivery.appsenders import AppSenders
from pushgo.delivery.private import Hub, InboxCalls, PrivateStreams
from pushgo.delivery.private_link import LinkConfig, PrivateLinks
from pushgo.delivery.private_link.quic import QuicTransport
from pushgo.delivery.private_link.tcp import TcpTransport
from pushgo.delivery.providers import attach_vapid, build_senders, check_app
from pushgo.delivery.pump import OutboxPump
from pushgo.delivery.repeats import RepeatDriver
from pushgo.delivery.sampler import Sampler
from pushgo.delivery.scheduler import Scheduler
from pushgo.delivery.wakeups import PgWakeups
from pushgo.errors import GatewayError, StoreUnavailable, codes
from pushgo.mcp import Mcp, build_mcp
from pushgo.metrics import GatewayMetrics
from pushgo.oauth import OAuthServer
from pushgo.push.sender import ResultBuffer, stop_senders
from pushgo.service import Services
from pushgo.service.bulk import Bulk
from pushgo.service.context import Context, wall_ms
from pushgo.service.outbox import OutboxService, instance_identity
from pushgo.settings import Settings
from pushgo.store import Store
from pushgo.store import outbox as outbox_store

log = logging.getLogger("pushgo.app")

#: How often expired deliveries are swept out of the outbox and inboxes.
SWEEP_INTERVAL_S = 60.0
#: How often the store's health is probed (each probe has the store's request deadline);
#: /readyz answers from the last probe and never waits on the database.
HEALTH_INTERVAL_S = 1.0


class Gateway:
    """One gateway: its store, services and ASGI app. ``running()`` owns its background work."""

    def __init__(self, settings: Settings, *, clock: Callable[[], int] = wall_ms,
                 store: Store | None = None, slot: int = 0, workers: int | None = None) -> None:
        """``slot``: this process's worker slot (``pushgo serve --workers``), part of its
        identity in the outbox's leases; ``workers``: how many processes serve together
        (default ``settings.workers``), each enforcing its share of the request rates."""
        self.settings = settings
        self.store = store or Store.from_settings(settings)
        #: Why the store cannot serve (the last health probe's reason), None while it can.
        self.store_problem: str | None = None
        self.ctx = Context(settings, self.store, listeners=[], clock=clock)
        self.results = ResultBuffer()
        self.senders = build_senders(settings, self.results, clock_ms=clock)
        self.outbox = OutboxService(self.store, instance_identity(settings, slot))
        self.services = Services.build(self.ctx, processes=workers or settings.workers,
                                       check_app=check_app)
        self.quotas = self.services.quotas
        self.hub = Hub(InboxCalls(self.services.inbox))
        self.ctx.listeners.insert(0, self.hub)  # streams hear of accepted work first
        #: The senders of apps other than ``default`` (PUSHGO_APPS_FILE, pushgo app add).
        self.app_senders = AppSenders(settings, self.services.apps, self.results,
                                      clock_ms=clock)
        self.pump = OutboxPump(self.ctx, self.outbox, self.senders, self.results,
                               self.app_senders)
        self.ctx.listeners.append(self.pump)
        self.pump.on_results.append(self.services.status.results_written)
        #: Releases scheduled sends when their deliver_at comes.
        self.scheduler = Scheduler(self.ctx, self.services.schedules)
        #: Rounds of sends repeated until acknowledged.
        self.repeats = RepeatDriver(self.ctx, self.services.receipts)
        self.ctx.listeners.append(self.repeats)
        #: The console's history of queue depth and sends (the last hour, in memory).
        self.sampler = Sampler(self.services.console, self.pump)
        self.bulk = Bulk(self.ctx, self.services.channels, self.services.publisher, self.senders,
                         self.services.apps)
        self.streams = PrivateStreams(self.ctx, self.hub, self.services.inbox, self.outbox)
        #: warp-link sessions (the PushGo apps' private mode) over the transports configured.
        config = LinkConfig(token=settings.token, max_sessions=settings.private_max_sessions)
        self.links = PrivateLinks(config, self.hub, self.services.devices, self.services.inbox,
                                  self.outbox)
        self.private_tcp: TcpTransport | None = None
        if "tcp" in settings.private_transports:
            self.private_tcp = TcpTransport.from_settings(self.links, settings)
        self.private_quic: QuicTransport | None = None
        if "quic" in settings.private_transports:
            self.private_quic = QuicTransport.from_settings(self.links, settings)
        # PostgreSQL may be shared by several processes: tell them about work accepted here.
        self.wakeups: PgWakeups | None = None
        if self.store.dialect == "postgresql":
            self.wakeups = PgWakeups(self.ctx, self.outbox, on_reconnect=self._wake_all)
            self.ctx.listeners.append(self.wakeups)
        self._started = False
        routes = build_routes(self.services, self.streams, self.not_ready)
        routes += build_bulk_routes(self.bulk, self.services.status)
        routes += compat_routes(self.services)
        if settings.webpush_enabled:
            routes += webpush_routes(self.services.vapid)
        routes += receipt_routes(self.services.receipts)
        routes += private_routes(
            settings, self.links if "wss" in settings.private_transports else None)
        # /mcp exists only when enabled; otherwise it is an unknown route (404). It comes
        # with the OAuth authorization server unless legacy mode is configured.
        self.mcp: Mcp | None = None
        self.oauth: OAuthServer | None = None
        if settings.mcp_enabled and settings.mcp_auth_mode == "oauth":
            self.oauth = OAuthServer(self.services)
            self.mcp = build_mcp(self.services, auth=self.oauth.auth,
                                 binding=self.oauth.binding)
            self.oauth.attach(self.mcp.notifier)
            routes += self.oauth.routes()
        elif settings.mcp_enabled:
            self.mcp = build_mcp(self.services)
        if self.mcp is not None:
            routes.append(Route("/mcp", self.mcp.endpoint))
        self.metrics = GatewayMetrics(self)
        routes.append(Route("/metrics", self.metrics.endpoint, methods=["GET"]))
        routes += admin_routes(self.services)
        routes += key_routes(self.services)
        routes += console_routes(self.services.console)
        routes += app_routes(self.services)
        routes += docs_routes(settings, self._auth_exempt)
        self.starlette = Starlette(
            routes=routes,
            exception_handlers={
                GatewayError: _on_gateway_error,
                HTTPException: _on_http_error,
                ClientDisconnect: _on_client_gone,
                Exception: _on_unhandled,
            },
            lifespan=self._lifespan,
        )
        self.asgi = Front(self.starlette, self.starlette.router, token=settings.token,
                          exempt=self._auth_exempt, on_request=self.metrics.on_request,
                          trusted_proxies=settings.trusted_proxies,
                          body_timeout_s=settings.http_body_timeout_s,
                          resolve=self.services.keys.resolve, quotas=self.quotas)

    def _auth_exempt(self, path: str) -> bool:
        if path in (OPENAPI_PATH, DOCS_PATH):  # the API's description: nothing else
            return True
        if path in WEBPUSH_PUBLIC_PATHS and self.settings.webpush_enabled:
            return True  # the subscribe page, its worker and the public key: no secrets
        if path in CONSOLE_PUBLIC_PATHS:
            return True  # the console's page holds no data; its calls carry a credential
        if not self.settings.mcp_enabled:
            return False
        return (path == "/mcp" or path.startswith(("/mcp/", "/oauth/", "/.well-known/")))

    def _wake_all(self) -> None:
        self.pump.wake()
        self.hub.wake_all()

    async def ready(self) -> bool:
        return await self.not_ready() is None

    async def not_ready(self) -> str | None:
        """Why the gateway is not ready (None when it is), from the last health probe: no
        database round trip here."""
        if not (self._started and self.pump.ready):
            return "starting"
        if self.store_problem is not None:
            return f"store unavailable: {self.store_problem}"
        return None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Gateway]:
        """Migrate the store, start background tasks; on exit stop them and flush the store."""
        await anyio.to_thread.run_sync(self.store.migrate, self.ctx.now())
        try:
            await self.services.apps.start()
            if self.settings.webpush_enabled:
                attach_vapid(self.senders, await self.services.vapid.ensure())
            if self.oauth is not None:
                await self.oauth.start()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._sweep_forever)
                tg.start_soon(self._probe_forever)
                if self.oauth is not None:
                    tg.start_soon(self.oauth.maintain_forever)
                await tg.start(self.pump.run)
                await tg.start(self.scheduler.run)
                await tg.start(self.repeats.run)
                await tg.start(self.sampler.run)
                if self.private_tcp is not None:
                    await tg.start(self.private_tcp.run)
                if self.private_quic is not None:
                    await tg.start(self.private_quic.run)
                if self.wakeups is not None:
                    await tg.start(self.wakeups.run)
                self._started = True
                try:
                    yield self
                finally:
                    self._started = False
                    if self.mcp is not None:
                        self.mcp.close()
                    with anyio.CancelScope(shield=True):
                        await self.links.shutdown()  # GoAway to every private session
                    with anyio.CancelScope(shield=True):
                        await stop_senders(self.senders.values())
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.store.dispose)

    @asynccontextmanager
    async def _lifespan(self, _app: Any) -> AsyncIterator[None]:
        async with self.running():
            yield

    async def _probe_forever(self) -> None:
        while True:
            problem = await self.store.health()  # bounded by the store's request deadline
            if problem != self.store_problem:
                if problem is None:
                    log.info("store available again")
                else:
                    log.warning("store unhealthy", extra={"fields": {"reason": problem}})
                self.store_problem = problem
            await anyio.sleep(HEALTH_INTERVAL_S)

    async def _sweep_forever(self) -> None:
        while True:
            try:
                # A sweep may take longer than a request: the statement timeout bounds it.
                expired = await self.store.run(
                    outbox_store.expire, self.ctx.now(),
                    deadline_s=self.settings.db_statement_timeout_ms / 1000)
                if expired:
                    log.info("expired deliveries", extra={"fields": {"count": expired}})
                await self.quotas.purge()  # the daily counts of past days
            except StoreUnavailable as exc:  # named reason, no traceback: tried next round
                log.warning("expiry sweep failed", extra={"fields": {"error": exc.message}})
            except Exception:
                log.exception("expiry sweep failed")
            await anyio.sleep(SWEEP_INTERVAL_S)


async def _on_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc, request)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        err = GatewayError(codes.METHOD_NOT_ALLOWED, "method not allowed")
        resp = error_response(err, request)
        if exc.headers:
            resp.headers.update(exc.headers)
        return resp
    if exc.status_code == 404:
        return error_response(GatewayError(codes.ROUTE_NOT_FOUND, "404 Not Found"),
                              request)
    return error_response(GatewayError(codes.HTTP_ERROR, str(exc.detail),
                                       status=exc.status_code), request)


async def _on_client_gone(_request: Request, _exc: Exception) -> Response:
    # The client left in the middle of its body: nobody reads this; the front door counts
    # and logs the request as 499, not as a server error.
    return Response(status_code=499)


async def _on_unhandled(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc,
              extra={"fields": {"request_id": request.scope.get("state", {}).get("request_id")}})
    return error_response(GatewayError(codes.INTERNAL_ERROR, "internal error"),
                          request)
