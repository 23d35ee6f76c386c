"""PUSHGO_TOKEN_SERVICE_URL: with no local credentials, provider bearer tokens come from a
token service (the PushGo token-service wire format), and are fetched anew when refused."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pushgo.app import Gateway
from pushgo.testing.mock_apns import MockAPNs
from pushgo.testing.mock_fcm import MockFCM
from pushgo.testing.tls import LocalCA
from tests.conftest import make_settings
from tests.helpers import PASSWORD, call, new_channel, register
from tests.live import serve_app
from tests.providers import TOPIC


class TokenService:
    def __init__(self, apns: MockAPNs, fcm: MockFCM) -> None:
        self.apns, self.fcm = apns, fcm
        self.calls: list[str] = []
        self.app = Starlette(routes=[
            Route("/provider/token/production", self.apns_token),
            Route("/provider/token", self.fcm_token),
        ])

    async def apns_token(self, request: Request) -> JSONResponse:
        self.calls.append(f"apns:{request.query_params.get('provider')}")
        return JSONResponse({"success": True,
                             "data": {"token": self.apns.key.token(), "expires_in": 3000}})

    async def fcm_token(self, request: Request) -> JSONResponse:
        self.calls.append(f"fcm:{request.query_params.get('provider')}")
        token = self.fcm.issue_access_token()
        return JSONResponse({"success": True, "data": {
            "token": token, "expires_in": 3600, "project_id": self.fcm.project_id}})


@pytest.fixture
async def remote(tmp_path: Path, db_url: str) -> AsyncIterator[tuple[Any, ...]]:
    ca = LocalCA()
    apns, fcm = MockAPNs(topic=TOPIC, tls=ca, validate=True), MockFCM(tls=ca)
    service = TokenService(apns, fcm)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(apns.serving())
        await stack.enter_async_context(fcm.serving())
        base = await stack.enter_async_context(serve_app(service.app))
        gw = Gateway(make_settings(
            db_url, token_service_url=base, apns_topic=TOPIC, apns_endpoint=apns.origin,
            fcm_endpoint=fcm.origin, provider_ca_file=str(ca.write_ca_file(tmp_path / "ca.pem"))))
        await stack.enter_async_context(gw.running())
        client = await stack.enter_async_context(httpx.AsyncClient(
            transport=httpx.ASGITransport(app=gw.asgi), base_url="http://pushgo.test"))
        yield client, apns, fcm, service


async def send_to_both(client: httpx.AsyncClient) -> None:
    """A message to a channel of one APNs and one FCM device."""
    ios = await register(client, "ios")
    await call(client, "/channel/device", {"device_key": ios, "channel_type": "apns",
                                           "provider_token": secrets.token_hex(32)})
    android = await register(client, "android")
    await call(client, "/channel/device", {"device_key": android, "channel_type": "fcm",
                                           "provider_token": "fcm-" + secrets.token_hex(20)})
    cid = await new_channel(client, ios)
    await call(client, "/channel/subscribe",
               {"device_key": android, "channel_id": cid, "password": PASSWORD})
    await call(client, "/message", {"channel_id": cid, "password": PASSWORD, "title": "hi"})


async def test_remote_tokens_authorise_apns_and_fcm_sends(remote):
    client, apns, fcm, service = remote
    await send_to_both(client)
    [note] = await apns.wait_for(1)
    [msg] = await fcm.messages.wait_for(1)
    assert note.status == 200
    assert msg.status == 200 and msg.project == fcm.project_id
    assert service.calls.count("apns:apns") == 1 and service.calls.count("fcm:fcm") == 1


async def test_a_refused_remote_fcm_token_is_fetched_again(remote):
    client, _apns, fcm, service = remote
    android = await register(client, "android")
    await call(client, "/channel/device", {"device_key": android, "channel_type": "fcm",
                                           "provider_token": "fcm-" + secrets.token_hex(20)})
    cid = await new_channel(client, android)
    await call(client, "/message", {"channel_id": cid, "password": PASSWORD, "title": "a"})
    await fcm.messages.wait_for(1)
    fcm.revoke_access_tokens()
    await call(client, "/message", {"channel_id": cid, "password": PASSWORD, "title": "b"})
    await fcm.messages.wait_for(1, lambda m: m.status == 200 and m.message["data"]["title"] == "b")
    assert service.calls.count("fcm:fcm") == 2
