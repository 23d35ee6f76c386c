"""Apps: the mobile apps one gateway sends for, each with its own provider credentials.

Two sources share one namespace: the TOML file of ``PUSHGO_APPS_FILE`` (read once at start,
every error naming its app and field) and the ``apps`` table (``pushgo app add``,
``POST /admin/apps``). A name is one or the other: adding a name the file defines is refused
(``app_exists``), and a file that defines a stored app's name stops start-up. ``default`` is
the app of the ``PUSHGO_APNS_*``/``PUSHGO_FCM_*``/``PUSHGO_WNS_*`` settings and is neither.

Every process keeps the stored apps in memory: ``lookup`` of a name it does not know reads
the table again (an app added by command is used at its first delivery), and the delivery
package calls ``refresh`` every ``REFRESH_S`` so a removed or replaced app stops being used
without a restart. Responses and logs show paths and ids, never the WNS client secret.

Must not import pushgo.api, pushgo.delivery or pushgo.push: reading a key file is the
``check`` function the wiring passes in (pushgo.delivery.providers.check_app).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgspec
from sqlalchemy.engine import Connection

from pushgo.errors import Conflict, Forbidden, InvalidInput, NotFound, codes
from pushgo.protocol import apps as A
from pushgo.protocol.apps import DEFAULT_APP, App, AppError
from pushgo.service import audit
from pushgo.service.context import Context
from pushgo.service.principal import Scope, current
from pushgo.settings import SettingsError
from pushgo.store import apps as apps_store

#: How often a process reads the stored apps again (removed and replaced apps).
REFRESH_S = 5.0


@dataclass(frozen=True, slots=True)
class AppInfo:
    name: str
    source: str  # "settings" (default), "file" or "stored"
    routes: tuple[str, ...]
    config: dict[str, Any]  # App.public(): no secret
    devices: int = 0


def check_paths(app: App) -> App:
    """The files an app names are readable; an FCM app gets its project id from its
    service-account file. (The wiring passes a deeper check that also parses the keys.)"""
    if app.apns is not None and not os.path.isfile(app.apns.key_file):
        raise AppError(app.name, "apns.key_file", f"no readable file at {app.apns.key_file!r}")
    if app.fcm is not None:
        path = app.fcm.credentials_file
        try:
            with open(path, encoding="utf-8") as f:
                project = json.load(f)["project_id"]
        except (OSError, ValueError, KeyError, TypeError):
            raise AppError(app.name, "fcm.credentials_file",
                           f"no service-account JSON with a project_id at {path!r}") from None
        if not isinstance(project, str) or not project:
            raise AppError(app.name, "fcm.credentials_file", "project_id must be a string")
        app = msgspec.structs.replace(app, fcm=msgspec.structs.replace(app.fcm,
                                                                        project_id=project))
    return app


def load_file(path: str, check: Callable[[App], App]) -> dict[str, App]:
    """The apps of ``PUSHGO_APPS_FILE``; any error is a SettingsError naming app and field."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        return {app.name: check(app) for app in A.parse_toml(text)}
    except AppError as exc:
        raise SettingsError(f"invalid PUSHGO_APPS_FILE: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"invalid PUSHGO_APPS_FILE: cannot read it ({exc})") from None


def _decode(config: str) -> App | None:
    try:
        return msgspec.json.decode(config, type=App)
    except msgspec.DecodeError:
        return None  # written by a newer pushgo: not an app this one can use


class Apps:
    def __init__(self, ctx: Context, check: Callable[[App], App] = check_paths) -> None:
        self.ctx = ctx
        self.check = check
        path = ctx.settings.apps_file
        self.file_apps: dict[str, App] = load_file(path, check) if path else {}
        self._stored: dict[str, App] = {}

    # --- reading -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the stored apps; a name the file also defines stops start-up."""
        await self.refresh()
        self.check_unique(self._stored)

    def check_unique(self, stored: Iterable[str]) -> None:
        """A stored app of a name the file defines is a SettingsError naming it."""
        both = sorted(set(stored) & set(self.file_apps))
        if both:
            raise SettingsError(f"invalid PUSHGO_APPS_FILE: app {both[0]!r} is also stored "
                                "(pushgo app add); remove one of them")

    async def refresh(self) -> set[str]:
        """Read the stored apps again; the names removed or changed since the last read."""
        configs = await self.ctx.store.read(apps_store.all_configs)
        fresh = {n: a for n, c in configs.items() if (a := _decode(c)) is not None}
        changed = {n for n, a in self._stored.items() if fresh.get(n) != a}
        self._stored = fresh
        return changed

    def known(self, name: str) -> App | None:
        """An app this process knows of now (no store read)."""
        return self.file_apps.get(name) or self._stored.get(name)

    def routes(self) -> set[str]:
        """The provider routes of the apps this process knows of."""
        return {r for a in (*self.file_apps.values(), *self._stored.values()) for r in a.routes}

    async def lookup(self, name: str) -> App | None:
        """The app of that name, reading the table when this process does not know it yet."""
        app = self.known(name)
        if app is None:
            config = await self.ctx.store.read(apps_store.get_config, name)
            app = _decode(config) if config is not None else None
            if app is not None:
                self._stored[name] = app
        return app

    async def resolve(self, name: str | None) -> str | None:
        """A device's or direct send's app as stored: None for the default app; an unknown
        name is ``app_not_found``."""
        if name is None or not name.strip() or name.strip() == DEFAULT_APP:
            return None
        name = name.strip()
        if not A.is_name(name) or await self.lookup(name) is None:
            shown = name if len(name) <= 64 else name[:64] + "…"
            raise NotFound(codes.APP_NOT_FOUND, f"no app named {shown!r}")
        return name

    async def list(self) -> list[AppInfo]:
        _require_admin()
        configs, counts = await self.ctx.store.read(_listing)
        stored = {n: a for n, c in configs.items() if (a := _decode(c)) is not None}
        s = self.ctx.settings
        default_routes = tuple(r for r, on in (("apns", s.apns_configured),
                                               ("fcm", s.fcm_configured),
                                               ("wns", s.wns_configured)) if on)
        out = [AppInfo(DEFAULT_APP, "settings", default_routes, {"name": DEFAULT_APP})]
        for source, apps in (("file", self.file_apps), ("stored", stored)):
            out += [AppInfo(n, source, a.routes, a.public(), counts.get(n, 0))
                    for n, a in sorted(apps.items())]
        return out

    # --- changing (admin) --------------------------------------------------------------------

    async def create(self, doc: dict[str, Any], *, cli: bool = False) -> AppInfo:
        """A new stored app from its definition (``{"name", "apns"?, "fcm"?, "wns"?}``)."""
        _require_admin()
        name = doc.get("name")
        body = {k: v for k, v in doc.items() if k != "name"}
        try:
            if not isinstance(name, str):
                raise AppError("", "name", "is required")
            app = self.check(A.app_from_doc(name, body))
        except AppError as exc:
            raise InvalidInput(codes.INVALID_APP, str(exc)) from None
        if name == DEFAULT_APP or name in self.file_apps:
            raise Conflict(codes.APP_EXISTS, f"app {name!r} is defined by "
                               + ("the settings" if name == DEFAULT_APP else "PUSHGO_APPS_FILE"))
        actor = audit.AuditLog.actor(cli)
        added = await self.ctx.store.run(partial(
            _insert, app=app, now=self.ctx.now(), actor=actor))
        if not added:
            raise Conflict(codes.APP_EXISTS, f"app {name!r} exists")
        self._stored[name] = app
        return AppInfo(name, "stored", app.routes, app.public())

    async def remove(self, name: str, *, cli: bool = False) -> None:
        _require_admin()
        if name in self.file_apps:
            raise Conflict(codes.APP_EXISTS, f"app {name!r} is defined by PUSHGO_APPS_FILE:"
                                                 " remove it there")
        removed = await self.ctx.store.run(partial(
            _delete, name=name, now=self.ctx.now(), actor=audit.AuditLog.actor(cli)))
        if not removed:
            raise NotFound(codes.APP_NOT_FOUND, f"no app named {name!r}")
        self._stored.pop(name, None)


def _require_admin() -> None:
    if not current().may(Scope.ADMIN):
        raise Forbidden(codes.SCOPE_REQUIRED, "managing apps needs the admin scope")


def _listing(conn: Connection) -> tuple[dict[str, str], dict[str, int]]:
    return apps_store.all_configs(conn), apps_store.device_counts(conn)


def _insert(conn: Connection, *, app: App, now: int, actor: str) -> bool:
    if not apps_store.insert(conn, app.name, msgspec.json.encode(app).decode(), now, actor):
        return False
    audit.write(conn, at=now, actor=actor, action="app.create", target=app.name,
                detail={"routes": list(app.routes)})
    return True


def _delete(conn: Connection, *, name: str, now: int, actor: str) -> bool:
    if not apps_store.delete(conn, name):
        return False
    audit.write(conn, at=now, actor=actor, action="app.remove", target=name)
    return True
