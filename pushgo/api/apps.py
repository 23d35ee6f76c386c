"""The admin API of apps: ``GET /admin/apps``, ``POST /admin/apps``,
``DELETE /admin/apps/{name}``. Thin: decode, call ``svc.apps`` (which checks the admin scope),
encode. Never answers a secret.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pushgo.api.envelope import body_as, ok
from pushgo.protocol.apps import AppIn, AppOut, AppsOut
from pushgo.service import Services
from pushgo.service.apps import AppInfo


def _out(info: AppInfo) -> AppOut:
    return AppOut(name=info.name, source=info.source, routes=list(info.routes),
                  config=info.config, devices=info.devices)


def app_routes(svc: Services) -> list[BaseRoute]:
    async def listing(_request: Request) -> Response:
        return ok(AppsOut(apps=[_out(i) for i in await svc.apps.list()]))

    async def create(request: Request) -> Response:
        req = await body_as(request, AppIn)
        return ok(_out(await svc.apps.create({"name": req.name, **req.doc()})))

    async def remove(request: Request) -> Response:
        await svc.apps.remove(request.path_params["name"])
        return ok({"removed": request.path_params["name"]})

    return [
        Route("/admin/apps", listing, methods=["GET"]),
        Route("/admin/apps", create, methods=["POST"]),
        Route("/admin/apps/{name}", remove, methods=["DELETE"]),
    ]
