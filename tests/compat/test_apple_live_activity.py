"""The PushGo iOS app's Live Activities (AldenClark/pushgo, after v1.3.0:
``Shared/SystemIntegration/PushGoLiveActivityCoordinator.swift`` and
``PushGoLiveActivityTokenRegistrationService.swift``). The app starts an activity itself when
it stores an event's notification, and posts each token of ``activity.pushTokenUpdates`` (hex,
lowercase) to ``{base}/v1/activity/register`` as ``{activity_key: "event:<event_id>",
channel_id?, token, platform: "ios", schema_version: 1}``; when it sees the event closed it
posts ``{activity_key, platform, schema_version}`` to ``/v1/activity/unregister``. Bodies are
JSONEncoder with sorted keys (nil optionals omitted); headers are ``Content-Type:
application/json`` and ``Authorization: Bearer`` when a gateway token is set. The app reads
nothing of the answer but a 2xx status."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from pushgo.store.schema import live_activity_keys
from tests.compat.client_shapes import data_of, problem_of
from tests.helpers import PASSWORD, rows, stored_channel

TOKEN = "gateway-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
#: Subscribers a channel may have here: an event's app activities too.
LIMIT = 3
ACTIVITY_TOKEN = "0a" * 40  # an activity token's bytes as the app formats them


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"token": TOKEN, "channel_subscriber_limit": LIMIT}


async def app_post(client: httpx.AsyncClient, path: str, body: dict[str, Any],
                   auth: dict[str, str] = AUTH) -> httpx.Response:
    """As ``makeRequest`` + ``JSONEncoder(.sortedKeys)``: POST, JSON, the bearer."""
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return await client.post(path, content=raw,
                             headers={"content-type": "application/json", **auth})


def registration(event_id: str, token: str = ACTIVITY_TOKEN,
                 channel_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"activity_key": f"event:{event_id}", "token": token,
                            "platform": "ios", "schema_version": 1}
    if channel_id is not None:  # Codable omits a nil channelID
        body["channel_id"] = channel_id
    return body


async def open_event(client: httpx.AsyncClient, gateway: Any, title: str = "Disk pressure",
                     cid: str | None = None) -> tuple[str, str]:
    cid = cid or await stored_channel(gateway)
    data = data_of(await client.post("/event/create", headers=AUTH, json={
        "channel_id": cid, "password": PASSWORD, "title": title, "status": "open",
        "message": "Disk over 90 percent", "severity": "high", "event_time": 1_767_225_600}))
    return cid, str(data["event_id"])


async def test_the_app_registers_and_unregisters_an_activity_token(client, gateway):
    cid, eid = await open_event(client, gateway)
    resp = await app_post(client, "/v1/activity/register", registration(eid, channel_id=cid))
    data = data_of(resp)  # the app checks only 200...299
    assert data == {"activity_key": f"event:{eid}", "registered": True, "channel_id": cid,
                    "event_id": eid}
    # pushTokenUpdates yields again (the same token, or a new one): each is registered once
    data_of(await app_post(client, "/v1/activity/register", registration(eid, channel_id=cid)))
    other = "b7" * 32
    data_of(await app_post(client, "/v1/activity/register", registration(eid, other, cid)))
    got = await rows(gateway, live_activity_keys, event_id=eid)
    assert sorted((r.channel_id, r.token) for r in got) == [(cid, ACTIVITY_TOKEN), (cid, other)]
    # end(): PushGoLiveActivityTokenUnregistration(activityKey:) — no token: the key's all
    data = data_of(await app_post(client, "/v1/activity/unregister", {
        "activity_key": f"event:{eid}", "platform": "ios", "schema_version": 1}))
    assert data == {"activity_key": f"event:{eid}", "registered": False, "event_id": eid,
                    "removed": 2}
    assert await rows(gateway, live_activity_keys, event_id=eid) == []


async def test_a_registration_without_channel_finds_the_event(client, gateway):
    cid, eid = await open_event(client, gateway)
    data = data_of(await app_post(client, "/v1/activity/register", registration(eid)))
    assert data["channel_id"] == cid and data["event_id"] == eid
    # an unregister naming its token forgets that token alone
    data_of(await app_post(client, "/v1/activity/register", registration(eid, "c4" * 32)))
    data = data_of(await app_post(client, "/v1/activity/unregister", {
        "activity_key": f"event:{eid}", "token": ACTIVITY_TOKEN, "platform": "ios",
        "schema_version": 1}))
    assert data["removed"] == 1
    assert [r.token for r in await rows(gateway, live_activity_keys, event_id=eid)] == [
        "c4" * 32]


async def test_a_newer_app_field_is_ignored(client, gateway):
    cid, eid = await open_event(client, gateway)
    body = {**registration(eid, channel_id=cid), "activity_id": "6C1F…", "widget": "lock"}
    assert data_of(await app_post(client, "/v1/activity/register", body))["registered"]


async def test_what_the_gateway_refuses_is_a_problem_the_app_can_log(client, gateway):
    cid, eid = await open_event(client, gateway)
    register = "/v1/activity/register"
    # the gateway token is required like on every route
    resp = await app_post(client, register, registration(eid, channel_id=cid), auth={})
    assert resp.status_code == 401 and problem_of(resp)["code"] == "authentication_failed"
    cases: list[tuple[dict[str, Any], int, str]] = [
        (registration("nope", channel_id=cid), 404, "event_not_found"),
        ({**registration(eid), "activity_key": "thing:server-01"}, 400, "invalid_activity_key"),
        ({**registration(eid), "activity_key": "event:"}, 400, "invalid_activity_key"),
        ({**registration(eid), "schema_version": 2}, 400, "unsupported_schema_version"),
        ({**registration(eid), "platform": "android"}, 400, "live_activity_requires_ios_apns"),
        (registration(eid, "zz" * 32), 400, "invalid_provider_token"),
        (registration(eid, channel_id="not a channel"), 400, "invalid_channel_id"),
        ({"activity_key": f"event:{eid}", "platform": "ios"}, 400, "invalid_json_data"),
    ]
    for body, status, code in cases:
        resp = await app_post(client, register, body)
        assert resp.status_code == status, (body, resp.text)
        assert problem_of(resp)["code"] == code
    # an event id open in two channels needs the channel
    other = await stored_channel(gateway)
    data_of(await client.post("/event/update", headers=AUTH, json={
        "channel_id": other, "password": PASSWORD, "event_id": eid, "status": "open",
        "message": "m", "severity": "normal", "event_time": 1_767_225_600}))
    resp = await app_post(client, register, registration(eid))
    assert resp.status_code == 409 and problem_of(resp)["code"] == "activity_event_ambiguous"
    assert data_of(await app_post(client, register, registration(eid, channel_id=other)))[
        "channel_id"] == other
    # a closed event takes no activity
    data_of(await client.post("/event/close", headers=AUTH, json={
        "channel_id": cid, "password": PASSWORD, "event_id": eid, "status": "closed",
        "message": "m", "severity": "normal", "event_time": 1_767_225_600}))
    resp = await app_post(client, register, registration(eid, channel_id=cid))
    assert resp.status_code == 409 and problem_of(resp)["code"] == "event_closed"
    # with one of the two closed, the open one is found without the channel
    assert data_of(await app_post(client, register, registration(eid)))["channel_id"] == other


async def test_an_event_takes_as_many_activities_as_its_channel_may_have_subscribers(
        client, gateway):
    cid, eid = await open_event(client, gateway)
    for n in range(LIMIT):
        data_of(await app_post(client, "/v1/activity/register",
                               registration(eid, f"{n:02x}" * 32, cid)))
    again = await app_post(client, "/v1/activity/register", registration(eid, "00" * 32, cid))
    assert data_of(again)["registered"]  # one already registered renews
    resp = await app_post(client, "/v1/activity/register", registration(eid, "ff" * 32, cid))
    assert resp.status_code == 400 and problem_of(resp)["code"] == "activity_limit_exceeded"
    assert len(await rows(gateway, live_activity_keys, event_id=eid)) == LIMIT
