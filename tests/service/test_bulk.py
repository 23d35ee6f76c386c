"""pushgo.service.bulk.Bulk driven with frames directly (no HTTP): one result per item in
input order, each item authorised, prepared and failing on its own, direct sends only with a
gateway token and a configured provider, over-long items and a broken body answered in
place."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pushgo.errors import StoreUnavailable
from pushgo.protocol import bulk as bulk_wire
from pushgo.protocol.ids import encode_channel_id
from pushgo.service import Services
from pushgo.service.bulk import BATCH_ITEMS, Bulk
from tests.service.support import APNS_TOKEN, PASSWORD, channel, device

pytestmark = pytest.mark.anyio
TOKEN = "gateway-token-1"
UNKNOWN = encode_channel_id(b"\x05" * 16)
with_token = pytest.mark.parametrize("settings_overrides", [{"token": TOKEN}])


def bulk(svc: Services, routes: tuple[str, ...] = ("apns",)) -> Bulk:
    return Bulk(svc.ctx, svc.channels, svc.publisher, routes)


def item(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


async def run(engine: Bulk, *pieces: list[bulk_wire.Frame]) -> list[dict[str, Any]]:
    """Feed ``pieces`` (what each read of a body held); the result lines, decoded."""
    lines: list[bytes] = []

    async def frames() -> AsyncIterator[list[bulk_wire.Frame]]:
        for piece in pieces:
            yield piece

    count = await engine.run(frames(), lines.append)
    results = [json.loads(line) for line in lines]
    assert count == len(results)
    assert [r["index"] for r in results] == list(range(count))
    return results


async def test_each_item_gets_its_result_in_input_order(svc):
    cid = await channel(svc, await device(svc))
    results = await run(bulk(svc), [item(channel_id=cid, password=PASSWORD, title=f"t{i}",
                                         op_id=f"op-{i}") for i in range(3)])
    assert [(r["ok"], r["op_id"], r["channel_id"], r["recipients"]) for r in results] == [
        (True, f"op-{i}", cid, 1) for i in range(3)]
    assert len({r["message_id"] for r in results}) == 3


async def test_items_of_several_pieces_and_batches_are_all_answered(svc):
    cid = await channel(svc, await device(svc))
    n = BATCH_ITEMS * 2 + 5
    lines: list[bulk_wire.Frame] = [item(channel_id=cid, password=PASSWORD, title=f"t{i}")
                            for i in range(n)]
    results = await run(bulk(svc), lines[:7], lines[7:300], lines[300:])
    assert len(results) == n and all(r["ok"] for r in results)


async def test_a_bad_item_fails_alone(svc):
    cid = await channel(svc, await device(svc))
    results = await run(bulk(svc), [
        item(channel_id=cid, password=PASSWORD, title="ok"),
        item(channel_id=cid, password="wrong-password", title="refused", op_id="bad-1"),
        b"{not json",
        item(channel_id=cid, password=PASSWORD, title=" ", op_id="bad-2"),
        item(channel_id=cid, password=PASSWORD, title="ok too"),
    ])
    assert [r["ok"] for r in results] == [True, False, False, False, True]
    assert [(r.get("error_code"), r.get("status"), r.get("op_id")) for r in results[1:4]] == [
        ("password_mismatch", 403, "bad-1"), ("invalid_json_syntax", 400, None),
        ("title_required", 400, "bad-2")]
    assert all(r["error"] for r in results[1:4])


async def test_one_channel_password_is_checked_once_per_request(svc, monkeypatch):
    cid = await channel(svc, await device(svc))
    calls: list[str] = []
    real = svc.channels.authorize

    async def counting(channel_id: str, *args: Any) -> Any:
        calls.append(channel_id)
        return await real(channel_id, *args)

    monkeypatch.setattr(svc.channels, "authorize", counting)
    results = await run(bulk(svc), [item(channel_id=cid, password=pw, title="t")
                                    for pw in [PASSWORD, "wrong-password"] * 20])
    assert [r["ok"] for r in results] == [True, False] * 20
    assert calls == [cid, cid]


async def test_without_a_gateway_token_every_channel_item_needs_its_password(svc):
    cid = await channel(svc, await device(svc))
    [result] = await run(bulk(svc), [item(channel_id=cid, title="t")])
    assert (result["ok"], result["error_code"]) == (False, "password_required")


@with_token
async def test_with_a_gateway_token_an_item_needs_only_an_existing_channel(svc):
    cid = await channel(svc, await device(svc))
    ok, unknown, wrong = await run(bulk(svc), [
        item(channel_id=cid, title="t"), item(channel_id=UNKNOWN, title="t"),
        item(channel_id=cid, password="wrong-password", title="t")])
    assert ok["ok"] is True and ok["recipients"] == 1
    assert (unknown["error_code"], unknown["status"]) == ("channel_not_found", 404)
    assert wrong["error_code"] == "password_mismatch"  # a password given is still checked


async def test_a_direct_send_needs_a_gateway_token(svc):
    [result] = await run(bulk(svc), [item(route="apns", tokens=[APNS_TOKEN], title="t")])
    assert (result["error_code"], result["status"]) == ("gateway_token_required", 403)


@with_token
async def test_a_direct_send_goes_to_each_distinct_token_of_a_configured_route(svc):
    second = "cd" * 32
    [result] = await run(bulk(svc), [item(route="apns", title="t", op_id="d-1",
                                           tokens=[APNS_TOKEN, second, APNS_TOKEN.upper()])])
    assert (result["ok"], result["route"], result["recipients"]) == (True, "apns", 2)
    doc = await svc.status.get("d-1")
    assert doc["routes"] == {"apns": {"queued": 2, "sent": 0, "failed": 0, "expired": 0}}
    assert "channel_id" not in doc


@with_token
async def test_a_direct_send_to_an_unconfigured_provider_is_refused(svc):
    [result] = await run(bulk(svc, routes=()), [item(route="apns", tokens=[APNS_TOKEN],
                                                     title="t")])
    assert result["error_code"] == "provider_not_configured"


async def test_repeating_an_op_id_is_a_duplicate_and_changing_its_payload_a_conflict(svc):
    cid = await channel(svc, await device(svc))
    engine = bulk(svc)
    await run(engine, [item(channel_id=cid, password=PASSWORD, title="t", op_id="op-1")])
    same, other = await run(engine, [
        item(channel_id=cid, password=PASSWORD, title="t", op_id="op-1"),
        item(channel_id=cid, password=PASSWORD, title="changed", op_id="op-1")])
    assert (same["ok"], same["duplicate"]) == (True, True)
    assert (other["ok"], other["error_code"], other["status"]) == (False, "op_id_conflict", 409)


async def test_events_and_things_go_through_bulk_too(svc):
    cid = await channel(svc, await device(svc))
    event, thing = await run(bulk(svc), [
        item(type="event.create", channel_id=cid, password=PASSWORD, title="disk",
             status="open", message="97%", severity="high", event_time=1_700_000_000),
        item(type="thing.create", channel_id=cid, password=PASSWORD, title="pump",
             observed_at=1_700_000_000)])
    assert event["ok"] and event["event_id"] and "message_id" not in event
    assert thing["ok"] and thing["thing_id"]


async def test_an_over_long_item_is_answered_in_place(svc):
    cid = await channel(svc, await device(svc))
    results = await run(bulk(svc), [item(channel_id=cid, password=PASSWORD, title="a"),
                                    bulk_wire.TooLong(bulk_wire.MAX_ITEM_BYTES + 1),
                                    item(channel_id=cid, password=PASSWORD, title="b")])
    assert [r.get("error_code") for r in results] == [None, "line_too_long", None]


async def test_a_broken_body_ends_the_results_with_its_error(svc):
    cid = await channel(svc, await device(svc))
    never: list[bulk_wire.Frame] = [item(channel_id=cid, password=PASSWORD, title="never read")]
    results = await run(bulk(svc), [item(channel_id=cid, password=PASSWORD, title="a"),
                                    bulk_wire.Broken("found ',' between operations")], never)
    assert [r["ok"] for r in results] == [True, False]
    assert results[1]["error_code"] == "invalid_json_syntax"
    assert "between operations" in results[1]["error"]


async def test_an_empty_body_has_no_results(svc):
    assert await run(bulk(svc)) == []
    assert await run(bulk(svc), []) == []


async def test_a_store_failure_fails_every_item_of_its_batch(svc, monkeypatch):
    cid = await channel(svc, await device(svc))

    async def down(_items: Any) -> Any:
        raise StoreUnavailable()

    monkeypatch.setattr(svc.publisher, "accept_many", down)
    results = await run(bulk(svc), [item(channel_id=cid, password=PASSWORD, title="t"),
                                    b"[]"])
    assert [(r["ok"], r["error_code"]) for r in results] == [
        (False, "store_unavailable"), (False, "invalid_json_data")]


async def test_an_unexpected_failure_is_an_internal_error_per_item(svc, monkeypatch):
    cid = await channel(svc, await device(svc))

    async def broken(_items: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(svc.publisher, "accept_many", broken)
    results = await run(bulk(svc), [item(channel_id=cid, password=PASSWORD, title=f"t{i}")
                                    for i in range(2)])
    assert [(r["error_code"], r["status"]) for r in results] == [("internal_error", 500)] * 2
