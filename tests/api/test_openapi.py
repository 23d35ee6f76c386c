"""GET /openapi.json and GET /docs: the document is valid OpenAPI 3.1, describes every route the
app serves (a route added without a declaration in pushgo.api.catalog fails here), its
request schemas take the requests the other API tests send and the live routes accept them,
the live answers match its response schemas, and the reference page renders it in a real
headless Chromium without reaching past the gateway. Trio and asyncio, SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from html import unescape
from typing import Any

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from pushgo.api.openapi import build_document, route_methods, template
from pushgo.app import Gateway
from pushgo.errors import codes
from tests.browser import in_browser
from tests.helpers import PASSWORD
from tests.live import hypercorn_server

TOKEN = "doc-token-1"
AUTH = {"authorization": f"Bearer {TOKEN}"}
T0 = 1_710_000_000


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"token": TOKEN, "mcp_enabled": True}


@pytest.fixture
async def api(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=gateway.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://pushgo.test",
                                 headers=AUTH) as c:
        yield c


async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    resp = await client.get("/openapi.json", headers={"authorization": ""})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    doc: dict[str, Any] = resp.json()
    return doc


def app_operations(routes: list[Any]) -> set[tuple[str, str]]:
    """(path, method) of every route of the app, read from the router itself."""
    out: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, Route):
            out |= {(template(route), m.lower()) for m in route_methods(route)}
        elif isinstance(route, WebSocketRoute):
            out.add((template(route), "get"))
        else:
            raise AssertionError(f"a route kind the document does not know: {route!r}")
    return out


def missing(doc: dict[str, Any], routes: list[Any]) -> list[tuple[str, str]]:
    """The app's operations the document leaves out or marks undescribed."""
    return sorted((p, m) for p, m in app_operations(routes)
                  if m not in doc["paths"].get(p, {})
                  or doc["paths"][p][m].get("x-pushgo-undescribed"))


async def test_document_is_valid_openapi_31(gateway, api):
    doc = await document(api)
    validate(doc)  # openapi-spec-validator picks the 3.1 validator from "openapi": "3.1.0"
    assert doc["openapi"] == "3.1.0"
    assert doc["components"]["securitySchemes"]["gatewayToken"] == {
        "type": "http", "scheme": "bearer", "description": "the gateway token (PUSHGO_TOKEN)"}
    assert doc["security"] == [{"gatewayToken": []}, {"tokenQuery": []}]
    assert (await api.get("/openapi.json")).content == (await api.get("/openapi.json")).content


async def test_every_route_of_the_app_is_described(gateway, api):
    doc = await document(api)
    routes = list(gateway.starlette.routes)
    assert missing(doc, routes) == []
    assert {p for p, _ in app_operations(routes)} == set(doc["paths"])
    for path in ("/message", "/v2/messages/pull", "/send_status/{op_id}", "/mcp",
                 "/oauth/token", "/ntfy/{rest}", "/openapi.json", "/docs"):
        assert path in doc["paths"], path
    # A route added to the app without a declaration is listed but undescribed: caught.

    async def new(_request: Any) -> Response:
        return Response()

    grown = [*routes, Route("/brand/new", new, methods=["POST"])]
    assert missing(build_document(grown, gateway.settings, lambda _p: False), grown) == [
        ("/brand/new", "post")]
    assert missing(doc, grown) == [("/brand/new", "post")]


async def test_error_codes_come_from_the_registry(api):
    doc = await document(api)
    seen = set()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for status, resp in op["responses"].items():
                for code in resp.get("x-error-codes", ()):
                    assert codes.by_code(code).status == int(status), (path, method, code)
                    seen.add(code)
            if op.get("security") != [] and "x-error-codes" in json.dumps(op["responses"]):
                assert "authentication_failed" in op["responses"]["401"]["x-error-codes"]
    assert {"password_mismatch", "rate_limited", "op_id_conflict", "invalid_platform",
            "operation_not_found", "store_unavailable"} <= seen


def schema_of(doc: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator of ``schema`` whose ``#/components/...`` references resolve in ``doc``."""
    return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})


class Checked:
    """Sends known-good requests: each body is first checked against the document's request
    schema, the answer must be 200 and match the documented success schema."""

    def __init__(self, client: httpx.AsyncClient, doc: dict[str, Any]) -> None:
        self.client = client
        self.doc = doc
        self.done: set[tuple[str, str]] = set()

    async def __call__(self, method: str, path: str, url: str | None = None,
                       body: Any = None, params: dict[str, str] | None = None) -> Any:
        op = self.doc["paths"][path][method.lower()]
        if body is not None:
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            schema_of(self.doc, schema).validate(body)
        for param in op.get("parameters", ()):
            if param["in"] == "query" and param["required"]:
                assert param["name"] in (params or {}), (path, param["name"])
        for name, value in (params or {}).items():
            (param,) = [p for p in op["parameters"] if p["name"] == name]
            schema_of(self.doc, param["schema"]).validate(value)
        resp = await self.client.request(method, url or path, json=body, params=params)
        status = next(s for s in op["responses"] if s.startswith("2"))  # 200, or 201
        assert resp.status_code == int(status), (method, path, resp.text)
        media = resp.headers["content-type"].split(";")[0]
        success = op["responses"][status]["content"]
        assert media in success, (path, media)
        self.done.add((path, method.lower()))
        if media != "application/json":
            return resp.text
        answer = resp.json()
        schema_of(self.doc, success[media]["schema"]).validate(answer)
        return answer.get("data", answer)


async def live_activity_routes(call: Checked, cid: str, event_id: str) -> None:
    """The Live Activity token routes, for an iOS device on APNs and an open event."""
    ios = (await call("POST", "/device/register", body={"platform": "ios"}))["device_key"]
    await call("POST", "/channel/device", body={"device_key": ios, "channel_type": "apns",
                                                "provider_token": "ef" * 32})
    await call("POST", "/device/liveactivity/start-token", body={"device_key": ios,
                                                                 "token": "a1" * 32})
    await call("POST", "/device/liveactivity/start-token/delete", body={"device_key": ios})
    activity = {"device_key": ios, "channel_id": cid, "event_id": event_id}
    await call("POST", "/device/liveactivity/token", body={**activity, "token": "b2" * 32})
    await call("POST", "/device/liveactivity/token/delete", body=activity)
    # the PushGo iOS app's own registration, by activity_key
    app_key = {"activity_key": f"event:{event_id}", "platform": "ios", "schema_version": 1}
    await call("POST", "/v1/activity/register",
               body={**app_key, "channel_id": cid, "token": "c3" * 32})
    await call("POST", "/v1/activity/unregister", body=app_key)


async def test_known_good_requests_match_the_document_and_the_routes(gateway, api):
    doc = await document(api)
    call = Checked(api, doc)
    key = (await call("POST", "/device/register", body={"platform": "ios"}))["device_key"]
    await call("POST", "/channel/device", body={"device_key": key, "channel_type": "apns",
                                                "provider_token": "ab" * 32})
    await call("POST", "/channel/device/delete", body={"device_key": key, "channel_type": "apns"})
    await call("POST", "/channel/device", body={"device_key": key, "channel_type": "apns",
                                                "provider_token": "cd" * 32})
    await call("POST", "/channel/device/provider-token/retire",
               body={"platform": "ios", "provider_token": "cd" * 32})
    await call("POST", "/channel/device", body={"device_key": key, "channel_type": "private",
                                                "platform": "ios"})
    sub = await call("POST", "/channel/subscribe",
                     body={"device_key": key, "channel_name": "ops", "password": PASSWORD})
    cid = sub["channel_id"]
    base = {"channel_id": cid, "password": PASSWORD}
    await call("GET", "/channel/exists", params={"channel_id": cid})
    await call("POST", "/channel/rename", body={**base, "channel_name": "ops2"})
    await call("POST", "/channel/sync", body={"device_key": key, "channels": [base]})
    sent = await call("POST", "/message", body={**base, "title": "hello", "body": "b",
                                                "severity": "high", "tags": ["x"],
                                                "metadata": {"room": "hall"}, "op_id": "op-1"})
    await call("GET", "/message", params={**base, "title": "via get", "tags": "a,b"})
    event = {"title": "Door open", "status": "Open", "message": "Rear door open",
             "severity": "high", "event_time": T0}
    ev = await call("POST", "/event/create", body={**base, **event})
    await live_activity_routes(call, cid, ev["event_id"])
    for action in ("update", "close"):
        await call("POST", f"/event/{action}", body={**base, **event, "event_id": ev["event_id"],
                                                     "event_time": T0 + 60})
    th = await call("POST", "/thing/create", body={**base, "title": "Pump", "observed_at": T0})
    tid = th["thing_id"]
    ev2 = await call("POST", "/event/create", body={**base, **event, "thing_id": tid})
    await call("POST", "/thing/{thing_id}/event/close", f"/thing/{tid}/event/close",
               body={**base, **event, "event_id": ev2["event_id"], "event_time": T0 + 5})
    for action in ("update", "archive", "delete"):
        await call("POST", f"/thing/{action}", body={**base, "thing_id": tid,
                                                     "observed_at": T0 + 9})
    await call("GET", "/deliveries/{op_id}", f"/deliveries/{sent['op_id']}")
    await call("GET", "/send_status/{op_id}", f"/send_status/{sent['op_id']}")
    # a scheduled send: its status while it waits, and its cancel
    later = gateway.ctx.now() // 1000 + 3600
    await call("POST", "/message", body={**base, "title": "later", "op_id": "op-later",
                                         "deliver_at": later})
    waiting = await call("GET", "/deliveries/{op_id}", "/deliveries/op-later")
    assert waiting["state"] == "scheduled" and waiting["deliver_at"] == later * 1000
    assert (await call("GET", "/send_status/{op_id}", "/send_status/op-later"))["status"] \
        == "scheduled"
    assert (await call("POST", "/operations/{op_id}/cancel", "/operations/op-later/cancel",
                       body=base))["outcome"] == "cancelled"
    await call("POST", "/message", body={**base, "title": "on call", "op_id": "op-r",
                                         "repeat": {"every_s": 60, "max": 3}})
    await call("GET", "/receipts/{op_id}", "/receipts/op-r")
    await call("POST", "/receipts/ack", body={"device_key": key, "op_id": "op-r"})
    page = await call("POST", "/v2/messages/pull", body={"device_key": key})
    ids = [item["delivery_id"] for item in page["items"]]
    assert ids
    await call("POST", "/v2/messages/ack", body={"device_key": key, "delivery_ids": ids[:2]})
    await call("POST", "/messages/ack", body={"device_key": key, "delivery_id": ids[2]})
    await call("POST", "/messages/pull", body={"device_key": key})
    await call("POST", "/ntfy/{rest}", f"/ntfy/{cid}:{PASSWORD}", body=None)
    await call("POST", "/bark/{rest}", "/bark/push",
               body={"device_key": f"{cid}:{PASSWORD}", "title": "v2", "body": "json"})
    await call("GET", "/serverchan/{rest}", f"/serverchan/{cid}:{PASSWORD}.send",
               params={"title": "Job failed"})
    made = await call("POST", "/channel/create", body={"channel_name": "ops3",
                                                       "password": PASSWORD})
    await call("GET", "/channel/info", params={"channel_id": made["channel_id"]})
    made_key = await call("POST", "/admin/keys", body={
        "name": "ci", "scopes": ["send", "status"], "channels": [cid], "weight": 2})
    await call("GET", "/admin/keys", params={"all": "true"})
    await call("DELETE", "/admin/keys/{key_id}", f"/admin/keys/{made_key['key_id']}")
    await call("GET", "/admin/audit", params={"limit": "10"})
    await call("POST", "/channel/unsubscribe", body={"device_key": key, "channel_id": cid})
    made_app = await call("POST", "/admin/apps", body={
        "name": "desk", "wns": {"client_id": "ms-app://desk", "client_secret": "desk-secret"}})
    assert "client_secret" not in json.dumps(made_app)
    assert "desk" in [a["name"] for a in (await call("GET", "/admin/apps"))["apps"]]
    await call("DELETE", "/admin/apps/{name}", "/admin/apps/desk")
    for path in ("/healthz", "/readyz", "/gateway/profile", "/metrics", "/", "/docs",
                 "/openapi.json", "/webpush/vapid-public-key", "/webpush/subscribe",
                 "/webpush/sw.js", "/console", "/admin/console/stats",
                 "/admin/console/providers", "/admin/console/failures"):
        await call("GET", path)
    await call("GET", "/admin/console/operations", "/admin/console/operations?limit=5")
    # Every JSON-envelope route of the gateway's own API was driven with a good request.
    envelope = {(p, m) for p, item in doc["paths"].items() for m, op in item.items()
                if "Failed" in json.dumps(op["responses"])
                and not p.startswith(("/private/", "/deliveries/{op_id}/stream"))
                and p not in ("/messages/bulk",)}
    # (each compat route is one template for every method: one good request each)
    assert {(p, m) for p, m in envelope - call.done
            if p not in {p for p, _ in call.done}} == set()
    assert {(p, m) for p, m in envelope - call.done
            if not p.startswith(("/ntfy/", "/bark/", "/serverchan/"))} == set()


async def test_the_description_needs_no_token_and_the_api_still_does(api):
    async with httpx.AsyncClient(transport=api._transport, base_url="http://pushgo.test") as anon:
        assert (await anon.get("/openapi.json")).status_code == 200
        assert (await anon.get("/docs")).status_code == 200
        assert (await anon.get("/healthz")).status_code == 401
        assert (await anon.get("/")).status_code == 401


async def test_the_index_lists_every_route_and_links_the_reference(api):
    doc = await document(api)
    html = unescape((await api.get("/")).text)
    for path in doc["paths"]:
        assert f"<code>{path}</code>" in html, path
    assert 'href="docs"' in html and 'href="openapi.json"' in html


@pytest.mark.slow
async def test_the_docs_page_renders_every_route_offline(gateway, api):
    doc = await document(api)
    expected = sorted(f"{m.upper()} {p}" for p, item in doc["paths"].items() for m in item)

    async with hypercorn_server(gateway) as base:
        def script(context: Any) -> tuple[list[str], list[str], str]:
            outside: list[str] = []

            def only_the_gateway(route: Any) -> None:
                if route.request.url.startswith(base + "/"):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            context.route("**/*", only_the_gateway)
            page = context.new_page()
            page.goto(base + "/docs")
            page.wait_for_selector("details[data-search]")
            listed = page.eval_on_selector_all(
                "details[data-search] > summary",
                "els => els.map(e => e.querySelector('.m').textContent + ' ' +"
                " e.querySelector('.path').textContent)")
            page.fill("#filter", "/v2/messages/ack")
            visible = page.eval_on_selector_all(
                "details[data-search]:not([hidden]) .path", "els => els.map(e => e.textContent)")
            return listed, outside, " ".join(visible)

        listed, outside, filtered = await in_browser(script)
    assert sorted(listed) == expected
    assert outside == []
    assert filtered == "/v2/messages/ack"
