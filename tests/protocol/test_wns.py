"""pushgo.protocol.wns: the raw notification's binary map (exact bytes, round trips), the
headers and the severity mapping, the 5 KB limit with the wake-up map, channel URIs and the
answer table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pushgo.protocol import wns as W
from pushgo.protocol.outcomes import Delivered, Rejected
from pushgo.protocol.payload import wakeup_data
from pushgo.testing.mock_wns import read_map


def test_the_map_is_a_count_then_length_prefixed_keys_and_values():
    assert W.encode_map({}) == b"\x00"
    assert W.encode_map({"a": "bc"}) == b"\x01\x01a\x02bc"
    # Lengths are UTF-8 byte counts as LEB128 varints: 200 bytes → 0xC8 0x01.
    long = "x" * 200
    assert W.encode_map({"k": long}) == b"\x01\x01k\xc8\x01" + long.encode()
    assert W.encode_map({"t": "é"}) == b"\x01\x01t\x02\xc3\xa9"


@given(st.dictionaries(st.text(max_size=40), st.text(max_size=300), max_size=20))
def test_any_map_reads_back_the_same_here_and_in_the_mock(data):
    body = W.encode_map(data)
    assert W.decode_map(body) == data
    assert read_map(body) == data


@pytest.mark.parametrize("body", [b"", b"\x01", b"\x01\x05ab", b"\x00\x00", b"\x01\x01a\x01\xff",
                                  b"\xff" * 11])
def test_a_malformed_map_is_refused(body):
    with pytest.raises(W.MapError):
        W.decode_map(body)


def test_the_template_puts_delivery_id_first_and_keeps_the_rest():
    data = {"title": "Disk", "body": "/var at 91%", "delivery_id": "stale"}
    template = W.PayloadTemplate.build(data, W.priority("high"))
    body = template.render("d1")
    assert body.startswith(b"\x03\x0bdelivery_id\x02d1")
    assert W.decode_map(body) == {"delivery_id": "d1", "title": "Disk", "body": "/var at 91%"}
    assert template.priority == 1 and not template.wakeup


@pytest.mark.parametrize(("severity", "priority"), [
    ("critical", 1), ("high", 1), ("HIGH", 1), ("normal", 2), ("low", 3), ("other", 2)])
def test_severity_maps_to_x_wns_priority(severity, priority):
    assert W.priority(severity) == priority


def test_headers_of_a_raw_notification():
    assert W.headers("tok", 3, 86400) == {
        "authorization": "Bearer tok", "content-type": "application/octet-stream",
        "x-wns-type": "wns/raw", "x-wns-priority": "3", "x-wns-ttl": "86400"}
    assert W.headers("tok", 2, 0)["x-wns-ttl"] == "1"
    assert "x-wns-ttl" not in W.headers("tok", 2, None)


def test_a_full_map_under_5kb_goes_as_is_else_the_wakeup_map():
    small = {"title": "t", "body": "b"}
    full = W.PayloadTemplate.build(small, 2)
    wake = W.PayloadTemplate.build(wakeup_data(small), 1, wakeup=True)
    body, used = W.choose(full, wake, "d") or (b"", None)
    assert used is full and W.decode_map(body)["body"] == "b"

    # 5120 bytes is one too many; 5119 fits.
    overhead = len(W.PayloadTemplate.build({"body": ""}, 2).render("d"))
    for size, fits in ((5119, True), (5120, False)):
        n = size - overhead - 1  # one more byte of varint once the value passes 127 bytes
        template = W.PayloadTemplate.build({"body": "x" * n}, 2)
        assert len(template.render("d")) == size
        assert W.fits(template.render("d")) is fits

    big = {"title": "Disk", "body": "x" * 6000, "message_id": "m1"}
    full = W.PayloadTemplate.build(big, 2)
    wake = W.PayloadTemplate.build(wakeup_data(big), 1, wakeup=True)
    body, used = W.choose(full, wake, "d") or (b"", None)
    got = W.decode_map(body)
    assert used is wake and len(body) < W.PAYLOAD_LIMIT
    assert got["provider_wakeup"] == "1" and got["message_id"] == "m1"
    assert got["delivery_id"] == "d" and len(got["body"]) <= 180
    assert W.choose(full, None, "d") is None


@pytest.mark.parametrize(("uri", "target"), [
    ("https://db5p.notify.windows.com/?token=AwYAAAB%2bQ%3d%3d",
     "https://db5p.notify.windows.com/?token=AwYAAAB%2bQ%3d%3d"),
    ("https://wns2-by3p.notify.windows.com/w/?token=abc", "https://wns2-by3p.notify.windows.com/w/?token=abc"),
    (" https://notify.windows.com/x ", "https://notify.windows.com/x"),
])
def test_a_channel_uri_on_notify_windows_com_is_its_own_target(uri, target):
    assert W.channel_target(uri) == target


@pytest.mark.parametrize("uri", [
    "http://db5p.notify.windows.com/?token=a",  # not TLS
    "https://notify.windows.com.evil.example/?token=a",
    "https://evilnotify.windows.com/?token=a",
    "https://127.0.0.1:8443/?token=a",
    "https://user@db5p.notify.windows.com/?token=a",
    "https://db5p.notify.windows.com:99999/",
    "not a url",
    "",
])
def test_any_other_uri_is_never_a_target(uri):
    assert W.channel_target(uri) is None
    assert W.channel_target(uri, "https://127.0.0.1:9999") is None


def test_an_endpoint_override_keeps_the_path_and_query():
    uri = "https://db5p.notify.windows.com/w/?token=AwYA%2b"
    assert W.channel_target(uri, "https://127.0.0.1:9999/") == "https://127.0.0.1:9999/w/?token=AwYA%2b"


@pytest.mark.parametrize(("status", "reason", "kind"), [
    (410, "ChannelExpired", "dead_token"),
    (404, "ChannelNotFound", "dead_token"),
    (406, "Throttled", "retry"),
    (429, "TooManyRequests", "retry"),
    (500, "InternalServerError", "retry"),
    (503, "ServiceUnavailable", "retry"),
    (504, "HTTP 504", "retry"),
    (401, "Unauthorized", "provider_token"),
    (403, "Forbidden", "provider_token"),
    (413, "PayloadTooLarge", "permanent"),
    (400, "BadRequest", "permanent"),
    (418, "HTTP 418", "permanent"),
])
def test_the_answer_table(status, reason, kind):
    outcome = W.interpret(status, {b"retry-after": b"7"})
    assert outcome == Rejected(reason, status, kind, None, 7.0)


def test_200_is_delivered_with_the_message_id():
    assert W.interpret(200, {b"x-wns-msg-id": b"1A2B"}) == Delivered("1A2B")
    assert W.interpret(200, {}) == Delivered("")


def test_the_token_scope_follows_the_token_endpoint():
    assert W.scope_for(W.LOGIN_URL) == "notify.windows.com"
    assert W.scope_for("https://login.microsoftonline.com/tenant/oauth2/v2.0/token") == \
        "https://wns.notify.windows.com/.default"
