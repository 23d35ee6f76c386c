"""OAuth rows: signing keys, clients, page requests, grants and their channels, codes,
refresh tokens, bind sessions, and the purge of what has expired. Plain functions of a
Connection; run them through Store.run. Hashing and every decision live in pushgo.oauth.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from pushgo.store.schema import channels
from pushgo.store.schema import oauth_bind_sessions as bind_sessions
from pushgo.store.schema import oauth_channel_grants as channel_grants
from pushgo.store.schema import oauth_clients as clients
from pushgo.store.schema import oauth_codes as codes
from pushgo.store.schema import oauth_grants as grants
from pushgo.store.schema import oauth_keys as keys
from pushgo.store.schema import oauth_refresh_tokens as refresh_tokens
from pushgo.store.schema import oauth_requests as requests

Row = sa.Row[Any]


def _upsert(conn: Connection, table: sa.Table, key: str, values: dict[str, Any],
            update: dict[str, Any]) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).values(**values)
    conn.execute(stmt.on_conflict_do_update(index_elements=[key], set_=update))


# --- signing keys -----------------------------------------------------------------------------


def live_keys(conn: Connection, now: int) -> list[Row]:
    """Keys that still verify, oldest first."""
    return list(conn.execute(
        sa.select(keys).where(sa.or_(keys.c.expires_at.is_(None), keys.c.expires_at > now))
        .order_by(keys.c.created_at, keys.c.kid)))


def insert_key(conn: Connection, kid: str, alg: str, private_jwk: str, now: int) -> None:
    conn.execute(keys.insert().values(kid=kid, alg=alg, private_jwk=private_jwk,
                                      created_at=now))


def retire_keys(conn: Connection, keep_kid: str, now: int, expires_at: int) -> int:
    """Retire every active key but ``keep_kid``: it verifies until ``expires_at``."""
    return conn.execute(keys.update().where(keys.c.retired_at.is_(None), keys.c.kid != keep_kid)
                        .values(retired_at=now, expires_at=expires_at)).rowcount


# --- clients ----------------------------------------------------------------------------------


def get_client(conn: Connection, client_id: str) -> Row | None:
    return conn.execute(sa.select(clients).where(clients.c.client_id == client_id)).first()


def insert_client(conn: Connection, *, client_id: str, kind: str, secret_hash: str | None,
                  auth_method: str, redirect_uris: list[str], metadata: dict[str, Any],
                  now: int, expires_at: int | None = None) -> None:
    conn.execute(clients.insert().values(
        client_id=client_id, kind=kind, secret_hash=secret_hash, auth_method=auth_method,
        redirect_uris=json.dumps(redirect_uris), metadata=json.dumps(metadata),
        created_at=now, updated_at=now, expires_at=expires_at))


def put_client(conn: Connection, *, client_id: str, kind: str, secret_hash: str | None,
               auth_method: str, redirect_uris: list[str], metadata: dict[str, Any], now: int,
               expires_at: int | None = None) -> None:
    """Insert or replace a predefined or metadata-document client."""
    values = dict(client_id=client_id, kind=kind, secret_hash=secret_hash,
                  auth_method=auth_method, redirect_uris=json.dumps(redirect_uris),
                  metadata=json.dumps(metadata), created_at=now, updated_at=now,
                  expires_at=expires_at)
    update = {k: v for k, v in values.items() if k not in ("client_id", "created_at")}
    _upsert(conn, clients, "client_id", values, update)


def client_ids_of_kind(conn: Connection, kind: str) -> list[str]:
    return [r[0] for r in conn.execute(sa.select(clients.c.client_id)
                                       .where(clients.c.kind == kind))]


def delete_client(conn: Connection, client_id: str, now: int) -> None:
    """Remove a client and revoke every grant it holds."""
    conn.execute(grants.update().where(grants.c.client_id == client_id,
                                       grants.c.revoked_at.is_(None)).values(revoked_at=now))
    conn.execute(clients.delete().where(clients.c.client_id == client_id))


# --- page requests ----------------------------------------------------------------------------


def insert_request(conn: Connection, *, request_id: str, kind: str, csrf_hash: str,
                   params: dict[str, Any], now: int, expires_at: int) -> None:
    conn.execute(requests.insert().values(request_id=request_id, kind=kind, csrf_hash=csrf_hash,
                                          params=json.dumps(params), created_at=now,
                                          expires_at=expires_at))


def get_request(conn: Connection, request_id: str) -> Row | None:
    return conn.execute(sa.select(requests).where(requests.c.request_id == request_id)).first()


def use_request(conn: Connection, request_id: str, now: int) -> bool:
    """Mark a page request submitted; False when it already was (or is gone)."""
    return conn.execute(requests.update().where(requests.c.request_id == request_id,
                                                 requests.c.used_at.is_(None))
                        .values(used_at=now)).rowcount == 1


# --- grants and channels ----------------------------------------------------------------------


def insert_grant(conn: Connection, *, grant_id: str, client_id: str, scope: str, resource: str,
                 issuer: str, now: int, expires_at: int) -> None:
    conn.execute(grants.insert().values(grant_id=grant_id, client_id=client_id, scope=scope,
                                        resource=resource, issuer=issuer, created_at=now,
                                        expires_at=expires_at))


def get_grant(conn: Connection, grant_id: str) -> Row | None:
    return conn.execute(sa.select(grants).where(grants.c.grant_id == grant_id)).first()


def live_grant(conn: Connection, grant_id: str, now: int) -> Row | None:
    """The grant if it is active: exchanged at least once, not revoked, not past its end."""
    return conn.execute(sa.select(grants).where(
        grants.c.grant_id == grant_id, grants.c.revoked_at.is_(None),
        grants.c.activated_at.is_not(None), grants.c.expires_at > now)).first()


def activate_grant(conn: Connection, grant_id: str, now: int) -> None:
    conn.execute(grants.update().where(grants.c.grant_id == grant_id,
                                       grants.c.activated_at.is_(None))
                 .values(activated_at=now))


def revoke_grant(conn: Connection, grant_id: str, now: int) -> bool:
    return conn.execute(grants.update().where(grants.c.grant_id == grant_id,
                                              grants.c.revoked_at.is_(None))
                        .values(revoked_at=now)).rowcount == 1


def grant_channel(conn: Connection, grant_id: str, channel_id: str, now: int) -> bool:
    """Bind a channel to a grant; False when it already was."""
    found = conn.execute(sa.select(channel_grants.c.channel_id).where(
        channel_grants.c.grant_id == grant_id, channel_grants.c.channel_id == channel_id)).first()
    if found is not None:
        return False
    conn.execute(channel_grants.insert().values(grant_id=grant_id, channel_id=channel_id,
                                                granted_at=now))
    return True


def ungrant_channel(conn: Connection, grant_id: str, channel_id: str) -> bool:
    return conn.execute(channel_grants.delete().where(
        channel_grants.c.grant_id == grant_id,
        channel_grants.c.channel_id == channel_id)).rowcount > 0


def is_granted(conn: Connection, grant_id: str, channel_id: str, now: int) -> bool:
    return conn.execute(
        sa.select(sa.literal(1)).select_from(channel_grants.join(grants))
        .where(channel_grants.c.grant_id == grant_id, channel_grants.c.channel_id == channel_id,
               grants.c.revoked_at.is_(None), grants.c.expires_at > now)).first() is not None


def granted_channels(conn: Connection, grant_id: str) -> list[Row]:
    """(channel_id, granted_at, channel_name or None) of a grant, oldest grant first."""
    query = (sa.select(channel_grants.c.channel_id, channel_grants.c.granted_at,
                       channels.c.channel_name)
             .select_from(channel_grants.outerjoin(
                 channels, channels.c.channel_id == channel_grants.c.channel_id))
             .where(channel_grants.c.grant_id == grant_id)
             .order_by(channel_grants.c.granted_at, channel_grants.c.channel_id))
    return list(conn.execute(query))


# --- authorization codes ----------------------------------------------------------------------


def insert_code(conn: Connection, *, code_hash: str, grant_id: str, client_id: str,
                redirect_uri: str, code_challenge: str, now: int, expires_at: int) -> None:
    conn.execute(codes.insert().values(code_hash=code_hash, grant_id=grant_id,
                                       client_id=client_id, redirect_uri=redirect_uri,
                                       code_challenge=code_challenge, created_at=now,
                                       expires_at=expires_at))


def get_code(conn: Connection, code_hash: str) -> Row | None:
    return conn.execute(sa.select(codes).where(codes.c.code_hash == code_hash)).first()


def use_code(conn: Connection, code_hash: str, now: int) -> bool:
    return conn.execute(codes.update().where(codes.c.code_hash == code_hash,
                                             codes.c.used_at.is_(None))
                        .values(used_at=now)).rowcount == 1


# --- refresh tokens ---------------------------------------------------------------------------


def insert_refresh(conn: Connection, *, token_hash: str, grant_id: str, now: int,
                   idle_expires_at: int) -> None:
    conn.execute(refresh_tokens.insert().values(token_hash=token_hash, grant_id=grant_id,
                                                created_at=now, idle_expires_at=idle_expires_at))


def get_refresh(conn: Connection, token_hash: str) -> Row | None:
    return conn.execute(sa.select(refresh_tokens)
                        .where(refresh_tokens.c.token_hash == token_hash)).first()


def rotate_refresh(conn: Connection, token_hash: str, now: int) -> bool:
    """Mark a refresh token exchanged; False when it already was."""
    return conn.execute(refresh_tokens.update().where(refresh_tokens.c.token_hash == token_hash,
                                                      refresh_tokens.c.rotated_at.is_(None))
                        .values(rotated_at=now)).rowcount == 1


# --- bind sessions ----------------------------------------------------------------------------


def insert_bind_session(conn: Connection, **values: Any) -> None:
    conn.execute(bind_sessions.insert().values(**values))


def get_bind_session(conn: Connection, bind_session_id: str) -> Row | None:
    return conn.execute(sa.select(bind_sessions).where(
        bind_sessions.c.bind_session_id == bind_session_id)).first()


def finish_bind_session(conn: Connection, bind_session_id: str, status: str,
                        channel_id: str | None, now: int) -> bool:
    """Move a pending session to ``status``; False when it was no longer pending."""
    return conn.execute(bind_sessions.update().where(
        bind_sessions.c.bind_session_id == bind_session_id, bind_sessions.c.status == "pending")
        .values(status=status, channel_id=channel_id, completed_at=now)).rowcount == 1


# --- purge ------------------------------------------------------------------------------------


def purge(conn: Connection, now: int, *, bind_keep_ms: int, unactivated_ms: int,
          client_idle_ms: int) -> dict[str, int]:
    """Delete what can no longer be used. Refresh tokens stay until their idle end even once
    rotated, so presenting a rotated one still revokes its family; grants go when revoked,
    past their end, or never exchanged; registered clients when long unused and without a
    live grant."""
    dead_grants = sa.select(grants.c.grant_id).where(sa.or_(
        grants.c.revoked_at.is_not(None), grants.c.expires_at <= now,
        sa.and_(grants.c.activated_at.is_(None), grants.c.created_at <= now - unactivated_ms)))
    counts = {
        "requests": conn.execute(requests.delete().where(requests.c.expires_at <= now)).rowcount,
        "codes": conn.execute(codes.delete().where(codes.c.expires_at <= now)).rowcount,
        "refresh_tokens": conn.execute(refresh_tokens.delete().where(
            refresh_tokens.c.idle_expires_at <= now)).rowcount,
        "bind_sessions": conn.execute(bind_sessions.delete().where(
            bind_sessions.c.expires_at <= now - bind_keep_ms)).rowcount,
    }
    ids = [r[0] for r in conn.execute(dead_grants)]
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        # Explicit deletes: SQLite enforces ON DELETE CASCADE only with foreign_keys on.
        for table in (channel_grants, codes, refresh_tokens, bind_sessions):
            conn.execute(table.delete().where(table.c.grant_id.in_(chunk)))
        conn.execute(grants.delete().where(grants.c.grant_id.in_(chunk)))
    counts["grants"] = len(ids)
    has_grant = sa.select(sa.literal(1)).where(grants.c.client_id == clients.c.client_id) \
        .exists()
    counts["clients"] = conn.execute(clients.delete().where(
        ~has_grant, sa.or_(
            sa.and_(clients.c.kind == "dcr", clients.c.updated_at <= now - client_idle_ms),
            sa.and_(clients.c.kind == "cimd", clients.c.expires_at <= now)))).rowcount
    counts["keys"] = conn.execute(keys.delete().where(keys.c.expires_at <= now)).rowcount
    return counts


def touch_client(conn: Connection, client_id: str, now: int) -> None:
    conn.execute(clients.update().where(clients.c.client_id == client_id)
                 .values(updated_at=now))
