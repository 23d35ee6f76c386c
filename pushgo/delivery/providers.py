"""Building the provider senders from settings: origins, TLS contexts, credentials.

A missing or unreadable credential is a start-up error naming its variable. The settings'
senders are the ``default`` app's; ``build_app_senders`` builds another app's (pushgo.protocol
.apps), each with its own connections and credentials (pushgo.delivery.appsenders).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import httpx

from pushgo.protocol import apns as A
from pushgo.protocol import fcm as FC
from pushgo.protocol import wns as W
from pushgo.protocol.apps import App, AppError
from pushgo.protocol.webpush import VapidKey
from pushgo.push.connection import Liveness, Origin
from pushgo.push.credentials import (
    ApnsJwtSource,
    ApnsTokens,
    CredentialError,
    FcmTokens,
    FcmTokenSource,
    RemoteTokens,
    ServiceAccount,
    WnsTokens,
    WnsTokenSource,
)
from pushgo.push.sender import ApnsSender, FcmSender, ProviderSender, ResultBuffer
from pushgo.push.webpush import WebPushSender
from pushgo.push.wns import WnsSender
from pushgo.push.wns import ssl_context as wns_ssl_context
from pushgo.service.apps import check_paths
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


def _json_getter(ctx: ssl.SSLContext) -> Any:
    async def get_json(url: str) -> dict[str, Any]:
        async with httpx.AsyncClient(verify=ctx, timeout=15) as client:
            resp = await client.get(url)
        if resp.status_code != 200:
            raise CredentialError(f"token service answered {resp.status_code}")
        doc: dict[str, Any] = resp.json()
        return doc

    return get_json


#: The PushGo apps' topics, used with a remote token service when no topic is set.
PUSHGO_APP_TOPIC = "io.ethan.pushgo"
PUSHGO_WATCH_TOPIC = "io.ethan.pushgo.watchkitapp"


def build_senders(settings: Settings, results: ResultBuffer, *,
                  clock_ms: Callable[[], int]) -> dict[str, ProviderSender]:
    """Local credentials win; without them a token service (if set) provides bearer tokens."""
    senders: dict[str, ProviderSender] = {}
    if settings.webpush_enabled:
        senders["webpush"] = WebPushSender(
            results, subject=settings.webpush_subject,
            allow_local=settings.webpush_allow_loopback,
            ssl_context=wns_ssl_context(settings.provider_ca_file), clock_ms=clock_ms,
            liveness=_liveness(settings))
    remote = settings.token_service_url
    if not (settings.apns_configured or settings.fcm_configured or settings.wns_configured
            or remote):
        return senders
    ctx = provider_ssl_context(settings)
    liveness = _liveness(settings)
    apns_tokens: ApnsTokens | None = None
    watch_topic: str | None = None
    if settings.apns_configured:
        assert settings.apns_key_file and settings.apns_key_id and settings.apns_team_id
        try:
            source = ApnsJwtSource.from_file(settings.apns_key_file, settings.apns_key_id,
                                             settings.apns_team_id)
            source.current()
        except (CredentialError, OSError) as exc:
            raise SettingsError(f"invalid PUSHGO_APNS_KEY_FILE: {exc}") from None
        apns_tokens, topic = source, settings.apns_topic or ""
    elif remote:
        apns_tokens = RemoteTokens(remote, "apns", _json_getter(ctx),
                                   sandbox=settings.sandbox_mode)
        topic = settings.apns_topic or PUSHGO_APP_TOPIC
        watch_topic = None if settings.apns_topic else PUSHGO_WATCH_TOPIC
    if apns_tokens is not None:
        host = A.SANDBOX_HOST if settings.sandbox_mode else A.PRODUCTION_HOST
        origin = Origin.parse(settings.apns_endpoint or f"https://{host}")
        senders["apns"] = ApnsSender(origin, ctx, results, apns_tokens, topic,
                                     watch_topic=watch_topic, clock_ms=clock_ms,
                                     connections=settings.provider_connections,
                                     liveness=liveness)
    fcm_tokens: FcmTokens | None = None
    if settings.fcm_configured:
        assert settings.fcm_credentials_file
        try:
            account = ServiceAccount.from_file(settings.fcm_credentials_file)
            fcm_tokens = FcmTokenSource(account, _token_poster(ctx))
        except CredentialError as exc:
            raise SettingsError(f"invalid PUSHGO_FCM_CREDENTIALS_FILE: {exc}") from None
    elif remote:
        fcm_tokens = RemoteTokens(remote, "fcm", _json_getter(ctx))
    if fcm_tokens is not None:
        origin = Origin.parse(settings.fcm_endpoint or f"https://{FC.HOST}")
        senders["fcm"] = FcmSender(origin, ctx, results, fcm_tokens, clock_ms=clock_ms,
                                   connections=settings.provider_connections,
                                   liveness=liveness)
    wns = _wns_sender(settings, results, clock_ms=clock_ms, liveness=liveness)
    if wns is not None:
        senders["wns"] = wns
    return senders


def _liveness(settings: Settings) -> Liveness:
    return Liveness(response_s=settings.provider_response_timeout_s,
                    ping_s=settings.provider_ping_timeout_s,
                    write_s=settings.provider_write_timeout_s)


def attach_vapid(senders: dict[str, ProviderSender], key: VapidKey) -> None:
    """Give the Web Push sender the gateway's application server key once it is loaded."""
    sender = senders.get("webpush")
    if isinstance(sender, WebPushSender):
        sender.vapid = key


def _wns_sender(settings: Settings, results: ResultBuffer, *, clock_ms: Callable[[], int],
                liveness: Liveness) -> WnsSender | None:
    """WNS with the app's client id and secret, else with the token service's tokens."""
    ctx = wns_ssl_context(settings.provider_ca_file)
    tokens: WnsTokens
    if settings.wns_configured:
        assert settings.wns_client_id and settings.wns_client_secret
        url = settings.wns_token_url or W.LOGIN_URL
        tokens = WnsTokenSource(settings.wns_client_id, settings.wns_client_secret, url,
                                W.scope_for(url), _token_poster(ctx))
    elif settings.token_service_url:
        tokens = RemoteTokens(settings.token_service_url, "wns", _json_getter(ctx))
    else:
        return None
    return WnsSender(results, tokens, endpoint=settings.wns_endpoint, ssl_context=ctx,
                     clock_ms=clock_ms, liveness=liveness)


def check_app(app: App) -> App:
    """An app whose key files can be used: the APNs key signs a token, the FCM service
    account reads (its project id filled in). A problem is an AppError naming the field."""
    app = check_paths(app)
    if app.apns is not None:
        try:
            ApnsJwtSource.from_file(app.apns.key_file, app.apns.key_id, app.apns.team_id).current()
        except (CredentialError, OSError, ValueError) as exc:
            raise AppError(app.name, "apns.key_file", f"not a usable APNs key: {exc}") from None
    if app.fcm is not None:
        try:
            ServiceAccount.from_file(app.fcm.credentials_file)
        except CredentialError as exc:
            raise AppError(app.name, "fcm.credentials_file", str(exc)) from None
    return app


def build_app_senders(app: App, settings: Settings, results: ResultBuffer, *,
                      clock_ms: Callable[[], int]) -> dict[str, ProviderSender]:
    """The senders of one app, its own connections and credentials (route → sender). The
    provider TLS settings and connection counts are the gateway's."""
    senders: dict[str, ProviderSender] = {}
    ctx = provider_ssl_context(settings)
    liveness = _liveness(settings)
    if app.apns is not None:
        tokens = ApnsJwtSource.from_file(app.apns.key_file, app.apns.key_id, app.apns.team_id)
        host = A.SANDBOX_HOST if app.apns.sandbox else A.PRODUCTION_HOST
        senders["apns"] = ApnsSender(Origin.parse(app.apns.endpoint or f"https://{host}"), ctx,
                                     results, tokens, app.apns.topic, clock_ms=clock_ms,
                                     connections=settings.provider_connections,
                                     liveness=liveness)
    if app.fcm is not None:
        account = ServiceAccount.from_file(app.fcm.credentials_file)
        senders["fcm"] = FcmSender(Origin.parse(app.fcm.endpoint or f"https://{FC.HOST}"), ctx,
                                   results, FcmTokenSource(account, _token_poster(ctx)),
                                   clock_ms=clock_ms, connections=settings.provider_connections,
                                   liveness=liveness)
    if app.wns is not None:
        wctx = wns_ssl_context(settings.provider_ca_file)
        url = app.wns.token_url or W.LOGIN_URL
        wtokens = WnsTokenSource(app.wns.client_id, app.wns.client_secret, url,
                                 W.scope_for(url), _token_poster(wctx))
        senders["wns"] = WnsSender(results, wtokens, endpoint=app.wns.endpoint,
                                   ssl_context=wctx, clock_ms=clock_ms, liveness=liveness)
    return senders
