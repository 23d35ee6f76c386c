"""POST /event/create|update|close and /thing/create|update|archive|delete: responses, the
payload devices pull, validation codes, and the persisted event / thing state."""

from __future__ import annotations

import json
import re
from typing import Any

import anyio
import pytest

from pushgo.store.schema import deliveries, events, things
from tests.helpers import PASSWORD, call, fail, pull, refusals, register, rows, stored_channel

HEX32 = re.compile(r"[0-9a-f]{32}")
T0 = 1_710_000_000
T0_MS = T0 * 1000
MISSING: Any = object()  # in an error case: leave the key out of the request


async def setup(gateway: Any, client: Any) -> tuple[str, str]:
    key = await register(client)
    return key, await stored_channel(gateway, key)


def base(cid: str, **fields: Any) -> dict[str, Any]:
    return {"channel_id": cid, "password": PASSWORD, **fields}


def event_fields(**fields: Any) -> dict[str, Any]:
    return {"title": "Door open", "status": "Open", "message": "Rear door open",
            "severity": "high", "event_time": T0, **fields}


async def create_event(client: Any, cid: str, **fields: Any) -> dict[str, Any]:
    return await call(client, "/event/create", base(cid, **event_fields(**fields)))


async def change_event(client: Any, cid: str, action: str, event_id: str,
                       **fields: Any) -> dict[str, Any]:
    body = base(cid, **{"event_id": event_id, "status": "Open", "message": "still open",
                        "severity": "high", "event_time": T0 + 60, **fields})
    return await call(client, f"/event/{action}", body)


async def thing(client: Any, cid: str, action: str, **fields: Any) -> dict[str, Any]:
    return await call(client, f"/thing/{action}", base(cid, **{"observed_at": T0, **fields}))


async def only_payload(client: Any, key: str) -> dict[str, str]:
    (item,) = await pull(client, key)
    payload: dict[str, str] = item["payload"]
    assert payload["delivery_id"] == item["delivery_id"]
    return payload


# === events ====================================================================================


async def test_creating_an_event_answers_a_new_event_id(client, gateway):
    _, cid = await setup(gateway, client)
    data = await create_event(client, cid, op_id="alarm-7")
    assert set(data) == {"channel_id", "op_id", "event_id", "accepted"}
    assert (data["channel_id"], data["op_id"], data["accepted"]) == (cid, "alarm-7", True)
    assert HEX32.fullmatch(data["event_id"])


async def test_a_thing_scoped_event_answers_its_thing_id(client, gateway):
    _, cid = await setup(gateway, client)
    data = await create_event(client, cid, thing_id="pump-1")
    assert data["thing_id"] == "pump-1"
    (row,) = await rows(gateway, events, event_id=data["event_id"])
    assert row.thing_id == "pump-1"


async def test_an_event_create_payload_carries_the_event_keys(client, gateway):
    key, cid = await setup(gateway, client)
    data = await create_event(
        client, cid, op_id="alarm-7", severity="High", description=" back door ",
        tags=["door", "door", "b"], images=["https://x/1.png"],
        attrs={"zone": "B", "temp": 21.5, "old": None}, metadata={"sensor": "d-12"},
    )
    payload = await only_payload(client, key)
    assert set(payload) == {
        "channel_id", "title", "body", "schema_version", "payload_version", "op_id",
        "delivery_id", "ingested_at", "occurred_at", "sent_at", "entity_type", "entity_id",
        "event_id", "event_state", "event_time", "description", "status", "message",
        "severity", "tags", "images", "started_at", "attrs", "metadata",
    }
    assert payload["entity_type"] == "event"
    assert payload["entity_id"] == payload["event_id"] == data["event_id"]
    assert payload["event_state"] == "ONGOING"
    assert payload["event_time"] == payload["occurred_at"] == str(T0_MS)
    assert payload["started_at"] == str(T0_MS)
    assert payload["title"] == "Door open"
    assert payload["body"] == payload["message"] == "Rear door open"
    assert payload["description"] == "back door"
    assert payload["status"] == "Open"
    assert payload["severity"] == "high"
    assert payload["tags"] == '["door","b"]'
    assert payload["images"] == '["https://x/1.png"]'
    assert payload["attrs"] == '{"old":null,"temp":21.5,"zone":"B"}'
    assert payload["metadata"] == '{"sensor":"d-12"}'
    assert payload["op_id"] == "alarm-7"


async def test_an_event_create_is_persisted_as_ongoing(client, gateway):
    _, cid = await setup(gateway, client)
    data = await create_event(client, cid, attrs={"zone": "B", "old": None},
                              started_at=T0 - 30, tags=["door"])
    (row,) = await rows(gateway, events, channel_id=cid, event_id=data["event_id"])
    assert row.state == "ONGOING"
    assert (row.title, row.status, row.message, row.severity) == (
        "Door open", "Open", "Rear door open", "high")
    assert json.loads(row.attrs) == {"zone": "B"}
    assert json.loads(row.tags) == ["door"]
    assert (row.started_at, row.ended_at, row.event_time) == ((T0 - 30) * 1000, None, T0_MS)


async def test_an_event_update_patches_the_stored_state_and_null_deletes_an_attr(client,
                                                                                gateway):
    key, cid = await setup(gateway, client)
    event_id = (await create_event(client, cid, attrs={"a": 1, "b": 2}))["event_id"]
    await pull(client, key)
    data = await change_event(client, cid, "update", event_id, status="Ack",
                              attrs={"a": None, "c": {"x": 1, "y": None}})
    assert data["event_id"] == event_id
    (row,) = await rows(gateway, events, event_id=event_id)
    assert row.state == "ONGOING"
    assert row.status == "Ack"
    assert row.title == "Door open"  # not given: kept
    assert json.loads(row.attrs) == {"b": 2, "c": {"x": 1, "y": None}}
    assert row.event_time == (T0 + 60) * 1000
    payload = await only_payload(client, key)
    assert payload["event_state"] == "ONGOING"
    assert payload["attrs"] == '{"a":null,"c":{"x":1,"y":null}}'
    assert "started_at" not in payload and "ended_at" not in payload
    assert payload["title"] == f"Event {event_id}"


async def test_closing_an_event_stores_closed_with_its_end_time(client, gateway):
    key, cid = await setup(gateway, client)
    event_id = (await create_event(client, cid))["event_id"]
    await pull(client, key)
    await change_event(client, cid, "close", event_id, message="closed")
    (row,) = await rows(gateway, events, event_id=event_id)
    assert row.state == "CLOSED"
    assert row.ended_at == (T0 + 60) * 1000
    assert row.started_at == T0_MS
    payload = await only_payload(client, key)
    assert payload["event_state"] == "CLOSED"
    assert payload["ended_at"] == str((T0 + 60) * 1000)
    assert "started_at" not in payload


async def test_an_explicit_ended_at_on_close_wins_over_event_time(client, gateway):
    _, cid = await setup(gateway, client)
    event_id = (await create_event(client, cid))["event_id"]
    await change_event(client, cid, "close", event_id, ended_at=str((T0 + 5) * 1000))
    (row,) = await rows(gateway, events, event_id=event_id)
    assert row.ended_at == (T0 + 5) * 1000


async def test_updating_a_closed_event_is_a_conflict(client, gateway):
    key, cid = await setup(gateway, client)
    event_id = (await create_event(client, cid))["event_id"]
    await change_event(client, cid, "close", event_id)
    await pull(client, key)
    await fail(client, "/event/update",
               base(cid, event_id=event_id, status="Open", message="m", severity="low",
                    event_time=T0 + 120), 409, "event_closed")
    (row,) = await rows(gateway, events, event_id=event_id)
    assert row.state == "CLOSED"
    assert await pull(client, key) == []


async def test_retrying_a_close_with_its_op_id_answers_as_before_without_a_new_delivery(
        client, gateway):
    key, cid = await setup(gateway, client)
    event_id = (await create_event(client, cid))["event_id"]
    first = await change_event(client, cid, "close", event_id, op_id="close-1")
    again = await change_event(client, cid, "close", event_id, op_id="close-1")
    assert again == first
    assert len(await rows(gateway, deliveries, device_key=key)) == 2


async def test_retrying_an_event_create_with_its_op_id_returns_the_same_event_id(client, gateway):
    key, cid = await setup(gateway, client)
    first = await create_event(client, cid, op_id="c-1")
    assert await create_event(client, cid, op_id="c-1") == first
    await fail(client, "/event/create", base(cid, op_id="c-1", **event_fields(status="Other")),
               409, "op_id_conflict")
    assert len(await rows(gateway, events, channel_id=cid)) == 1
    assert len(await pull(client, key)) == 1


async def test_an_update_of_an_unknown_event_starts_its_state(client, gateway):
    _, cid = await setup(gateway, client)
    await change_event(client, cid, "update", "ext-42")
    (row,) = await rows(gateway, events, event_id="ext-42")
    assert (row.state, row.status) == ("ONGOING", "Open")


_EVENT_ERRORS: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("create without title", "create", {"title": MISSING}, 400,
     "event_create_required_fields_missing"),
    ("create without status", "create", {"status": MISSING}, 400,
     "event_create_required_fields_missing"),
    ("create without message", "create", {"message": MISSING}, 400,
     "event_create_required_fields_missing"),
    ("create without severity", "create", {"severity": MISSING}, 400,
     "event_create_required_fields_missing"),
    ("update without status", "update", {"status": MISSING}, 400,
     "event_update_required_fields_missing"),
    ("close without severity", "close", {"severity": MISSING}, 400,
     "event_update_required_fields_missing"),
    ("close without message", "close", {"message": MISSING}, 400,
     "event_update_required_fields_missing"),
    ("create with ended_at", "create", {"ended_at": T0}, 400, "ended_at_forbidden_on_create"),
    ("update with started_at", "update", {"started_at": T0}, 400,
     "event_temporal_fields_forbidden_on_update"),
    ("update with ended_at", "update", {"ended_at": T0}, 400,
     "event_temporal_fields_forbidden_on_update"),
    ("close with started_at", "close", {"started_at": T0}, 400, "started_at_forbidden_on_close"),
    ("create without event_time", "create", {"event_time": MISSING}, 400, "event_time_required"),
    ("update without event_time", "update", {"event_time": MISSING}, 400, "event_time_required"),
    ("close with blank event_time", "close", {"event_time": " "}, 400, "event_time_required"),
    ("garbage event_time", "create", {"event_time": "noon"}, 400, "invalid_event_time"),
    ("garbage started_at", "create", {"started_at": "dawn"}, 400, "invalid_started_at"),
    ("unknown severity", "create", {"severity": "urgent"}, 400, "invalid_severity"),
    ("blank severity", "update", {"severity": ""}, 400, "invalid_severity"),
    ("blank status", "create", {"status": " "}, 400, "invalid_status"),
    ("status over 24 chars", "update", {"status": "s" * 25}, 400, "invalid_status"),
    ("blank message", "create", {"message": ""}, 400, "invalid_message"),
    ("message over 512 chars", "close", {"message": "m" * 513}, 400, "invalid_message"),
    ("array attr", "create", {"attrs": {"a": [1]}}, 400, "extension_object_arrays_unsupported"),
    ("nested object attr", "update", {"attrs": {"a": {"b": {"c": 1}}}}, 400,
     "extension_object_nested_object_unsupported"),
    ("array inside an object attr", "create", {"attrs": {"a": {"b": [1]}}}, 400,
     "extension_object_nested_object_unsupported"),
    ("blank attr key", "create", {"attrs": {" ": 1}}, 400, "extension_object_key_required"),
    ("null attrs", "create", {"attrs": None}, 400, "invalid_json_data"),
    ("null severity on create", "create", {"severity": None}, 400,
     "event_create_required_fields_missing"),
    ("null event_id on update", "update", {"event_id": None}, 400, "invalid_json_data"),
    ("event_id on create", "create", {"event_id": "e1"}, 400, "invalid_json_data"),
    ("update without event_id", "update", {"event_id": MISSING}, 400, "invalid_json_data"),
    ("blank event_id", "close", {"event_id": " "}, 400, "event_id_required"),
    ("event_id with spaces", "update", {"event_id": "e 1"}, 400, "invalid_event_id"),
    ("event_id over 64 bytes", "update", {"event_id": "e" * 65}, 400, "invalid_event_id"),
    ("bad thing_id", "create", {"thing_id": "pump/1"}, 400, "invalid_thing_id"),
    ("bad op_id", "create", {"op_id": "op 1"}, 400, "invalid_op_id"),
    ("33 tags", "create", {"tags": [f"t{i}" for i in range(33)]}, 400, "tags_format_invalid"),
    ("blank image", "create", {"images": [" "]}, 400, "images_format_invalid"),
    ("metadata key too long", "create", {"metadata": {"k" * 65: 1}}, 400,
     "metadata_key_too_long"),
    ("missing password", "create", {"password": MISSING}, 400, "password_required"),
    ("blank password", "close", {"password": " "}, 400, "password_required"),
    ("wrong password", "create", {"password": "wrong-password"}, 403, "password_mismatch"),
    ("unknown field", "update", {"colour": "red"}, 400, "invalid_json_data"),
]


async def test_invalid_event_calls_are_refused_with_their_error_codes(client, gateway):
    key, cid = await setup(gateway, client)
    wrong = []
    for action in ("create", "update", "close"):
        cases = []
        for name, case_action, fields, status, code in _EVENT_ERRORS:
            if case_action != action:
                continue
            body = base(cid, **event_fields())
            if action != "create":
                body["event_id"] = "evt-1"
                body.pop("title")
            body.update(fields)
            body = {k: v for k, v in body.items() if v is not MISSING}
            cases.append((name, body, status, code))
        wrong += await refusals(client, f"/event/{action}", cases)
    assert wrong == []
    assert await rows(gateway, events) == []
    assert await pull(client, key) == []


# === things ====================================================================================


async def test_creating_a_thing_answers_a_new_thing_id(client, gateway):
    _, cid = await setup(gateway, client)
    data = await thing(client, cid, "create", op_id="t-1", title="Pump A")
    assert set(data) == {"channel_id", "op_id", "thing_id", "accepted"}
    assert (data["channel_id"], data["op_id"], data["accepted"]) == (cid, "t-1", True)
    assert HEX32.fullmatch(data["thing_id"])


async def test_a_thing_create_payload_carries_the_thing_keys(client, gateway):
    key, cid = await setup(gateway, client)
    data = await thing(
        client, cid, "create", title="Pump A", description=" main pump ", tags=["p", "p"],
        primary_image="https://x/p.png", images=["https://x/p.png", "https://x/q.png"],
        attrs={"rpm": 1200, "fault": None}, metadata={"site": "sh"},
        external_ids={"SAP": " P-77 "}, location_type="GEO",
        location_value=" 31.2304161 , 121.4737009 ",
    )
    payload = await only_payload(client, key)
    thing_id = data["thing_id"]
    assert set(payload) == {
        "channel_id", "title", "body", "schema_version", "payload_version", "op_id",
        "delivery_id", "ingested_at", "occurred_at", "sent_at", "entity_type", "entity_id",
        "thing_id", "attrs", "state", "description", "tags", "primary_image", "images",
        "created_at", "external_ids", "location_type", "location_value", "location",
        "metadata",
    }
    assert payload["entity_type"] == "thing"
    assert payload["entity_id"] == payload["thing_id"] == thing_id
    assert payload["state"] == "active"
    assert payload["title"] == "Pump A"
    assert payload["description"] == payload["body"] == "main pump"
    assert payload["attrs"] == '{"rpm":1200}'
    assert payload["occurred_at"] == payload["created_at"] == str(T0_MS)
    assert payload["tags"] == '["p"]'
    assert payload["primary_image"] == "https://x/p.png"
    assert payload["images"] == '["https://x/q.png"]'
    assert payload["external_ids"] == '{"sap":"P-77"}'
    assert payload["location_type"] == "geo"
    assert payload["location_value"] == "31.230416,121.473701"
    assert payload["location"] == '{"type":"geo","value":"31.230416,121.473701"}'
    assert payload["metadata"] == '{"site":"sh"}'


async def test_a_thing_create_is_persisted_as_active(client, gateway):
    _, cid = await setup(gateway, client)
    data = await thing(client, cid, "create", title="Pump A", attrs={"rpm": 1, "gone": None},
                       external_ids={"SAP": "P-77"}, location_type="cloud",
                       location_value="AWS:CN-North-1:A", created_at=T0 - 100)
    (row,) = await rows(gateway, things, channel_id=cid, thing_id=data["thing_id"])
    assert (row.state, row.title) == ("active", "Pump A")
    assert json.loads(row.attrs) == {"rpm": 1}
    assert json.loads(row.external_ids) == {"sap": "P-77"}
    assert (row.location_type, row.location_value) == ("cloud", "aws:cn-north-1:a")
    assert (row.created_at, row.observed_at) == ((T0 - 100) * 1000, T0_MS)
    assert (row.archived_at, row.deleted_at) == (None, None)


async def test_a_thing_goes_active_then_archived_then_deleted(client, gateway):
    key, cid = await setup(gateway, client)
    thing_id = (await thing(client, cid, "create", title="Pump A"))["thing_id"]
    archived = await thing(client, cid, "archive", thing_id=thing_id, observed_at=T0 + 10)
    assert archived["thing_id"] == thing_id
    (row,) = await rows(gateway, things, thing_id=thing_id)
    assert (row.state, row.archived_at, row.title) == ("archived", (T0 + 10) * 1000, "Pump A")
    await thing(client, cid, "delete", thing_id=thing_id, observed_at=T0 + 20)
    (row,) = await rows(gateway, things, thing_id=thing_id)
    assert (row.state, row.deleted_at) == ("deleted", (T0 + 20) * 1000)
    states = [i["payload"]["state"] for i in await pull(client, key)]
    assert states == ["active", "archived", "deleted"]


async def test_a_thing_delete_payload_carries_its_deleted_at(client, gateway):
    key, cid = await setup(gateway, client)
    thing_id = (await thing(client, cid, "create"))["thing_id"]
    await pull(client, key)
    await thing(client, cid, "delete", thing_id=thing_id, deleted_at=str((T0 + 7) * 1000))
    payload = await only_payload(client, key)
    assert (payload["state"], payload["deleted_at"]) == ("deleted", str((T0 + 7) * 1000))
    assert "created_at" not in payload
    (row,) = await rows(gateway, things, thing_id=thing_id)
    assert row.deleted_at == (T0 + 7) * 1000


@pytest.mark.parametrize("action", ["update", "archive", "delete"])
async def test_a_deleted_thing_refuses_every_further_change(client, gateway, action):
    key, cid = await setup(gateway, client)
    thing_id = (await thing(client, cid, "create"))["thing_id"]
    await thing(client, cid, "delete", thing_id=thing_id)
    await pull(client, key)
    await fail(client, f"/thing/{action}", base(cid, thing_id=thing_id, observed_at=T0 + 1),
               409, "thing_deleted")
    (row,) = await rows(gateway, things, thing_id=thing_id)
    assert row.state == "deleted"
    assert await pull(client, key) == []


async def test_an_archived_thing_becomes_active_again_on_update(client, gateway):
    _, cid = await setup(gateway, client)
    thing_id = (await thing(client, cid, "create"))["thing_id"]
    await thing(client, cid, "archive", thing_id=thing_id)
    await thing(client, cid, "update", thing_id=thing_id)
    (row,) = await rows(gateway, things, thing_id=thing_id)
    assert row.state == "active"


async def test_a_thing_update_patches_attrs_and_external_ids(client, gateway):
    key, cid = await setup(gateway, client)
    thing_id = (await thing(client, cid, "create", title="Pump A", attrs={"rpm": 1000, "fault": "x"},
                            external_ids={"SAP": "P-77", "erp": "E-1"}))["thing_id"]
    await pull(client, key)
    await thing(client, cid, "update", thing_id=thing_id, attrs={"rpm": 1200, "fault": None},
                external_ids={"sap": None, "ERP": " E-2 ", "MES.Id": "m-1"})
    (row,) = await rows(gateway, things, thing_id=thing_id)
    assert json.loads(row.attrs) == {"rpm": 1200}
    assert json.loads(row.external_ids) == {"erp": "E-2", "mes.id": "m-1"}
    assert row.title == "Pump A"
    payload = await only_payload(client, key)
    assert payload["attrs"] == '{"rpm":1200}'
    assert payload["external_ids"] == '{"erp":"E-2","mes.id":"m-1"}'
    assert payload["body"] == "fault=null\nrpm=1200"
    assert payload["state"] == "active"
    assert "created_at" not in payload


async def test_a_thing_payload_always_has_attrs_even_when_empty(client, gateway):
    key, cid = await setup(gateway, client)
    await thing(client, cid, "create", title="t", attrs={"gone": None})
    assert (await only_payload(client, key))["attrs"] == "{}"


async def test_a_thing_title_falls_back_to_a_name_attr(client, gateway):
    key, cid = await setup(gateway, client)
    await thing(client, cid, "create", attrs={"name": "Pump B", "rpm": 5})
    assert (await only_payload(client, key))["title"] == "Pump B"


async def test_a_thing_title_falls_back_to_object_and_its_id(client, gateway):
    key, cid = await setup(gateway, client)
    thing_id = (await thing(client, cid, "create", attrs={"rpm": 5}))["thing_id"]
    payload = await only_payload(client, key)
    assert payload["title"] == f"Object {thing_id}"
    assert payload["body"] == "Attribute update || rpm: 5"


_LOCATIONS = [  # (location_type, location_value, normalised (type, value))
    ("geo", " 31.2304161 , 121.4737009 ", ("geo", "31.230416,121.473701")),
    ("Geo", "-90,180", ("geo", "-90.000000,180.000000")),
    ("cloud", "AWS:CN-NORTH-1", ("cloud", "aws:cn-north-1")),
    ("datacenter", "SH1", ("datacenter", "sh1")),
    ("datacenter", "SH1 : Room-2 : R_3", ("datacenter", "sh1:room-2:r_3")),
    ("logical", "Plant/Line-1/Cell.2", ("logical", "plant/line-1/cell.2")),
    ("physical", "  Building 7, 3rd floor ", ("physical", "Building 7, 3rd floor")),
]


async def test_a_thing_location_is_normalised(client, gateway):
    key, cid = await setup(gateway, client)
    for ltype, value, expected in _LOCATIONS:
        thing_id = (await thing(client, cid, "create", location_type=ltype,
                                location_value=value))["thing_id"]
        (row,) = await rows(gateway, things, thing_id=thing_id)
        assert (row.location_type, row.location_value) == expected
        payload = await only_payload(client, key)
        assert (payload["location_type"], payload["location_value"]) == expected
        assert json.loads(payload["location"]) == {"type": expected[0], "value": expected[1]}


_THING_ERRORS: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("missing observed_at on create", "create", {"observed_at": MISSING}, 400,
     "observed_at_required"),
    ("missing observed_at on update", "update", {"observed_at": MISSING}, 400,
     "observed_at_required"),
    ("blank observed_at on archive", "archive", {"observed_at": ""}, 400,
     "observed_at_required"),
    ("missing observed_at on delete", "delete", {"observed_at": MISSING}, 400,
     "observed_at_required"),
    ("garbage observed_at", "update", {"observed_at": "now"}, 400, "invalid_observed_at"),
    ("location type without value", "create", {"location_type": "geo"}, 400, "invalid_location"),
    ("location value without type", "update", {"location_value": "1,2"}, 400,
     "invalid_location"),
    ("unknown location type", "create", {"location_type": "planet", "location_value": "mars"},
     400, "invalid_location"),
    ("geo without comma", "create", {"location_type": "geo", "location_value": "31.2"}, 400,
     "invalid_location"),
    ("geo not numbers", "create", {"location_type": "geo", "location_value": "north,east"},
     400, "invalid_location"),
    ("geo latitude out of range", "create", {"location_type": "geo",
                                             "location_value": "90.5,0"}, 400,
     "invalid_location"),
    ("geo longitude out of range", "create", {"location_type": "geo",
                                              "location_value": "0,-180.1"}, 400,
     "invalid_location"),
    ("cloud with one token", "create", {"location_type": "cloud", "location_value": "aws"},
     400, "invalid_location"),
    ("cloud with four tokens", "create", {"location_type": "cloud",
                                          "location_value": "a:b:c:d"}, 400,
     "invalid_location"),
    ("token with a bad character", "create", {"location_type": "datacenter",
                                              "location_value": "sh 1"}, 400,
     "invalid_location"),
    ("empty logical token", "create", {"location_type": "logical", "location_value": "a//b"},
     400, "invalid_location"),
    ("physical over 256 bytes", "create", {"location_type": "physical",
                                           "location_value": "p" * 257}, 400,
     "invalid_location"),
    ("manufacturer a string", "create", {"attrs": {"manufacturer": "acme"}}, 400,
     "manufacturer_attr_invalid"),
    ("manufacturer blank key", "update", {"attrs": {"manufacturer": {" ": "x"}}}, 400,
     "manufacturer_attr_key_required"),
    ("manufacturer key over 64 bytes", "create", {"attrs": {"manufacturer": {"k" * 65: "x"}}},
     400, "manufacturer_attr_key_too_long"),
    ("array attr", "create", {"attrs": {"a": [1]}}, 400, "extension_object_arrays_unsupported"),
    ("nested object attr", "update", {"attrs": {"a": {"b": {}}}}, 400,
     "extension_object_nested_object_unsupported"),
    ("external id key with a space", "create", {"external_ids": {"s ap": "x"}}, 400,
     "external_ids_key_invalid"),
    ("external id value a number", "create", {"external_ids": {"sap": 7}}, 400,
     "external_ids_value_invalid"),
    ("external id value blank", "update", {"external_ids": {"sap": " "}}, 400,
     "external_ids_value_required"),
    ("external id value over 256 bytes", "create", {"external_ids": {"sap": "v" * 257}}, 400,
     "external_ids_value_too_long"),
    ("primary image over 2048 bytes", "create", {"primary_image": "p" * 2049}, 400,
     "images_format_invalid"),
    ("thing_id on create", "create", {"thing_id": "t1"}, 400, "invalid_json_data"),
    ("created_at on update", "update", {"created_at": T0}, 400, "invalid_json_data"),
    ("deleted_at on archive", "archive", {"deleted_at": T0}, 400, "invalid_json_data"),
    ("state on update", "update", {"state": "active"}, 400, "invalid_json_data"),
    ("update without thing_id", "update", {"thing_id": MISSING}, 400, "invalid_json_data"),
    ("blank thing_id", "archive", {"thing_id": " "}, 400, "thing_id_required"),
    ("thing_id with a slash", "delete", {"thing_id": "a/b"}, 400, "invalid_thing_id"),
    ("missing password", "create", {"password": MISSING}, 400, "password_required"),
    ("wrong password", "update", {"password": "wrong-password"}, 403, "password_mismatch"),
    ("bad op_id", "create", {"op_id": "a b"}, 400, "invalid_op_id"),
]


async def test_invalid_thing_calls_are_refused_with_their_error_codes(client, gateway):
    key, cid = await setup(gateway, client)
    wrong = []
    for action in ("create", "update", "archive", "delete"):
        cases = []
        for name, case_action, fields, status, code in _THING_ERRORS:
            if case_action != action:
                continue
            body = base(cid, observed_at=T0, title="Pump")
            if action != "create":
                body["thing_id"] = "pump-1"
            body.update(fields)
            body = {k: v for k, v in body.items() if v is not MISSING}
            cases.append((name, body, status, code))
        wrong += await refusals(client, f"/thing/{action}", cases)
    assert wrong == []
    assert await rows(gateway, things) == []
    assert await pull(client, key) == []


@pytest.mark.parametrize("manufacturer", [None, {}, {"name": "ACME", "model": "P-1"}])
async def test_a_manufacturer_attr_may_be_an_object_or_null(client, gateway, manufacturer):
    _, cid = await setup(gateway, client)
    data = await thing(client, cid, "create", attrs={"manufacturer": manufacturer})
    (row,) = await rows(gateway, things, thing_id=data["thing_id"])
    expected = {} if manufacturer is None else {"manufacturer": manufacturer}
    assert json.loads(row.attrs) == expected


async def test_retrying_a_thing_create_with_its_op_id_returns_the_same_thing_id(client, gateway):
    key, cid = await setup(gateway, client)
    first = await thing(client, cid, "create", op_id="t-1", title="A")
    assert await thing(client, cid, "create", op_id="t-1", title="A") == first
    await fail(client, "/thing/create", base(cid, op_id="t-1", title="B", observed_at=T0),
               409, "op_id_conflict")
    assert len(await rows(gateway, things, channel_id=cid)) == 1
    assert len(await pull(client, key)) == 1


async def test_concurrent_event_updates_each_keep_their_attrs_patch(client, gateway):
    _, cid = await setup(gateway, client)
    event_id = (await create_event(client, cid))["event_id"]

    async def patch(n: int) -> None:
        await change_event(client, cid, "update", event_id, attrs={f"k{n}": n})

    async with anyio.create_task_group() as tg:
        for n in range(8):
            tg.start_soon(patch, n)
    (row,) = await rows(gateway, events, event_id=event_id)
    assert json.loads(row.attrs) == {f"k{n}": n for n in range(8)}


async def test_concurrent_thing_updates_each_keep_their_attrs_patch(client, gateway):
    _, cid = await setup(gateway, client)
    thing_id = (await thing(client, cid, "create"))["thing_id"]

    async def patch(n: int) -> None:
        await thing(client, cid, "update", thing_id=thing_id, attrs={f"k{n}": n},
                    external_ids={f"e{n}": "x"})

    async with anyio.create_task_group() as tg:
        for n in range(8):
            tg.start_soon(patch, n)
    (row,) = await rows(gateway, things, thing_id=thing_id)
    assert json.loads(row.attrs) == {f"k{n}": n for n in range(8)}
    assert json.loads(row.external_ids) == {f"e{n}": "x" for n in range(8)}
