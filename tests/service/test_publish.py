"""pushgo.service.send.Publisher: the one send pipeline. The channel password is checked (or
a recent check reused), op_id makes a send idempotent, one transaction writes the operation
and a delivery per subscribed device, and the listeners hear about accepted work."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from pushgo.errors import Conflict, GatewayError
from pushgo.protocol import operations as OPS
from pushgo.protocol import wire
from pushgo.protocol.ids import encode_channel_id
from pushgo.service import Services
from pushgo.service.send import Accepted, Direct
from pushgo.store import outbox as outbox_store
from pushgo.store import schema
from tests.service.support import (
    APNS_TOKEN,
    PASSWORD,
    T0,
    Recorder,
    channel,
    device,
    fails,
    message,
)

pytestmark = pytest.mark.anyio


async def deliveries(svc: Services, op_id: str) -> list[tuple[str, str, str]]:
    """(device_key, route, state) of an operation's deliveries."""
    d, o = schema.deliveries, schema.operations
    query = (sa.select(d.c.device_key, d.c.route, d.c.state)
             .select_from(d.join(o, o.c.op_pk == d.c.op_pk)).where(o.c.op_id == op_id)
             .order_by(d.c.device_key))
    rows: list[tuple[str, str, str]] = await svc.ctx.store.read(
        lambda conn: [tuple(r) for r in conn.execute(query)])
    return rows


def event(cid: str, action: str, event_id: str | None = None, op_id: str | None = None,
          status: str = "open") -> OPS.OpSpec:
    body: dict[str, Any] = {"channel_id": cid, "op_id": op_id, "status": status,
                            "message": "disk at 97%", "severity": "high",
                            "event_time": T0 // 1000}
    if action == "create":
        return OPS.event_spec(OPS.EventCreateIn(title="disk", **body), action)
    req = OPS.EventUpdateIn if action == "update" else OPS.EventCloseIn
    return OPS.event_spec(req(event_id=event_id or "", **body), action)


def thing(cid: str, action: str, thing_id: str | None = None) -> OPS.OpSpec:
    if action == "create":
        return OPS.thing_spec(OPS.ThingCreateIn(channel_id=cid, title="pump 4",
                                            observed_at=T0 // 1000), action)
    req = {"update": OPS.ThingUpdateIn, "delete": OPS.ThingDeleteIn}[action]
    return OPS.thing_spec(req(channel_id=cid, thing_id=thing_id or "", observed_at=T0 // 1000),
                        action)


async def test_a_message_gets_one_delivery_per_subscribed_device(svc):
    a, b = await device(svc), await device(svc, "ios", "apns", APNS_TOKEN)
    cid = await channel(svc, a, b)
    acc = await svc.publisher.send(message(cid, op_id="m-1"), PASSWORD)
    assert (acc.channel_id, acc.op_id, acc.route, acc.recipients, acc.duplicate) == (
        cid, "m-1", "message", 2, False)
    assert await deliveries(svc, "m-1") == sorted([(a, "private", "queued"),
                                                   (b, "apns", "queued")])
    wire = acc.wire()
    assert (wire.accepted, wire.message_id, wire.event_id) == (True, acc.entity_id, None)


async def test_ids_not_given_are_new_and_carry_the_gateway_clocks_time(svc, clock):
    cid = await channel(svc)
    first = await svc.publisher.send(message(cid), PASSWORD)
    second = await svc.publisher.send(message(cid), PASSWORD)
    ids = [first.op_id, first.entity_id, second.op_id, second.entity_id]
    assert len(set(ids)) == 4
    assert {i[:12] for i in ids} == {f"{clock.now:012x}"}


async def test_accepted_work_is_told_to_the_listeners_and_counted(svc, listener: Recorder):
    cid = await channel(svc, await device(svc), await device(svc))
    await svc.publisher.send(message(cid), PASSWORD)
    assert listener.accepted == [cid]
    assert (svc.ctx.counts.operations, svc.ctx.counts.deliveries) == ({"message": 1}, 2)


async def test_a_channel_without_subscribers_accepts_with_no_recipients_and_no_wake_up(
        svc, listener: Recorder):
    made = await svc.channels.create("empty", PASSWORD)
    acc = await svc.publisher.send(message(made["channel_id"]), PASSWORD)
    assert acc.recipients == 0 and listener.accepted == []


async def test_a_wrong_password_is_password_mismatch_and_writes_nothing(svc, listener):
    cid = await channel(svc)
    with fails("password_mismatch", 403):
        await svc.publisher.send(message(cid, op_id="m-1"), "wrong-password")
    assert await deliveries(svc, "m-1") == [] and listener.accepted == []


async def test_an_unknown_channel_is_channel_not_found(svc):
    with fails("channel_not_found", 404):
        await svc.publisher.send(message(encode_channel_id(b"\x02" * 16)), PASSWORD)


async def test_repeating_an_op_id_with_the_same_payload_answers_as_the_first_time(
        svc, listener: Recorder):
    cid = await channel(svc, await device(svc))
    first = await svc.publisher.send(message(cid, op_id="m-1"), PASSWORD)
    again = await svc.publisher.send(message(cid, op_id="m-1"), PASSWORD)
    assert again.duplicate is True
    assert (again.entity_id, again.recipients) == (first.entity_id, first.recipients)
    assert len(await deliveries(svc, "m-1")) == 1
    assert listener.accepted == [cid]  # the repeat woke nobody
    assert svc.ctx.counts.operations == {"message": 1}


async def test_reusing_an_op_id_with_another_payload_is_a_409_conflict(svc):
    cid = await channel(svc, await device(svc))
    await svc.publisher.send(message(cid, op_id="m-1", title="first"), PASSWORD)
    with fails("op_id_conflict", 409) as caught:
        await svc.publisher.send(message(cid, op_id="m-1", title="second"), PASSWORD)
    assert isinstance(caught.value, Conflict)
    assert len(await deliveries(svc, "m-1")) == 1


async def test_one_op_id_on_two_channels_is_two_operations(svc):
    key = await device(svc)
    a, b = await channel(svc, key, name="a"), await channel(svc, key, name="b")
    first = await svc.publisher.send(message(a, op_id="same"), PASSWORD)
    second = await svc.publisher.send(message(b, op_id="same"), PASSWORD)
    assert not first.duplicate and not second.duplicate
    assert len(await deliveries(svc, "same")) == 2


async def test_a_recently_verified_password_skips_the_channel_check(svc, monkeypatch):
    cid = await channel(svc, await device(svc))
    await svc.publisher.send(message(cid), PASSWORD)

    async def no_kdf(*_args):
        raise AssertionError("authorize called again")

    monkeypatch.setattr(svc.channels, "authorize", no_kdf)
    assert (await svc.publisher.send(message(cid), PASSWORD)).recipients == 1


async def test_a_device_on_a_provider_route_without_a_token_gets_no_delivery(svc):
    kept, cleared = await device(svc), await device(svc, "ios", "apns", APNS_TOKEN)
    cid = await channel(svc, kept, cleared)
    await svc.devices.clear_route(wire.DeviceRouteDeleteIn(device_key=cleared,
                                                        channel_type="apns"))
    acc = await svc.publisher.send(message(cid, op_id="m-1"), PASSWORD)
    assert acc.recipients == 1 and await deliveries(svc, "m-1") == [(kept, "private", "queued")]


async def test_send_granted_needs_no_password_but_an_existing_channel(svc):
    cid = await channel(svc, await device(svc))
    assert (await svc.publisher.send_granted(message(cid))).recipients == 1
    with fails("channel_not_found", 404):
        await svc.publisher.send_granted(message(encode_channel_id(b"\x03" * 16)))


async def test_an_event_is_created_updated_and_closed_and_then_refuses_updates(svc):
    cid = await channel(svc, await device(svc))
    created = await svc.publisher.send(event(cid, "create"), PASSWORD)
    assert created.route == "event.create" and created.wire().event_id == created.entity_id
    eid = created.entity_id
    assert (await svc.publisher.send(event(cid, "update", eid), PASSWORD)).entity_id == eid
    await svc.publisher.send(event(cid, "close", eid, status="resolved"), PASSWORD)
    with fails("event_closed", 409):
        await svc.publisher.send(event(cid, "update", eid), PASSWORD)


async def test_a_deleted_thing_refuses_further_changes(svc):
    cid = await channel(svc, await device(svc))
    created = await svc.publisher.send(thing(cid, "create"), PASSWORD)
    assert created.thing_id == created.entity_id == created.wire().thing_id
    await svc.publisher.send(thing(cid, "delete", created.entity_id), PASSWORD)
    with fails("thing_deleted", 409):
        await svc.publisher.send(thing(cid, "update", created.entity_id), PASSWORD)


async def test_accept_many_answers_in_order_and_a_bad_item_fails_alone(svc, listener):
    cid = await channel(svc, await device(svc))
    await svc.publisher.send(message(cid, op_id="taken", title="first"), PASSWORD)
    items = [svc.publisher.prepare(message(cid, op_id=f"b-{i}")) for i in range(3)]
    items.insert(1, svc.publisher.prepare(message(cid, op_id="taken", title="other")))
    results = await svc.publisher.accept_many(items)
    assert [r.op_id if isinstance(r, Accepted) else r.code for r in results] == [
        "b-0", "op_id_conflict", "b-1", "b-2"]
    assert all(isinstance(r, Accepted) and r.recipients == 1 for r in results[::2])
    assert isinstance(results[1], GatewayError) and results[1].status == 409
    assert listener.accepted == [cid] * 4  # the first send and the three new items


async def test_prepare_writes_nothing_until_accepted(svc):
    cid = await channel(svc, await device(svc))
    prepared = svc.publisher.prepare(message(cid, op_id="m-1"))
    assert prepared.kind == "message" and prepared.now == svc.ctx.now()
    assert await deliveries(svc, "m-1") == []


async def test_a_direct_message_names_no_channel_and_shares_one_thread(svc):
    spec = message(encode_channel_id(b"\x04" * 16))
    prepared = svc.publisher.prepare(spec, Direct("apns", (APNS_TOKEN,)))
    assert "channel_id" not in prepared.rendered.data
    assert prepared.rendered.thread_id == "message|direct"


async def test_the_payload_carries_ids_and_times_of_the_gateway_clock(svc, clock):
    key = await device(svc)
    cid = await channel(svc, key)
    acc = await svc.publisher.send(message(cid, op_id="m-1", body="at 97%"), PASSWORD)
    [item] = await svc.ctx.store.read(outbox_store.inbox_page, key, 0, clock.now, 10)
    payload = json.loads(item.payload_json)
    assert (payload["op_id"], payload["entity_id"], payload["channel_id"]) == (
        "m-1", acc.entity_id, cid)
    assert payload["sent_at"] == payload["occurred_at"] == str(clock.now)
    assert payload["title"] == "hello" and payload["body"] == "at 97%"
