"""Scoped API keys: created (the key shown once), listed, revoked, and resolved to the
Principal a request acts as; and the checks of a key's channels that the send, status and
cancel paths make where the channel is known.

A key is looked up by its public id and compared by the SHA-256 of the whole key
(pushgo.service.principal has the format); nothing but that hash is stored. Every lookup
reads the database, so a key revoked by one process (or ``pushgo key revoke``) fails at once
on every process sharing the store. ``last_used_at`` is written at most once a minute per key
and process, never once per request.

Must not import pushgo.api, pushgo.mcp or starlette.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import msgspec
from sqlalchemy.engine import Connection

from pushgo.errors import Forbidden, InvalidInput, NotFound, codes
from pushgo.protocol import fields as field_rules
from pushgo.service.audit import AuditLog
from pushgo.service.audit import write as audit_write
from pushgo.service.context import Context
from pushgo.service.principal import (
    ALL_SCOPES,
    Principal,
    current,
    key_hash,
    key_id_of,
    new_key,
)
from pushgo.store import keys as key_store
from pushgo.store.keys import KeyRow

NAME_MAX = 128
WEIGHT_MAX = 1000
#: Largest requests-per-second and notifications-per-day a key may be given.
RATE_MAX = 1_000_000.0
DAILY_MAX = 1_000_000_000
#: ``last_used_at`` is written at most this often per key (and process).
TOUCH_INTERVAL_MS = 60_000
#: Keys whose last touch this process remembers (beyond it the memory starts again).
TOUCH_MEMORY = 10_000


class KeyOut(msgspec.Struct, frozen=True, kw_only=True):
    """A key as lists and the audit log show it: never its secret nor its hash."""

    key_id: str
    name: str
    scopes: list[str]
    channels: list[str] | None
    apps: list[str] | None
    rate_per_s: float | None
    daily_notifications: int | None
    weight: int
    created_at: int
    created_by: str
    last_used_at: int | None
    revoked_at: int | None
    #: Notifications counted against its daily quota today (UTC; 0 without a quota).
    notifications_today: int = 0


def key_out(row: KeyRow) -> KeyOut:
    return KeyOut(key_id=row.key_id, name=row.name, scopes=row.scopes, channels=row.channels,
                  apps=row.apps, rate_per_s=row.rate_per_s,
                  daily_notifications=row.daily_notifications, weight=row.weight,
                  created_at=row.created_at, created_by=row.created_by,
                  last_used_at=row.last_used_at, revoked_at=row.revoked_at)


def principal_of(row: KeyRow) -> Principal:
    return Principal(
        row.key_id, row.name, frozenset(row.scopes),
        None if row.channels is None else frozenset(row.channels),
        None if row.apps is None else frozenset(row.apps),
        row.rate_per_s, row.daily_notifications, row.weight)


# --- the checks of the request's principal (the send, status and cancel paths) -----------------


def require_scope(scope: str) -> None:
    if not current().may(scope):
        raise Forbidden(codes.SCOPE_REQUIRED, f"this API key lacks the {scope!r} scope")


def require_channel(channel_id: str) -> None:
    """403 ``channel_not_allowed`` for a key limited to other channels."""
    if not current().may_send_to(channel_id):
        raise Forbidden(codes.CHANNEL_NOT_ALLOWED,
                        "this API key may not act on this channel")


def narrowed(channel_ids: Sequence[str] | None) -> Sequence[str] | None:
    """The channels a read or cancel of an operation may look at: those asked for (each
    allowed), or, when none are named, the key's own (None: every one)."""
    limit = current().channels
    if limit is None:
        return channel_ids
    if channel_ids is None:
        return sorted(limit)
    for channel_id in channel_ids:
        require_channel(channel_id)
    return channel_ids


def not_allowed() -> Forbidden:
    return Forbidden(codes.CHANNEL_NOT_ALLOWED,
                     "this operation is on a channel this API key may not act on")


# --- the keys ---------------------------------------------------------------------------------


def _create(conn: Connection, *, row: dict[str, Any], actor: str, at: int) -> None:
    key_store.insert_key(conn, **row)
    detail = {k: row[k] for k in ("name", "scopes", "channels", "apps", "rate_per_s",
                                  "daily_notifications", "weight")}
    audit_write(conn, at=at, actor=actor, action="key.create", target=row["key_id"],
                detail=detail)


def _revoke(conn: Connection, key_id: str, *, actor: str, at: int) -> KeyRow | None:
    if not key_store.revoke_key(conn, key_id, at):
        return None
    audit_write(conn, at=at, actor=actor, action="key.revoke", target=key_id)
    return key_store.find_key(conn, key_id)


class Keys:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._touched: dict[str, int] = {}  # key id → when this process last wrote it

    async def create(self, name: str, scopes: Sequence[str], channels: Sequence[str] | None = None,
                     apps: Sequence[str] | None = None, rate_per_s: float | None = None,
                     daily_notifications: int | None = None, weight: int = 1,
                     cli: bool = False) -> tuple[KeyOut, str]:
        """A new key: its row and the key itself, which is never shown again."""
        now = self.ctx.now()
        actor = AuditLog.actor(cli)
        key_id, key = new_key()
        row = {
            "key_id": key_id, "name": _name(name), "secret_hash": key_hash(key),
            "scopes": _scopes(scopes),
            "channels": None if channels is None else sorted(
                {field_rules.channel_id(c) for c in channels}),
            "apps": None if apps is None else _apps(apps),
            "rate_per_s": _rate(rate_per_s), "daily_notifications": _daily(daily_notifications),
            "weight": _weight(weight), "created_at": now,
            "created_by": actor,
        }
        await self.ctx.store.run(partial(_create, row=row, actor=actor, at=now))
        stored = await self.ctx.store.read(key_store.find_key, key_id)
        assert stored is not None
        return key_out(stored), key

    async def list(self, include_revoked: bool = False) -> list[KeyOut]:
        rows = await self.ctx.store.read(partial(key_store.list_keys,
                                                 include_revoked=include_revoked))
        return [key_out(row) for row in rows]

    async def revoke(self, key_id: str, cli: bool = False) -> KeyOut:
        """Revoke a live key (404 ``key_not_found`` when there is none of that id)."""
        row = await self.ctx.store.run(partial(_revoke, actor=AuditLog.actor(cli),
                                               at=self.ctx.now()), key_id.strip().lower())
        if row is None:
            raise NotFound(codes.KEY_NOT_FOUND, "no live API key has this id")
        return key_out(row)

    async def resolve(self, token: str) -> Principal | None:
        """The principal of a live key, or None (not a key, unknown, wrong secret, revoked).
        One database read: a revocation anywhere counts at once."""
        key_id = key_id_of(token)
        if key_id is None:
            return None
        row = await self.ctx.store.read(key_store.find_key, key_id)
        if row is None or not hmac.compare_digest(row.secret_hash, key_hash(token)):
            return None
        if row.revoked_at is not None:
            return None
        await self._touch(key_id)
        return principal_of(row)

    async def _touch(self, key_id: str) -> None:
        now = self.ctx.now()
        last = self._touched.get(key_id)
        if last is not None and now - last < TOUCH_INTERVAL_MS:
            return
        if len(self._touched) >= TOUCH_MEMORY:
            self._touched.clear()
        self._touched[key_id] = now
        await self.ctx.store.run(key_store.touch_key, key_id, now)


# --- input rules ------------------------------------------------------------------------------


def _name(raw: str) -> str:
    name = raw.strip() if isinstance(raw, str) else ""
    if not name or len(name) > NAME_MAX or "\x00" in name:
        raise InvalidInput(codes.INVALID_KEY_NAME,
                           f"a key needs a name of 1 to {NAME_MAX} characters")
    return name


def _scopes(raw: Sequence[str]) -> list[str]:
    scopes = sorted({s.strip().lower() for s in raw})
    if not scopes:
        raise InvalidInput(codes.INVALID_SCOPE, "a key needs at least one scope: "
                           + ", ".join(sorted(ALL_SCOPES)))
    for scope in scopes:
        if scope not in ALL_SCOPES:
            raise InvalidInput(codes.INVALID_SCOPE, f"unknown scope {scope!r}; the scopes are "
                               + ", ".join(sorted(ALL_SCOPES)))
    return scopes


def _apps(raw: Sequence[str]) -> list[str]:
    apps = sorted({a.strip() for a in raw})
    if any(not a or len(a) > NAME_MAX or "\x00" in a for a in apps):
        raise InvalidInput(codes.INVALID_ARGUMENTS,
                           f"app names are 1 to {NAME_MAX} characters")
    return apps


def _weight(raw: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= WEIGHT_MAX:
        raise InvalidInput(codes.INVALID_KEY_LIMIT,
                           f"weight must be a whole number from 1 to {WEIGHT_MAX}")
    return raw


def _rate(raw: float | None) -> float | None:
    if raw is None:
        return None
    if (isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw)
            or not 0 < raw <= RATE_MAX):
        raise InvalidInput(codes.INVALID_KEY_LIMIT,
                           f"rate_per_s must be a number above 0, at most {RATE_MAX:g}")
    return float(raw)


def _daily(raw: int | None) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= DAILY_MAX:
        raise InvalidInput(codes.INVALID_KEY_LIMIT,
                           f"daily_notifications must be a whole number from 1 to {DAILY_MAX}")
    return raw
