"""Delivery through the mock providers: headers, payloads, outcomes recorded on every
delivery, dead tokens, retries."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import anyio
import sqlalchemy as sa

from pushgo.store.schema import deliveries, devices
from tests.helpers import PASSWORD, call, new_channel, register
from tests.providers import TOPIC


def apns_token() -> str:
    return secrets.token_hex(32)


def fcm_token() -> str:
    return "fcm-" + secrets.token_urlsafe(40)


async def device(client, platform: str, route: str, token: str | None) -> str:
    key = await register(client, platform)
    body: dict[str, Any] = {"device_key": key, "channel_type": route}
    if token:
        body["provider_token"] = token
    await call(client, "/channel/device", body)
    return key


async def join(client, key: str, cid: str) -> None:
    await call(client, "/channel/subscribe",
               {"device_key": key, "channel_id": cid, "password": PASSWORD})


async def states(gateway) -> dict[str, tuple[str, str | None]]:
    def q(conn):
        rows = conn.execute(sa.select(deliveries.c.device_key, deliveries.c.state,
                                      deliveries.c.last_error)
                            .where(deliveries.c.route != "private"))
        return {r.device_key: (r.state, r.last_error) for r in rows}

    found: dict[str, tuple[str, str | None]] = await gateway.store.read(q)
    return found


async def settled(gateway, n: int) -> dict[str, tuple[str, str | None]]:
    """Wait until ``n`` provider deliveries have left the queued state."""
    with anyio.fail_after(10):
        while True:
            got = await states(gateway)
            if sum(1 for s, _ in got.values() if s != "queued") >= n:
                return got
            await anyio.sleep(0.02)


async def test_a_message_reaches_ios_android_and_private_devices_once_each(
        pclient, pgateway, providers):
    ios_tok, and_tok = apns_token(), fcm_token()
    ios = await device(pclient, "ios", "apns", ios_tok)
    android = await device(pclient, "android", "fcm", and_tok)
    private = await register(pclient, "android")
    cid = await new_channel(pclient, ios)
    await join(pclient, android, cid)
    await join(pclient, private, cid)
    ttl = int(time.time()) + 3 * 86400
    sent = await call(pclient, "/message", {
        "channel_id": cid, "password": PASSWORD, "title": "Disk", "body": "/var at 91%",
        "severity": "high", "ttl": ttl, "tags": ["ops"]})
    [note] = await providers.apns.wait_for(1)
    [msg] = await providers.fcm.messages.wait_for(1)
    result = await settled(pgateway, 2)
    assert result == {ios: ("sent", None), android: ("sent", None)}

    assert note.status == 200 and note.token == ios_tok
    h = note.headers
    assert h["apns-topic"] == TOPIC
    assert h["apns-push-type"] == "alert"
    assert h["apns-priority"] == "10"
    assert h["apns-expiration"] == str(ttl)  # epoch seconds, not milliseconds
    payload = note.payload
    delivery_id = payload["delivery_id"]
    assert h["apns-collapse-id"] == delivery_id
    assert h["apns-id"].replace("-", "") == delivery_id
    assert payload["aps"]["alert"] == {"title": "Disk", "body": "/var at 91%"}
    assert payload["aps"]["interruption-level"] == "time-sensitive"
    assert payload["aps"]["sound"] == "level-up.caf"
    assert payload["aps"]["mutable-content"] == 1
    assert payload["aps"]["thread-id"] == f"message|channel={cid}"
    assert payload["message_id"] == sent["message_id"]
    assert payload["tags"] == '["ops"]'

    assert msg.token == and_tok
    data = msg.message["data"]
    assert all(isinstance(v, str) for v in data.values())
    assert data["message_id"] == sent["message_id"] and data["title"] == "Disk"
    assert msg.message["android"]["priority"] == "HIGH"
    assert msg.message["android"]["ttl"].endswith("s")
    # The private device is not a provider's business: it pulls.
    items = (await call(pclient, "/messages/pull", {"device_key": private}))["items"]
    assert [i["payload"]["message_id"] for i in items] == [sent["message_id"]]
    assert len(providers.apns.notifications) == 1 and len(providers.fcm.messages) == 1


async def test_low_severity_goes_with_apns_priority_5_and_passive_interruption(
        pclient, pgateway, providers):
    key = await device(pclient, "ios", "apns", apns_token())
    cid = await new_channel(pclient, key)
    await call(pclient, "/message", {"channel_id": cid, "password": PASSWORD, "title": "fyi",
                                     "severity": "low"})
    [note] = await providers.apns.wait_for(1)
    assert note.headers["apns-priority"] == "5"
    assert note.payload["aps"]["interruption-level"] == "passive"
    assert "sound" not in note.payload["aps"]


async def test_an_unregistered_apns_token_is_dropped_and_gets_nothing_more(
        pclient, pgateway, providers):
    tok = apns_token()
    key = await device(pclient, "ios", "apns", tok)
    cid = await new_channel(pclient, key)
    providers.apns.unregister(tok)
    await call(pclient, "/message", {"channel_id": cid, "password": PASSWORD, "title": "a"})
    result = await settled(pgateway, 1)
    assert result[key] == ("failed", "Unregistered")
    row = await pgateway.store.read(
        lambda c: c.execute(sa.select(devices).where(devices.c.device_key == key)).first())
    assert row.provider_token is None
    out = await call(pclient, "/message", {"channel_id": cid, "password": PASSWORD,
                                           "title": "b"})
    assert out["accepted"] is True
    assert len(providers.apns.notifications) == 1


async def test_an_unregistered_fcm_token_is_dropped(pclient, pgateway, providers):
    tok = fcm_token()
    key = await device(pclient, "android", "fcm", tok)
    cid = await new_channel(pclient, key)
    providers.fcm.unregister(tok)
    await call(pclient, "/message", {"channel_id": cid, "password": PASSWORD, "title": "a"})
    result = await settled(pgateway, 1)
    assert result[key] == ("failed", "UNREGISTERED")


async def test_a_503_is_retried_and_then_succeeds(pclient, pgateway, providers):
    key = await device(pclient, "ios", "apns", apns_token())
    cid = await new_channel(pclient, key)
    providers.apns.fail_next(2, 503, "ServiceUnavailable")
    await call(pclient, "/message", {"channel_id": cid, "password": PASSWORD, "title": "a"})
    await providers.apns.wait_for(1, lambda n: n.accepted)
    result = await settled(pgateway, 1)
    assert result[key] == ("sent", None)
    assert [n.status for n in providers.apns.notifications] == [503, 503, 200]


async def test_a_permanent_rejection_is_recorded_with_its_reason(pclient, pgateway, providers):
    tok = apns_token()
    key = await device(pclient, "ios", "apns", tok)
    cid = await new_channel(pclient, key)
    providers.apns.reject(tok, 400, "TopicDisallowed")
    await call(pclient, "/message", {"channel_id": cid, "password": PASSWORD, "title": "a"})
    result = await settled(pgateway, 1)
    assert result[key] == ("failed", "TopicDisallowed")


async def test_an_oversized_payload_goes_as_a_wakeup_and_stays_pullable(
        pclient, pgateway, providers):
    key = await device(pclient, "ios", "apns", apns_token())
    cid = await new_channel(pclient, key)
    big = "x" * 6000
    sent = await call(pclient, "/message", {"channel_id": cid, "password": PASSWORD,
                                            "title": "big", "body": big})
    [note] = await providers.apns.wait_for(1)
    assert note.status == 200
    assert note.payload["provider_wakeup"] == "1"
    assert len(note.body) <= 4096
    items = (await call(pclient, "/messages/pull", {"device_key": key}))["items"]
    assert items[0]["payload"]["body"] == big
    assert items[0]["payload"]["message_id"] == sent["message_id"]
    assert json.loads(json.dumps(items[0]["payload"]))["delivery_id"] == note.payload["delivery_id"]
