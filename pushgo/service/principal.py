"""Who is asking: the principal a request acts as, and what it may do.

The front door (pushgo.api.front) resolves the request's credential to a Principal and sets
``PRINCIPAL`` for the rest of the request; services read it with ``current()``. The gateway
token (and a gateway without one) is ``ROOT``: every scope, every channel, every app. Code
that runs outside a request (the CLI, the pump, MCP's own OAuth and legacy rules) sees
``ROOT`` too, since it authorises by its own means.

Must not import pushgo.api, pushgo.mcp or starlette.
"""

from __future__ import annotations

from contextvars import ContextVar
from enum import StrEnum

import msgspec


class Scope(StrEnum):
    """What a key may do. A route needs one of these (pushgo.api decides which)."""

    SEND = "send"          # messages, events and things to channels (its channels, when listed)
    DIRECT = "direct"      # direct sends to provider tokens (bulk ``tokens``)
    STATUS = "status"      # read delivery status, cancel its own operations
    DEVICES = "devices"    # device registration, routes, subscriptions, inbox (the apps' side)
    METRICS = "metrics"    # GET /metrics
    ADMIN = "admin"        # keys, apps, the audit log, the console


ALL_SCOPES: frozenset[str] = frozenset(s.value for s in Scope)

#: The key id operations accepted under the gateway token (or an open gateway) carry.
ROOT_ID = "root"


class Principal(msgspec.Struct, frozen=True):
    """A credential's rights. ``channels``/``apps`` None: every one."""

    key_id: str
    name: str
    scopes: frozenset[str]
    channels: frozenset[str] | None = None
    apps: frozenset[str] | None = None
    # Quotas (None: unlimited) and the key's share of the dispatcher (fairness).
    rate_per_s: float | None = None
    daily_notifications: int | None = None
    weight: int = 1

    @property
    def is_root(self) -> bool:
        return self.key_id == ROOT_ID

    def may(self, scope: Scope | str) -> bool:
        return scope in self.scopes

    def may_send_to(self, channel_id: str) -> bool:
        return self.channels is None or channel_id in self.channels

    def may_use_app(self, app: str) -> bool:
        return self.apps is None or app in self.apps


ROOT = Principal(ROOT_ID, "gateway token", ALL_SCOPES)

PRINCIPAL: ContextVar[Principal] = ContextVar("pushgo_principal", default=ROOT)


def current() -> Principal:
    """The principal of the request being served (ROOT outside a request)."""
    return PRINCIPAL.get()
