"""pushgo.service.devices: issuing device keys, setting and clearing a device's route, and
retiring a provider token a provider reported dead."""

from __future__ import annotations

import re

import pytest

from pushgo.protocol import wire
from pushgo.service import Services
from pushgo.store import devices as device_store
from tests.service.support import (
    APNS_TOKEN,
    FCM_TOKEN,
    Recorder,
    channel,
    device,
    fails,
    subscribed,
)

pytestmark = pytest.mark.anyio
HEX32 = re.compile(r"[0-9a-f]{32}")


async def row(svc: Services, key: str):
    return await svc.ctx.store.read(device_store.get, key)


async def route(svc: Services, key: str, channel_type: str,
                token: str | None = None, platform: str | None = None) -> wire.DeviceRouteOut:
    return await svc.devices.set_route(wire.DeviceRouteIn(
        device_key=key, channel_type=channel_type, provider_token=token, platform=platform))


async def test_register_without_a_key_issues_a_new_random_key_on_the_private_route(svc):
    out = await svc.devices.register(wire.DeviceRegisterIn(platform="android"))
    assert HEX32.fullmatch(out.device_key)
    assert out.issued_new_key is True and out.issue_reason == "device_key_missing"
    stored = await row(svc, out.device_key)
    assert (stored.platform, stored.channel_type, stored.provider_token) == (
        "android", "private", None)


async def test_register_with_a_known_key_and_the_same_platform_keeps_the_key(svc):
    key = await device(svc, "ios")
    out = await svc.devices.register(wire.DeviceRegisterIn(platform="ios", device_key=key))
    assert (out.device_key, out.issued_new_key, out.issue_reason) == (key, False, None)


async def test_register_with_an_unknown_key_issues_a_new_one(svc):
    out = await svc.devices.register(wire.DeviceRegisterIn(platform="ios", device_key="f" * 32))
    assert out.device_key != "f" * 32
    assert out.issued_new_key is True and out.issue_reason == "device_key_not_found"


async def test_register_with_a_key_of_another_platform_replaces_that_device(svc):
    key = await device(svc, "android")
    cid = await channel(svc, key)
    out = await svc.devices.register(wire.DeviceRegisterIn(platform="ios", device_key=key))
    assert out.issued_new_key is True and out.issue_reason == "platform_mismatch"
    assert await row(svc, key) is None
    assert await subscribed(svc, key) == set()
    assert (await svc.channels.info(cid))["subscribers"] == 0


async def test_platform_aliases_are_stored_by_their_canonical_name(svc):
    key = await device(svc, " iPadOS ")
    assert (await row(svc, key)).platform == "ios"


async def test_an_unknown_platform_is_invalid_platform(svc):
    with fails("invalid_platform"):
        await svc.devices.register(wire.DeviceRegisterIn(platform="symbian"))


async def test_an_apns_route_stores_the_token_and_tells_the_listener(svc, listener: Recorder):
    key = await device(svc, "ios")
    out = await route(svc, key, "apns", APNS_TOKEN)
    assert (out.channel_type, out.provider_token, out.issued_new_key) == (
        "apns", APNS_TOKEN, False)
    stored = await row(svc, key)
    assert (stored.channel_type, stored.provider_token) == ("apns", APNS_TOKEN)
    assert listener.changed == [key]


async def test_a_private_route_refuses_a_provider_token(svc):
    key = await device(svc, "android")
    with fails("provider_token_forbidden_for_private_channel"):
        await route(svc, key, "private", FCM_TOKEN)


async def test_a_provider_route_requires_a_token(svc):
    key = await device(svc, "android")
    with fails("provider_token_required"):
        await route(svc, key, "fcm", "  ")


@pytest.mark.parametrize(("platform", "channel_type", "token", "code"), [
    ("android", "apns", APNS_TOKEN, "apns_channel_requires_apple_platform"),
    ("ios", "fcm", FCM_TOKEN, "fcm_channel_requires_android_platform"),
    ("android", "wns", FCM_TOKEN, "wns_channel_requires_windows_platform"),
    ("ios", "apns", "not-hex-at-all", "invalid_provider_token"),
    ("ios", "carrier-pigeon", APNS_TOKEN, "invalid_channel_type"),
])
async def test_a_route_must_suit_the_devices_platform_and_token_format(
        svc, platform, channel_type, token, code):
    key = await device(svc, platform)
    with fails(code):
        await route(svc, key, channel_type, token)
    assert (await row(svc, key)).channel_type == "private"


async def test_a_route_naming_another_platform_is_platform_mismatch(svc):
    key = await device(svc, "ios")
    with fails("platform_mismatch"):
        await route(svc, key, "apns", APNS_TOKEN, platform="macos")


async def test_a_route_for_an_unknown_device_is_device_key_not_found(svc):
    with fails("device_key_not_found"):
        await route(svc, "0" * 32, "private")


async def test_a_token_already_held_by_another_device_merges_that_device_in(svc):
    old = await device(svc, "ios", "apns", APNS_TOKEN)
    cid = await channel(svc, old)
    new = await device(svc, "ios")
    await route(svc, new, "apns", APNS_TOKEN)
    assert await row(svc, old) is None
    assert await subscribed(svc, new) == {cid}


async def test_clear_route_drops_the_token_but_keeps_the_channel_type(svc):
    key = await device(svc, "ios", "apns", APNS_TOKEN)
    out = await svc.devices.clear_route(wire.DeviceRouteDeleteIn(device_key=key,
                                                              channel_type="apns"))
    assert (out.channel_type, out.provider_token) == ("apns", None)
    stored = await row(svc, key)
    assert (stored.channel_type, stored.provider_token) == ("apns", None)


async def test_clear_route_of_another_channel_type_is_channel_type_mismatch(svc):
    key = await device(svc, "ios", "apns", APNS_TOKEN)
    with fails("channel_type_mismatch"):
        await svc.devices.clear_route(wire.DeviceRouteDeleteIn(device_key=key,
                                                            channel_type="fcm"))


async def test_a_retired_token_sends_its_devices_back_to_the_private_route(svc):
    key = await device(svc, "android", "fcm", FCM_TOKEN)
    out = await svc.devices.retire_token(wire.TokenRetireIn(platform="android",
                                                         provider_token=FCM_TOKEN))
    assert out.retired is True
    stored = await row(svc, key)
    assert (stored.channel_type, stored.provider_token) == ("private", None)


async def test_retiring_a_blank_token_is_provider_token_required(svc):
    with fails("provider_token_required"):
        await svc.devices.retire_token(wire.TokenRetireIn(platform="ios", provider_token=" "))
