"""Several apps on one gateway: each app's devices are reached through that app's own APNs
key and topic and its own FCM project, beside the default app of the PUSHGO_APNS_*/FCM_*
settings. One app comes from PUSHGO_APPS_FILE, another is added through the admin API while
the gateway serves; a removed app's deliveries fail with a recorded reason."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa

from pushgo.app import Gateway
from pushgo.store.schema import deliveries
from pushgo.testing.mock_apns import APNsNotification, MockAPNs
from pushgo.testing.mock_fcm import MockFCM
from pushgo.testing.tls import LocalCA
from tests.conftest import make_settings
from tests.helpers import PASSWORD, assert_error, call, new_channel
from tests.providers import TOPIC, Providers


@dataclass
class AppMocks:
    name: str
    apns: MockAPNs
    fcm: MockFCM
    doc: dict[str, Any]  # its definition: {"apns": {...}, "fcm": {...}}


def toml_of(name: str, doc: dict[str, Any]) -> str:
    lines = []
    for group, table in doc.items():
        lines.append(f"[apps.{name}.{group}]")
        for key, value in table.items():
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


@pytest.fixture
async def app_mocks(tmp_path: Path, providers: Providers) -> AsyncIterator[dict[str, AppMocks]]:
    """Two apps, acme and globex, each with its own mock APNs (topic, key) and mock FCM
    (project, service account), trusted through the default app's CA file."""
    tls: LocalCA = providers.apns.tls  # one CA: the default app's CA file trusts them all
    out: dict[str, AppMocks] = {}
    async with AsyncExitStack() as stack:
        for name in ("acme", "globex"):
            apns = MockAPNs(topic=f"com.{name}.app", tls=tls, validate=True)
            fcm = MockFCM(project_id=f"{name}-project", tls=tls)
            await stack.enter_async_context(apns.serving())
            await stack.enter_async_context(fcm.serving())
            key = apns.key.write(tmp_path / f"{name}.p8")
            creds = fcm.write_service_account(tmp_path / f"{name}-fcm.json")
            out[name] = AppMocks(name, apns, fcm, {
                "apns": {"key_file": str(key), "key_id": apns.key.key_id,
                         "team_id": apns.key.team_id, "topic": apns.topic,
                         "endpoint": apns.origin},
                "fcm": {"credentials_file": str(creds), "endpoint": fcm.origin}})
        yield out


@pytest.fixture
async def apps_gateway(db_url: str, providers: Providers, app_mocks: dict[str, AppMocks],
                       fast_backoff: None, tmp_path: Path) -> AsyncIterator[Gateway]:
    """The default app from the settings, acme from PUSHGO_APPS_FILE (globex: not yet)."""
    apps_file = tmp_path / "apps.toml"
    apps_file.write_text(toml_of("acme", app_mocks["acme"].doc))
    gw = Gateway(make_settings(db_url, **providers.settings, token="gw-token",
                               apps_file=str(apps_file)))
    async with gw.running():
        yield gw


@pytest.fixture
async def aclient(apps_gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=apps_gateway.asgi),
                                 base_url="http://pushgo.test",
                                 headers={"Authorization": "Bearer gw-token"}) as c:
        yield c


async def device(client: httpx.AsyncClient, platform: str, route: str, token: str,
                 app: str | None) -> str:
    body: dict[str, Any] = {"platform": platform}
    if app is not None:
        body["app"] = app
    key = str((await call(client, "/device/register", body))["device_key"])
    await call(client, "/channel/device", {"device_key": key, "channel_type": route,
                                           "provider_token": token})
    return key


def jwt_header(note: APNsNotification) -> dict[str, Any]:
    token = note.headers["authorization"].split()[1]
    head = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))  # type: ignore[no-any-return]


async def failures(gateway: Gateway, n: int) -> list[str | None]:
    def q(conn: sa.Connection) -> list[str | None]:
        return [r[0] for r in conn.execute(sa.select(deliveries.c.last_error).where(
            deliveries.c.state == "failed"))]

    with anyio.fail_after(10):
        while True:
            got: list[str | None] = await gateway.store.read(q)
            if len(got) >= n:
                return got
            await anyio.sleep(0.02)


async def test_each_apps_devices_get_the_message_through_their_own_apps_credentials(
        aclient, apps_gateway, providers, app_mocks):
    # globex is added while the gateway serves; no restart follows.
    globex = app_mocks["globex"]
    await call(aclient, "/admin/apps", {"name": "globex", **globex.doc})
    tokens: dict[tuple[str, str], str] = {}
    keys = []
    for app in ("acme", "globex", None):
        tokens[(app or "default", "apns")] = secrets.token_hex(32)
        tokens[(app or "default", "fcm")] = "fcm-" + secrets.token_urlsafe(30)
        keys.append(await device(aclient, "ios", "apns", tokens[(app or "default", "apns")], app))
        keys.append(await device(aclient, "android", "fcm", tokens[(app or "default", "fcm")],
                                 app))
    cid = await new_channel(aclient, keys[0])
    for key in keys[1:]:
        await call(aclient, "/channel/subscribe",
                   {"device_key": key, "channel_id": cid, "password": PASSWORD})
    await call(aclient, "/message", {"channel_id": cid, "password": PASSWORD, "title": "Hi"})

    for name, mocks in app_mocks.items():
        [note] = await mocks.apns.notifications.wait_for(1)
        [msg] = await mocks.fcm.messages.wait_for(1)
        assert note.status == 200 and note.token == tokens[(name, "apns")]
        assert note.headers["apns-topic"] == f"com.{name}.app"
        assert jwt_header(note)["kid"] == mocks.apns.key.key_id
        assert msg.status == 200 and msg.token == tokens[(name, "fcm")]
        assert msg.project == f"{name}-project"
    [note] = await providers.apns.notifications.wait_for(1)
    [msg] = await providers.fcm.messages.wait_for(1)
    assert note.headers["apns-topic"] == TOPIC and note.token == tokens[("default", "apns")]
    assert jwt_header(note)["kid"] == providers.apns.key.key_id
    assert msg.project == providers.fcm.project_id and msg.token == tokens[("default", "fcm")]
    # Each mock saw its own app's devices and no other's.
    for mocks in (*app_mocks.values(), providers):
        assert len(mocks.apns.notifications) == 1 and len(mocks.fcm.messages) == 1

    # globex removed: its devices' next deliveries fail with the reason, the others go out.
    assert (await aclient.delete("/admin/apps/globex")).status_code == 200
    await call(aclient, "/message", {"channel_id": cid, "password": PASSWORD, "title": "2"})
    await app_mocks["acme"].apns.notifications.wait_for(2)
    await providers.fcm.messages.wait_for(2)
    assert await failures(apps_gateway, 2) == ["app_not_found:globex"] * 2
    assert len(globex.apns.notifications) == 1 and len(globex.fcm.messages) == 1


async def test_an_unknown_app_at_registration_is_app_not_found(aclient):
    resp = await aclient.post("/device/register", json={"platform": "ios", "app": "nope"})
    assert_error(resp, 404, "app_not_found")
    # a name no app could have is not looked up, and its echo is bounded
    resp = await aclient.post("/device/register", json={"platform": "ios", "app": "\U0006241e" * 500})
    assert_error(resp, 404, "app_not_found")
    assert len(resp.json()["error"]) < 1000  # 500 characters in, 64 shown
    key = (await call(aclient, "/device/register", {"platform": "ios", "app": "acme"}))[
        "device_key"]
    resp = await aclient.post("/channel/device", json={
        "device_key": key, "channel_type": "apns", "provider_token": "ab" * 32, "app": "zz"})
    assert_error(resp, 404, "app_not_found")


async def test_a_direct_send_goes_out_as_the_app_it_names(aclient, app_mocks, providers):
    token = secrets.token_hex(32)
    line = json.dumps({"route": "apns", "tokens": [token], "app": "acme", "title": "direct"})
    resp = await aclient.post("/messages/bulk", content=line + "\n",
                              headers={"Content-Type": "application/x-ndjson"})
    assert resp.status_code == 200, resp.text
    [note] = await app_mocks["acme"].apns.notifications.wait_for(1)
    assert note.token == token and note.headers["apns-topic"] == "com.acme.app"
    assert len(providers.apns.notifications) == 0
    bad = json.dumps({"route": "apns", "tokens": [token], "app": "nope", "title": "x"})
    resp = await aclient.post("/messages/bulk", content=bad + "\n",
                              headers={"Content-Type": "application/x-ndjson"})
    assert json.loads(resp.text.splitlines()[0])["error_code"] == "app_not_found"


async def test_the_apps_file_app_is_listed_without_secrets_and_cannot_be_added_again(
        aclient, app_mocks):
    listed = (await call(aclient, "/admin/apps"))["apps"]
    by_name = {a["name"]: a for a in listed}
    assert by_name["default"]["source"] == "settings"
    assert by_name["acme"]["source"] == "file"
    assert by_name["acme"]["config"]["fcm"]["project_id"] == "acme-project"
    resp = await aclient.post("/admin/apps", json={"name": "acme", **app_mocks["acme"].doc})
    assert_error(resp, 409, "app_exists")
    resp = await aclient.delete("/admin/apps/acme")
    assert_error(resp, 409, "app_exists")
    resp = await aclient.delete("/admin/apps/nobody")
    assert_error(resp, 404, "app_not_found")
    resp = await aclient.post("/admin/apps", json={
        "name": "win", "wns": {"client_id": "ms-app://w", "client_secret": "very-secret"}})
    assert resp.status_code == 200 and "very-secret" not in resp.text
    listed_text = (await aclient.get("/admin/apps")).text
    assert "very-secret" not in listed_text and "ms-app://w" in listed_text
    resp = await aclient.post("/admin/apps", json={"name": "half", "apns": {"key_id": "K"}})
    assert resp.status_code == 400
