"""Fixtures for delivery tests: mock APNs and FCM (real HTTP/2 over TLS, one CA) and a gateway
pointed at them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pushgo.app import Gateway
from pushgo.delivery import pump
from pushgo.testing.mock_apns import MockAPNs
from pushgo.testing.mock_fcm import MockFCM
from pushgo.testing.tls import LocalCA
from tests.conftest import make_settings

TOPIC = "com.example.pushgo"


@dataclass
class Providers:
    apns: MockAPNs
    fcm: MockFCM
    settings: dict[str, Any]


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries after milliseconds instead of seconds; Retry-After still wins."""
    monkeypatch.setattr(pump, "BACKOFF_BASE_S", 0.01)
    monkeypatch.setattr(pump, "IDLE_POLL_S", 0.05)


@pytest.fixture
def mock_options() -> dict[str, Any]:
    """Override in a test module for other MockAPNs options."""
    return {}


@pytest.fixture
async def providers(tmp_path: Path, mock_options: dict[str, Any]) -> AsyncIterator[Providers]:
    ca = LocalCA()
    apns = MockAPNs(topic=TOPIC, tls=ca, validate=True, **mock_options)
    fcm = MockFCM(tls=ca)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(apns.serving())
        await stack.enter_async_context(fcm.serving())
        key_file = apns.key.write(tmp_path / "apns.p8")
        creds = fcm.write_service_account(tmp_path / "fcm.json")
        settings = {
            "apns_key_file": str(key_file), "apns_key_id": apns.key.key_id,
            "apns_team_id": apns.key.team_id, "apns_topic": TOPIC,
            "apns_endpoint": apns.origin, "fcm_endpoint": fcm.origin,
            "fcm_credentials_file": str(creds),
            "provider_ca_file": str(ca.write_ca_file(tmp_path / "ca.pem")),
        }
        yield Providers(apns, fcm, settings)


@pytest.fixture
async def pgateway(db_url: str, providers: Providers, fast_backoff: None,
                   settings_overrides: dict[str, Any]) -> AsyncIterator[Gateway]:
    gw = Gateway(make_settings(db_url, **providers.settings, **settings_overrides))
    async with gw.running():
        yield gw


@pytest.fixture
async def pclient(pgateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=pgateway.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://pushgo.test") as c:
        yield c
