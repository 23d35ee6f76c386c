"""What the Web Push and WNS end-to-end tests share: a gateway pointed at one of the HTTP/1.1
push-service mocks (MockWebPush, MockWNS), an ASGI client on it, a device given a provider
route, its stored route, and the outcome of each of the route's deliveries. The mocks
themselves are the `push` and `wns` fixtures (tests/e2e/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import sqlalchemy as sa

from pushgo.app import Gateway
from pushgo.settings import Settings
from pushgo.store.schema import deliveries, devices
from pushgo.testing.mock_webpush import MockWebPush
from pushgo.testing.mock_wns import MockWNS
from tests.conftest import make_settings
from tests.helpers import call, register


def settings_for(db_url: str, mock: MockWebPush | MockWNS, tmp_path: Path,
                 **overrides: Any) -> Settings:
    """The gateway's settings pointing at `mock` (its CA written to tmp_path/ca.pem)."""
    ca_file = str(mock.tls.write_ca_file(tmp_path / "ca.pem"))
    return make_settings(db_url, **overrides, **mock.settings(ca_file))


@asynccontextmanager
async def running_gateway(db_url: str, mock: MockWebPush | MockWNS, tmp_path: Path,
                          **overrides: Any) -> AsyncIterator[Gateway]:
    gw = Gateway(settings_for(db_url, mock, tmp_path, **overrides))
    async with gw.running():
        yield gw


def client_of(gateway: Gateway, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway.asgi),
                             base_url="http://pushgo.test", **kwargs)


async def routed_device(client: httpx.AsyncClient, platform: str, channel_type: str,
                        provider_token: str) -> str:
    """A device registered on `platform` whose provider route is `channel_type`."""
    key = await register(client, platform)
    await call(client, "/channel/device", {"device_key": key, "channel_type": channel_type,
                                           "provider_token": provider_token})
    return key


async def route_of(gateway: Gateway, key: str) -> tuple[str, str | None]:
    """The device's stored (channel type, provider token)."""
    row = await gateway.store.read(
        lambda c: c.execute(sa.select(devices).where(devices.c.device_key == key)).first())
    return row.channel_type, row.provider_token


async def outcomes(gateway: Gateway, route: str, n: int) -> list[tuple[str, str | None]]:
    """Every delivery's (state, last error) on `route`, in queue order, once ``n`` of them
    have left the queue."""
    def q(conn: sa.Connection) -> list[tuple[str, str | None]]:
        rows = conn.execute(sa.select(deliveries.c.state, deliveries.c.last_error)
                            .where(deliveries.c.route == route).order_by(deliveries.c.seq))
        return [(r.state, r.last_error) for r in rows]

    with anyio.fail_after(10):
        while True:
            got: list[tuple[str, str | None]] = await gateway.store.read(q)
            if sum(1 for state, _ in got if state != "queued") >= n:
                return got
            await anyio.sleep(0.02)
