"""The senders of apps other than ``default``: one per (route, app), each with its own
connection pool and credentials, built at an app's first delivery and started under this
object's task group (run by the pump).

Every ``REFRESH_S`` the stored apps are read again (pushgo.service.apps): the senders of an
app removed or replaced are stopped, so every process — each ``--workers`` one too — follows
``pushgo app add``/``remove`` without a restart. An app this process has not seen yet is read
from the store at its first delivery. A delivery whose app no longer exists fails with the
reason ``app_not_found:<name>``; one whose app lacks its route, ``provider_not_configured``.

Must not import pushgo.store or pushgo.api.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import anyio.abc

from pushgo.delivery.providers import build_app_senders
from pushgo.protocol.apps import App
from pushgo.push.sender import ProviderSender, ResultBuffer, stop_senders
from pushgo.service.apps import REFRESH_S, Apps
from pushgo.settings import Settings

log = logging.getLogger("pushgo.delivery")

#: Seconds a stopped app's senders get to finish the streams in flight.
STOP_GRACE_S = 5.0


class AppSenders:
    def __init__(self, settings: Settings, apps: Apps, results: ResultBuffer, *,
                 clock_ms: Callable[[], int]) -> None:
        self.settings = settings
        self.apps = apps
        self.results = results
        self.clock_ms = clock_ms
        #: app name → (the definition its senders were built from, route → sender)
        self.built: dict[str, tuple[App, dict[str, ProviderSender]]] = {}
        #: Told when a sender's connection fails to open (route, error): the route's breaker.
        self.on_connect_failed: Callable[[str, BaseException], None] | None = None
        self._tg: anyio.abc.TaskGroup | None = None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                  ) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            try:
                while True:
                    await anyio.sleep(REFRESH_S)
                    await self._refresh()
            finally:
                self._tg = None
                with anyio.CancelScope(shield=True):
                    await stop_senders([s for _, ss in self.built.values() for s in ss.values()],
                                       0)

    async def _refresh(self) -> None:
        try:
            changed = await self.apps.refresh()
        except Exception as exc:  # the store is down: keep what is built, try again later
            log.warning("reading the apps failed", extra={"fields": {"error": str(exc)}})
            return
        for name in changed:
            await self._stop(name)

    async def _stop(self, name: str) -> None:
        entry = self.built.pop(name, None)
        if entry is not None:
            log.info("app senders stopped", extra={"fields": {"app": name}})
            await stop_senders(entry[1].values(), STOP_GRACE_S)

    async def sender(self, route: str, name: str) -> ProviderSender | str:
        """The sender of ``route`` for app ``name``, or the reason there is none."""
        app = self.apps.known(name) or await self.apps.lookup(name)
        if app is None:
            await self._stop(name)
            return f"app_not_found:{name}"
        entry = self.built.get(name)
        if entry is not None and entry[0] != app:
            await self._stop(name)
            entry = None
        if entry is None:
            senders = await self._start(app)
            if senders is None:
                return f"app_credentials_unusable:{name}"
            entry = self.built[name] = (app, senders)
        return entry[1].get(route) or "provider_not_configured"

    async def _start(self, app: App) -> dict[str, ProviderSender] | None:
        if self._tg is None:
            raise RuntimeError("app senders are not running")
        try:
            senders = build_app_senders(app, self.settings, self.results,
                                        clock_ms=self.clock_ms)
        except Exception as exc:  # a key file gone since the app was added
            log.warning("app senders not built", extra={"fields": {"app": app.name,
                                                                   "error": str(exc)}})
            return None
        for route, sender in senders.items():
            if route in ("apns", "fcm"):  # WNS: the failure reaches its origin's breaker
                sender.pool.on_connect_failed = (
                    lambda error, r=route: self._connect_failed(r, error))
            await self._tg.start(sender.run)
        log.info("app senders started", extra={"fields": {"app": app.name,
                                                          "routes": sorted(senders)}})
        return senders

    def _connect_failed(self, route: str, error: BaseException) -> None:
        if self.on_connect_failed is not None:
            self.on_connect_failed(route, error)

    def of_route(self, route: str) -> list[ProviderSender]:
        """Every app sender of ``route`` (the pump gives their jobs back when its breaker
        opens)."""
        return [ss[route] for _, ss in self.built.values() if route in ss]
