"""The compat ingress (ntfy, ServerChan, Bark as PushGo Gateway v1.2.9 takes them): each
sender's request shape reaches a subscribed private device, which pulls the message with the
mapped title, body, severity and metadata; errors are the API's envelope (as v1.2.9 answers
them); bad input is never a 500."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from hypothesis import strategies as st

from pushgo.protocol import compat
from pushgo.protocol.ids import encode_channel_id
from tests.api.test_fuzz import collect, mostly, problem, report
from tests.helpers import PASSWORD, assert_error, call, new_channel, pull, register

#: A password a URL path has to percent-encode (its "/" as %2F).
SLASHED = "pass/with%odd"


async def setup(client: httpx.AsyncClient, password: str = PASSWORD) -> tuple[str, str]:
    """A private device subscribed to a new channel: (device_key, compat key)."""
    key = await register(client)
    await call(client, "/channel/device",
               {"device_key": key, "channel_type": "private", "platform": "ios"})
    cid = await new_channel(client, key, password=password)
    return key, f"{cid}:{password}"


def accepted(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["success"] is True and doc["data"]["accepted"] is True, doc
    assert set(doc["data"]) == {"channel_id", "op_id", "accepted", "message_id"}
    return dict(doc["data"])


async def pulled(client: httpx.AsyncClient, device_key: str) -> list[dict[str, Any]]:
    items = [item["payload"] for item in await pull(client, device_key)]
    for item in items:
        item["metadata"] = json.loads(item.get("metadata", "{}"))
        item["tags"] = json.loads(item.get("tags", "[]"))
    return items


def fields(item: dict[str, Any]) -> tuple[Any, ...]:
    return item["title"], item.get("body"), item["severity"]


async def test_ntfy_senders_reach_a_device(client):
    device, key = await setup(client)
    form = {"content-type": "application/x-www-form-urlencoded"}  # what curl -d sends
    sent = [
        accepted(await client.post(f"/ntfy/{key}", content=b"Backup done", headers=form)),
        accepted(await client.put(f"/ntfy/{key}", content=b"Disk 91% full",
                                  headers={"Title": "NAS", "Priority": "5", "Tags": "disk,nas"})),
        accepted(await client.post(f"/ntfy/{key}/publish?title=Q%20title&priority=4&tags=a,b",
                                   content=b"from body", headers={"Title": "ignored"})),
        accepted(await client.get(f"/ntfy/{key}/send", params={"message": "via get",
                                                                "priority": "2"})),
        accepted(await client.post(f"/ntfy/{key}/trigger", headers={"Message": "hdr body",
                                                                    "X-Priority": "high"})),
    ]
    items = await pulled(client, device)
    assert [i["message_id"] for i in items] == [s["message_id"] for s in sent]
    assert [fields(i) for i in items] == [
        ("Notification", "Backup done", "normal"),
        ("NAS", "Disk 91% full", "critical"),
        ("Q title", "from body", "critical"),
        ("Notification", "via get", "normal"),
        ("Notification", "hdr body", "critical"),
    ]
    assert [i["tags"] for i in items] == [[], ["disk", "nas"], ["a", "b"], [], []]


async def test_bark_senders_reach_a_device(client):
    device, key = await setup(client, SLASHED)
    path_key = quote(key, safe=":")
    assert "%2F" in path_key
    sent = [
        accepted(await client.get(
            f"/bark/{path_key}/Door%20bell/Someone%20at%20the%20door%2Fgate",
            params={"sound": "minuet", "group": "home", "level": "active",
                    "icon": "https://x.test/i.png", "url": "https://x.test/cam"})),
        accepted(await client.get(f"/bark/{path_key}/Just%20a%20body",
                                  params={"level": "timeSensitive"})),
        accepted(await client.post("/bark/push", json={
            "device_key": key, "title": "v2", "body": "json body", "level": "passive",
            "group": "g2", "tags": ["x"], "metadata": {"room": "hall"}})),
    ]
    items = await pulled(client, device)
    assert [i["message_id"] for i in items] == [s["message_id"] for s in sent]
    assert [fields(i) for i in items] == [
        ("Door bell", "Someone at the door/gate", "critical"),
        ("Notification", "Just a body", "normal"),
        ("v2", "json body", "normal"),
    ]
    assert items[0]["metadata"] == {"compat.bark.sound": "minuet", "compat.bark.group": "home",
                                    "compat.bark.icon": "https://x.test/i.png"}
    assert items[0]["url"] == "https://x.test/cam"
    assert items[2]["metadata"] == {"compat.bark.group": "g2", "room": "hall"}
    assert items[2]["tags"] == ["x"]


async def test_serverchan_senders_reach_a_device(client):
    device, key = await setup(client)
    sent = [
        accepted(await client.get(f"/serverchan/{key}",
                                  params={"title": "Job failed", "desp": "exit 1"})),
        accepted(await client.post(f"/serverchan/{key}.send",
                                   data={"text": "Form title", "desp": "line 1\nline 2",
                                         "url": "https://x.test/log"})),
    ]
    items = await pulled(client, device)
    assert [i["message_id"] for i in items] == [s["message_id"] for s in sent]
    assert [fields(i) for i in items] == [("Job failed", "exit 1", "normal"),
                                          ("Form title", "line 1\nline 2", "normal")]
    assert items[1]["metadata"] == {"compat.serverchan.url": "https://x.test/log"}
    assert items[1]["url"] == "https://x.test/log"


async def test_the_gateway_token_query_parameter_is_not_a_message_field(client):
    device, key = await setup(client)
    accepted(await client.post(f"/ntfy/{key}?token=t&title=T", content=b"b"))
    accepted(await client.get(f"/bark/{key}/b", params={"token": "t"}))
    accepted(await client.get(f"/serverchan/{key}", params={"token": "t", "desp": "d"}))
    assert len(await pull(client, device)) == 3


async def test_op_id_makes_a_compat_send_idempotent(client):
    device, key = await setup(client)
    first = accepted(await client.post(f"/ntfy/{key}?op_id=job-42", content=b"once"))
    again = accepted(await client.post(f"/ntfy/{key}?op_id=job-42", content=b"once"))
    assert first == again
    assert len(await pull(client, device)) == 1


async def test_a_wrong_password_is_the_password_mismatch_envelope_on_every_dialect(client):
    _, key = await setup(client)
    cid = key.split(":")[0]
    bad = f"{cid}:wrong-password-1"
    for resp in (await client.post(f"/ntfy/{bad}", content=b"x"),
                 await client.get(f"/bark/{bad}/b"),
                 await client.post("/bark/push", json={"device_key": bad, "body": "b"})):
        assert_error(resp, 403, "password_mismatch")
    # The (channel, address) bucket is shared with /message: the sixth failure is throttled.
    assert_error(await client.get(f"/serverchan/{bad}", params={"desp": "x"}), 403,
                 "password_mismatch")
    await call(client, "/message", {"channel_id": cid, "password": "wrong-password-1",
                                    "title": "t"}, expect=403)
    resp = await client.post(f"/ntfy/{bad}", content=b"x")
    assert_error(resp, 429, "rate_limited")
    assert int(resp.headers["retry-after"]) >= 1


async def test_refusals(client):
    _, key = await setup(client)
    cid = key.split(":")[0]
    unknown = f"{encode_channel_id(bytes(16))}:{PASSWORD}"
    cases = [
        (client.post(f"/ntfy/{unknown}", content=b"x"), 404, "channel_not_found"),
        (client.post(f"/ntfy/{cid}", content=b"x"), 400, "compat_key_invalid"),
        (client.get(f"/bark/{cid}:%20/b"), 400, "compat_key_invalid"),
        (client.post("/bark/push", json={"body": "no key"}), 400, "invalid_json_data"),
        (client.post("/bark/push", content=b"{}"), 400, "missing_json_content_type"),
        (client.post(f"/ntfy/{key}?thing_id=t1", content=b"x"), 400,
         "thing_id_unsupported_on_ntfy_endpoint"),
        (client.get(f"/bark/{key}/b", params={"isArchive": "1"}), 400, "invalid_query"),
        (client.post(f"/ntfy/{key}?title=%20", content=b"x"), 400, "title_required"),
        (client.post(f"/serverchan/{key}", json={"title": "t"}), 415, "unsupported_media_type"),
        (client.get(f"/ntfy/{key}"), 405, "method_not_allowed"),
        (client.post(f"/bark/{key}/b"), 405, "method_not_allowed"),
        (client.get("/bark/push"), 405, "method_not_allowed"),
        (client.post(f"/ntfy/{key}/other"), 404, "route_not_found"),
        (client.get(f"/bark/{key}"), 404, "route_not_found"),
        (client.get(f"/bark/{key}/t/s/b"), 404, "route_not_found"),
        (client.get("/serverchan/"), 404, "route_not_found"),
        (client.get("/ntfy/%FF/send"), 400, "invalid_request"),
        (client.post(f"/ntfy/{key}", content=b"x" * 40_000), 413, "payload_too_large"),
    ]
    wrong = []
    for request, status, code in cases:
        resp = await request
        doc = resp.json()
        if (resp.status_code, doc.get("error_code"), doc.get("success")) != (status, code, False):
            wrong.append(f"want {status} {code}, got {resp.status_code} {resp.text[:200]}")
    assert not wrong, "\n".join(wrong)
    resp = await client.get(f"/ntfy/{key}")
    assert resp.headers["allow"] == "POST, PUT"


async def test_random_paths_queries_and_bodies_get_200_or_a_4xx_envelope(client):
    _, key = await setup(client)
    cid = key.split(":")[0]
    segment = st.one_of(st.sampled_from([key, quote(key), f"{cid}:x", cid, "push", "send", ""]),
                        st.text(max_size=20).map(lambda s: quote(s, safe="")),
                        st.text("%/:.aZ09", max_size=12))
    allowed = {"ntfy": compat.NTFY_QUERY, "serverchan": compat.SERVERCHAN_FIELDS,
               "bark": compat.BARK_QUERY}
    content_type = st.sampled_from(["text/plain", "application/json", "application/"
                                    "x-www-form-urlencoded", None])
    keys = mostly(st.sampled_from([key, quote(key), quote(key, safe=":")]), segment)
    text = st.text(min_size=1, max_size=20).map(lambda s: quote(s, safe=""))
    # Mostly the real shapes (so most requests get past routing), sometimes any path.
    shapes = st.one_of(
        st.tuples(st.just("ntfy"), st.tuples(keys)),
        st.tuples(st.just("ntfy"), st.tuples(keys, st.sampled_from(["publish", "send",
                                                                     "trigger"]))),
        st.tuples(st.just("serverchan"), st.tuples(keys)),
        st.tuples(st.just("bark"), st.tuples(keys, text)),
        st.tuples(st.just("bark"), st.tuples(keys, text, text)),
        st.tuples(st.sampled_from(["ntfy", "serverchan", "bark"]),
                  st.lists(segment, max_size=4)))

    def request_of(shape: tuple[str, Any]) -> st.SearchStrategy[Any]:
        dialect, segments = shape
        names = mostly(st.sampled_from(sorted(allowed[dialect])), st.just("other"), 10)
        values = st.text(max_size=20) | st.sampled_from(["4", "active", '{"k": "v"}', "a,b"])
        return st.tuples(
            st.just(f"/{dialect}/" + "/".join(segments)),
            st.sampled_from(["GET", "GET", "POST", "POST", "PUT", "DELETE"]),
            st.dictionaries(names, values, max_size=4),
            st.dictionaries(st.sampled_from(["Title", "Priority", "Message", "Tags"]),
                            st.text("abc 19é", max_size=10), max_size=2),
            st.binary(max_size=80) | st.text(max_size=60).map(str.encode)
            | st.dictionaries(names, values, max_size=3).map(lambda d: urlencode(d).encode()),
            content_type)

    cases = collect(shapes.flatmap(request_of), 200)
    failures = []
    for path, method, params, extra, raw, ctype in cases:
        headers = {k: v.encode() for k, v in extra.items()}  # UTF-8 bytes on the wire
        if ctype:
            headers["content-type"] = ctype.encode()
        resp = await client.request(method, path, params=params, content=raw, headers=headers)
        found = problem(f"{method} {path}", (params, extra, raw), resp)
        if found:
            failures.append(found)
    pushes = collect(st.dictionaries(
        st.sampled_from(["device_key", "title", "body", "level", "sound", "tags", "images",
                         "metadata", "op_id", "url", "x"]),
        st.sampled_from([key]) | st.text(max_size=20) | st.lists(st.text(max_size=8))
        | st.dictionaries(st.text(max_size=5), st.text(max_size=5) | st.integers())
        | st.none(), max_size=6), 80)
    for body in pushes:
        resp = await client.post("/bark/push", json=body)
        found = problem("POST /bark/push", body, resp)
        if found:
            failures.append(found)
    assert not failures, report(failures)
