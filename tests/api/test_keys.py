"""Scoped API keys through HTTP: created by the admin API, used as ``Authorization: Bearer``
or ``?token=``, held to their scopes (403 ``scope_required``) and channels (403
``channel_not_allowed``, per item in bulk, on status and cancel), revoked at once, recorded in
the audit log; never a secret in a list or a log line. On a gateway with a token and one
without."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from pushgo.api.scopes import ROUTE_SCOPES, scope_of
from pushgo.app import Gateway
from pushgo.errors import codes
from pushgo.service.principal import Scope
from tests.api.test_events_things import event_fields
from tests.conftest import make_settings
from tests.helpers import PASSWORD, assert_error, call, new_channel

TOKEN = "keys-gateway-token"
ROOT = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(params=["token", "open"])
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"token": TOKEN} if request.param == "token" else {}


@pytest.fixture
async def api(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=gateway.asgi)
    headers = ROOT if gateway.settings.token else {}
    async with httpx.AsyncClient(transport=transport, base_url="http://pushgo.test",
                                 headers=headers) as c:
        yield c


async def create_key(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    resp = await api.post("/admin/keys", json={"name": "sender", **body})
    assert resp.status_code == 201, resp.text
    data: dict[str, Any] = resp.json()["data"]
    return data


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def message(channel_id: str, **fields: Any) -> dict[str, Any]:
    return {"channel_id": channel_id, "password": PASSWORD, "title": "hi", **fields}


async def test_every_route_of_the_app_has_its_scope(db_url: str) -> None:
    gw = Gateway(make_settings(db_url, mcp_enabled=True, webpush_enabled=True, token=TOKEN))
    templates = {str(getattr(r, "path", "")) for r in gw.starlette.routes}
    unlisted = [t for t in templates if t not in ROUTE_SCOPES
                and not t.startswith(("/admin/", "/mcp", "/oauth/", "/.well-known/"))]
    assert unlisted == []
    assert scope_of("/admin/keys") is Scope.ADMIN
    assert scope_of("/brand/new") is Scope.ADMIN  # closed until given a scope
    assert scope_of("/metrics") is Scope.METRICS


async def test_a_channel_key_sends_only_to_its_channel_and_reads_nothing_else(
        api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    mine, other = await new_channel(api, name="mine"), await new_channel(api, name="other")
    made = await create_key(api, scopes=["send", "status"], channels=[mine], weight=3)
    key = made["key"]
    assert made["key_id"] in key and made["scopes"] == ["send", "status"]
    assert made["channels"] == [mine] and made["weight"] == 3
    async with httpx.AsyncClient(transport=api._transport, base_url="http://pushgo.test",
                                 headers=bearer(key)) as k:
        sent = await call(k, "/message", message(mine, op_id="op-mine"))
        assert sent["channel_id"] == mine
        assert_error(await k.post("/message", json=message(other)), 403,
                     codes.CHANNEL_NOT_ALLOWED.code)
        assert_error(await k.get("/message", params={**message(other)}), 403,
                     codes.CHANNEL_NOT_ALLOWED.code)
        assert_error(await k.post("/event/create", json={**event_fields(), **message(other)}),
                     403, codes.CHANNEL_NOT_ALLOWED.code)
        assert_error(await k.post(f"/ntfy/{other}:{PASSWORD}", content=b"hi"), 403,
                     codes.CHANNEL_NOT_ALLOWED.code)
        # Without a scope: /metrics, the admin routes, the devices' routes.
        assert_error(await k.get("/metrics"), 403, codes.SCOPE_REQUIRED.code)
        assert_error(await k.get("/admin/keys"), 403, codes.SCOPE_REQUIRED.code)
        assert_error(await k.post("/device/register", json={"platform": "ios"}), 403,
                     codes.SCOPE_REQUIRED.code)
        # Bulk: per item.
        body = "\n".join(json.dumps(m) for m in (message(mine), message(other)))
        resp = await k.post("/messages/bulk", content=body,
                            headers={"content-type": "application/x-ndjson"})
        results = [json.loads(line) for line in resp.text.splitlines()]
        assert [r["ok"] for r in results] == [True, False]
        assert results[1]["error_code"] == codes.CHANNEL_NOT_ALLOWED.code
        # Status and cancel: its own operations, not another channel's.
        assert (await k.get("/deliveries/op-mine")).status_code == 200
        assert (await k.get("/send_status/op-mine")).status_code == 200
        await call(api, "/message", message(other, op_id="op-other"))
        assert_error(await k.get("/deliveries/op-other"), 403, codes.CHANNEL_NOT_ALLOWED.code)
        assert_error(await k.get("/deliveries/op-other", params={"channel_id": other}), 403,
                     codes.CHANNEL_NOT_ALLOWED.code)
        assert_error(await k.post("/operations/op-other/cancel"), 403,
                     codes.CHANNEL_NOT_ALLOWED.code)
        assert_error(await k.get("/deliveries/op-none"), 404,
                     codes.OPERATION_NOT_FOUND.code)
        assert (await k.post("/operations/op-mine/cancel")).status_code == 200
    # The query token works as the header does.
    bare = httpx.AsyncClient(transport=api._transport, base_url="http://pushgo.test")
    async with bare:
        assert (await bare.post("/message", params={"token": key},
                                json=message(mine))).status_code == 200
        assert_error(await bare.post("/message", params={"token": key}, json=message(other)),
                     403, codes.CHANNEL_NOT_ALLOWED.code)
    # Never a secret: not in lists, not in any log line.
    listed = (await api.get("/admin/keys")).text
    assert key not in listed and "secret" not in listed and made["key_id"] in listed
    ours = [r for r in caplog.records if r.name.startswith("pushgo")]
    assert ours  # the request lines were logged, and none holds the key
    logged = "\n".join(f"{r.getMessage()} {vars(r)}" for r in ours)
    assert key.split("_")[-1] not in logged


async def test_a_revoked_key_fails_at_once_and_the_audit_log_says_who(
        api: httpx.AsyncClient, gateway: Gateway) -> None:
    cid = await new_channel(api)
    made = await create_key(api, scopes=["send"])
    k = {"authorization": f"Bearer {made['key']}"}
    assert (await api.post("/message", json=message(cid), headers=k)).status_code == 200
    revoked = await api.delete(f"/admin/keys/{made['key_id']}")
    assert revoked.status_code == 200 and revoked.json()["data"]["revoked_at"]
    assert_error(await api.post("/message", json=message(cid), headers=k), 401,
                 codes.AUTHENTICATION_FAILED.code)
    assert_error(await api.delete(f"/admin/keys/{made['key_id']}"), 404,
                 codes.KEY_NOT_FOUND.code)
    # A well-formed key nobody made, and a right id with a wrong secret.
    forged = made["key"][:-4] + ("AAAA" if not made["key"].endswith("AAAA") else "BBBB")
    for bad in ("pgk_0123456789abcdef_" + "x" * 43, forged):
        assert_error(await api.get("/healthz", headers=bearer(bad)), 401,
                     codes.AUTHENTICATION_FAILED.code)
    assert [r["key_id"] for r in (await call(api, "/admin/keys"))["keys"]] == []
    listed = (await call(api, "/admin/keys?all=true"))["keys"]
    assert [r["key_id"] for r in listed] == [made["key_id"]]
    entries = (await call(api, "/admin/audit?limit=10"))["entries"]
    assert [(e["action"], e["target"], e["actor"]) for e in entries] == [
        ("key.revoke", made["key_id"], "root"), ("key.create", made["key_id"], "root")]
    assert made["key"] not in json.dumps(entries)
    older = (await call(api, f"/admin/audit?before={entries[0]['seq']}"))["entries"]
    assert [e["action"] for e in older] == ["key.create"]
    # '²' passes str.isdigit() but not int(): still a 400, never a 500
    for bad in ("/admin/audit?limit=ten", "/admin/audit?before=-1", "/admin/audit?limit=%C2%B2",
                "/admin/audit?before=%C2%90", "/admin/keys?all=maybe",
                "/admin/keys?other=1"):
        assert_error(await api.get(bad), 400, codes.INVALID_QUERY.code)


async def test_an_admin_key_manages_keys_and_is_the_actor(api: httpx.AsyncClient) -> None:
    admin = await create_key(api, name="ops", scopes=["admin"])
    async with httpx.AsyncClient(transport=api._transport, base_url="http://pushgo.test",
                                 headers=bearer(admin["key"])) as k:
        made = (await k.post("/admin/keys", json={"name": "m", "scopes": ["metrics"]})).json()
        assert made["data"]["created_by"] == admin["key_id"]
        assert (await k.get("/metrics")).status_code == 200  # admin has every scope
        assert (await k.get("/metrics", headers=bearer(made["data"]["key"]))).status_code == 200
        assert (await k.post("/message", json={}, headers=bearer(made["data"]["key"]))
                ).status_code == 403
        entries = (await call(k, "/admin/audit"))["entries"]
        assert entries[0]["actor"] == admin["key_id"]


@pytest.mark.parametrize(("body", "code"), [
    ({"name": "", "scopes": ["send"]}, codes.INVALID_KEY_NAME),
    ({"name": "x" * 129, "scopes": ["send"]}, codes.INVALID_KEY_NAME),
    ({"name": "n", "scopes": []}, codes.INVALID_SCOPE),
    ({"name": "n", "scopes": ["sned"]}, codes.INVALID_SCOPE),
    ({"name": "n", "scopes": ["send"], "weight": 0}, codes.INVALID_KEY_LIMIT),
    ({"name": "n", "scopes": ["send"], "weight": 1001}, codes.INVALID_KEY_LIMIT),
    ({"name": "n", "scopes": ["send"], "rate_per_s": -1}, codes.INVALID_KEY_LIMIT),
    ({"name": "n", "scopes": ["send"], "daily_notifications": 0}, codes.INVALID_KEY_LIMIT),
    ({"name": "n", "scopes": ["send"], "channels": ["nope"]}, codes.INVALID_CHANNEL_ID),
    ({"name": "n", "scopes": ["send"], "apps": [""]}, codes.INVALID_ARGUMENTS),
])
async def test_bad_key_input_is_a_4xx_with_its_code(api: httpx.AsyncClient, body: dict[str, Any],
                                                    code: Any) -> None:
    assert_error(await api.post("/admin/keys", json=body), 400, code.code)


async def test_a_direct_bulk_item_needs_the_direct_scope(api: httpx.AsyncClient) -> None:
    made = await create_key(api, scopes=["send"])
    item = {"route": "apns", "tokens": ["a" * 64], "title": "t"}
    resp = await api.post("/messages/bulk", content=json.dumps(item),
                          headers={**bearer(made["key"]),
                                   "content-type": "application/x-ndjson"})
    result = json.loads(resp.text.splitlines()[0])
    assert result["error_code"] == codes.SCOPE_REQUIRED.code
