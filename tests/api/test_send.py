"""POST /message and GET /message: response, the payload devices pull, validation codes,
timestamps, op_id idempotency and fan-out (the README's API, PushGo Gateway v1.2.9's wire)."""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any

import anyio
import pytest

from pushgo.protocol.ids import encode_channel_id
from pushgo.store.schema import deliveries, messages, operations
from tests.helpers import (
    PASSWORD,
    call,
    fail,
    pull,
    refusals,
    register,
    rows,
    send,
    stored_channel,
)

HEX32 = re.compile(r"[0-9a-f]{32}")
T0 = 1_710_000_000  # 2024-03-09, in seconds
DAY_MS = 24 * 3600 * 1000
APNS_TOKEN = "ab" * 32


def future_s(hours: int = 1) -> int:
    return int(time.time()) + hours * 3600


async def device_on(gateway: Any, client: Any, count: int = 1) -> tuple[list[str], str]:
    keys = [await register(client) for _ in range(count)]
    return keys, await stored_channel(gateway, *keys)


# --- success -----------------------------------------------------------------------------------


async def test_an_accepted_message_answers_channel_op_and_message_ids(client, gateway):
    _, cid = await device_on(gateway, client)
    resp = await client.post("/message", json={"channel_id": cid.lower(), "password": PASSWORD,
                                               "title": "hello"})
    assert resp.status_code == 200
    doc = resp.json()
    assert set(doc) == {"success", "data"}
    data = doc["data"]
    assert set(data) == {"channel_id", "op_id", "message_id", "accepted"}
    assert data["channel_id"] == cid
    assert data["accepted"] is True
    assert HEX32.fullmatch(data["op_id"])
    assert HEX32.fullmatch(data["message_id"])
    assert HEX32.fullmatch(resp.headers["x-request-id"])


async def test_a_caller_op_id_is_echoed_as_given(client, gateway):
    _, cid = await device_on(gateway, client)
    data = await send(client, cid, op_id="  Deploy:42_a-b  ")
    assert data["op_id"] == "Deploy:42_a-b"


async def test_a_blank_op_id_is_replaced_by_a_generated_one(client, gateway):
    (key,), cid = await device_on(gateway, client)
    answers = [await send(client, cid, op_id=blank) for blank in ("", "   ", None)]
    assert all(HEX32.fullmatch(a["op_id"]) for a in answers)
    assert len({a["op_id"] for a in answers}) == 3
    assert [i["payload"]["op_id"] for i in await pull(client, key)] == [a["op_id"] for a in answers]


async def test_the_pulled_payload_carries_every_documented_key(client, gateway):
    (key,), cid = await device_on(gateway, client)
    ttl = future_s()
    sent = await send(
        client, cid, op_id="deploy-42", title="  Disk almost full ", body=" /var at 91% ",
        severity="HIGH", ttl=ttl, url="https://grafana.example/d/1",
        images=["https://cdn/a.png", " https://cdn/a.png ", "https://cdn/b.png"],
        tags=["ops", "disk", "ops"], metadata={"pct": 91, "host": " web-1", "ok": True},
    )
    items = await pull(client, key)
    assert len(items) == 1
    assert set(items[0]) == {"delivery_id", "payload"}
    payload = items[0]["payload"]
    assert set(payload) == {
        "channel_id", "title", "body", "severity", "schema_version", "payload_version", "op_id",
        "delivery_id", "ingested_at", "occurred_at", "sent_at", "entity_type", "entity_id",
        "message_id", "ttl", "url", "images", "tags", "metadata",
    }
    assert all(isinstance(v, str) for v in payload.values())
    assert payload["channel_id"] == cid
    assert payload["title"] == "Disk almost full"
    assert payload["body"] == "/var at 91%"
    assert payload["severity"] == "high"
    assert payload["schema_version"] == "1"
    assert payload["payload_version"] == "1"
    assert payload["op_id"] == "deploy-42"
    assert payload["delivery_id"] == items[0]["delivery_id"]
    assert HEX32.fullmatch(payload["delivery_id"])
    assert payload["entity_type"] == "message"
    assert payload["entity_id"] == payload["message_id"] == sent["message_id"]
    assert payload["ttl"] == str(ttl * 1000)
    assert payload["url"] == "https://grafana.example/d/1"
    assert json.loads(payload["images"]) == ["https://cdn/a.png", "https://cdn/b.png"]
    assert json.loads(payload["tags"]) == ["ops", "disk"]
    assert payload["metadata"] == '{"host":" web-1","ok":true,"pct":91}'
    assert payload["ingested_at"] == payload["sent_at"]
    assert int(payload["sent_at"]) >= int(payload["occurred_at"]) > T0 * 1000


async def test_a_minimal_payload_leaves_optional_keys_out(client, gateway):
    (key,), cid = await device_on(gateway, client)
    await send(client, cid, body="  ", url="", images=[], tags=[], metadata={})
    payload = (await pull(client, key))[0]["payload"]
    for absent in ("body", "url", "images", "tags", "metadata", "ttl", "thing_id", "base_url",
                   "ciphertext"):
        assert absent not in payload
    assert payload["severity"] == "normal"


async def test_a_thing_scoped_message_carries_its_thing_id_and_occurred_at(client, gateway):
    (key,), cid = await device_on(gateway, client)
    sent = await send(client, cid, thing_id="pump-1", occurred_at=T0)
    assert sent["thing_id"] == "pump-1"
    payload = (await pull(client, key))[0]["payload"]
    assert payload["thing_id"] == "pump-1"
    assert payload["occurred_at"] == str(T0 * 1000)


async def test_ciphertext_passes_through_untouched(client, gateway):
    (key,), cid = await device_on(gateway, client)
    await send(client, cid, ciphertext=" b64:AAAA== ")
    assert (await pull(client, key))[0]["payload"]["ciphertext"] == "b64:AAAA=="


@pytest.mark.parametrize("settings_overrides", [{"public_base_url": "https://gw.example.com/"}])
async def test_the_payload_names_the_public_base_url_when_one_is_set(client, gateway):
    (key,), cid = await device_on(gateway, client)
    await send(client, cid)
    assert (await pull(client, key))[0]["payload"]["base_url"] == "https://gw.example.com"


async def test_a_message_is_kept_in_the_message_history(client, gateway):
    _, cid = await device_on(gateway, client)
    sent = await send(client, cid, title="Disk", body="full", severity="low", url="https://x/",
                      tags=["a", "b"], thing_id="pump-1", occurred_at=T0)
    (row,) = await rows(gateway, messages, message_id=sent["message_id"])
    assert (row.channel_id, row.title, row.body, row.severity, row.url, row.thing_id) == (
        cid, "Disk", "full", "low", "https://x/", "pump-1")
    assert json.loads(row.tags) == ["a", "b"]
    assert row.occurred_at == T0 * 1000


async def test_get_message_reads_images_and_tags_as_csv_and_metadata_as_json(client, gateway):
    (key,), cid = await device_on(gateway, client)
    resp = await client.get("/message", params={
        "channel_id": cid, "password": PASSWORD, "title": "Hi", "op_id": "get-1",
        "images": " https://x/1.png, ,https://x/2.png ,, https://x/1.png",
        "tags": "a, b ,,a", "metadata": '{"b": 1, "a": "x"}', "severity": "CRITICAL",
        "ttl": str(future_s() * 1000), "body": "", "thing_id": "",
    })
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert set(data) == {"channel_id", "op_id", "message_id", "accepted"}
    assert data["op_id"] == "get-1"
    payload = (await pull(client, key))[0]["payload"]
    assert payload["images"] == '["https://x/1.png","https://x/2.png"]'
    assert payload["tags"] == '["a","b"]'
    assert payload["metadata"] == '{"a":"x","b":1}'
    assert payload["severity"] == "critical"
    assert "body" not in payload and "thing_id" not in payload


async def test_get_message_accepts_a_null_metadata_literal(client, gateway):
    (key,), cid = await device_on(gateway, client)
    resp = await client.get("/message", params={"channel_id": cid, "password": PASSWORD,
                                                "title": "Hi", "metadata": "null"})
    assert resp.status_code == 200, resp.text
    assert "metadata" not in (await pull(client, key))[0]["payload"]


# --- validation --------------------------------------------------------------------------------

_MESSAGE_ERRORS: list[tuple[str, dict[str, Any], int, str]] = [
    ("blank title", {"title": "   "}, 400, "title_required"),
    ("missing title", {"title": None}, 400, "invalid_json_data"),
    ("missing password", {"password": None}, 400, "password_required"),
    ("blank password", {"password": "   "}, 400, "password_required"),
    ("short password", {"password": "short"}, 400, "invalid_password"),
    ("long password", {"password": "p" * 129}, 400, "invalid_password"),
    ("malformed channel id", {"channel_id": "not-a-channel"}, 400, "invalid_channel_id"),
    ("blank channel id", {"channel_id": "  "}, 400, "channel_id_required"),
    ("unknown channel", {"channel_id": "NEW"}, 404, "channel_not_found"),
    ("wrong password", {"password": "wrong-password"}, 403, "password_mismatch"),
    ("op_id with spaces", {"op_id": "op 1"}, 400, "invalid_op_id"),
    ("op_id too long", {"op_id": "o" * 129}, 400, "invalid_op_id"),
    ("empty thing_id", {"thing_id": "", "occurred_at": T0}, 400, "invalid_thing_id"),
    ("thing_id with slash", {"thing_id": "pump/1", "occurred_at": T0}, 400, "invalid_thing_id"),
    ("thing_id too long", {"thing_id": "t" * 65, "occurred_at": T0}, 400, "invalid_thing_id"),
    ("thing scope without occurred_at", {"thing_id": "pump-1"}, 400,
     "occurred_at_required_for_thing_scoped_message"),
    ("33 images", {"images": [f"https://x/{i}" for i in range(33)]}, 400, "images_format_invalid"),
    ("blank image", {"images": ["https://x/1", " "]}, 400, "images_format_invalid"),
    ("oversized image url", {"images": ["h" * 2049]}, 400, "images_format_invalid"),
    ("null images", {"images": None}, 400, "invalid_json_data"),
    ("an image that is not a URL", {"images": ["not a url"]}, 400, "images_format_invalid"),
    ("a file: image", {"images": ["file:///etc/passwd"]}, 400, "images_format_invalid"),
    ("a javascript: url", {"url": "javascript:alert(1)"}, 400, "invalid_url"),
    ("a data: url", {"url": "data:text/html,<script>x</script>"}, 400, "invalid_url"),
    ("a url that is not one", {"url": "not a url"}, 400, "invalid_url"),
    ("an https url without a host", {"url": "https:///path"}, 400, "invalid_url"),
    ("33 tags", {"tags": [f"t{i}" for i in range(33)]}, 400, "tags_format_invalid"),
    ("blank tag", {"tags": [""]}, 400, "tags_format_invalid"),
    ("oversized tag", {"tags": ["t" * 65]}, 400, "tags_format_invalid"),
    ("metadata key too long", {"metadata": {"k" * 65: "v"}}, 400, "metadata_key_too_long"),
    ("metadata value too long", {"metadata": {"k": "v" * 16385}}, 400, "metadata_value_too_long"),
    ("metadata UTF-8 too long", {"metadata": {"k": "é" * 8193}}, 400, "metadata_value_too_long"),
    ("nested metadata object", {"metadata": {"k": {"a": 1}}}, 400,
     "metadata_value_scalar_required"),
    ("metadata array value", {"metadata": {"k": [1]}}, 400, "metadata_value_scalar_required"),
    ("metadata null value", {"metadata": {"k": None}}, 400, "metadata_value_scalar_required"),
    ("blank metadata key", {"metadata": {" ": "v"}}, 400, "metadata_key_required"),
    ("blank metadata value", {"metadata": {"k": " "}}, 400, "metadata_value_required"),
    ("metadata keys colliding after trim", {"metadata": {"k": 1, " k ": 2}}, 400,
     "metadata_key_duplicate"),
    ("metadata as a string", {"metadata": '{"k":"v"}'}, 400, "invalid_json_data"),
    ("garbage ttl", {"ttl": "tomorrow"}, 400, "invalid_ttl"),
    ("negative ttl", {"ttl": -5}, 400, "invalid_ttl"),
    ("boolean ttl", {"ttl": True}, 400, "invalid_json_data"),
    ("garbage occurred_at", {"occurred_at": "yesterday"}, 400, "invalid_occurred_at"),
    ("unknown field", {"colour": "red"}, 400, "invalid_json_data"),
    ("title of the wrong type", {"title": 5}, 400, "invalid_json_data"),
]


async def test_invalid_messages_are_refused_with_their_error_codes(client, gateway):
    (key,), cid = await device_on(gateway, client)
    unknown = encode_channel_id(secrets.token_bytes(16))
    cases = []
    for name, fields, status, code in _MESSAGE_ERRORS:
        body: dict[str, Any] = {"channel_id": cid, "password": PASSWORD, "title": "hello"}
        body.update({"channel_id": unknown} if fields.get("channel_id") == "NEW" else fields)
        body = {k: v for k, v in body.items() if v is not None or k not in ("title", "password")}
        cases.append((name, body, status, code))
    assert await refusals(client, "/message", cases) == []
    assert await pull(client, key) == []
    assert await rows(gateway, operations) == []
    assert await rows(gateway, messages) == []


async def test_metadata_at_the_size_limits_is_accepted(client, gateway):
    (key,), cid = await device_on(gateway, client)
    # 16 KiB per value, as PushGo Gateway v1.3 (v1.2.9: 512 bytes)
    await send(client, cid, metadata={"k" * 64: "v" * 16384, "n": 1.5, "b": False})
    meta = json.loads((await pull(client, key))[0]["payload"]["metadata"])
    assert meta == {"b": False, "k" * 64: "v" * 16384, "n": 1.5}


async def test_a_body_over_32_kib_is_refused_as_too_large(client, gateway):
    (key,), cid = await device_on(gateway, client)
    await fail(client, "/message", {"channel_id": cid, "password": PASSWORD,
                                    "title": "x" * (33 * 1024)}, 413, "payload_too_large")
    assert await pull(client, key) == []


async def test_a_body_that_is_not_json_is_refused(client, gateway):
    _, cid = await device_on(gateway, client)
    resp = await client.post("/message", content=b"{not json",
                             headers={"content-type": "application/json"})
    assert (resp.status_code, resp.json()["error_code"]) == (400, "invalid_json_syntax")
    resp = await client.post("/message", content=json.dumps({"channel_id": cid}).encode(),
                             headers={"content-type": "text/plain"})
    assert (resp.status_code, resp.json()["error_code"]) == (400, "missing_json_content_type")


_GET_ERRORS: list[tuple[str, dict[str, str | None], int, str]] = [
    ("unknown parameter", {"colour": "red"}, 400, "invalid_query"),
    ("missing title", {"title": None}, 400, "invalid_query"),
    ("blank title", {"title": " "}, 400, "title_required"),
    ("blank password", {"password": ""}, 400, "password_required"),
    ("short password", {"password": "short"}, 400, "invalid_password"),
    ("wrong password", {"password": "wrong-password"}, 403, "password_mismatch"),
    ("metadata not JSON", {"metadata": "{host"}, 400, "metadata_object_required"),
    ("metadata a JSON array", {"metadata": "[1]"}, 400, "metadata_object_required"),
    ("metadata nested", {"metadata": '{"k":{"a":1}}'}, 400, "metadata_value_scalar_required"),
    ("metadata key too long", {"metadata": json.dumps({"k" * 65: 1})}, 400,
     "metadata_key_too_long"),
    ("garbage ttl", {"ttl": "soon"}, 400, "invalid_ttl"),
    ("garbage occurred_at", {"occurred_at": "x", "thing_id": "t1"}, 400, "invalid_occurred_at"),
    ("thing scope without occurred_at", {"thing_id": "t1"}, 400,
     "occurred_at_required_for_thing_scoped_message"),
    ("bad thing_id", {"thing_id": "t 1", "occurred_at": str(T0)}, 400, "invalid_thing_id"),
    ("bad op_id", {"op_id": "a b"}, 400, "invalid_op_id"),
    ("33 tags", {"tags": ",".join(f"t{i}" for i in range(33))}, 400, "tags_format_invalid"),
    ("33 images", {"images": ",".join(f"i{i}" for i in range(33))}, 400,
     "images_format_invalid"),
]


async def test_invalid_get_messages_are_refused_with_their_error_codes(client, gateway):
    (key,), cid = await device_on(gateway, client)
    wrong = []
    for name, params, status, code in _GET_ERRORS:
        query = {"channel_id": cid, "password": PASSWORD, "title": "hello", **params}
        resp = await client.get("/message", params={k: v for k, v in query.items() if v is not None})
        got = (resp.status_code, resp.json().get("error_code"), resp.json().get("success"))
        if got != (status, code, False):
            wrong.append(f"{name}: want {status} {code}, got {got}: {resp.text[:300]}")
    assert wrong == []
    assert await pull(client, key) == []


# --- timestamps --------------------------------------------------------------------------------


_OCCURRED_AT = [  # (given, expected ms)
    (T0, T0 * 1000),
    (str(T0), T0 * 1000),
    (f" +{T0} ", T0 * 1000),
    (T0 * 1000 + 123, T0 * 1000 + 123),
    (str(T0 * 1000 + 123), T0 * 1000 + 123),
    (99_999_999_999, 99_999_999_999_000),  # still below 1e12: seconds
    (1_000_000_000_000, 1_000_000_000_000),  # 1e12: milliseconds
]


async def test_occurred_at_is_read_as_seconds_below_1e12_and_milliseconds_above(client, gateway):
    (key,), cid = await device_on(gateway, client)
    for given, _ in _OCCURRED_AT:
        await send(client, cid, thing_id="pump-1", occurred_at=given)
    got = [i["payload"]["occurred_at"] for i in await pull(client, key)]
    assert got == [str(ms) for _, ms in _OCCURRED_AT]


async def test_ttl_is_an_absolute_expiry_in_seconds_or_milliseconds(client, gateway):
    (key,), cid = await device_on(gateway, client)
    expiry_s = future_s(2)
    for given in (expiry_s, expiry_s * 1000, str(expiry_s), f" {expiry_s * 1000} "):
        await send(client, cid, ttl=given)
    items = await pull(client, key)
    assert [i["payload"]["ttl"] for i in items] == [str(expiry_s * 1000)] * 4
    assert [r.expires_at for r in await rows(gateway, deliveries, device_key=key)] == \
        [expiry_s * 1000] * 4


async def test_a_ttl_beyond_30_days_is_capped_at_30_days_after_sending(client, gateway):
    (key,), cid = await device_on(gateway, client)
    await send(client, cid, ttl=future_s(24 * 60))
    payload = (await pull(client, key))[0]["payload"]
    assert int(payload["ttl"]) == int(payload["sent_at"]) + 30 * DAY_MS


async def test_a_message_whose_ttl_is_already_past_is_accepted_but_never_pullable(client, gateway):
    (key,), cid = await device_on(gateway, client)
    sent = await send(client, cid, ttl=T0)
    assert sent["accepted"] is True
    assert await pull(client, key) == []
    (row,) = await rows(gateway, deliveries, device_key=key)
    assert await call(client, "/messages/pull",
                      {"device_key": key, "delivery_id": row.delivery_id}) == {"items": []}


async def test_without_ttl_a_delivery_expires_after_the_default_ttl(client, gateway):
    (key,), cid = await device_on(gateway, client)
    await send(client, cid)
    (row,) = await rows(gateway, deliveries, device_key=key)
    assert row.expires_at - row.created_at == gateway.ctx.default_ttl_ms


async def test_links_the_apps_open_are_kept_and_every_json_answer_ends_with_a_newline(client,
                                                                                      gateway):
    (key,), cid = await device_on(gateway, client)
    links = ["https://grafana.example/d/1", "mailto:ops@example.com", "tel:+15550100",
             "shortcuts://run-shortcut?name=Lights"]
    for url in links:
        resp = await client.post("/message", json={"channel_id": cid, "password": PASSWORD,
                                                   "title": "t", "url": url})
        assert resp.status_code == 200 and resp.content.endswith(b"}\n"), resp.content
    assert [i["payload"]["url"] for i in await pull(client, key)] == links
    refused = await client.post("/message", json={"channel_id": cid, "password": PASSWORD,
                                                  "title": "t", "url": "javascript:alert(1)"})
    assert refused.status_code == 400 and refused.content.endswith(b"}\n")


# --- severity ----------------------------------------------------------------------------------


_SEVERITIES = [("critical", "critical"), (" HIGH ", "high"), ("Normal", "normal"),
               ("low", "low"), ("urgent", "normal"), ("", "normal"), (None, "normal")]


async def test_message_severity_is_lenient_and_falls_back_to_normal(client, gateway):
    (key,), cid = await device_on(gateway, client)
    for given, _ in _SEVERITIES:
        await send(client, cid, severity=given)
    got = [i["payload"]["severity"] for i in await pull(client, key)]
    assert got == [expected for _, expected in _SEVERITIES]


# --- op_id idempotency -------------------------------------------------------------------------


async def test_repeating_an_op_id_with_the_same_payload_returns_the_same_ids_and_sends_nothing_new(
        client, gateway):
    keys, cid = await device_on(gateway, client, 2)
    fields = {"op_id": "deploy-42", "body": "b", "tags": ["x"], "metadata": {"a": 1}}
    first = await send(client, cid, **fields)
    again = await send(client, cid, **fields)
    assert again == first
    for key in keys:
        assert len(await rows(gateway, deliveries, device_key=key)) == 1
        assert len(await pull(client, key)) == 1
    assert len(await rows(gateway, operations, channel_id=cid)) == 1
    assert len(await rows(gateway, messages, channel_id=cid)) == 1
    # After the first delivery was pulled, a retry still sends nothing.
    assert await send(client, cid, **fields) == first
    for key in keys:
        assert await pull(client, key) == []


async def test_repeating_an_op_id_with_a_different_payload_is_a_conflict(client, gateway):
    (key,), cid = await device_on(gateway, client)
    await send(client, cid, op_id="deploy-42", body="one")
    doc = await fail(client, "/message", {"channel_id": cid, "password": PASSWORD,
                                          "title": "hello", "op_id": "deploy-42", "body": "two"},
                     409, "op_id_conflict")
    assert doc["problem"]["status"] == 409
    assert len(await pull(client, key)) == 1
    assert len(await rows(gateway, messages, channel_id=cid)) == 1


_DIFFERENT_PAYLOADS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"severity": "low"}, {"severity": "critical"}),
    ({"ttl": T0 * 1000}, {"ttl": T0 * 1000 + 1}),
    ({"tags": ["a", "b"]}, {"tags": ["b", "a"]}),
    ({"metadata": {"a": 1}}, {"metadata": {"a": "1"}}),
    ({"thing_id": "p1", "occurred_at": T0}, {"thing_id": "p2", "occurred_at": T0}),
    ({"body": "x"}, {}),
]


async def test_any_payload_difference_under_one_op_id_is_a_conflict(client, gateway):
    _, cid = await device_on(gateway, client)
    cases = []
    for n, (first, second) in enumerate(_DIFFERENT_PAYLOADS):
        await send(client, cid, op_id=f"op-{n}", **first)
        body = {"channel_id": cid, "password": PASSWORD, "title": "hello", "op_id": f"op-{n}",
                **second}
        cases.append((f"{first} then {second}", body, 409, "op_id_conflict"))
    assert await refusals(client, "/message", cases) == []


async def test_equivalent_spellings_of_one_payload_are_the_same_payload(client, gateway):
    _, cid = await device_on(gateway, client)
    first = await send(client, cid, op_id="op-1", ttl=T0, severity="HIGH", title=" hello ",
                       metadata={"b": 1, "a": 2})
    again = await send(client, cid, op_id="op-1", ttl=str(T0 * 1000), severity="high",
                       title="hello", metadata={"a": 2, "b": 1})
    assert again == first


async def test_concurrent_retries_of_one_op_id_make_one_message(client, gateway):
    keys, cid = await device_on(gateway, client, 2)
    await send(client, cid, title="warm the password cache")
    for key in keys:
        await pull(client, key)
    answers: list[dict[str, Any]] = []

    async def one() -> None:
        answers.append(await send(client, cid, op_id="burst", body="same"))

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(one)
    assert len(answers) == 6
    assert all(a == answers[0] for a in answers)
    for key in keys:
        assert len(await pull(client, key)) == 1
    assert len(await rows(gateway, messages, channel_id=cid)) == 2


async def test_an_op_id_reused_by_another_kind_of_operation_is_a_conflict(client, gateway):
    _, cid = await device_on(gateway, client)
    await send(client, cid, op_id="shared-op")
    await fail(client, "/event/create", {
        "channel_id": cid, "password": PASSWORD, "op_id": "shared-op", "title": "t",
        "status": "s", "message": "m", "severity": "low", "event_time": T0,
    }, 409, "op_id_conflict")


async def test_an_op_id_is_scoped_to_its_channel(client, gateway):
    key = await register(client)
    cid_a = await stored_channel(gateway, key, name="a")
    cid_b = await stored_channel(gateway, key, name="b")
    a = await send(client, cid_a, op_id="same")
    b = await send(client, cid_b, op_id="same", body="different")
    assert a["message_id"] != b["message_id"]
    assert len(await pull(client, key)) == 2


async def test_without_an_op_id_every_send_is_a_new_message(client, gateway):
    (key,), cid = await device_on(gateway, client)
    first = await send(client, cid)
    second = await send(client, cid)
    assert first["op_id"] != second["op_id"]
    assert first["message_id"] != second["message_id"]
    assert len(await pull(client, key)) == 2


async def test_an_op_id_on_a_channel_without_subscribers_is_still_remembered(client, gateway):
    cid = await stored_channel(gateway)
    first = await send(client, cid, op_id="lonely")
    assert first["accepted"] is True
    assert await rows(gateway, deliveries) == []
    (op,) = await rows(gateway, operations, channel_id=cid)
    assert (op.op_id, op.recipients) == ("lonely", 0)
    # A device that subscribes later does not get the earlier operation by retrying it.
    key = await register(client)
    await call(client, "/channel/subscribe",
               {"device_key": key, "channel_id": cid, "password": PASSWORD})
    assert await send(client, cid, op_id="lonely") == first
    assert await pull(client, key) == []


async def test_a_generated_op_id_can_be_replayed_as_a_caller_op_id(client, gateway):
    (key,), cid = await device_on(gateway, client)
    first = await send(client, cid)
    assert await send(client, cid, op_id=first["op_id"]) == first
    assert len(await pull(client, key)) == 1


# --- fan-out -----------------------------------------------------------------------------------


async def test_every_device_of_a_channel_gets_exactly_one_delivery(client, gateway):
    keys, cid = await device_on(gateway, client, 3)
    sent = await send(client, cid)
    (op,) = await rows(gateway, operations, channel_id=cid)
    assert op.recipients == 3
    delivery_ids = set()
    for key in keys:
        (item,) = await pull(client, key)
        assert item["payload"]["message_id"] == sent["message_id"]
        delivery_ids.add(item["delivery_id"])
    assert len(delivery_ids) == 3
    assert sorted(r.device_key for r in await rows(gateway, deliveries, op_pk=op.op_pk)) == \
        sorted(keys)


async def test_a_device_on_an_apns_route_without_a_token_gets_no_delivery(client, gateway):
    private_key = await register(client)
    apns_key = await register(client, "ios")
    tokened_key = await register(client, "ios")
    for key, token in ((apns_key, APNS_TOKEN), (tokened_key, "cd" * 32)):
        await call(client, "/channel/device",
                   {"device_key": key, "channel_type": "apns", "provider_token": token})
    cid = await stored_channel(gateway, private_key, apns_key, tokened_key)
    await call(client, "/channel/device/delete", {"device_key": apns_key, "channel_type": "apns"})
    await send(client, cid)
    assert await rows(gateway, deliveries, device_key=apns_key) == []
    (private_row,) = await rows(gateway, deliveries, device_key=private_key)
    (apns_row,) = await rows(gateway, deliveries, device_key=tokened_key)
    assert (private_row.route, apns_row.route) == ("private", "apns")
    # Provider deliveries are also kept for /messages/pull (the wake-up path needs them),
    # whatever the provider send made of them.
    assert len(await pull(client, tokened_key)) == 1


async def test_an_unsubscribed_device_gets_nothing(client, gateway):
    keys, cid = await device_on(gateway, client, 2)
    await call(client, "/channel/unsubscribe", {"device_key": keys[1], "channel_id": cid})
    await send(client, cid)
    assert len(await pull(client, keys[0])) == 1
    assert await pull(client, keys[1]) == []
