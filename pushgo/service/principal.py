"""Who is asking: the principal a request acts as, and what it may do.

The front door (pushgo.api.front) resolves the request's credential to a Principal and sets
``PRINCIPAL`` for the rest of the request; services read it with ``current()``. The gateway
token (and a gateway without one) is ``ROOT``: every scope, every channel, every app. Code
that runs outside a request (the CLI, the pump, MCP's own OAuth and legacy rules) sees
``ROOT`` too, since it authorises by its own means.

Must not import pushgo.api, pushgo.mcp or starlette.
"""

from __future__ import annotations

import hashlib
import secrets
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
        """The key has the scope; ``admin`` has them all (the console reads delivery
        status, an admin manages everything)."""
        return scope in self.scopes or Scope.ADMIN in self.scopes

    def may_send_to(self, channel_id: str) -> bool:
        return self.channels is None or channel_id in self.channels

    def may_use_app(self, app: str) -> bool:
        return self.apps is None or app in self.apps


ROOT = Principal(ROOT_ID, "gateway token", ALL_SCOPES)

PRINCIPAL: ContextVar[Principal] = ContextVar("pushgo_principal", default=ROOT)


def current() -> Principal:
    """The principal of the request being served (ROOT outside a request)."""
    return PRINCIPAL.get()


# --- The API key format -----------------------------------------------------------------------
# ``pgk_<key_id>_<secret>``: key_id 16 lowercase hex (public: lists, logs, the audit log,
# operations.sender), secret 32 random bytes as unpadded base64url (43 characters). Only the
# SHA-256 hex of the whole key is stored (api_keys.secret_hash).

KEY_PREFIX = "pgk_"
KEY_ID_HEX = 16
KEY_SECRET_CHARS = 43
KEY_LENGTH = len(KEY_PREFIX) + KEY_ID_HEX + 1 + KEY_SECRET_CHARS


def new_key() -> tuple[str, str]:
    """A fresh (key_id, key)."""
    key_id = secrets.token_hex(KEY_ID_HEX // 2)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(token: str) -> str | None:
    """The key id of a well-formed API key, or None (not an API key)."""
    if len(token) != KEY_LENGTH or not token.startswith(KEY_PREFIX):
        return None
    key_id, sep, _secret = token[len(KEY_PREFIX):].partition("_")
    if sep != "_" or len(key_id) != KEY_ID_HEX or not all(c in _HEX for c in key_id):
        return None
    return key_id


def key_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_HEX = frozenset("0123456789abcdef")
