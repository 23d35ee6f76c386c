"""PUSHGO_TOKEN_SERVICE_URL as ``pushgo serve`` reads it (pushgo.settings.load): a gateway
whose token service is a loopback one gets its APNs and FCM bearer tokens there, local
credentials win over it, and ``off`` means none. The default, PushGo's public service, is
never reached from a test (tests/test_settings.py checks the default itself)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from pushgo.app import Gateway
from pushgo.settings import load
from pushgo.testing.mock_apns import MockAPNs
from pushgo.testing.mock_fcm import MockFCM
from pushgo.testing.tls import LocalCA
from tests.helpers import PASSWORD, call, eventually, new_channel, register
from tests.live import serve_app
from tests.providers import TOPIC
from tests.push.test_credentials_remote import TokenService, send_to_both


@asynccontextmanager
async def gateway_from_env(tmp_path: Path, db_url: str, extra: dict[str, str | None], *,
                           local: bool) -> AsyncIterator[tuple[httpx.AsyncClient, Any, Any, Any]]:
    ca = LocalCA()
    apns, fcm = MockAPNs(topic=TOPIC, tls=ca, validate=True), MockFCM(tls=ca)
    service = TokenService(apns, fcm)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(apns.serving())
        await stack.enter_async_context(fcm.serving())
        base = await stack.enter_async_context(serve_app(service.app))
        env = {"PUSHGO_DB_URL": db_url, "PUSHGO_APNS_TOPIC": TOPIC,
               "PUSHGO_APNS_ENDPOINT": apns.origin, "PUSHGO_FCM_ENDPOINT": fcm.origin,
               "PUSHGO_PROVIDER_CA_FILE": str(ca.write_ca_file(tmp_path / "ca.pem")),
               "PUSHGO_TOKEN_SERVICE_URL": base + "/"}
        if local:
            env.update({"PUSHGO_APNS_KEY_FILE": str(apns.key.write(tmp_path / "k.p8")),
                        "PUSHGO_APNS_KEY_ID": apns.key.key_id,
                        "PUSHGO_APNS_TEAM_ID": apns.key.team_id,
                        "PUSHGO_FCM_CREDENTIALS_FILE": str(
                            fcm.write_service_account(tmp_path / "fcm.json"))})
        merged = {k: v for k, v in {**env, **extra}.items() if v is not None}
        gw = Gateway(load(merged))
        await stack.enter_async_context(gw.running())
        client = await stack.enter_async_context(httpx.AsyncClient(
            transport=httpx.ASGITransport(app=gw.asgi), base_url="http://pushgo.test"))
        yield client, apns, fcm, service


async def test_a_configured_token_service_authorises_apns_and_fcm(tmp_path, db_url):
    async with gateway_from_env(tmp_path, db_url, {}, local=False) as (client, apns, fcm, svc):
        await send_to_both(client)
        [note] = await apns.wait_for(1)
        [msg] = await fcm.messages.wait_for(1)
        assert note.status == 200 and msg.status == 200
        assert sorted(svc.calls) == ["apns:apns", "fcm:fcm"]


async def test_local_credentials_win_over_the_token_service(tmp_path, db_url):
    async with gateway_from_env(tmp_path, db_url, {}, local=True) as (client, apns, fcm, svc):
        await send_to_both(client)
        [note] = await apns.wait_for(1)
        [msg] = await fcm.messages.wait_for(1)
        assert note.status == 200 and msg.status == 200
        assert svc.calls == []


async def test_off_means_no_token_service(tmp_path, db_url):
    # (a topic alone would need a token service: pushgo serve refuses it)
    extra: dict[str, str | None] = {"PUSHGO_TOKEN_SERVICE_URL": "off", "PUSHGO_APNS_TOPIC": None}
    async with gateway_from_env(tmp_path, db_url, extra, local=False) as (client, apns, _f, svc):
        ios = await register(client, "ios")
        await call(client, "/channel/device", {"device_key": ios, "channel_type": "apns",
                                               "provider_token": secrets.token_hex(32)})
        cid = await new_channel(client, ios)
        op_id = (await call(client, "/message", {"channel_id": cid, "password": PASSWORD,
                                                 "title": "hi"}))["op_id"]

        async def failed() -> dict[str, Any] | None:
            doc = await call(client, f"/deliveries/{op_id}")
            return doc if doc["failures"] else None

        doc = await eventually(failed)
        assert doc is not None and doc["failures"] == {"provider_not_configured": 1}
        assert svc.calls == [] and apns.accepted == []
