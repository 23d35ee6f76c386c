"""HTTP API: device registration and routes (/device/register, /channel/device,
/channel/device/delete, /channel/device/provider-token/retire), and the behaviour every route
shares: the envelope, x-request-id, JSON body decoding, the body limit, unknown routes and
methods, the gateway token, and the gateway's own pages (/, /healthz, /readyz,
/gateway/profile)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pushgo import __version__
from pushgo.store import channels as channel_store
from tests.helpers import assert_error, call, fails, new_channel, register

APNS_TOKEN = "0123456789abcdefABCDEF" + "ab" * 21  # 64 hex chars, mixed case
FCM_TOKEN = "fcm-token-abcdefghijklmnop"
WNS_TOKEN = "https://wns.example/notify/abcdefgh"
HEX32 = re.compile(r"[0-9a-f]{32}")


async def set_route(client, key: str, channel_type: str, token: str | None = None,
                    **extra) -> dict[str, Any]:
    body = {"device_key": key, "channel_type": channel_type, **extra}
    if token is not None:
        body["provider_token"] = token
    return await call(client, "/channel/device", body)


# --- POST /device/register --------------------------------------------------------------------


@pytest.mark.parametrize("body", [{}, {"device_key": None}, {"device_key": ""},
                                  {"device_key": "   "}])
async def test_registering_without_a_device_key_issues_one_with_reason_device_key_missing(
        client, body):
    data = await call(client, "/device/register", {"platform": "ios", **body})
    assert HEX32.fullmatch(data["device_key"])
    assert data == {"device_key": data["device_key"], "issued_new_key": True,
                    "issue_reason": "device_key_missing"}


async def test_registering_an_unknown_device_key_issues_a_fresh_one_with_reason_not_found(client):
    unknown = "f" * 32
    data = await call(client, "/device/register", {"platform": "android", "device_key": unknown})
    assert data["issued_new_key"] is True
    assert data["issue_reason"] == "device_key_not_found"
    assert HEX32.fullmatch(data["device_key"])
    assert data["device_key"] != unknown


async def test_registering_a_known_key_on_the_same_platform_returns_it_without_a_reason(client):
    key = await register(client, "android")
    data = await call(client, "/device/register", {"platform": " Android ", "device_key": key})
    assert data == {"device_key": key, "issued_new_key": False}


async def test_ipados_registers_as_ios_so_either_name_reuses_the_same_key(client):
    key = await register(client, "iPadOS")
    again = await call(client, "/device/register", {"platform": "ios", "device_key": key})
    assert again == {"device_key": key, "issued_new_key": False}
    # The stored platform is ios: naming ios on the route matches, and apns is allowed.
    route = await set_route(client, key, "apns", APNS_TOKEN, platform="ios")
    assert route["channel_type"] == "apns"


async def test_win_registers_as_windows(client):
    key = await register(client, "WIN")
    route = await set_route(client, key, "wns", WNS_TOKEN, platform="windows")
    assert route["channel_type"] == "wns"


async def test_registering_a_known_key_on_another_platform_replaces_it_and_drops_its_subscriptions(
        client, gateway):
    old = await register(client, "ios")
    cid = await new_channel(client, old)
    data = await call(client, "/device/register", {"platform": "android", "device_key": old})
    assert data["issued_new_key"] is True
    assert data["issue_reason"] == "platform_mismatch"
    new = data["device_key"]
    assert new != old and HEX32.fullmatch(new)
    # The old identity is gone, with its subscriptions; the new one starts unsubscribed.
    await fails(client, "/channel/device", {"device_key": old, "channel_type": "private"},
                400, "device_key_not_found")
    assert await gateway.store.read(channel_store.subscribed_channels, old) == []
    assert await gateway.store.read(channel_store.subscribed_channels, new) == []
    assert await gateway.store.read(channel_store.subscriber_count, cid) == 0


@pytest.mark.parametrize("device_key", ["ab\x01cd", "k" * 129, "tab\tkey"])
async def test_registering_an_odd_unknown_key_issues_a_fresh_one_with_reason_not_found(
        client, device_key):
    data = await call(client, "/device/register", {"platform": "ios", "device_key": device_key})
    assert data["issued_new_key"] is True
    assert data["issue_reason"] == "device_key_not_found"
    assert HEX32.fullmatch(data["device_key"])


@pytest.mark.parametrize("platform", ["tvos", "mac", "", "   "])
async def test_registering_an_unknown_platform_is_invalid_platform(client, platform):
    await fails(client, "/device/register", {"platform": platform}, 400, "invalid_platform")


async def test_registering_with_a_provider_token_field_is_invalid_json_data(client):
    await fails(client, "/device/register", {"platform": "ios", "provider_token": FCM_TOKEN},
                400, "invalid_json_data")


async def test_registering_without_a_platform_is_invalid_json_data(client):
    await fails(client, "/device/register", {"device_key": "a" * 32}, 400, "invalid_json_data")


# --- POST /channel/device ---------------------------------------------------------------------


async def test_an_ios_device_takes_an_apns_route_with_its_token_echoed_as_sent(client):
    key = await register(client, "ios")
    data = await set_route(client, key, "APNS", f"  {APNS_TOKEN} ", platform="iOS")
    assert data == {"device_key": key, "channel_type": "apns", "provider_token": APNS_TOKEN,
                    "issued_new_key": False}


async def test_an_android_device_takes_an_fcm_route(client):
    key = await register(client, "android")
    data = await set_route(client, key, "fcm", FCM_TOKEN, platform="android")
    assert data == {"device_key": key, "channel_type": "fcm", "provider_token": FCM_TOKEN,
                    "issued_new_key": False}


async def test_a_windows_device_takes_a_wns_route(client):
    key = await register(client, "windows")
    data = await set_route(client, key, "wns", WNS_TOKEN)
    assert data == {"device_key": key, "channel_type": "wns", "provider_token": WNS_TOKEN,
                    "issued_new_key": False}


async def test_a_device_can_switch_back_to_the_private_route_without_a_token(client):
    key = await register(client, "macos")
    await set_route(client, key, "apns", APNS_TOKEN)
    data = await set_route(client, key, "private", provider_token="", platform="")
    assert data == {"device_key": key, "channel_type": "private", "issued_new_key": False}


async def test_setting_the_same_route_twice_is_idempotent(client):
    key = await register(client, "android")
    first = await set_route(client, key, "fcm", FCM_TOKEN)
    assert await set_route(client, key, "fcm", FCM_TOKEN) == first


async def test_an_unknown_channel_type_is_invalid_channel_type(client):
    key = await register(client)
    await fails(client, "/channel/device", {"device_key": key, "channel_type": "gcm"},
                400, "invalid_channel_type")


async def test_an_unknown_platform_on_the_route_is_invalid_platform(client):
    key = await register(client)
    await fails(client, "/channel/device",
                {"device_key": key, "channel_type": "apns", "platform": "tvos",
                 "provider_token": APNS_TOKEN}, 400, "invalid_platform")


async def test_a_route_for_an_unregistered_key_is_device_key_not_found(client):
    await fails(client, "/channel/device", {"device_key": "0" * 32, "channel_type": "private"},
                400, "device_key_not_found")


async def test_a_route_with_a_blank_device_key_is_device_key_required(client):
    await fails(client, "/channel/device", {"device_key": "  ", "channel_type": "private"},
                400, "device_key_required")


async def test_a_route_naming_another_platform_than_the_registered_one_is_platform_mismatch(
        client):
    key = await register(client, "ios")
    await fails(client, "/channel/device",
                {"device_key": key, "channel_type": "fcm", "platform": "android",
                 "provider_token": FCM_TOKEN}, 400, "platform_mismatch")


@pytest.mark.parametrize("ctype", ["apns", "fcm", "wns"])
@pytest.mark.parametrize("token", [None, "", "   "])
async def test_a_provider_route_without_a_token_is_provider_token_required(client, ctype, token):
    key = await register(client, {"apns": "ios", "fcm": "android", "wns": "windows"}[ctype])
    body = {"device_key": key, "channel_type": ctype}
    if token is not None:
        body["provider_token"] = token
    await fails(client, "/channel/device", body, 400, "provider_token_required")


async def test_a_private_route_with_a_token_is_forbidden(client):
    key = await register(client, "android")
    await fails(client, "/channel/device",
                {"device_key": key, "channel_type": "private", "provider_token": FCM_TOKEN},
                400, "provider_token_forbidden_for_private_channel")


@pytest.mark.parametrize(("platform", "ctype", "token", "code"), [
    ("android", "apns", APNS_TOKEN, "apns_channel_requires_apple_platform"),
    ("windows", "apns", APNS_TOKEN, "apns_channel_requires_apple_platform"),
    ("ios", "fcm", FCM_TOKEN, "fcm_channel_requires_android_platform"),
    ("windows", "fcm", FCM_TOKEN, "fcm_channel_requires_android_platform"),
    ("android", "wns", WNS_TOKEN, "wns_channel_requires_windows_platform"),
    ("watchos", "wns", WNS_TOKEN, "wns_channel_requires_windows_platform"),
])
async def test_a_provider_route_on_the_wrong_platform_names_the_platform_it_needs(
        client, platform, ctype, token, code):
    key = await register(client, platform)
    await fails(client, "/channel/device",
                {"device_key": key, "channel_type": ctype, "provider_token": token}, 400, code)


@pytest.mark.parametrize(("platform", "ctype", "token"), [
    ("ios", "apns", "ab" * 31),            # 62 hex chars: too short
    ("ios", "apns", "ab" * 128 + "ab"),    # 258 hex chars: too long
    ("ios", "apns", "a" * 65),             # odd length
    ("macos", "apns", "zz" * 32),          # not hex
    ("android", "fcm", "x" * 15),          # under 16 bytes
    ("android", "fcm", "x" * 4097),        # over 4096 bytes
    ("windows", "wns", "short"),
    ("android", "fcm", "\x01" * 16),          # control characters
    ("windows", "wns", "https://wns.example/\nnotify"),
])
async def test_a_malformed_provider_token_is_invalid_provider_token(client, platform, ctype,
                                                                    token):
    key = await register(client, platform)
    await fails(client, "/channel/device",
                {"device_key": key, "channel_type": ctype, "provider_token": token},
                400, "invalid_provider_token")


async def test_apns_tokens_at_the_length_bounds_are_accepted(client):
    key = await register(client, "watchos")
    assert (await set_route(client, key, "apns", "AB" * 32))["provider_token"] == "AB" * 32
    assert (await set_route(client, key, "apns", "cd" * 128))["provider_token"] == "cd" * 128


async def test_a_token_already_held_by_another_device_merges_that_device_into_this_one(
        client, gateway):
    old = await register(client, "ios")
    await set_route(client, old, "apns", APNS_TOKEN)
    cid = await new_channel(client, old)
    new = await register(client, "ios")
    await set_route(client, new, "apns", APNS_TOKEN)
    # The older identity is gone; its subscription now belongs to the device holding the token.
    await fails(client, "/channel/device/delete", {"device_key": old, "channel_type": "apns"},
                400, "device_key_not_found")
    assert await gateway.store.read(channel_store.subscribed_channels, new) == [cid]
    assert await gateway.store.read(channel_store.subscriber_count, cid) == 1


async def test_the_same_token_on_another_platform_does_not_merge(client):
    token = "t" * 40
    android = await register(client, "android")
    windows = await register(client, "windows")
    await set_route(client, android, "fcm", token)
    await set_route(client, windows, "wns", token)
    assert (await set_route(client, android, "fcm", token))["device_key"] == android


# --- POST /channel/device/delete --------------------------------------------------------------


async def test_deleting_a_provider_route_clears_the_token_but_keeps_the_type(client):
    key = await register(client, "android")
    cid = await new_channel(client, key)
    await set_route(client, key, "fcm", FCM_TOKEN)
    data = await call(client, "/channel/device/delete", {"device_key": key, "channel_type": "FCM"})
    assert data == {"device_key": key, "channel_type": "fcm", "issued_new_key": False}
    # Still fcm (so "private" does not match), and without a token it cannot subscribe.
    await fails(client, "/channel/device/delete", {"device_key": key, "channel_type": "private"},
                400, "channel_type_mismatch")
    await fails(client, "/channel/subscribe",
                {"device_key": key, "channel_id": cid, "password": "secret-pass-1"},
                400, "provider_token_required")
    # The subscription was kept: with a token again, unsubscribing finds it.
    await set_route(client, key, "fcm", FCM_TOKEN)
    assert (await call(client, "/channel/unsubscribe",
                       {"device_key": key, "channel_id": cid}))["removed"] is True


async def test_deleting_the_private_route_of_a_private_device_succeeds(client):
    key = await register(client)
    data = await call(client, "/channel/device/delete",
                      {"device_key": key, "channel_type": "private"})
    assert data == {"device_key": key, "channel_type": "private", "issued_new_key": False}


async def test_deleting_a_route_of_another_type_is_channel_type_mismatch(client):
    key = await register(client, "ios")
    await fails(client, "/channel/device/delete", {"device_key": key, "channel_type": "apns"},
                400, "channel_type_mismatch")


async def test_deleting_a_route_with_an_unknown_type_is_invalid_channel_type(client):
    key = await register(client)
    await fails(client, "/channel/device/delete", {"device_key": key, "channel_type": "sms"},
                400, "invalid_channel_type")


async def test_deleting_the_route_of_an_unregistered_key_is_device_key_not_found(client):
    await fails(client, "/channel/device/delete",
                {"device_key": "1" * 32, "channel_type": "private"}, 400, "device_key_not_found")


async def test_deleting_a_route_with_a_provider_token_field_is_invalid_json_data(client):
    key = await register(client, "android")
    await fails(client, "/channel/device/delete",
                {"device_key": key, "channel_type": "fcm", "provider_token": FCM_TOKEN},
                400, "invalid_json_data")


# --- POST /channel/device/provider-token/retire -----------------------------------------------


async def test_retiring_a_token_moves_its_device_to_the_private_route(client):
    key = await register(client, "ios")
    await set_route(client, key, "apns", APNS_TOKEN)
    data = await call(client, "/channel/device/provider-token/retire",
                      {"platform": "iPadOS", "provider_token": f" {APNS_TOKEN} "})
    assert data == {"retired": True}
    await fails(client, "/channel/device/delete", {"device_key": key, "channel_type": "apns"},
                400, "channel_type_mismatch")
    assert (await call(client, "/channel/device/delete",
                       {"device_key": key, "channel_type": "private"}))["channel_type"] == "private"


async def test_retiring_a_token_on_another_platform_leaves_the_device_alone(client):
    key = await register(client, "ios")
    await set_route(client, key, "apns", APNS_TOKEN)
    data = await call(client, "/channel/device/provider-token/retire",
                      {"platform": "macos", "provider_token": APNS_TOKEN})
    assert data == {"retired": True}
    await fails(client, "/channel/device/delete", {"device_key": key, "channel_type": "private"},
                400, "channel_type_mismatch")


async def test_retiring_a_token_nobody_holds_still_reports_retired(client):
    data = await call(client, "/channel/device/provider-token/retire",
                      {"platform": "android", "provider_token": FCM_TOKEN})
    assert data == {"retired": True}


async def test_retiring_on_an_unknown_platform_is_invalid_platform(client):
    await fails(client, "/channel/device/provider-token/retire",
                {"platform": "symbian", "provider_token": FCM_TOKEN}, 400, "invalid_platform")


async def test_retiring_a_blank_token_is_provider_token_required(client):
    await fails(client, "/channel/device/provider-token/retire",
                {"platform": "android", "provider_token": "  "}, 400, "provider_token_required")


async def test_retiring_a_malformed_token_is_invalid_provider_token(client):
    await fails(client, "/channel/device/provider-token/retire",
                {"platform": "ios", "provider_token": "not-hex"}, 400, "invalid_provider_token")


async def test_retiring_a_token_with_control_characters_is_invalid_provider_token(client):
    await fails(client, "/channel/device/provider-token/retire",
                {"platform": "android", "provider_token": "fcm-token\r\nabcdefghij"}, 400,
                "invalid_provider_token")


async def test_retiring_without_a_token_field_is_invalid_json_data(client):
    await fails(client, "/channel/device/provider-token/retire", {"platform": "ios"},
                400, "invalid_json_data")


# --- the envelope and x-request-id ------------------------------------------------------------


async def test_a_success_envelope_has_only_success_and_data(client):
    resp = await client.post("/device/register", json={"platform": "ios"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    doc = resp.json()
    assert set(doc) == {"success", "data"}
    assert doc["success"] is True
    assert "issue_reason" in doc["data"]
    assert None not in doc["data"].values()


async def test_an_error_envelope_carries_error_code_and_a_problem_naming_the_request(client):
    resp = await client.post("/device/register", json={"platform": "tvos"})
    doc = assert_error(resp, 400, "invalid_platform")
    assert set(doc) == {"success", "error", "error_code", "problem"}
    problem = doc["problem"]
    assert problem["category"] == "validation"
    assert problem["detail"] == doc["error"]
    assert problem["locale"] == "en"
    assert problem["retryable"] is False
    assert problem["title"] and problem["localized_message"]
    assert None not in problem.values()
    assert resp.headers["content-language"] == "en"


async def test_errors_are_localized_to_simplified_chinese_when_asked(client):
    resp = await client.post("/device/register", json={"platform": "tvos"},
                             headers={"accept-language": "fr-FR, zh-CN;q=0.5"})
    doc = assert_error(resp, 400, "invalid_platform")
    assert doc["problem"]["locale"] == "zh-CN"
    assert resp.headers["content-language"] == "zh-CN"
    assert doc["error"] == "invalid platform"


async def test_every_response_carries_a_fresh_x_request_id_ignoring_the_callers(client):
    sent = {"x-request-id": "caller-chosen-id"}
    responses = [
        await client.post("/device/register", json={"platform": "ios"}, headers=sent),
        await client.post("/device/register", json={"platform": "nope"}, headers=sent),
        await client.get("/healthz", headers=sent),
        await client.get("/", headers=sent),
        await client.get("/no/such/route", headers=sent),
        await client.get("/device/register", headers=sent),
        await client.post("/device/register", content=b"{", headers=sent),
    ]
    ids = [r.headers["x-request-id"] for r in responses]
    assert all(HEX32.fullmatch(i) for i in ids), ids
    assert len(set(ids)) == len(ids)


# --- JSON bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "text/plain", "text/json",
                                          "application/x-www-form-urlencoded", "json"])
async def test_a_body_without_a_json_content_type_is_missing_json_content_type(client,
                                                                               content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    resp = await client.post("/device/register", content=b'{"platform":"ios"}', headers=headers)
    assert_error(resp, 400, "missing_json_content_type")


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8",
                                          "Application/JSON", "application/vnd.pushgo+json"])
async def test_json_content_types_with_parameters_or_a_json_suffix_are_accepted(client,
                                                                                content_type):
    resp = await client.post("/device/register", content=b'{"platform":"ios"}',
                             headers={"content-type": content_type})
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("raw", [b"", b"{", b'{"platform":"ios"} trailing', b"{platform: ios}",
                                 b'{"platform":"ios",}'])
async def test_malformed_json_is_invalid_json_syntax(client, raw):
    resp = await client.post("/device/register", content=raw,
                             headers={"content-type": "application/json"})
    assert_error(resp, 400, "invalid_json_syntax")


@pytest.mark.parametrize("body", [
    {"platform": "ios", "colour": "blue"},   # unknown field
    {"platform": 7},                          # wrong type
    {"platform": None},                       # null for a required string
    {"platform": "ios", "device_key": 12},   # wrong type for an optional string
    ["ios"],                                  # not an object
    "ios",
])
async def test_a_body_of_the_wrong_shape_is_invalid_json_data(client, body):
    await fails(client, "/device/register", body, 400, "invalid_json_data")


async def test_a_body_of_exactly_32_kib_is_accepted(client):
    raw = b'{"platform":"ios"}'
    raw += b" " * (32 * 1024 - len(raw))
    resp = await client.post("/device/register", content=raw,
                             headers={"content-type": "application/json"})
    assert resp.status_code == 200, resp.text


async def test_a_body_over_32_kib_is_payload_too_large(client):
    raw = b'{"platform":"ios"}'
    raw += b" " * (32 * 1024 + 1 - len(raw))
    resp = await client.post("/device/register", content=raw,
                             headers={"content-type": "application/json"})
    assert_error(resp, 413, "payload_too_large")


async def test_a_streamed_body_over_32_kib_without_a_length_is_payload_too_large(client):
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"platform":"ios"'
        for _ in range(40):
            yield b" " * 1024
        yield b"}"

    resp = await client.post("/device/register", content=chunks(),
                             headers={"content-type": "application/json"})
    assert "content-length" not in resp.request.headers
    assert_error(resp, 413, "payload_too_large")


# --- routes and methods -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nope", "/device/register/extra", "/healthz/", "/channel"])
async def test_an_unknown_path_is_route_not_found(client, path):
    assert_error(await client.get(path), 404, "route_not_found")
    assert_error(await client.post(path, json={}), 404, "route_not_found")


@pytest.mark.parametrize(("method", "path"), [("GET", "/device/register"),
                                              ("POST", "/healthz"),
                                              ("DELETE", "/channel/subscribe"),
                                              ("POST", "/channel/exists")])
async def test_a_known_path_with_the_wrong_method_is_method_not_allowed(client, method, path):
    resp = await client.request(method, path)
    assert_error(resp, 405, "method_not_allowed")
    assert resp.headers["allow"]


# --- the gateway's own pages ------------------------------------------------------------------


async def test_the_index_page_is_html_naming_the_version(client):
    resp = await client.get("/")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert __version__ in resp.text
    assert "/channel/subscribe" in resp.text


async def test_healthz_reports_ok_with_the_private_channel_ready(client):
    data = await call(client, "/healthz")
    assert data == {"status": "ok", "private_channel_enabled": True,
                    "private_runtime_ready": True}


async def test_readyz_reports_ok_once_the_store_answers(client):
    assert await call(client, "/readyz") == {"status": "ok"}


async def test_the_gateway_profile_reports_the_private_stream_and_no_providers(client):
    data = await call(client, "/gateway/profile")
    assert data["private_channel_enabled"] is True
    assert data["private_enabled"] is True
    transport = data["transport"]
    assert transport["sse_enabled"] is True
    assert transport["sse_path"] == "/private/stream"
    assert "sse_url" not in transport  # no public base URL configured
    assert transport["quic_enabled"] is False and transport["quic_port"] is None
    assert data["apns_enabled"] is False
    assert data["fcm_enabled"] is False
    assert data["mcp_enabled"] is False


class TestWithAPublicBaseUrl:
    @pytest.fixture
    def settings_overrides(self):
        return {"public_base_url": "https://push.example.com/"}

    async def test_the_gateway_profile_gives_the_full_stream_url(self, client):
        data = await call(client, "/gateway/profile")
        assert data["transport"]["sse_url"] == "https://push.example.com/private/stream"


# --- the gateway token ------------------------------------------------------------------------

TOKEN = "s3cret-gateway-token"
GUARDED = [("GET", "/"), ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/gateway/profile"),
           ("POST", "/device/register"), ("POST", "/channel/subscribe"),
           ("GET", "/channel/exists?channel_id=x"), ("POST", "/messages/pull")]


class TestWithAGatewayToken:
    @pytest.fixture
    def settings_overrides(self):
        return {"token": TOKEN}

    @pytest.mark.parametrize(("method", "path"), GUARDED)
    async def test_a_request_without_the_token_is_authentication_failed(self, client, method,
                                                                        path):
        resp = await client.request(method, path, json={"platform": "ios"})
        doc = assert_error(resp, 401, "authentication_failed")
        assert doc["problem"]["category"] == "auth"
        assert HEX32.fullmatch(resp.headers["x-request-id"])

    @pytest.mark.parametrize("authorization", [
        "Bearer wrong-token", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN} extra",
        TOKEN, f"Bearer {TOKEN}x", "Bearer " + "a" * 5000, "",
    ])
    async def test_a_wrong_or_malformed_bearer_is_authentication_failed(self, client,
                                                                        authorization):
        for path in ("/", "/healthz", "/device/register"):
            resp = await client.post(path, json={"platform": "ios"},
                                     headers={"authorization": authorization})
            assert_error(resp, 401, "authentication_failed")

    @pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
    async def test_the_right_token_is_accepted_whatever_the_case_of_bearer(self, client, scheme):
        headers = {"authorization": f"{scheme} {TOKEN}"}
        for path in ("/", "/healthz", "/readyz", "/gateway/profile"):
            assert (await client.get(path, headers=headers)).status_code == 200
        resp = await client.post("/device/register", json={"platform": "ios"}, headers=headers)
        assert resp.status_code == 200
        assert resp.json()["data"]["issued_new_key"] is True

    async def test_an_unknown_path_is_route_not_found_even_without_the_token(self, client):
        assert_error(await client.get("/no/such/route"), 404, "route_not_found")

    async def test_the_wrong_method_is_checked_after_the_token(self, client):
        assert_error(await client.get("/device/register"), 401, "authentication_failed")
        resp = await client.get("/device/register", headers={"authorization": f"Bearer {TOKEN}"})
        assert_error(resp, 405, "method_not_allowed")
