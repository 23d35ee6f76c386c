"""The PushGo iOS app's own Live Activities, end to end against the TLS mock APNs: the app
registers its activities' update tokens by ``activity_key`` (``POST /v1/activity/register``,
no device key); the event's updates and close reach each token as liveactivity ``update`` and
``end`` pushes while the subscribed devices keep their usual notifications; unregister and a
dead token stop the pushes to that token alone."""

from __future__ import annotations

import time
from typing import Any

import anyio
import sqlalchemy as sa

from pushgo.protocol.bulk import DIRECT_DEVICE_KEY
from pushgo.store.schema import deliveries, devices, live_activity_keys, operations
from tests.e2e.test_delivery import apns_token, device
from tests.e2e.test_live_activities import assert_live, event, one
from tests.helpers import call, new_channel, rows


def register(eid: str, token: str, cid: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"activity_key": f"event:{eid}", "token": token, "platform": "ios",
                            "schema_version": 1}
    return body if cid is None else {**body, "channel_id": cid}


async def states(gateway, op_id: str, *, settled: bool = True
                 ) -> dict[tuple[str, str | None], str]:
    """``(device_key, provider_token)`` → state of the operation's provider deliveries, once
    none is queued (an outcome is written after the provider's answer) unless not
    ``settled``."""
    def q(conn):
        return {(r.device_key, r.provider_token): r.state for r in conn.execute(
            sa.select(deliveries.c.device_key, deliveries.c.provider_token, deliveries.c.state)
            .select_from(deliveries.join(operations, operations.c.op_pk == deliveries.c.op_pk))
            .where(operations.c.op_id == op_id, deliveries.c.route != "private"))}
    with anyio.fail_after(10):
        while True:
            got: dict[tuple[str, str | None], str] = await gateway.store.read(q)
            if not settled or "queued" not in got.values():
                return got
            await anyio.sleep(0.02)


async def test_app_registered_activities_get_update_and_end(pclient, pgateway, providers):
    phone_tok, tok_a, tok_b = apns_token(), apns_token(), apns_token()
    phone = await device(pclient, "ios", "apns", phone_tok)
    cid = await new_channel(pclient, phone)
    created = await event(pclient, cid, "create", title="Disk pressure", status="open",
                          message="Disk over 90 percent", severity="high")
    eid = created["event_id"]
    alert = await one(providers, phone_tok, 1)  # no push-to-start: the usual alert
    assert alert.headers["apns-push-type"] == "alert" and alert.payload["event_id"] == eid
    # The app stored that notification, started the activity and registers its token; a
    # second iPhone's app (same event) registers without the channel.
    await call(pclient, "/v1/activity/register", register(eid, tok_a, cid))
    await call(pclient, "/v1/activity/register", register(eid, tok_b))

    updated = await event(pclient, cid, "update", event_id=eid, title="Disk pressure",
                          status="mitigating",
                          message="Cleanup running", severity="normal")
    for tok in (tok_a, tok_b):
        aps = assert_live(await one(providers, tok, 1), "update")
        state = aps["content-state"]
        # PushGoEventActivityAttributes.ContentState: title, state?, severity?, updatedAt
        assert state["title"] == "Disk pressure" and isinstance(state["updatedAt"], float)
        assert state["state"] == "ONGOING" and state["severity"] == "normal"
        assert "attributes" not in aps  # ActivityKit reads attributes only on a start
    note = await one(providers, phone_tok, 2)  # the device still gets its notification
    assert note.headers["apns-push-type"] == "alert" and note.payload["status"] == "mitigating"
    assert len(providers.apns.live_activities) == 2

    # One iPhone's activity ended there: the app unregisters its token.
    await call(pclient, "/v1/activity/unregister",
               {"activity_key": f"event:{eid}", "token": tok_b, "platform": "ios",
                "schema_version": 1})
    closed = await event(pclient, cid, "close", event_id=eid, status="closed",
                         message="Disk at 40 percent")
    aps = assert_live(await one(providers, tok_a, 2), "end")
    assert aps["content-state"]["state"] == "CLOSED"
    assert "dismissal-date" in aps
    await one(providers, phone_tok, 3)
    assert sorted(n.token for n in providers.apns.live_activities) == sorted(
        [tok_a, tok_a, tok_b])
    # The pushes are deliveries of the operations, reported with them; no inbox holds them.
    assert await states(pgateway, updated["op_id"]) == {
        (phone, None): "sent", (DIRECT_DEVICE_KEY, tok_a): "sent",
        (DIRECT_DEVICE_KEY, tok_b): "sent"}
    assert await states(pgateway, closed["op_id"]) == {
        (phone, None): "sent", (DIRECT_DEVICE_KEY, tok_a): "sent"}
    items = (await call(pclient, "/messages/pull", {"device_key": phone}))["items"]
    assert len(items) == 3
    # The close ends the registrations.
    assert await rows(pgateway, live_activity_keys) == []


async def test_a_dead_app_activity_token_is_retired_alone(pclient, pgateway, providers):
    phone_tok, dead, alive = apns_token(), apns_token(), apns_token()
    phone = await device(pclient, "ios", "apns", phone_tok)
    cid = await new_channel(pclient, phone)
    eid = (await event(pclient, cid, "create", title="Deploy", status="started"))["event_id"]
    await call(pclient, "/v1/activity/register", register(eid, dead, cid))
    await call(pclient, "/v1/activity/register", register(eid, alive, cid))
    providers.apns.unregister(dead)  # the activity was dismissed: 410 Unregistered
    await event(pclient, cid, "update", event_id=eid, status="halfway")
    refused = await one(providers, dead, 1)
    assert (refused.status, refused.reason) == (410, "Unregistered")
    assert_live(await one(providers, alive, 1), "update")
    await one(providers, phone_tok, 2)
    with anyio.fail_after(10):  # the refusal's outcome is written after the answer
        while len(await rows(pgateway, live_activity_keys)) != 1:
            await anyio.sleep(0.02)
    assert [r.token for r in await rows(pgateway, live_activity_keys)] == [alive]
    [dev] = await rows(pgateway, devices, device_key=phone)  # the device keeps its route
    assert dev.provider_token == phone_tok
    await event(pclient, cid, "update", event_id=eid, status="almost")
    assert_live(await one(providers, alive, 2), "update")
    assert len(await providers.apns.wait_for(1, lambda n: n.token == dead)) == 1


async def test_a_scheduled_update_holds_the_activity_push_too(pclient, pgateway, providers):
    phone_tok, tok = apns_token(), apns_token()
    phone = await device(pclient, "ios", "apns", phone_tok)
    cid = await new_channel(pclient, phone)
    eid = (await event(pclient, cid, "create", title="Window", status="open"))["event_id"]
    await one(providers, phone_tok, 1)
    await call(pclient, "/v1/activity/register", register(eid, tok, cid))
    later = int(time.time()) + 86_400
    updated = await event(pclient, cid, "update", event_id=eid, status="later",
                          deliver_at=later)
    assert await states(pgateway, updated["op_id"], settled=False) == {
        (phone, None): "scheduled", (DIRECT_DEVICE_KEY, tok): "scheduled"}
    assert providers.apns.live_activities == []
