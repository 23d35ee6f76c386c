"""POST /messages/bulk through the mock providers: NDJSON and JSON-array bodies, results in
input order, a bad line failing alone, direct sends to provider tokens, the gateway token as
the operator credential, op_id idempotency, and bodies far larger than any buffer."""

from __future__ import annotations

import gzip
import json
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa
from hypothesis import strategies as st

from pushgo.api import bulk as api_bulk
from pushgo.api.spool import Spool
from pushgo.app import Gateway
from pushgo.protocol.bulk import MAX_ITEM_BYTES, MAX_TOKENS
from pushgo.store import Store
from pushgo.store.migrations import LATEST
from pushgo.store.schema import deliveries, devices, messages, metadata, schema_info
from tests.api.test_fuzz import collect, json_values
from tests.conftest import make_settings
from tests.helpers import PASSWORD, assert_error, call, register, stored_channel
from tests.live import hypercorn_server

TOKEN = "operator-token-1"
AUTH = {"authorization": f"Bearer {TOKEN}"}
NDJSON = {"content-type": "application/x-ndjson"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"token": TOKEN}


@pytest.fixture
async def api(pgateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=pgateway.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://pushgo.test",
                                 headers=AUTH) as c:
        yield c


def apns_token() -> str:
    return secrets.token_hex(32)


def fcm_token() -> str:
    return "fcm-" + secrets.token_urlsafe(40)


def ndjson(*items: Any) -> bytes:
    return b"".join((i if isinstance(i, bytes) else json.dumps(i).encode()) + b"\n"
                    for i in items)


async def bulk(client: httpx.AsyncClient, body: bytes, *,
               headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    resp = await client.post("/messages/bulk", content=body, headers=headers or NDJSON)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in resp.text.splitlines()]


async def apns_device(client: httpx.AsyncClient, token: str) -> str:
    key = await register(client, "ios")
    await call(client, "/channel/device",
               {"device_key": key, "channel_type": "apns", "provider_token": token})
    return key


async def test_ndjson_lines_are_answered_in_order_and_a_bad_line_fails_alone(
        api, pgateway, providers):
    dev_tok = apns_token()
    cid = await stored_channel(pgateway, await apns_device(api, dev_tok))
    direct = [apns_token() for _ in range(3)]
    body = ndjson(
        {"channel_id": cid, "password": PASSWORD, "title": "one"},
        b"{not json",
        {"channel_id": cid, "password": "wrong-password", "title": "two"},
        {"type": "event.create", "channel_id": cid, "title": "deploy", "status": "running",
         "message": "started", "severity": "normal", "event_time": 1_700_000_000},
        {"channel_id": cid, "title": "three", "colour": "red"},
        {"route": "apns", "tokens": direct, "title": "direct", "body": "to tokens",
         "op_id": "direct-1"},
        {"type": "thing.create", "channel_id": cid, "title": "db-1",
         "observed_at": 1_700_000_000},
        [1, 2],
        {"channel_id": "0" * 26, "title": "no such channel"},
        {"type": "mystery", "channel_id": cid, "title": "x"},
    )
    results = await bulk(api, body)
    assert [r["index"] for r in results] == list(range(10))
    assert [r["ok"] for r in results] == [True, False, False, True, False, True, True, False,
                                          False, False]
    codes = {r["index"]: r.get("error_code") for r in results if not r["ok"]}
    assert codes == {1: "invalid_json_syntax", 2: "password_mismatch", 4: "invalid_json_data",
                     7: "invalid_json_data", 8: "channel_not_found",
                     9: "invalid_operation_type"}
    assert results[2]["status"] == 403 and results[8]["status"] == 404
    first, event, dir_res, thing = results[0], results[3], results[5], results[6]
    assert first["channel_id"] == cid and len(first["message_id"]) == 32
    assert first["recipients"] == 1 and "duplicate" not in first
    assert event["event_id"] and thing["thing_id"]
    assert dir_res == {"index": 5, "ok": True, "op_id": "direct-1", "route": "apns",
                       "message_id": dir_res["message_id"], "recipients": 3}

    # channel: one, deploy, db-1 → the subscribed device; direct → each of its three tokens
    notes = await providers.apns.wait_for(6)
    assert sorted(n.token for n in notes) == sorted([dev_tok] * 3 + direct)
    by_token = {n.token: n.payload for n in notes if n.token in direct}
    for tok in direct:
        payload = by_token[tok]
        assert payload["aps"]["alert"] == {"title": "direct", "body": "to tokens"}
        assert payload["message_id"] == dir_res["message_id"]
        assert payload["op_id"] == "direct-1"
        assert "channel_id" not in payload
    assert len({p["delivery_id"] for p in by_token.values()}) == 3
    # A direct send has no channel history: no message row, no inbox.
    rows = await pgateway.store.read(lambda c: c.execute(
        sa.select(messages.c.message_id).where(messages.c.message_id == dir_res["message_id"])
    ).all())
    assert rows == []


async def test_a_json_array_body_is_split_like_ndjson(api, pgateway, providers):
    cid = await stored_channel(pgateway, await apns_device(api, apns_token()))
    tokens = [apns_token(), apns_token()]
    body = json.dumps([
        {"channel_id": cid, "password": PASSWORD, "title": "a"},
        {"channel_id": cid, "title": "b", "bogus": 1},
        {"route": "apns", "tokens": tokens, "title": "c"},
    ], indent=2).encode()
    results = await bulk(api, body, headers={"content-type": "application/json"})
    assert [(r["index"], r["ok"]) for r in results] == [(0, True), (1, False), (2, True)]
    assert results[1]["error_code"] == "invalid_json_data"
    notes = await providers.apns.wait_for(3)
    assert {n.token for n in notes} >= set(tokens)


async def test_a_broken_array_answers_what_came_before_and_stops(api, pgateway):
    cid = await stored_channel(pgateway)
    good = json.dumps({"channel_id": cid, "password": PASSWORD, "title": "a"})
    body = f"[{good}, {good} {good}]".encode()
    results = await bulk(api, body, headers={"content-type": "application/json"})
    assert [(r["index"], r["ok"]) for r in results] == [(0, True), (1, True), (2, False)]
    assert results[2]["error_code"] == "invalid_json_syntax"
    assert "between operations" in results[2]["error"]


async def test_an_over_long_line_fails_alone_without_being_buffered(api, pgateway):
    cid = await stored_channel(pgateway)
    long_line = json.dumps({"channel_id": cid, "password": PASSWORD,
                            "title": "x" * (MAX_ITEM_BYTES + 10)}).encode()
    body = ndjson({"channel_id": cid, "password": PASSWORD, "title": "a"}, long_line,
                  {"channel_id": cid, "password": PASSWORD, "title": "b"})
    results = await bulk(api, body)
    assert [(r["index"], r["ok"]) for r in results] == [(0, True), (1, False), (2, True)]
    assert results[1]["error_code"] == "line_too_long" and results[1]["status"] == 400


async def test_a_gzip_body_and_blank_lines(api, pgateway):
    cid = await stored_channel(pgateway)
    line = {"channel_id": cid, "password": PASSWORD, "title": "zip"}
    raw = b"\n\r\n" + ndjson(line) + b"   \n" + ndjson(line)
    results = await bulk(api, gzip.compress(raw),
                         headers={**NDJSON, "content-encoding": "gzip"})
    assert [(r["index"], r["ok"]) for r in results] == [(0, True), (1, True)]
    broken = await bulk(api, b"\x1f\x8b not gzip at all",
                        headers={**NDJSON, "content-encoding": "gzip"})
    assert [r["error_code"] for r in broken] == ["invalid_json_syntax"]


async def test_the_request_itself_must_be_bulk_shaped(api):
    resp = await api.post("/messages/bulk", content=b"a=b",
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert_error(resp, 415, "unsupported_media_type")
    resp = await api.post("/messages/bulk", content=b"{}",
                          headers={**NDJSON, "content-encoding": "br"})
    assert_error(resp, 415, "unsupported_media_type")
    resp = await api.get("/messages/bulk")
    assert_error(resp, 405, "method_not_allowed")
    assert await bulk(api, b"") == []
    assert await bulk(api, b" [ ] ", headers={"content-type": "application/json"}) == []


async def test_the_gateway_token_is_required_and_authorises_every_channel(api, pgateway):
    cid = await stored_channel(pgateway)
    body = ndjson({"channel_id": cid, "title": "no password: the token speaks for it"},
                  {"channel_id": cid, "password": "wrong-password", "title": "checked"})
    results = await bulk(api, body)
    assert [r["ok"] for r in results] == [True, False]
    assert results[1]["error_code"] == "password_mismatch"
    transport = httpx.ASGITransport(app=pgateway.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as anon:
        resp = await anon.post("/messages/bulk", content=body, headers=NDJSON)
    assert_error(resp, 401, "authentication_failed")


async def test_without_a_gateway_token_lines_need_passwords_and_direct_sends_are_refused(
        tmp_path, anyio_backend):
    gw = Gateway(make_settings(f"sqlite:///{tmp_path}/open.db"))
    async with gw.running():
        cid = await stored_channel(gw)
        transport = httpx.ASGITransport(app=gw.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as c:
            results = await bulk(c, ndjson(
                {"channel_id": cid, "title": "no password"},
                {"channel_id": cid, "password": PASSWORD, "title": "ok"},
                {"route": "apns", "tokens": [apns_token()], "title": "direct"}))
    assert [r.get("error_code") for r in results] == [
        "password_required", None, "gateway_token_required"]
    assert results[2]["status"] == 403


async def test_direct_lines_are_validated_per_line(api, pgateway, providers):
    tok = apns_token()
    results = await bulk(api, ndjson(
        {"route": "wns", "tokens": ["x" * 20], "title": "t"},
        {"route": "apns", "tokens": [], "title": "t"},
        {"route": "apns", "tokens": ["not-hex"], "title": "t"},
        {"route": "apns", "tokens": [apns_token()] * (MAX_TOKENS + 1), "title": "t"},
        {"route": "apns", "tokens": [tok], "title": "  "},
        {"type": "event.create", "route": "apns", "tokens": [tok], "title": "t"},
        {"route": "apns", "tokens": [tok], "channel_id": "x", "title": "t"},
        {"route": "fcm", "tokens": [fcm_token()], "title": "to android"},
        {"route": "apns", "tokens": [tok, tok.upper(), tok], "title": "twice"},
    ))
    assert [r.get("error_code") for r in results] == [
        "invalid_route", "tokens_required", "invalid_provider_token", "too_many_tokens",
        "title_required", "invalid_operation_type", "invalid_json_data", None, None]
    assert results[8]["recipients"] == 1  # one token, however often and in whatever case
    [msg] = await providers.fcm.wait_for(1)
    assert msg.message["data"]["title"] == "to android"


async def test_a_route_without_credentials_is_refused_for_direct_sends(tmp_path, anyio_backend):
    gw = Gateway(make_settings(f"sqlite:///{tmp_path}/bare.db", token=TOKEN))
    async with gw.running():
        transport = httpx.ASGITransport(app=gw.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://x",
                                     headers=AUTH) as c:
            results = await bulk(c, ndjson({"route": "apns", "tokens": [apns_token()],
                                            "title": "t"}))
    assert results[0]["error_code"] == "provider_not_configured"


async def test_op_ids_make_lines_idempotent_and_group_a_split_send(api, pgateway, providers):
    cid = await stored_channel(pgateway, await apns_device(api, apns_token()))
    part1, part2 = [apns_token(), apns_token()], [apns_token()]
    body = ndjson(
        {"channel_id": cid, "password": PASSWORD, "title": "a", "op_id": "ch-1"},
        {"route": "apns", "tokens": part1, "title": "big", "op_id": "campaign"},
        {"route": "apns", "tokens": part2, "title": "big", "op_id": "campaign"},
    )
    first = await bulk(api, body)
    assert all(r["ok"] for r in first)
    await providers.apns.wait_for(4)
    again = await bulk(api, body)
    assert [r["duplicate"] for r in again] == [True, True, True]
    assert [r["message_id"] for r in again] == [r["message_id"] for r in first]
    conflict = await bulk(api, ndjson(
        {"channel_id": cid, "password": PASSWORD, "title": "changed", "op_id": "ch-1"},
        {"route": "apns", "tokens": part1, "title": "changed", "op_id": "campaign"}))
    assert [(r["error_code"], r["status"], r["op_id"]) for r in conflict] == [
        ("op_id_conflict", 409, "ch-1"), ("op_id_conflict", 409, "campaign")]
    with anyio.move_on_after(0.3):
        await providers.apns.wait_for(5)
    assert len(providers.apns.notifications) == 4
    status = await call(api, "/deliveries/campaign")
    assert status["total"] == 3 and status["operations"] == 2


async def test_a_dead_direct_token_fails_and_is_dropped_from_a_device_holding_it(
        api, pgateway, providers):
    dead, alive = apns_token(), apns_token()
    key = await apns_device(api, dead)
    providers.apns.unregister(dead)
    results = await bulk(api, ndjson({"route": "apns", "tokens": [dead, alive],
                                      "title": "t", "op_id": "dead-1"}))
    assert results[0]["ok"]
    with anyio.fail_after(10):
        while not (doc := await call(api, "/deliveries/dead-1"))["done"]:
            await anyio.sleep(0.05)
    assert doc["states"] == {"queued": 0, "sent": 1, "failed": 1, "expired": 0}
    assert doc["failures"] == {"Unregistered": 1}
    row = await pgateway.store.read(lambda c: c.execute(
        sa.select(devices.c.provider_token).where(devices.c.device_key == key)).one())
    assert row.provider_token is None
    pending = await pgateway.store.read(lambda c: c.execute(
        sa.select(sa.func.count()).select_from(deliveries)
        .where(deliveries.c.inbox.is_(True), deliveries.c.device_key == "direct")).scalar())
    assert pending == 0


async def test_a_client_that_reads_only_after_writing_everything_is_not_stalled(
        tmp_path, anyio_backend, monkeypatch):
    """httpx over HTTP/1.1 sends the whole body before it reads: results beyond the socket
    buffers wait in the gateway's spool (on disk past 1 MiB) instead of blocking both
    sides."""
    spools: list[Spool] = []

    class Recorded(Spool):
        def __init__(self) -> None:
            super().__init__()
            spools.append(self)

    monkeypatch.setattr(api_bulk, "Spool", Recorded)
    lines = 60_000
    line = b'{"type":"nope","channel_id":"x","title":"t","padding":"' + b"p" * 40 + b'"}\n'

    async def body() -> AsyncIterator[bytes]:
        for _ in range(lines // 1000):
            yield line * 1000

    gw = Gateway(make_settings(f"sqlite:///{tmp_path}/big.db", token=TOKEN))
    async with (gw.running(), hypercorn_server(gw) as base,
                httpx.AsyncClient(base_url=base, headers=AUTH, timeout=60) as c):
        with anyio.fail_after(60):
            resp = await c.post("/messages/bulk", content=body(), headers=NDJSON)
    assert resp.status_code == 200
    out = resp.text.splitlines()
    assert len(out) == lines
    assert json.loads(out[-1]) == {
        "index": lines - 1, "ok": False, "error_code": "invalid_operation_type",
        "error": json.loads(out[0])["error"], "status": 400}
    [spool] = spools
    if anyio_backend == "trio":
        # Hypercorn-Trio writes to the socket with backpressure, so this much unread answer
        # must have waited in the spool (Hypercorn-asyncio's transport buffers it itself).
        assert spool.spilled_bytes > 0


def test_a_database_from_before_direct_sends_is_migrated(db_url):
    """A version-1 database (no deliveries.provider_token, no op_id index) gains both."""
    store = Store(db_url)

    def version_1(conn: Any) -> None:
        metadata.create_all(conn)
        conn.exec_driver_sql("DROP INDEX ix_operations_op_id")
        conn.exec_driver_sql("ALTER TABLE deliveries DROP COLUMN provider_token")
        conn.execute(schema_info.insert().values(id=1, version=1, migrated_at=0))

    def shape(conn: Any) -> tuple[set[str], set[str], int]:
        inspector = sa.inspect(conn)
        return ({c["name"] for c in inspector.get_columns("deliveries")},
                {i["name"] for i in inspector.get_indexes("operations")},
                conn.execute(sa.select(schema_info.c.version)).scalar_one())

    try:
        store.run_sync(version_1)
        assert "provider_token" not in store.run_sync(shape)[0]
        assert store.migrate() == 1
        columns, indexes, version = store.run_sync(shape)
        assert "provider_token" in columns and "ix_operations_op_id" in indexes
        assert version == LATEST
        assert store.migrate() == LATEST  # and again: nothing left to do
    finally:
        store.dispose()


async def test_two_bulks_racing_with_the_same_op_ids_send_each_operation_once(
        api, pgateway, providers):
    """The same op_ids in opposite orders: on PostgreSQL the two transactions wait on each
    other's rows (a deadlock one of them loses); every operation still goes out once."""
    tok = apns_token()
    cid = await stored_channel(pgateway, await apns_device(api, tok))
    direct = [apns_token() for _ in range(4)]
    items: list[dict[str, Any]] = [
        *({"channel_id": cid, "title": f"m{i}", "op_id": f"race-{i}"} for i in range(20)),
             {"route": "apns", "tokens": direct, "title": "d", "op_id": "race-d"}]
    answers: list[list[dict[str, Any]]] = []

    async def one(order: list[dict[str, Any]]) -> None:
        answers.append(await bulk(api, ndjson(*order)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, items)
        tg.start_soon(one, items[::-1])
    assert all(r["ok"] for r in answers[0] + answers[1]), answers
    by_op: dict[str, list[dict[str, Any]]] = {}
    for result in answers[0] + answers[1]:
        by_op.setdefault(result["op_id"], []).append(result)
    assert len(by_op) == len(items)
    for a, b in by_op.values():
        assert a["message_id"] == b["message_id"]
        assert sorted([a.get("duplicate", False), b.get("duplicate", False)]) == [False, True]
    notes = await providers.apns.wait_for(24)
    with anyio.move_on_after(0.3):
        await providers.apns.wait_for(25)
    assert len(providers.apns.notifications) == 24
    assert Counter(n.token for n in notes) == Counter([tok] * 20 + direct)


async def test_random_lines_each_get_a_result_and_never_a_5xx(api, pgateway):
    cid = await stored_channel(pgateway)
    plausible = st.fixed_dictionaries({}, optional={
        "type": st.sampled_from(["message", "event.create", "thing.update", "x"]) | json_values,
        "channel_id": st.just(cid) | json_values, "password": st.just(PASSWORD),
        "title": st.text(max_size=20) | json_values, "route": st.sampled_from(["apns", "fcm"]),
        "tokens": st.lists(st.text(max_size=70), max_size=3) | json_values,
        "op_id": st.text(max_size=10) | json_values, "ttl": json_values,
        "metadata": json_values, "event_time": json_values, "observed_at": json_values})
    lines = [json.dumps(doc).encode() for doc in collect(plausible, 60)]
    lines += [raw.replace(b"\n", b" ") for raw in collect(st.binary(min_size=1, max_size=60), 30)]
    body = b"\n".join(lines) + b"\n"
    results = await bulk(api, body)
    blank = sum(1 for raw in lines if not raw.strip())
    assert [r["index"] for r in results] == list(range(len(lines) - blank))
    for r in results:
        assert r["ok"] or (r["error_code"] and 400 <= r["status"] < 500), r
