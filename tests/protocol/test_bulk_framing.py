"""The bulk body's framing and items (pushgo.protocol.bulk, pure): NDJSON lines and JSON-array
elements split at any chunk boundary, over-long items skipped without being kept, broken
arrays, and item decoding."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pushgo.protocol import bulk as bulk_wire

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)
objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


def split_all(splitter: Any, data: bytes, cuts: list[int]) -> list[bulk_wire.Frame]:
    frames: list[bulk_wire.Frame] = []
    start = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        frames += splitter.feed(data[start:cut])
        start = cut
    return frames + list(splitter.end())


def whole(frames: list[bulk_wire.Frame]) -> list[bytes]:
    """Frames that are all complete items."""
    assert all(isinstance(f, bytes) for f in frames), frames
    return [f for f in frames if isinstance(f, bytes)]


@settings(max_examples=150, deadline=None)
@given(items=st.lists(json_values, max_size=8), cuts=st.lists(st.integers(0, 10**6), max_size=12),
       indent=st.sampled_from([None, 1, "\t"]))
def test_array_elements_come_out_whole_at_any_chunking(items, cuts, indent):
    data = json.dumps(items, indent=indent, ensure_ascii=False).encode()
    frames = split_all(bulk_wire.ArraySplitter(), data, cuts)
    assert [json.loads(f) for f in whole(frames)] == items


@settings(max_examples=150, deadline=None)
@given(items=st.lists(objects, max_size=8), cuts=st.lists(st.integers(0, 10**6), max_size=12),
       crlf=st.booleans(), blank=st.booleans())
def test_ndjson_lines_come_out_whole_at_any_chunking(items, cuts, crlf, blank):
    end = b"\r\n" if crlf else b"\n"
    data = b"".join(json.dumps(i).encode() + end + (b"  " + end if blank else b"")
                    for i in items)
    frames = split_all(bulk_wire.LineSplitter(), data, cuts)
    assert [json.loads(f) for f in whole(frames)] == items


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.integers(0, 300), min_size=1, max_size=6),
       cuts=st.lists(st.integers(0, 10**6), max_size=10))
def test_over_long_items_are_reported_in_place_and_not_kept(sizes, cuts):
    limit = 100
    items = [{"p": "x" * n} for n in sizes]
    for splitter, data in (
            (bulk_wire.ArraySplitter(limit), json.dumps(items).encode()),
            (bulk_wire.LineSplitter(limit), b"".join(json.dumps(i).encode() + b"\n" for i in items))):
        frames = split_all(splitter, data, cuts)
        assert len(frames) == len(items)
        for item, frame in zip(items, frames, strict=True):
            size = len(json.dumps(item))
            if size > limit:
                assert frame == bulk_wire.TooLong(size)
            else:
                assert isinstance(frame, bytes)
                assert json.loads(frame) == item
        assert len(splitter._buf) <= limit + 1


@pytest.mark.parametrize(("body", "items", "message"), [
    (b'{"a":1}', 0, "must be a JSON array"),
    (b'[{"a":1} {"b":2}]', 1, "between operations"),
    (b'[{"a":1},,{"b":2}]', 1, "found ','"),
    (b'[{"a":1},]', 1, "after ','"),
    (b'[{"a":1}] x', 1, "after the JSON array"),
    (b'[{"a":1}, {"b":', 1, "ends before"),
    (b'[{"a":1}}]', 1, "between operations"),
    (b'[}]', 0, "unbalanced"),
])
def test_a_broken_array_ends_the_split_once(body, items, message):
    frames = split_all(bulk_wire.ArraySplitter(), body, [])
    assert all(isinstance(f, bytes) for f in frames[:items])
    assert len(frames) == items + 1
    broken = frames[-1]
    assert isinstance(broken, bulk_wire.Broken) and message in broken.message
    assert list(bulk_wire.ArraySplitter().end()) == []  # an empty body is no items, not broken


def test_items_decode_to_operations_and_direct_sends():
    msg = bulk_wire.decode_item(b'{"channel_id":"' + b"0" * 26 + b'","title":"t","op_id":"a-1"}')
    assert msg.type == "message" and msg.spec.op_id == "a-1" and msg.password is None
    event = bulk_wire.decode_item(json.dumps({
        "type": "event.close", "channel_id": "0" * 26, "password": "pw-12345678",
        "event_id": "e1", "status": "done", "message": "ok", "severity": "normal",
        "event_time": 1}).encode())
    assert event.spec.route == "event.close" and event.password == "pw-12345678"
    tok = "ab" * 32
    direct = bulk_wire.decode_item(json.dumps({"route": "APNS", "tokens": [tok, tok.upper()],
                                       "title": "t"}).encode())
    assert direct.route == "apns" and direct.tokens == (tok,)
    assert bulk_wire.is_direct_key(direct.spec.channel_id)
    assert direct.spec.channel_id == bulk_wire.direct_key("apns", (tok,))
    assert len(direct.spec.channel_id) == 26


@pytest.mark.parametrize(("raw", "code", "op_id"), [
    (b"[]", "invalid_json_data", None),
    (b'{"op_id":"k-1","title":"t"}', "invalid_json_data", "k-1"),
    (b'{"op_id":"bad id","route":"fcm","tokens":["short"],"title":"t"}',
     "invalid_provider_token", None),
    (b'{"channel_id":"x","title":"t\\u0000"}', "invalid_json_data", None),
    (b'{"type":1}', "invalid_operation_type", None),
    (b"[" * 10_000, "json_too_deep", None),
])
def test_bad_items_fail_with_a_code_and_their_op_id(raw, code, op_id):
    with pytest.raises(bulk_wire.ItemError) as info:
        bulk_wire.decode_item(raw)
    assert info.value.code == code and info.value.op_id == op_id


def test_a_direct_web_push_item_takes_subscriptions_checked_and_made_canonical():
    from pushgo.protocol import webpush as WEB

    point = WEB.b64url(WEB.public_point(WEB.private_key(b"\x01" * 32)))
    sub = {"endpoint": "https://push.example.com/p/1", "expirationTime": None,
           "keys": {"p256dh": point, "auth": WEB.b64url(b"a" * 16)}}
    item = bulk_wire.decode_item(json.dumps({"route": "webpush", "title": "t",
                                             "subscriptions": [sub, sub]}).encode())
    canonical = WEB.parse_subscription(sub).token()
    assert item.route == "webpush" and item.tokens == (canonical,)
    assert item.spec.channel_id == bulk_wire.direct_key("webpush", (canonical,))
    local = json.dumps({"route": "webpush", "title": "t", "subscriptions": [
        {**sub, "endpoint": "https://127.0.0.1:8443/p/1"}]}).encode()
    with pytest.raises(bulk_wire.ItemError) as info:
        bulk_wire.decode_item(local)
    assert info.value.code == "invalid_webpush_subscription"
    assert "position 0" in info.value.message
    assert bulk_wire.decode_item(local, allow_local=True).route == "webpush"
