"""The OAuth authorization server's records: signing keys, clients, page requests, grants and
their channels, codes, refresh tokens, bind sessions, and the purge of what has expired.

``OAuthRecords`` is pushgo.oauth's only way to the store: every read and every transaction it
needs is one method here, written once. Hashing, token minting and every decision stay in
pushgo.oauth; what comes in is already hashed, what goes out is the stored row.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from pushgo.store import Store
from pushgo.store import oauth as oauth_store

#: A stored row (attribute access by column name).
Row = Any


@dataclass(frozen=True)
class NewGrant:
    """A grant the authorize page creates, with its channels and its authorization code."""

    grant_id: str
    client_id: str
    scope: str
    resource: str
    issuer: str
    expires_at: int
    channel_ids: tuple[str, ...]
    code_hash: str
    redirect_uri: str
    code_challenge: str
    code_expires_at: int


@dataclass(frozen=True)
class NewRefresh:
    """A refresh token to store (its hash) for a grant."""

    token_hash: str
    grant_id: str
    idle_expires_at: int


# --- transactions of more than one statement --------------------------------------------------


def sync_predefined(conn: Connection, secret_hashes: Mapping[str, str], now: int) -> None:
    """Make the predefined-client rows match ``{client_id: secret hash}``: a client removed
    from it, or a client of another kind under the same id, is deleted (its grants revoked);
    one whose secret changed is replaced."""
    for client_id in oauth_store.client_ids_of_kind(conn, "predefined"):
        if client_id not in secret_hashes:
            oauth_store.delete_client(conn, client_id, now)
    for client_id, secret_hash in secret_hashes.items():
        existing = oauth_store.get_client(conn, client_id)
        if existing is not None and existing.kind != "predefined":
            oauth_store.delete_client(conn, client_id, now)
        if existing is not None and existing.kind == "predefined" \
                and existing.secret_hash is not None \
                and hmac.compare_digest(secret_hash, existing.secret_hash):
            continue
        oauth_store.put_client(conn, client_id=client_id, kind="predefined", secret_hash=secret_hash,
                     auth_method="client_secret_basic", redirect_uris=[],
                     metadata={"client_name": client_id}, now=now)


def grant_authorization(conn: Connection, request_id: str, grant: NewGrant, now: int) -> bool:
    """Spend the page request and create the grant, its channels and its code; False (and
    nothing written) when the request was already used."""
    if not oauth_store.use_request(conn, request_id, now):
        return False
    oauth_store.insert_grant(conn, grant_id=grant.grant_id, client_id=grant.client_id,
                   scope=grant.scope, resource=grant.resource, issuer=grant.issuer, now=now,
                   expires_at=grant.expires_at)
    for cid in grant.channel_ids:
        oauth_store.grant_channel(conn, grant.grant_id, cid, now)
    oauth_store.insert_code(conn, code_hash=grant.code_hash, grant_id=grant.grant_id,
                  client_id=grant.client_id, redirect_uri=grant.redirect_uri,
                  code_challenge=grant.code_challenge, now=now,
                  expires_at=grant.code_expires_at)
    oauth_store.touch_client(conn, grant.client_id, now)
    return True


def _insert_refresh(conn: Connection, refresh: NewRefresh, now: int) -> None:
    oauth_store.insert_refresh(conn, token_hash=refresh.token_hash, grant_id=refresh.grant_id, now=now,
                     idle_expires_at=refresh.idle_expires_at)


def exchange_code(conn: Connection, code_hash: str, client_id: str, refresh: NewRefresh,
                  now: int) -> bool:
    """Spend the code, activate its grant, store the first refresh token; False (and nothing
    written) when the code was already used."""
    if not oauth_store.use_code(conn, code_hash, now):
        return False
    oauth_store.activate_grant(conn, refresh.grant_id, now)
    oauth_store.touch_client(conn, client_id, now)
    _insert_refresh(conn, refresh, now)
    return True


def rotate_refresh(conn: Connection, token_hash: str, successor: NewRefresh, now: int) -> None:
    """Mark a refresh token exchanged and store its successor. A concurrent exchange of the
    same token is a retry: both get a successor."""
    oauth_store.rotate_refresh(conn, token_hash, now)
    _insert_refresh(conn, successor, now)


def complete_bind_session(conn: Connection, request_id: str, bind_session_id: str,
                          grant_id: str, channel_id: str, action: str, now: int
                          ) -> bool | None:
    """Spend the page request, complete the session, then bind (``action`` "bind") or
    unbind the channel: whether the grant changed; None when the request or the session was
    already used."""
    if not oauth_store.use_request(conn, request_id, now):
        return None
    if not oauth_store.finish_bind_session(conn, bind_session_id, "completed", channel_id, now):
        return None
    if action == "bind":
        return oauth_store.grant_channel(conn, grant_id, channel_id, now)
    return oauth_store.ungrant_channel(conn, grant_id, channel_id)


# --- the service ------------------------------------------------------------------------------


class OAuthRecords:
    """Every read and write of the OAuth authorization server, one transaction each."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # signing keys

    async def live_keys(self, now: int) -> list[Row]:
        return await self._store.read(oauth_store.live_keys, now)

    async def insert_key(self, kid: str, alg: str, private_jwk: str, now: int) -> None:
        await self._store.run(oauth_store.insert_key, kid, alg, private_jwk, now)

    async def retire_keys(self, keep_kid: str, now: int, expires_at: int) -> int:
        return await self._store.run(oauth_store.retire_keys, keep_kid, now, expires_at)

    # clients

    async def client(self, client_id: str) -> Row | None:
        return await self._store.read(oauth_store.get_client, client_id)

    async def sync_predefined(self, secret_hashes: Mapping[str, str], now: int) -> None:
        await self._store.run(sync_predefined, dict(secret_hashes), now)

    async def put_client(self, **values: Any) -> None:
        """Insert or replace a client (see ``pushgo.store.oauth.put_client``)."""
        await self._store.run(lambda conn: oauth_store.put_client(conn, **values))

    async def insert_client(self, **values: Any) -> None:
        await self._store.run(lambda conn: oauth_store.insert_client(conn, **values))

    # page requests

    async def insert_request(self, *, request_id: str, kind: str, csrf_hash: str,
                             params: dict[str, Any], now: int, expires_at: int) -> None:
        await self._store.run(lambda conn: oauth_store.insert_request(
            conn, request_id=request_id, kind=kind, csrf_hash=csrf_hash, params=params,
            now=now, expires_at=expires_at))

    async def request(self, request_id: str) -> Row | None:
        return await self._store.read(oauth_store.get_request, request_id)

    async def use_request(self, request_id: str, now: int) -> bool:
        return await self._store.run(oauth_store.use_request, request_id, now)

    async def grant_authorization(self, request_id: str, grant: NewGrant, now: int) -> bool:
        return await self._store.run(grant_authorization, request_id, grant, now)

    # grants and their channels

    async def grant(self, grant_id: str) -> Row | None:
        return await self._store.read(oauth_store.get_grant, grant_id)

    async def live_grant(self, grant_id: str, now: int) -> Row | None:
        return await self._store.read(oauth_store.live_grant, grant_id, now)

    async def revoke_grant(self, grant_id: str, now: int) -> bool:
        return await self._store.run(oauth_store.revoke_grant, grant_id, now)

    async def is_granted(self, grant_id: str, channel_id: str, now: int) -> bool:
        return await self._store.read(oauth_store.is_granted, grant_id, channel_id, now)

    async def granted_channels(self, grant_id: str) -> list[Row]:
        return await self._store.read(oauth_store.granted_channels, grant_id)

    async def ungrant_channel(self, grant_id: str, channel_id: str) -> bool:
        return await self._store.run(oauth_store.ungrant_channel, grant_id, channel_id)

    # codes and refresh tokens

    async def code(self, code_hash: str) -> Row | None:
        return await self._store.read(oauth_store.get_code, code_hash)

    async def use_code(self, code_hash: str, now: int) -> bool:
        return await self._store.run(oauth_store.use_code, code_hash, now)

    async def exchange_code(self, code_hash: str, client_id: str, refresh: NewRefresh,
                            now: int) -> bool:
        return await self._store.run(exchange_code, code_hash, client_id, refresh, now)

    async def refresh_token(self, token_hash: str) -> Row | None:
        return await self._store.read(oauth_store.get_refresh, token_hash)

    async def rotate_refresh(self, token_hash: str, successor: NewRefresh, now: int) -> None:
        await self._store.run(rotate_refresh, token_hash, successor, now)

    # bind sessions

    async def insert_bind_session(self, **values: Any) -> None:
        await self._store.run(lambda conn: oauth_store.insert_bind_session(conn, **values))

    async def bind_session(self, bind_session_id: str) -> Row | None:
        return await self._store.read(oauth_store.get_bind_session, bind_session_id)

    async def finish_bind_session(self, bind_session_id: str, status: str,
                                  channel_id: str | None, now: int) -> bool:
        return await self._store.run(oauth_store.finish_bind_session, bind_session_id, status,
                                     channel_id, now)

    async def complete_bind_session(self, request_id: str, bind_session_id: str,
                                    grant_id: str, channel_id: str, action: str, now: int
                                    ) -> bool | None:
        return await self._store.run(complete_bind_session, request_id, bind_session_id,
                                     grant_id, channel_id, action, now)

    # maintenance

    async def purge(self, now: int, *, bind_keep_ms: int, unactivated_ms: int,
                    client_idle_ms: int) -> dict[str, int]:
        return await self._store.run(lambda conn: oauth_store.purge(
            conn, now, bind_keep_ms=bind_keep_ms, unactivated_ms=unactivated_ms,
            client_idle_ms=client_idle_ms))


__all__ = ["NewGrant", "NewRefresh", "OAuthRecords"]
