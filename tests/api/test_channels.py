"""HTTP API: channels (/channel/subscribe, /channel/unsubscribe, /channel/sync,
/channel/exists, /channel/rename)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from pushgo.errors import InvalidInput
from pushgo.protocol import wire
from pushgo.protocol.ids import encode_channel_id
from pushgo.store import channels as channel_store
from tests.helpers import PASSWORD, assert_error, call, fails, new_channel, register

APNS_TOKEN = "ab" * 32
CANONICAL_LAST = set("048CGMRW")


def unknown_channel_id() -> str:
    return encode_channel_id(secrets.token_bytes(16))


def dashed_lower(channel_id: str) -> str:
    """How a person might paste an id: lower case, grouped with dashes and spaces."""
    low = channel_id.lower()
    return " " + "-".join(low[i:i + 4] for i in range(0, 26, 4)).replace("-", " - ", 1) + " "


async def subscribe(client, key: str, *, expect: int = 200, **fields) -> dict[str, Any]:
    return await call(client, "/channel/subscribe",
                      {"device_key": key, "password": PASSWORD, **fields}, expect=expect)


async def subscribed(gateway, key: str) -> set[str]:
    return set(await gateway.store.read(channel_store.subscribed_channels, key))


async def provider_device(client, *, with_token: bool = True) -> str:
    """An iOS device on the apns route; without_token: the route's token was then cleared."""
    key = await register(client, "ios")
    await call(client, "/channel/device",
               {"device_key": key, "channel_type": "apns",
                "provider_token": APNS_TOKEN + secrets.token_hex(8)})
    if not with_token:
        await call(client, "/channel/device/delete", {"device_key": key, "channel_type": "apns"})
    return key


# --- POST /channel/subscribe ------------------------------------------------------------------


async def test_subscribing_with_a_name_and_no_id_creates_the_channel(client, gateway):
    key = await register(client)
    data = await subscribe(client, key, channel_name="  ops alerts ")
    cid = data["channel_id"]
    assert data == {"channel_id": cid, "channel_name": "ops alerts", "created": True,
                    "subscribed": True}
    assert len(cid) == 26 and cid == cid.upper() and cid[-1] in CANONICAL_LAST
    assert await subscribed(gateway, key) == {cid}


async def test_subscribing_by_name_twice_creates_two_channels(client):
    key = await register(client)
    first = await subscribe(client, key, channel_name="ops")
    second = await subscribe(client, key, channel_name="ops")
    assert first["channel_id"] != second["channel_id"]


async def test_subscribing_by_id_joins_the_channel_under_its_stored_name(client, gateway):
    cid = await new_channel(client, name="build bots")
    key = await register(client, "android")
    data = await subscribe(client, key, channel_id=cid, channel_name="", password=f" {PASSWORD} ")
    assert data == {"channel_id": cid, "channel_name": "build bots", "created": False,
                    "subscribed": True}
    assert await subscribed(gateway, key) == {cid}


async def test_subscribing_again_is_idempotent(client, gateway):
    key = await register(client)
    cid = await new_channel(client, key)
    data = await subscribe(client, key, channel_id=cid)
    assert data["subscribed"] is True and data["created"] is False
    assert await gateway.store.read(channel_store.subscriber_count, cid) == 1


async def test_a_lower_case_dashed_channel_id_is_accepted_and_echoed_canonical(client):
    cid = await new_channel(client)
    key = await register(client)
    data = await subscribe(client, key, channel_id=dashed_lower(cid))
    assert data["channel_id"] == cid


async def test_crockford_aliases_o_i_and_l_read_as_digits(client):
    cid = "0" * 10 + "1" * 15 + "0"
    spelled = "o" * 10 + "IiLlIiLlIiLlIiL" + "O"
    key = await register(client)
    await fails(client, "/channel/subscribe",
                {"device_key": key, "channel_id": spelled, "password": PASSWORD},
                404, "channel_not_found")
    data = await call(client, f"/channel/exists?channel_id={spelled}")
    assert data == {"channel_id": cid, "exists": False}


async def test_a_channel_id_in_v1_2_9_form_with_a_high_first_symbol_is_accepted(client):
    data = await call(client, "/channel/exists?channel_id=zzj0fzg1y8xgg14vtq4y3g10mr")
    assert data == {"channel_id": "ZZJ0FZG1Y8XGG14VTQ4Y3G10MR", "exists": False}


async def test_a_provider_device_with_a_token_subscribes(client, gateway):
    key = await provider_device(client)
    data = await subscribe(client, key, channel_name="mobile")
    assert data["created"] is True
    assert await subscribed(gateway, key) == {data["channel_id"]}


@pytest.mark.parametrize("binding", [
    {"channel_id": "06J0FZG1Y8XGG14VTQ4Y3G10MR", "channel_name": "ops"},
    {},
    {"channel_id": None, "channel_name": None},
    {"channel_id": " ", "channel_name": ""},
])
async def test_subscribing_needs_exactly_one_of_id_and_name(client, binding):
    key = await register(client)
    await fails(client, "/channel/subscribe",
                {"device_key": key, "password": PASSWORD, **binding},
                400, "channel_binding_invalid")


@pytest.mark.parametrize("password", ["short", " 1234567 ", "x" * 129, "é" * 65, ""])
async def test_a_password_outside_8_to_128_bytes_is_invalid_password(client, password):
    key = await register(client)
    await fails(client, "/channel/subscribe",
                {"device_key": key, "channel_name": "ops", "password": password},
                400, "invalid_password")


async def test_a_password_of_128_multibyte_bytes_is_accepted(client):
    key = await register(client)
    data = await subscribe(client, key, channel_name="ops", password="é" * 64)
    assert data["created"] is True


@pytest.mark.parametrize("channel_id", [
    "not-a-channel-id",
    "06J0FZG1Y8XGG14VTQ4Y3G10M",      # 25 symbols
    "06J0FZG1Y8XGG14VTQ4Y3G10MR0",    # 27 symbols
    "06J0FZG1Y8XGG14VTQ4Y3G10MU",     # U is not Crockford
    "06J0FZG1Y8XGG14VTQ4Y3G10MS",     # last symbol not canonical
])
async def test_a_malformed_channel_id_is_invalid_channel_id(client, channel_id):
    key = await register(client)
    await fails(client, "/channel/subscribe",
                {"device_key": key, "channel_id": channel_id, "password": PASSWORD},
                400, "invalid_channel_id")


@pytest.mark.parametrize("name", ["x" * 129, "bell\x07", "new\nline", "del\x7f", "c1\x85c1"])
async def test_an_overlong_or_control_character_name_is_invalid_channel_name(client, name):
    key = await register(client)
    await fails(client, "/channel/subscribe",
                {"device_key": key, "channel_name": name, "password": PASSWORD},
                400, "invalid_channel_name")


async def test_a_name_of_128_characters_is_accepted(client):
    key = await register(client)
    data = await subscribe(client, key, channel_name="ü" * 128)
    assert data["channel_name"] == "ü" * 128


async def test_subscribing_to_an_unknown_channel_is_channel_not_found(client):
    key = await register(client)
    await fails(client, "/channel/subscribe",
                {"device_key": key, "channel_id": unknown_channel_id(), "password": PASSWORD},
                404, "channel_not_found")


async def test_subscribing_with_the_wrong_password_is_password_mismatch(client, gateway):
    cid = await new_channel(client)
    key = await register(client)
    doc = await fails(client, "/channel/subscribe",
                      {"device_key": key, "channel_id": cid, "password": "wrong-password"},
                      403, "password_mismatch")
    assert doc["problem"]["category"] == "permission"
    assert await subscribed(gateway, key) == set()


async def test_subscribing_an_unregistered_key_is_device_key_not_found(client):
    await fails(client, "/channel/subscribe",
                {"device_key": "9" * 32, "channel_name": "ops", "password": PASSWORD},
                400, "device_key_not_found")


async def test_subscribing_a_blank_key_is_device_key_required(client):
    await fails(client, "/channel/subscribe",
                {"device_key": "", "channel_name": "ops", "password": PASSWORD},
                400, "device_key_required")


async def test_a_provider_route_without_a_token_cannot_subscribe(client, gateway):
    key = await provider_device(client, with_token=False)
    await fails(client, "/channel/subscribe",
                {"device_key": key, "channel_name": "ops", "password": PASSWORD},
                400, "provider_token_required")
    assert await subscribed(gateway, key) == set()


async def test_subscribing_without_a_password_is_invalid_json_data(client):
    key = await register(client)
    await fails(client, "/channel/subscribe", {"device_key": key, "channel_name": "ops"},
                400, "invalid_json_data")


class TestWithASubscriberLimitOfTwo:
    @pytest.fixture
    def settings_overrides(self):
        return {"channel_subscriber_limit": 2}

    async def test_a_full_channel_refuses_a_new_subscriber(self, client, gateway):
        first, second, third = [await register(client) for _ in range(3)]
        cid = await new_channel(client, first)
        await subscribe(client, second, channel_id=cid)
        await fails(client, "/channel/subscribe",
                    {"device_key": third, "channel_id": cid, "password": PASSWORD},
                    400, "channel_subscriber_limit_exceeded")
        assert await gateway.store.read(channel_store.subscriber_count, cid) == 2
        # Existing subscribers may subscribe again; a freed seat can be taken.
        assert (await subscribe(client, second, channel_id=cid))["subscribed"] is True
        await call(client, "/channel/unsubscribe", {"device_key": second, "channel_id": cid})
        assert (await subscribe(client, third, channel_id=cid))["subscribed"] is True

    async def test_a_sync_item_for_a_full_channel_fails_with_the_limit_code(self, client):
        first, second, third = [await register(client) for _ in range(3)]
        cid = await new_channel(client, first)
        await subscribe(client, second, channel_id=cid)
        data = await call(client, "/channel/sync",
                          {"device_key": third,
                           "channels": [{"channel_id": cid, "password": PASSWORD}]})
        assert data["failed"] == 1
        assert data["channels"][0]["error_code"] == "channel_subscriber_limit_exceeded"


# --- POST /channel/unsubscribe ----------------------------------------------------------------


async def test_unsubscribing_removes_the_subscription(client, gateway):
    key = await register(client)
    cid = await new_channel(client, key)
    data = await call(client, "/channel/unsubscribe",
                      {"device_key": key, "channel_id": dashed_lower(cid)})
    assert data == {"channel_id": cid, "removed": True}
    assert await subscribed(gateway, key) == set()


async def test_unsubscribing_from_a_channel_never_joined_removes_nothing(client):
    key = await provider_device(client)
    cid = await new_channel(client)
    data = await call(client, "/channel/unsubscribe", {"device_key": key, "channel_id": cid})
    assert data == {"channel_id": cid, "removed": False}


async def test_unsubscribing_from_an_unknown_channel_is_not_an_error(client):
    key = await provider_device(client)
    cid = unknown_channel_id()
    data = await call(client, "/channel/unsubscribe", {"device_key": key, "channel_id": cid})
    assert data == {"channel_id": cid, "removed": False}


async def test_unsubscribing_leaves_other_subscribers_alone(client, gateway):
    mine, theirs = await register(client), await register(client)
    cid = await new_channel(client, mine)
    await subscribe(client, theirs, channel_id=cid)
    await call(client, "/channel/unsubscribe", {"device_key": mine, "channel_id": cid})
    assert await subscribed(gateway, theirs) == {cid}


async def test_unsubscribing_with_a_blank_channel_id_is_channel_id_required(client):
    key = await register(client)
    await fails(client, "/channel/unsubscribe", {"device_key": key, "channel_id": "  "},
                400, "channel_id_required")


async def test_unsubscribing_with_a_malformed_channel_id_is_invalid_channel_id(client):
    key = await register(client)
    await fails(client, "/channel/unsubscribe", {"device_key": key, "channel_id": "abc"},
                400, "invalid_channel_id")


async def test_unsubscribing_an_unregistered_key_is_device_key_not_found(client):
    await fails(client, "/channel/unsubscribe",
                {"device_key": "8" * 32, "channel_id": unknown_channel_id()},
                400, "device_key_not_found")


async def test_unsubscribing_takes_no_password(client):
    key = await register(client)
    await fails(client, "/channel/unsubscribe",
                {"device_key": key, "channel_id": unknown_channel_id(), "password": PASSWORD},
                400, "invalid_json_data")


# --- POST /channel/sync -----------------------------------------------------------------------


async def test_sync_subscribes_every_listed_channel_and_reports_each(client, gateway):
    owner = await register(client)
    a = await new_channel(client, owner, name="alpha")
    b = await new_channel(client, owner, name="beta")
    key = await register(client)
    data = await call(client, "/channel/sync", {"device_key": key, "channels": [
        {"channel_id": a, "password": PASSWORD},
        {"channel_id": dashed_lower(b), "password": f" {PASSWORD} "},
    ]})
    assert data == {"total": 2, "success": 2, "failed": 0, "channels": [
        {"channel_id": a, "channel_name": "alpha", "subscribed": True, "created": False},
        {"channel_id": b, "channel_name": "beta", "subscribed": True, "created": False},
    ]}
    assert await subscribed(gateway, key) == {a, b}


async def test_sync_removes_subscriptions_not_listed_when_every_item_succeeds(client, gateway):
    key = await register(client)
    keep = await new_channel(client, key, name="keep")
    drop = await new_channel(client, key, name="drop")
    data = await call(client, "/channel/sync",
                      {"device_key": key, "channels": [{"channel_id": keep, "password": PASSWORD}]})
    assert (data["success"], data["failed"]) == (1, 0)
    assert await subscribed(gateway, key) == {keep}
    assert await gateway.store.read(channel_store.get, drop) is not None  # the channel itself stays


async def test_sync_with_an_empty_list_removes_every_subscription(client, gateway):
    key = await register(client)
    await new_channel(client, key)
    await new_channel(client, key)
    data = await call(client, "/channel/sync", {"device_key": key, "channels": []})
    assert data == {"total": 0, "success": 0, "failed": 0, "channels": []}
    assert await subscribed(gateway, key) == set()


async def test_sync_keeps_unlisted_subscriptions_when_an_item_fails(client, gateway):
    key = await register(client)
    old = await new_channel(client, key, name="old")
    new = await new_channel(client, name="new")
    resp = await client.post("/channel/sync", json={"device_key": key, "channels": [
        {"channel_id": new, "password": PASSWORD},
        {"channel_id": unknown_channel_id(), "password": PASSWORD},
    ]})
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["success"] is True
    assert (doc["data"]["success"], doc["data"]["failed"]) == (1, 1)
    assert await subscribed(gateway, key) == {old, new}


async def test_sync_reports_each_failed_item_with_its_code_and_still_answers_200(client, gateway):
    cid = await new_channel(client, name="real")
    missing = unknown_channel_id()
    key = await register(client)
    data = await call(client, "/channel/sync", {"device_key": key, "channels": [
        {"channel_id": "", "password": PASSWORD},
        {"channel_id": "  garbage  ", "password": PASSWORD},
        {"channel_id": cid.lower(), "password": "short"},
        {"channel_id": cid, "password": "wrong-password"},
        {"channel_id": missing, "password": PASSWORD},
        {"channel_id": cid, "password": PASSWORD},
    ]})
    assert (data["total"], data["success"], data["failed"]) == (6, 1, 5)
    items = data["channels"]
    expected = [("", "invalid_channel_id"), ("garbage", "invalid_channel_id"),
                (cid, "invalid_password"), (cid, "password_mismatch"),
                (missing, "channel_not_found")]
    for item, (shown, code) in zip(items, expected, strict=False):
        assert item["channel_id"] == shown
        assert item["error_code"] == code
        assert item["error"]
        assert item["subscribed"] is False and item["created"] is False
        assert "channel_name" not in item
    assert items[5] == {"channel_id": cid, "channel_name": "real", "subscribed": True,
                        "created": False}
    assert await subscribed(gateway, key) == {cid}


async def test_sync_on_a_provider_route_without_a_token_fails_every_item(client, gateway):
    cid = await new_channel(client)
    key = await provider_device(client, with_token=False)
    data = await call(client, "/channel/sync",
                      {"device_key": key, "channels": [{"channel_id": cid, "password": PASSWORD}]})
    assert (data["success"], data["failed"]) == (0, 1)
    assert data["channels"][0]["error_code"] == "provider_token_missing"
    assert await subscribed(gateway, key) == set()


async def test_sync_never_creates_a_channel(client, gateway):
    key = await register(client)
    missing = unknown_channel_id()
    data = await call(client, "/channel/sync",
                      {"device_key": key, "channels": [{"channel_id": missing,
                                                        "password": PASSWORD}]})
    assert data["channels"][0]["error_code"] == "channel_not_found"
    assert await gateway.store.read(channel_store.get, missing) is None


async def test_sync_for_an_unregistered_key_is_device_key_not_found(client):
    await fails(client, "/channel/sync", {"device_key": "7" * 32, "channels": []},
                400, "device_key_not_found")


async def test_sync_for_a_blank_key_is_device_key_required(client):
    await fails(client, "/channel/sync", {"device_key": " ", "channels": []},
                400, "device_key_required")


@pytest.mark.parametrize("item", [{"channel_id": "x", "password": PASSWORD, "name": "n"},
                                  {"channel_id": "x"}, {"channel_id": 5, "password": PASSWORD}])
async def test_a_sync_item_of_the_wrong_shape_fails_the_whole_request(client, item):
    key = await register(client)
    await fails(client, "/channel/sync", {"device_key": key, "channels": [item]},
                400, "invalid_json_data")


async def test_sync_of_more_than_2000_channels_is_channels_limit_exceeded(client, gateway):
    key = await register(client)
    item = wire.SyncItemIn(channel_id="", password=PASSWORD)
    with pytest.raises(InvalidInput) as caught:
        await gateway.services.channels.sync(wire.SyncIn(device_key=key, channels=[item] * 2001))
    assert caught.value.code == "channels_limit_exceeded"
    # 2000 is still allowed (each of these items fails on its own, without a KDF call).
    out = await gateway.services.channels.sync(wire.SyncIn(device_key=key, channels=[item] * 2000))
    assert (out.total, out.failed) == (2000, 2000)


async def test_a_sync_body_of_2001_items_is_over_the_body_limit(client):
    key = await register(client)
    body = {"device_key": key, "channels": [{"channel_id": "", "password": ""}] * 2001}
    assert_error(await client.post("/channel/sync", json=body), 413, "payload_too_large")


# --- GET /channel/exists ----------------------------------------------------------------------


async def test_exists_reports_an_existing_channel_with_its_name(client):
    cid = await new_channel(client, name="ops")
    data = await call(client, f"/channel/exists?channel_id={cid.lower()}")
    assert data == {"channel_id": cid, "exists": True, "channel_name": "ops"}


async def test_exists_reports_an_unknown_channel_without_a_name(client):
    cid = unknown_channel_id()
    assert await call(client, f"/channel/exists?channel_id={cid}") == {"channel_id": cid,
                                                                       "exists": False}


async def test_exists_accepts_a_dashed_id(client):
    cid = await new_channel(client)
    resp = await client.get("/channel/exists", params={"channel_id": dashed_lower(cid)})
    assert resp.json()["data"]["channel_id"] == cid


@pytest.mark.parametrize("query", ["", "?channel_id=", "?channel_id=%20%20"])
async def test_exists_without_a_channel_id_is_channel_id_required(client, query):
    assert_error(await client.get(f"/channel/exists{query}"), 400, "channel_id_required")


async def test_exists_with_an_extra_parameter_is_invalid_query(client):
    cid = unknown_channel_id()
    resp = await client.get(f"/channel/exists?channel_id={cid}&password=x")
    assert_error(resp, 400, "invalid_query")


async def test_exists_with_a_malformed_id_is_invalid_channel_id(client):
    assert_error(await client.get("/channel/exists?channel_id=nope"), 400, "invalid_channel_id")


# --- POST /channel/rename ---------------------------------------------------------------------


async def test_renaming_a_channel_trims_and_stores_the_new_name(client):
    key = await register(client)
    cid = await new_channel(client, key, name="old")
    data = await call(client, "/channel/rename",
                      {"channel_id": dashed_lower(cid), "channel_name": " Prod ",
                       "password": PASSWORD})
    assert data == {"channel_id": cid, "channel_name": "Prod"}
    assert (await call(client, f"/channel/exists?channel_id={cid}"))["channel_name"] == "Prod"
    other = await register(client)
    assert (await subscribe(client, other, channel_id=cid))["channel_name"] == "Prod"


async def test_renaming_with_the_wrong_password_is_password_mismatch(client):
    cid = await new_channel(client, name="old")
    await fails(client, "/channel/rename",
                {"channel_id": cid, "channel_name": "new", "password": "wrong-password"},
                403, "password_mismatch")
    assert (await call(client, f"/channel/exists?channel_id={cid}"))["channel_name"] == "old"


async def test_renaming_an_unknown_channel_is_channel_not_found(client):
    await fails(client, "/channel/rename",
                {"channel_id": unknown_channel_id(), "channel_name": "new", "password": PASSWORD},
                404, "channel_not_found")


@pytest.mark.parametrize(("body", "code"), [
    ({"channel_id": "", "channel_name": "n", "password": PASSWORD}, "channel_id_required"),
    ({"channel_id": "bad", "channel_name": "n", "password": PASSWORD}, "invalid_channel_id"),
    ({"channel_name": "  ", "password": PASSWORD}, "invalid_channel_name"),
    ({"channel_name": "x" * 129, "password": PASSWORD}, "invalid_channel_name"),
    ({"channel_name": "tab\there", "password": PASSWORD}, "invalid_channel_name"),
    ({"channel_name": "new", "password": "short"}, "invalid_password"),
    ({"channel_name": "new"}, "invalid_json_data"),
    ({"channel_name": "new", "password": PASSWORD, "device_key": "k"}, "invalid_json_data"),
])
async def test_a_bad_rename_request_names_what_is_wrong(client, body, code):
    body = {"channel_id": unknown_channel_id(), **body}
    await fails(client, "/channel/rename", body, 400, code)
