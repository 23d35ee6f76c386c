"""pushgo.service.channels: a channel is created by subscribing to a name; devices join,
leave and reconcile (sync) their subscriptions; the channel password guards joining,
renaming and sending; the subscriber limit holds."""

from __future__ import annotations

from typing import Any

import pytest

from pushgo.errors import NotFound, PasswordMismatch
from pushgo.protocol import wire
from pushgo.protocol.ids import encode_channel_id
from pushgo.service import Services
from tests.service.support import (
    APNS_TOKEN,
    PASSWORD,
    Recorder,
    channel,
    device,
    fails,
    subscribed,
)

pytestmark = pytest.mark.anyio
UNKNOWN = encode_channel_id(b"\x01" * 16)


async def join(svc: Services, key: str, cid: str, password: str = PASSWORD) -> wire.SubscribeOut:
    return await svc.channels.subscribe(wire.SubscribeIn(device_key=key, channel_id=cid,
                                                      password=password))


async def sync(svc: Services, key: str, *items: tuple[str, str]) -> wire.SyncOut:
    return await svc.channels.sync(wire.SyncIn(device_key=key, channels=[
        wire.SyncItemIn(channel_id=cid, password=pw) for cid, pw in items]))


async def test_subscribing_to_a_name_creates_the_channel_with_the_device_in_it(
        svc, listener: Recorder):
    key = await device(svc)
    out = await svc.channels.subscribe(wire.SubscribeIn(device_key=key, channel_name="  ops  ",
                                                     password=PASSWORD))
    assert (out.channel_name, out.created, out.subscribed) == ("ops", True, True)
    assert await subscribed(svc, key) == {out.channel_id}
    assert listener.changed == [key]
    info = await svc.channels.info(out.channel_id)
    assert (info["channel_name"], info["subscribers"]) == ("ops", 1)
    assert "password_hash" not in info


async def test_two_subscriptions_to_one_name_make_two_channels(svc):
    key = await device(svc)
    assert await channel(svc, key, name="ops") != await channel(svc, key, name="ops")


async def test_joining_by_id_with_the_password_subscribes_without_creating(svc):
    cid = await channel(svc)
    key = await device(svc)
    out = await join(svc, key, cid)
    assert (out.channel_id, out.channel_name, out.created, out.subscribed) == (
        cid, "ops", False, True)
    assert (await svc.channels.info(cid))["subscribers"] == 2


async def test_joining_twice_keeps_one_subscription(svc):
    key = await device(svc)
    cid = await channel(svc, key)
    await join(svc, key, cid)
    assert (await svc.channels.info(cid))["subscribers"] == 1


async def test_a_wrong_password_is_password_mismatch_and_joins_nothing(svc):
    cid = await channel(svc)
    key = await device(svc)
    with fails("password_mismatch", 403) as caught:
        await join(svc, key, cid, "wrong-password")
    assert isinstance(caught.value, PasswordMismatch)
    assert await subscribed(svc, key) == set()


async def test_an_unknown_channel_is_channel_not_found(svc):
    key = await device(svc)
    with fails("channel_not_found", 404) as caught:
        await join(svc, key, UNKNOWN)
    assert isinstance(caught.value, NotFound)


@pytest.mark.parametrize(("fields", "code"), [
    ({}, "channel_binding_invalid"),
    ({"channel_name": "ops", "channel_id": UNKNOWN}, "channel_binding_invalid"),
    ({"channel_name": "ops", "password": "short"}, "invalid_password"),
    ({"channel_name": "ops", "password": "x" * 129}, "invalid_password"),
    ({"channel_id": "not a channel id"}, "invalid_channel_id"),
])
async def test_subscribe_requires_one_binding_and_a_valid_password(svc, fields, code):
    key = await device(svc)
    body: dict[str, Any] = {"device_key": key, "password": PASSWORD, **fields}
    with fails(code):
        await svc.channels.subscribe(wire.SubscribeIn(**body))


async def test_a_device_on_a_provider_route_without_a_token_cannot_subscribe(svc):
    key = await device(svc, "ios", "apns", APNS_TOKEN)
    await svc.devices.clear_route(wire.DeviceRouteDeleteIn(device_key=key, channel_type="apns"))
    with fails("provider_token_required"):
        await channel(svc, key)


async def test_an_unknown_device_cannot_subscribe(svc):
    with fails("device_key_not_found"):
        await channel(svc, "0" * 32)


@pytest.mark.parametrize("settings_overrides", [{"channel_subscriber_limit": 2}])
async def test_the_subscriber_limit_refuses_one_device_more(svc):
    cid = await channel(svc, await device(svc), await device(svc))
    late = await device(svc)
    with fails("channel_subscriber_limit_exceeded"):
        await join(svc, late, cid)
    assert await subscribed(svc, late) == set()
    assert (await svc.channels.info(cid))["subscribers"] == 2


async def test_unsubscribe_removes_the_subscription_once(svc, listener: Recorder):
    key = await device(svc)
    cid = await channel(svc, key)
    listener.changed.clear()
    first = await svc.channels.unsubscribe(wire.UnsubscribeIn(device_key=key, channel_id=cid))
    again = await svc.channels.unsubscribe(wire.UnsubscribeIn(device_key=key, channel_id=cid))
    assert (first.removed, again.removed) == (True, False)
    assert await subscribed(svc, key) == set()
    assert listener.changed == [key, key]


async def test_sync_subscribes_to_the_listed_channels_and_leaves_the_others(svc):
    key = await device(svc)
    kept, dropped = await channel(svc, key, name="kept"), await channel(svc, key, name="gone")
    added = await channel(svc, name="added")
    out = await sync(svc, key, (kept, PASSWORD), (added, PASSWORD))
    assert (out.total, out.success, out.failed) == (2, 2, 0)
    assert [(c.channel_id, c.channel_name, c.subscribed) for c in out.channels] == [
        (kept, "kept", True), (added, "added", True)]
    assert await subscribed(svc, key) == {kept, added}
    assert dropped not in await subscribed(svc, key)


async def test_a_sync_with_a_failed_item_reports_it_and_removes_nothing(svc):
    key = await device(svc)
    held = await channel(svc, key, name="held")
    other = await channel(svc, name="other")
    out = await sync(svc, key, (other, "wrong-password"), (" ", PASSWORD))
    assert (out.total, out.success, out.failed) == (2, 0, 2)
    assert [(c.subscribed, c.error_code) for c in out.channels] == [
        (False, "password_mismatch"), (False, "invalid_channel_id")]
    assert await subscribed(svc, key) == {held}


async def test_an_empty_sync_leaves_every_channel(svc):
    key = await device(svc)
    await channel(svc, key)
    out = await sync(svc, key)
    assert (out.total, out.success, out.failed, out.channels) == (0, 0, 0, [])
    assert await subscribed(svc, key) == set()


async def test_a_sync_of_more_than_2000_channels_is_refused(svc):
    key = await device(svc)
    with fails("channels_limit_exceeded"):
        await sync(svc, key, *[(UNKNOWN, PASSWORD)] * 2001)


async def test_exists_answers_with_the_name_or_false(svc):
    cid = await channel(svc, name="night shift")
    assert await svc.channels.exists(cid) == wire.ExistsOut(channel_id=cid, exists=True,
                                                          channel_name="night shift")
    assert await svc.channels.exists(UNKNOWN) == wire.ExistsOut(channel_id=UNKNOWN, exists=False)


async def test_ids_are_read_as_people_paste_them(svc):
    cid = await channel(svc)
    pasted = " " + "-".join(cid.lower()[i:i + 4] for i in range(0, len(cid), 4)) + " "
    assert (await svc.channels.exists(pasted)).exists is True


async def test_rename_with_the_password_changes_the_name_and_its_update_time(svc, clock):
    cid = await channel(svc, name="old")
    created = (await svc.channels.info(cid))["updated_at"]
    clock.advance(5_000)
    out = await svc.channels.rename(wire.RenameIn(channel_id=cid, channel_name="new",
                                               password=PASSWORD))
    assert (out.channel_id, out.channel_name) == (cid, "new")
    info = await svc.channels.info(cid)
    assert (info["channel_name"], info["updated_at"]) == ("new", created + 5_000)


async def test_rename_with_a_wrong_password_changes_nothing(svc):
    cid = await channel(svc, name="old")
    with fails("password_mismatch", 403):
        await svc.channels.rename(wire.RenameIn(channel_id=cid, channel_name="new",
                                             password="wrong-password"))
    assert (await svc.channels.info(cid))["channel_name"] == "old"


async def test_an_operator_created_channel_has_no_subscribers(svc):
    made = await svc.channels.create("  night shift ", PASSWORD)
    assert made["created"] is True and made["channel_name"] == "night shift"
    assert (await svc.channels.info(made["channel_id"]))["subscribers"] == 0


async def test_info_of_an_unknown_channel_is_channel_not_found(svc):
    with fails("channel_not_found", 404):
        await svc.channels.info(UNKNOWN)


async def test_authorize_remembers_a_verified_password_for_the_send_path(svc):
    cid = await channel(svc)
    assert svc.ctx.verifier.remembered(cid, PASSWORD) is None
    row = await svc.channels.authorize(cid, f"  {PASSWORD}  ")
    assert svc.ctx.verifier.remembered(cid, PASSWORD) == row.password_hash
