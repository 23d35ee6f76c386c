"""The admin routes of API keys and the audit log (the ``admin`` scope; the gateway token
has it): ``POST /admin/keys`` (the key is in this answer and nowhere else, ever),
``GET /admin/keys`` (never a secret nor its hash), ``DELETE /admin/keys/{key_id}``,
``GET /admin/audit``. Thin: decode, call pushgo.service.keys / audit, encode.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pushgo.api.envelope import body_as, ok, query_params
from pushgo.errors import InvalidInput, codes
from pushgo.protocol.ids import is_digits
from pushgo.service import Services
from pushgo.service.audit import AuditEntry
from pushgo.service.keys import KeyOut, require_scope
from pushgo.service.principal import Scope


class KeyCreateIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    scopes: list[str]
    channels: list[str] | None = None
    apps: list[str] | None = None
    rate_per_s: float | None = None
    daily_notifications: int | None = None
    weight: int = 1


class KeyCreatedOut(KeyOut, frozen=True, kw_only=True):
    """A new key's row and the key itself: shown in this answer only."""

    key: str


class KeyListOut(msgspec.Struct, kw_only=True):
    keys: list[KeyOut]


class AuditOut(msgspec.Struct, kw_only=True):
    entries: list[AuditEntry]


def created(row: KeyOut, key: str) -> KeyCreatedOut:
    return KeyCreatedOut(key=key, **msgspec.structs.asdict(row))


def _int(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name, "").strip()
    if not raw:
        return None
    if not is_digits(raw) or len(raw) > 18:
        raise InvalidInput(codes.INVALID_QUERY, f"{name} must be a whole number")
    return int(raw)


def key_routes(svc: Services) -> list[BaseRoute]:
    async def create(request: Request) -> Response:
        require_scope(Scope.ADMIN)
        req = await body_as(request, KeyCreateIn)
        row, key = await svc.keys.create(
            req.name, req.scopes, channels=req.channels, apps=req.apps,
            rate_per_s=req.rate_per_s, daily_notifications=req.daily_notifications,
            weight=req.weight)
        return ok(created(row, key), status=201)

    async def listing(request: Request) -> Response:
        require_scope(Scope.ADMIN)
        params = query_params(request, {"all"})
        if params.get("all", "false") not in ("true", "false"):
            raise InvalidInput(codes.INVALID_QUERY, "all must be true or false")
        everything = params.get("all") == "true"
        keys = await svc.keys.list(include_revoked=everything)
        used = await svc.quotas.used_today() if any(k.daily_notifications for k in keys) else {}
        return ok(KeyListOut(keys=[msgspec.structs.replace(
            k, notifications_today=used.get(k.key_id, 0)) for k in keys]))

    async def revoke(request: Request) -> Response:
        require_scope(Scope.ADMIN)
        return ok(await svc.keys.revoke(request.path_params["key_id"]))

    async def audit(request: Request) -> Response:
        require_scope(Scope.ADMIN)
        params = query_params(request, {"limit", "before"})
        limit = _int(params, "limit")
        entries = await svc.audit.recent(100 if limit is None else limit,
                                         _int(params, "before"))
        return ok(AuditOut(entries=entries))

    return [
        Route("/admin/keys", create, methods=["POST"]),
        Route("/admin/keys", listing, methods=["GET"]),
        Route("/admin/keys/{key_id}", revoke, methods=["DELETE"]),
        Route("/admin/audit", audit, methods=["GET"]),
    ]
