"""pushgo.service.apps driven directly: only an admin principal lists, adds and removes apps,
each change audited; PUSHGO_APPS_FILE errors name the app and the field; a key limited to
apps must name one of its own for a direct send or a device."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pushgo.errors import GatewayError
from pushgo.protocol import wire
from pushgo.service import Context, Services
from pushgo.service.apps import Apps, check_paths, load_file
from pushgo.service.bulk import Bulk
from pushgo.service.principal import PRINCIPAL, Principal, Scope
from pushgo.settings import SettingsError
from tests.conftest import make_settings

pytestmark = pytest.mark.anyio
TOKEN = "gateway-token-1"
WNS = {"client_id": "ms-app://s-1", "client_secret": "wns-secret-value"}


@contextmanager
def acting_as(**kw: Any) -> Iterator[None]:
    """The request's principal is an API key with these rights (not root)."""
    base: dict[str, Any] = {"key_id": "0123456789abcdef", "name": "k",
                            "scopes": frozenset({Scope.SEND.value})}
    token = PRINCIPAL.set(Principal(**{**base, **kw}))
    try:
        yield
    finally:
        PRINCIPAL.reset(token)


async def test_a_key_without_the_admin_scope_may_not_touch_apps(svc):
    with acting_as(scopes=frozenset({Scope.SEND.value, Scope.DIRECT.value})):
        for attempt in (svc.apps.list, lambda: svc.apps.create({"name": "x", "wns": WNS}),
                        lambda: svc.apps.remove("x")):
            with pytest.raises(GatewayError) as err:
                await attempt()
            assert (err.value.status, err.value.code) == (403, "scope_required")
    assert [a.name for a in await svc.apps.list()] == ["default"]  # root may


async def test_an_admin_adds_and_removes_an_app_each_audited_without_its_secret(svc):
    with acting_as(scopes=frozenset({Scope.ADMIN.value})):
        made = await svc.apps.create({"name": "desk", "wns": WNS})
        assert made.routes == ("wns",) and "client_secret" not in made.config["wns"]
        assert [a.name for a in await svc.apps.list()] == ["default", "desk"]
        await svc.apps.remove("desk")
        assert [a.name for a in await svc.apps.list()] == ["default"]
    entries = await svc.audit.recent()
    assert [(e.action, e.target, e.actor) for e in entries][:2] == [
        ("app.remove", "desk", "0123456789abcdef"), ("app.create", "desk", "0123456789abcdef")]
    assert all("wns-secret-value" not in json.dumps(e.detail) for e in entries)


async def test_a_bad_definition_names_the_app_and_field(svc):
    with pytest.raises(GatewayError) as err:
        await svc.apps.create({"name": "a", "apns": {"key_id": "K", "team_id": "T",
                                                     "topic": "com.a", "key_file": "/none"}})
    assert err.value.code == "invalid_app"
    assert "app 'a' field apns.key_file" in err.value.message
    with pytest.raises(GatewayError) as err:
        await svc.apps.create({"name": "Bad Name", "wns": WNS})
    assert err.value.code == "invalid_app" and "field name" in err.value.message


@pytest.mark.parametrize(("text", "message"), [
    ("[apps.x.apns]\nkey_id = 'K'\n", "app 'x' field apns.key_file: is required"),
    ("[apps.x]\nsmtp = {}\n", "app 'x' field smtp: unknown field"),
    ("[apps.x.fcm]\ncredentials_file = '/nowhere.json'\n",
     "app 'x' field fcm.credentials_file: no service-account JSON"),
    ("[apps.default.wns]\nclient_id = 'a'\nclient_secret = 'b'\n", "app 'default' field name"),
    ("[apps.x.wns]\nclient_id = 'a'\nclient_secret = 'b'\nendpoint = 'http://h'\n",
     "app 'x' field wns.endpoint: expected an origin"),
    ("[apps.x\n", "not valid TOML"),
])
def test_apps_file_errors_name_the_app_and_field(tmp_path: Path, text: str, message: str):
    path = tmp_path / "apps.toml"
    path.write_text(text)
    with pytest.raises(SettingsError) as err:
        load_file(str(path), check_paths)
    assert str(err.value).startswith("invalid PUSHGO_APPS_FILE: ")
    assert message in str(err.value)


async def test_a_stored_app_the_file_also_defines_stops_start_up(svc, tmp_path: Path):
    await svc.apps.create({"name": "desk", "wns": WNS})
    path = tmp_path / "apps.toml"
    path.write_text("[apps.desk.wns]\nclient_id = 'a'\nclient_secret = 'b'\n")
    apps = Apps(Context(make_settings(svc.ctx.store.url, apps_file=str(path)), svc.ctx.store))
    with pytest.raises(SettingsError, match="app 'desk' is also stored"):
        await apps.start()


@pytest.mark.parametrize("settings_overrides", [{"token": TOKEN}])
async def test_a_key_limited_to_apps_must_name_one_of_them(svc: Services):
    await svc.apps.create({"name": "desk", "wns": WNS})
    await svc.apps.create({"name": "other", "wns": WNS})
    engine = Bulk(svc.ctx, svc.channels, svc.publisher, ("apns", "wns"), svc.apps)
    with acting_as(scopes=frozenset({Scope.DIRECT.value, Scope.DEVICES.value}),
                   apps=frozenset({"desk"})):
        await limited_key_checks(svc, engine)


async def limited_key_checks(svc: Services, engine: Bulk) -> None:
    for app in (None, "other"):
        with pytest.raises(GatewayError) as err:
            await engine._check_direct("wns", app)
        assert (err.value.status, err.value.code) == (403, "app_not_allowed")
    assert await engine._check_direct("wns", "desk") == "desk"
    with pytest.raises(GatewayError) as err:
        await engine._check_direct("apns", "desk")  # desk has no APNs credentials
    assert err.value.code == "provider_not_configured"
    with pytest.raises(GatewayError) as err:
        await svc.devices.register(wire.DeviceRegisterIn(platform="ios", app="other"))
    assert err.value.code == "app_not_allowed"
    out = await svc.devices.register(wire.DeviceRegisterIn(platform="windows", app="desk"))
    assert out.issued_new_key
