"""Building the provider senders from settings: origins, TLS contexts, credentials.

A missing or unreadable credential is a start-up error naming its variable.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from pushgo.protocol import apns as A
from pushgo.protocol import fcm as FC
from pushgo.push.connection import Origin
from pushgo.push.sender import ApnsSender, FcmSender, ResultBuffer, Sender
from pushgo.push.tokens import ApnsJwtSource, CredentialError, FcmTokenSource, ServiceAccount
from pushgo.settings import Settings, SettingsError


def provider_ssl_context(settings: Settings) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if settings.provider_ca_file:
        ctx.load_verify_locations(cafile=settings.provider_ca_file)
    ctx.set_alpn_protocols(["h2"])
    return ctx


def _token_poster(ctx: ssl.SSLContext) -> Any:
    async def post_form(url: str, form: dict[str, str]) -> dict[str, Any]:
        # A short-lived client per fetch: tokens are fetched about once an hour.
        async with httpx.AsyncClient(verify=ctx, http2=True, timeout=15) as client:
            resp = await client.post(url, data=form)
        if resp.status_code != 200:
            raise CredentialError(f"token endpoint answered {resp.status_code}")
        doc: dict[str, Any] = resp.json()
        return doc

    return post_form


def build_senders(settings: Settings, results: ResultBuffer) -> dict[str, Sender]:
    senders: dict[str, Sender] = {}
    if not (settings.apns_configured or settings.fcm_configured):
        return senders
    ctx = provider_ssl_context(settings)
    if settings.apns_configured:
        assert settings.apns_key_file and settings.apns_key_id and settings.apns_team_id
        assert settings.apns_topic
        try:
            jwt = ApnsJwtSource.from_file(settings.apns_key_file, settings.apns_key_id,
                                          settings.apns_team_id)
            jwt.current()
        except (CredentialError, OSError) as exc:
            raise SettingsError(f"invalid PUSHGO_APNS_KEY_FILE: {exc}") from None
        host = A.SANDBOX_HOST if settings.sandbox_mode else A.PRODUCTION_HOST
        origin = Origin.parse(settings.apns_endpoint or f"https://{host}")
        senders["apns"] = ApnsSender(origin, ctx, results, jwt, settings.apns_topic,
                                     connections=settings.provider_connections)
    if settings.fcm_configured:
        assert settings.fcm_credentials_file
        try:
            account = ServiceAccount.from_file(settings.fcm_credentials_file)
            tokens = FcmTokenSource(account, _token_poster(ctx))
        except CredentialError as exc:
            raise SettingsError(f"invalid PUSHGO_FCM_CREDENTIALS_FILE: {exc}") from None
        origin = Origin.parse(settings.fcm_endpoint or f"https://{FC.HOST}")
        senders["fcm"] = FcmSender(origin, ctx, results, tokens,
                                   connections=settings.provider_connections)
    return senders
