"""Unit tests of pushgo.protocol: ids, timestamps, SSE frames, field rules, payload rendering
and the op_id fingerprint. Exact values first, then hypothesis properties."""

from __future__ import annotations

import base64
import json
import math
import string
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pushgo.errors import InvalidInput
from pushgo.protocol import fields as field_rules
from pushgo.protocol import operations as OPS
from pushgo.protocol.ids import (
    encode_channel_id,
    hex_id,
    is_digits,
    is_token_id,
    parse_channel_id,
    parse_device_key,
    redact,
)
from pushgo.protocol.payload import effective_expiry, render, wakeup_data, with_delivery_id
from pushgo.protocol.sse import Event, SSEParser, encode_comment, encode_event
from pushgo.protocol.timeparse import to_epoch_ms

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
RFC4648 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
sixteen_bytes = st.binary(min_size=16, max_size=16)


def crockford_reference(raw: bytes) -> str:
    """An independent encoder: RFC 4648 base32 (MSB first, zero-padded last symbol) in
    Crockford's alphabet, without '=' padding."""
    std = base64.b32encode(raw).decode().rstrip("=")
    return std.translate(str.maketrans(RFC4648, CROCKFORD))


@contextmanager
def field_error(code: str) -> Iterator[None]:
    """The block raises a FieldError (a 400) carrying exactly this error code."""
    with pytest.raises(field_rules.FieldError) as info:
        yield
    assert (info.value.code, info.value.status) == (code, 400), info.value.message


# --- channel ids -------------------------------------------------------------------------------


def test_channel_id_encodes_known_bytes_exactly():
    assert encode_channel_id(bytes(16)) == "0" * 26
    assert encode_channel_id(b"\xff" * 16) == "Z" * 25 + "W"
    assert encode_channel_id(bytes(15) + b"\x01") == "0" * 25 + "4"
    assert encode_channel_id(bytes(range(16))) == "000G40R40M30E209185GR38E1W"


def test_channel_id_encoding_refuses_anything_but_16_bytes():
    for size in (0, 15, 17, 32):
        with pytest.raises(ValueError):
            encode_channel_id(bytes(size))


@given(sixteen_bytes)
def test_any_16_bytes_encode_to_26_crockford_symbols_matching_rfc4648_bit_order(raw):
    cid = encode_channel_id(raw)
    assert len(cid) == 26
    assert set(cid) <= set(CROCKFORD)
    assert cid == crockford_reference(raw)
    # The last symbol carries 3 bits; its low 2 bits are always zero.
    assert CROCKFORD.index(cid[-1]) & 3 == 0


@given(sixteen_bytes)
def test_an_encoded_channel_id_parses_back_to_itself(raw):
    cid = encode_channel_id(raw)
    assert parse_channel_id(cid) == cid
    assert parse_channel_id(cid.lower()) == cid
    assert parse_channel_id(f"  {cid}\t") == cid


@given(sixteen_bytes, st.data())
def test_crockford_aliases_and_lower_case_parse_to_the_canonical_id(raw, data):
    cid = encode_channel_id(raw)
    aliases = {"0": ["O", "o", "0"], "1": ["I", "i", "L", "l", "1"]}
    spelled = "".join(
        data.draw(st.sampled_from(aliases[ch])) if ch in aliases
        else data.draw(st.sampled_from([ch, ch.lower()]))
        for ch in cid
    )
    assert parse_channel_id(spelled) == cid


def test_crockford_aliases_are_read_as_digits():
    assert parse_channel_id("O" * 26) == "0" * 26
    assert parse_channel_id("o" * 25 + "4") == "0" * 25 + "4"
    assert parse_channel_id("0" * 24 + "I4") == "0" * 24 + "14"
    assert parse_channel_id("0" * 24 + "l4") == "0" * 24 + "14"


@pytest.mark.parametrize("last", [c for c in CROCKFORD if CROCKFORD.index(c) & 3])
def test_a_last_symbol_with_low_bits_set_is_not_a_canonical_channel_id(last):
    assert parse_channel_id("0" * 25 + last) is None


@given(sixteen_bytes, st.integers(1, 3))
def test_any_non_canonical_last_symbol_is_rejected(raw, low_bits):
    cid = encode_channel_id(raw)
    bad_last = CROCKFORD[CROCKFORD.index(cid[-1]) | low_bits]
    assert parse_channel_id(cid[:-1] + bad_last) is None


@pytest.mark.parametrize("text", [
    "", "0" * 25, "0" * 27, "0" * 24 + "U0", "0" * 24 + "-0", "0" * 25 + "!", "０" * 26,
    "0" * 13 + " " + "0" * 12,
])
def test_wrong_length_or_foreign_symbols_are_not_a_channel_id(text):
    assert parse_channel_id(text) is None


def test_the_channel_id_field_ignores_dashes_and_whitespace_inside():
    cid = encode_channel_id(bytes(range(16)))
    grouped = "-".join(cid[i:i + 4] for i in range(0, 26, 4)).lower()
    assert field_rules.channel_id(grouped) == cid
    assert field_rules.channel_id(f" {cid[:13]} \t {cid[13:]}\n") == cid


def test_the_channel_id_field_names_an_empty_or_bad_id():
    with field_error("channel_id_required"):
        field_rules.channel_id("  ")
    with field_error("invalid_channel_id"):
        field_rules.channel_id("not-a-channel-id")
    with field_error("invalid_channel_id"):
        field_rules.channel_id("0" * 25 + "1")


def test_hex_ids_device_keys_token_ids_and_redaction():
    assert hex_id(bytes(range(16))) == "000102030405060708090a0b0c0d0e0f"
    with pytest.raises(ValueError):
        hex_id(bytes(8))
    assert parse_device_key(" 000102030405060708090A0B0C0D0E0F ") == "000102030405060708090a0b0c0d0e0f"
    assert parse_device_key("00010203") is None
    assert is_token_id("op:1_a-B", 8)
    assert not is_token_id("op:1_a-BC", 8)
    assert not is_token_id("", 8)
    assert not is_token_id("a b", 8)
    assert redact("0123456789abcdef") == "0123…cdef"
    assert redact("short") == "…"


@pytest.mark.parametrize(("text", "digits"), [
    ("0", True), ("12345", True), ("", False), ("-1", False), ("1.5", False), (" 1", False),
    ("²", False), ("١٢", False), ("1²", False)])  # str.isdigit() takes the last three
def test_digits_are_ascii_digits_only(text, digits):
    assert is_digits(text) is digits
    if digits:
        int(text)


# --- timestamps --------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    (0, 0),
    (1_700_000_000, 1_700_000_000_000),
    (1_700_000_000_000, 1_700_000_000_000),
    (999_999_999_999 // 10, 99_999_999_999_000),
    (1_000_000_000_000, 1_000_000_000_000),
    (1.5, 1500),
    (1.001, 1001),
    (1_700_000_000.123, 1_700_000_000_123),
    (1_700_000_000_000.0, 1_700_000_000_000),
    ("1700000000", 1_700_000_000_000),
    (" 1700000000123 ", 1_700_000_000_123),
    ("1.5", 1500),
    ("1e9", 1_000_000_000_000),
    (100_000_000_000_000, 100_000_000_000_000),
])
def test_timestamps_below_1e12_are_seconds_and_above_are_milliseconds(value, expected):
    assert to_epoch_ms(value) == expected


@pytest.mark.parametrize("value", [
    True, False, None, math.nan, math.inf, -math.inf, "nan", "inf", "-inf", "", "  ", "abc",
    "0x10", "12abc", "1,5", -1, "-1700000000", 999_999_999_999, 100_000_000_000_001, [1], {},
    b"1700000000",
])
def test_booleans_non_finite_negative_absurd_and_garbage_are_not_timestamps(value):
    assert to_epoch_ms(value) is None


@given(st.integers(0, 99_999_999_999))
def test_whole_seconds_become_milliseconds_as_number_or_string(seconds):
    assert to_epoch_ms(seconds) == seconds * 1000
    assert to_epoch_ms(str(seconds)) == seconds * 1000
    assert to_epoch_ms(float(seconds)) == seconds * 1000


@given(st.integers(1_000_000_000_000, 100_000_000_000_000))
def test_milliseconds_pass_through_as_number_or_string(ms):
    assert to_epoch_ms(ms) == ms
    assert to_epoch_ms(str(ms)) == ms


@given(st.integers(0, 99_999_999_999_999))
def test_fractional_seconds_give_the_exact_millisecond(ms):
    seconds = ms / 1000
    assert to_epoch_ms(seconds) == ms
    assert to_epoch_ms(repr(seconds)) == ms


@given(st.one_of(st.none(), st.booleans(), st.floats(), st.text(), st.integers(),
                 st.lists(st.integers(), max_size=2)))
def test_any_input_gives_none_or_a_non_negative_millisecond_count(value):
    ms = to_epoch_ms(value)
    assert ms is None or (type(ms) is int and 0 <= ms <= 100_000_000_000_000)


def test_the_timestamp_field_names_a_missing_or_bad_value():
    assert field_rules.timestamp(None, "event_time") is None
    assert field_rules.timestamp(" ", "event_time") is None
    assert field_rules.timestamp("1700000000", "event_time", required=True) == 1_700_000_000_000
    with field_error("event_time_required"):
        field_rules.timestamp(None, "event_time", required=True)
    with field_error("event_time_required"):
        field_rules.timestamp("", "event_time", required=True)
    with field_error("invalid_event_time"):
        field_rules.timestamp("soon", "event_time")
    with field_error("invalid_event_time"):
        field_rules.timestamp(True, "event_time")


# --- SSE ---------------------------------------------------------------------------------------


def parse_all(stream: bytes, cuts: list[int] | None = None) -> tuple[list[Event], SSEParser]:
    parser = SSEParser()
    events: list[Event] = []
    start = 0
    for cut in [*sorted(cuts or []), len(stream)]:
        events.extend(parser.feed(stream[start:cut]))
        start = cut
    return events, parser


def test_an_sse_frame_is_encoded_exactly():
    assert encode_event(b'{"a":1}', event_id="d1") == b'id: d1\ndata: {"a":1}\n\n'
    assert encode_event(b"a\nb", event="note", retry_ms=3000) == (
        b"event: note\nretry: 3000\ndata: a\ndata: b\n\n")
    assert encode_event(b"") == b"data: \n\n"
    assert encode_event(b"line\r\n") == b"data: line\ndata: \n\n"
    assert encode_comment("keep-alive") == b": keep-alive\n\n"
    assert encode_comment() == b": \n\n"


def test_the_parser_reads_fields_and_drops_comments():
    stream = (b": hello\n\nretry: 3000\n\nid: 7\nevent: note\ndata: a\r\ndata:b\n\n"
              b"data: {\"x\": 1}\n\n")
    events, parser = parse_all(stream)
    assert events == [Event("a\nb", "note", "7", 3000), Event('{"x": 1}', "message", "7", 3000)]
    assert parser.comments == 1


def test_a_keep_alive_after_an_event_with_an_id_is_not_an_event():
    stream = encode_event(b"x", event_id="d1") + encode_comment("keep-alive") + b"retry: 5\n\n"
    events, parser = parse_all(stream)
    assert events == [Event("x", "message", "d1", None)]
    assert parser.comments == 1


def test_an_unterminated_frame_waits_for_its_blank_line():
    parser = SSEParser()
    assert list(parser.feed(b"data: par")) == []
    assert list(parser.feed(b"tial\n")) == []
    assert list(parser.feed(b"\n")) == [Event("partial")]


sse_data = st.text(st.characters(exclude_characters="\r", exclude_categories=["Cs"]),
                   max_size=60)
sse_token = st.text(st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]),
                    min_size=1, max_size=20)
sse_frames = st.lists(
    st.tuples(sse_data, st.none() | sse_token, st.none() | sse_token,
              st.none() | st.integers(0, 10**9)),
    min_size=1, max_size=8,
)


@given(sse_frames, st.lists(st.integers(0, 4000), max_size=10))
def test_encoded_events_parse_back_whatever_the_chunking(frames, cuts):
    stream = b"".join(
        encode_event(data.encode(), event_id=eid, event=name, retry_ms=retry)
        + (encode_comment("keep-alive") if i % 2 else b"")
        for i, (data, eid, name, retry) in enumerate(frames)
    )
    events, _ = parse_all(stream, [c for c in cuts if c <= len(stream)])
    expected = []
    last_id: str | None = None
    last_retry: int | None = None
    for data, eid, name, retry in frames:
        last_id = eid if eid is not None else last_id
        last_retry = retry if retry is not None else last_retry
        expected.append(Event(data, name or "message", last_id, last_retry))
    assert events == expected


# --- fields: tags, images, metadata, attrs, external ids, location, platform, token -----------


def test_tags_are_trimmed_deduplicated_in_order():
    assert field_rules.tags([" b ", "a", "b", "a "]) == ["b", "a"]
    assert field_rules.tags(None) == []
    assert field_rules.tags([]) == []


def test_tags_are_limited_to_32_entries_of_64_bytes():
    assert len(field_rules.tags([f"t{i}" for i in range(32)])) == 32
    assert field_rules.tags(["x" * 64]) == ["x" * 64]
    assert field_rules.tags(["é" * 32]) == ["é" * 32]
    with field_error("tags_format_invalid"):
        field_rules.tags([f"t{i}" for i in range(33)])
    with field_error("tags_format_invalid"):
        field_rules.tags(["x" * 65])
    with field_error("tags_format_invalid"):
        field_rules.tags(["é" * 33])
    with field_error("tags_format_invalid"):
        field_rules.tags(["ok", "  "])


def test_duplicates_count_against_the_limit_before_they_are_removed():
    with field_error("tags_format_invalid"):
        field_rules.tags(["same"] * 33)


def test_images_are_limited_to_32_urls_of_2048_bytes():
    url = "https://e.x/" + "a" * (2048 - 12)
    assert field_rules.images([url, url, " https://e.x/b "]) == [url, "https://e.x/b"]
    assert len(field_rules.images([f"https://e.x/{i}" for i in range(32)])) == 32
    with field_error("images_format_invalid"):
        field_rules.images([url + "a"])
    with field_error("images_format_invalid"):
        field_rules.images([f"https://e.x/{i}" for i in range(33)])
    with field_error("images_format_invalid"):
        field_rules.images([""])
    assert field_rules.image_url("  ", "primary_image") is None
    assert field_rules.image_url(" https://e.x/p ", "primary_image") == "https://e.x/p"
    with field_error("images_format_invalid"):
        field_rules.image_url(url + "a", "primary_image")


@given(st.lists(st.text(max_size=70), max_size=40))
def test_tag_lists_either_validate_to_unique_trimmed_entries_or_fail_with_the_tags_code(raw):
    try:
        out = field_rules.tags(raw)
    except field_rules.FieldError as exc:
        assert exc.code == "tags_format_invalid"
        return
    assert len(out) == len(set(out)) <= 32
    assert all(t == t.strip() and 0 < len(t.encode()) <= 64 for t in out)
    assert set(out) == {t.strip() for t in raw}


def test_metadata_keys_are_trimmed_and_sorted_and_scalars_kept():
    meta = {" zone ": "eu", "count": 3, "ratio": 0.5, "on": False, "k" * 64: "v" * 16384}
    assert field_rules.metadata(meta) == {"count": 3, "k" * 64: "v" * 16384, "on": False, "ratio": 0.5,
                                "zone": "eu"}
    assert list(field_rules.metadata(meta)) == sorted(field_rules.metadata(meta))
    assert field_rules.metadata(None) == {}
    assert field_rules.metadata({}) == {}


@pytest.mark.parametrize(("meta", "code"), [
    ({" ": "x"}, "metadata_key_required"),
    ({"a": 1, " a ": 2}, "metadata_key_duplicate"),
    ({"k" * 65: "x"}, "metadata_key_too_long"),
    ({"é" * 33: "x"}, "metadata_key_too_long"),
    ({"a": None}, "metadata_value_scalar_required"),
    ({"a": [1]}, "metadata_value_scalar_required"),
    ({"a": {"b": 1}}, "metadata_value_scalar_required"),
    ({"a": math.nan}, "metadata_value_scalar_required"),
    ({"a": "  "}, "metadata_value_required"),
    ({"a": "v" * 16385}, "metadata_value_too_long"),
    ({"a": "é" * 8193}, "metadata_value_too_long"),  # UTF-8 bytes count, not characters
])
def test_metadata_rules_name_the_broken_rule(meta, code):
    with field_error(code):
        field_rules.metadata(meta)


def test_metadata_from_a_query_string_is_a_json_object():
    assert field_rules.metadata_from_query(None) == {}
    assert field_rules.metadata_from_query(" ") == {}
    assert field_rules.metadata_from_query("null") == {}
    assert field_rules.metadata_from_query('{"b": 1, "a": "x"}') == {"a": "x", "b": 1}
    with field_error("metadata_object_required"):
        field_rules.metadata_from_query("[1]")
    with field_error("metadata_object_required"):
        field_rules.metadata_from_query("{not json")


def test_attrs_take_nulls_scalars_and_one_level_objects():
    raw = {" b ": None, "a": 1, "m": {"x": "y", "z": None}, "s": "text", "f": True}
    assert field_rules.attrs(raw) == {"a": 1, "b": None, "f": True, "m": {"x": "y", "z": None},
                            "s": "text"}
    assert list(field_rules.attrs(raw)) == ["a", "b", "f", "m", "s"]
    assert field_rules.attrs(None) == {}


@pytest.mark.parametrize(("raw", "code"), [
    ({" ": 1}, "extension_object_key_required"),
    ({"a": [1]}, "extension_object_arrays_unsupported"),
    ({"a": {"b": {"c": 1}}}, "extension_object_nested_object_unsupported"),
    ({"a": {"b": [1]}}, "extension_object_nested_object_unsupported"),
])
def test_attrs_rules_name_the_broken_rule(raw, code):
    with field_error(code):
        field_rules.attrs(raw)


def test_external_ids_keys_are_lowercased_and_values_trimmed_or_null():
    assert field_rules.external_ids({" SN ": " 123 ", "mac.addr": None, "k:a_b-c": "v"}) == {
        "k:a_b-c": "v", "mac.addr": None, "sn": "123"}
    assert field_rules.external_ids(None) == {}
    assert field_rules.external_ids({"k": "v" * 256}) == {"k": "v" * 256}
    assert field_rules.external_ids({"k" * 64: "v"}) == {"k" * 64: "v"}


@pytest.mark.parametrize(("raw", "code"), [
    ({" ": "v"}, "external_ids_key_invalid"),
    ({"a b": "v"}, "external_ids_key_invalid"),
    ({"a/b": "v"}, "external_ids_key_invalid"),
    ({"k" * 65: "v"}, "external_ids_key_invalid"),
    ({"k": 1}, "external_ids_value_invalid"),
    ({"k": ["v"]}, "external_ids_value_invalid"),
    ({"k": True}, "external_ids_value_invalid"),
    ({"k": "  "}, "external_ids_value_required"),
    ({"k": "v" * 257}, "external_ids_value_too_long"),
])
def test_external_ids_rules_name_the_broken_rule(raw, code):
    with field_error(code):
        field_rules.external_ids(raw)


@pytest.mark.parametrize(("ltype", "value", "expected"), [
    (None, None, None),
    ("  ", " ", None),
    ("geo", "37.7749,-122.4194", ("geo", "37.774900,-122.419400")),
    ("GEO", " 1 , 2 ", ("geo", "1.000000,2.000000")),
    ("geo", "-90,180", ("geo", "-90.000000,180.000000")),
    ("geo", "0.1234567,0", ("geo", "0.123457,0.000000")),
    ("cloud", "AWS:us-east-1", ("cloud", "aws:us-east-1")),
    ("cloud", "gcp:europe-west1:b", ("cloud", "gcp:europe-west1:b")),
    ("datacenter", "FRA1", ("datacenter", "fra1")),
    ("datacenter", "eu:fra:rack.7", ("datacenter", "eu:fra:rack.7")),
    ("logical", "Plant/Line_2/Cell-3", ("logical", "plant/line_2/cell-3")),
    ("physical", "Room 4, Floor 2", ("physical", "Room 4, Floor 2")),
    ("physical", "x" * 256, ("physical", "x" * 256)),
])
def test_locations_are_normalized_by_type(ltype, value, expected):
    assert field_rules.location(ltype, value) == expected


@pytest.mark.parametrize(("ltype", "value"), [
    ("geo", None), (None, "1,2"), ("moon", "x"),
    ("geo", "1;2"), ("geo", "a,b"), ("geo", "91,0"), ("geo", "0,-180.5"), ("geo", "nan,0"),
    ("geo", "inf,0"), ("geo", "1,2,3"),
    ("cloud", "aws"), ("cloud", "a:b:c:d"), ("cloud", "aws:us east"), ("cloud", "aws::x"),
    ("datacenter", "a:b:c:d"), ("datacenter", "dc#1"), ("datacenter", "k" * 65),
    ("logical", "a//b"), ("logical", "/".join(["p"] * 65)), ("logical", "a/b:c"),
    ("physical", "x" * 257),
])
def test_bad_locations_are_invalid_location(ltype, value):
    with field_error("invalid_location"):
        field_rules.location(ltype, value)


@pytest.mark.parametrize(("raw", "expected"), [
    ("ios", "ios"), ("iOS", "ios"), (" ipados ", "ios"), ("iPadOS", "ios"), ("macos", "macos"),
    ("watchOS", "watchos"), ("android", "android"), ("Windows", "windows"), ("win", "windows"),
])
def test_platform_aliases_resolve(raw, expected):
    assert field_rules.platform(raw) == expected


@pytest.mark.parametrize("raw", ["", "linux", "ios ipados", "tvos", "apple"])
def test_unknown_platforms_are_invalid(raw):
    with field_error("invalid_platform"):
        field_rules.platform(raw)


def test_channel_types_are_a_closed_set():
    assert [field_rules.channel_type(t) for t in (" APNS", "fcm", "Wns", "private ")] == [
        "apns", "fcm", "wns", "private"]
    with field_error("invalid_channel_type"):
        field_rules.channel_type("sms")


@pytest.mark.parametrize("plat", ["ios", "macos", "watchos"])
@pytest.mark.parametrize("token", ["ab" * 32, "AB" * 32, "0f" * 33, "a" * 256, " " + "c" * 64 + " "])
def test_apple_tokens_are_even_length_hex_of_64_to_256(plat, token):
    assert field_rules.provider_token(token, plat) == token.strip()


@pytest.mark.parametrize("plat", ["ios", "macos", "watchos"])
@pytest.mark.parametrize("token", ["a" * 62, "a" * 63, "a" * 65, "a" * 258, "g" * 64,
                                   "ab" * 31 + "a-", "a" * 32 + " " + "a" * 31])
def test_apple_tokens_off_those_rules_are_invalid(plat, token):
    with field_error("invalid_provider_token"):
        field_rules.provider_token(token, plat)


@pytest.mark.parametrize("plat", ["android", "windows"])
@pytest.mark.parametrize("token", ["x" * 16, "x" * 4096, "é" * 8, "fcm:token/with spaces ok",
                                   "é" * 2048])
def test_other_tokens_are_16_to_4096_bytes(plat, token):
    assert field_rules.provider_token(token, plat) == token


@pytest.mark.parametrize("plat", ["android", "windows"])
@pytest.mark.parametrize("token", ["x" * 15, "x" * 4097, "é" * 7, "é" * 2049, " " * 20,
                                   "  " + "x" * 15 + "  "])
def test_other_tokens_outside_16_to_4096_bytes_are_invalid(plat, token):
    with field_error("invalid_provider_token"):
        field_rules.provider_token(token, plat)


def test_simple_text_fields():
    assert field_rules.blank_to_none(None) is None
    assert field_rules.blank_to_none("  ") is None
    assert field_rules.blank_to_none(" a ") == "a"
    assert field_rules.device_key(" key ") == "key"
    with field_error("device_key_required"):
        field_rules.device_key(" ")
    with field_error("invalid_device_key"):
        field_rules.device_key("a\x00b")
    with field_error("invalid_device_key"):
        field_rules.device_key("k" * 129)
    assert field_rules.op_id(None) is None
    assert field_rules.op_id(" op:1 ") == "op:1"
    with field_error("invalid_op_id"):
        field_rules.op_id("o" * 129)
    with field_error("invalid_op_id"):
        field_rules.op_id("op 1")
    assert field_rules.channel_name(" ops ") == "ops"
    assert field_rules.channel_name("名" * 128) == "名" * 128
    for bad in (" ", "n" * 129, "a\x00b", "a\x85b", "tab\there"):
        with field_error("invalid_channel_name"):
            field_rules.channel_name(bad)
    assert field_rules.severity_lenient(" HIGH ") == "high"
    assert field_rules.severity_lenient("urgent") == "normal"
    assert field_rules.severity_lenient(None) == "normal"
    assert field_rules.severity_strict(None) is None
    assert field_rules.severity_strict("Critical") == "critical"
    with field_error("invalid_severity"):
        field_rules.severity_strict("urgent")
    assert field_rules.bounded_text(None, "status", 24) is None
    assert field_rules.bounded_text(" up ", "status", 24) == "up"
    with field_error("invalid_status"):
        field_rules.bounded_text(" ", "status", 24)
    with field_error("invalid_status"):
        field_rules.bounded_text("s" * 25, "status", 24)


def test_a_field_error_is_an_invalid_input():
    assert issubclass(field_rules.FieldError, InvalidInput)


# --- payload rendering -------------------------------------------------------------------------

CID = encode_channel_id(bytes(range(16)))
NOW = 1_700_000_000_000
DAY = 86_400_000
MID = "0123456789abcdef0123456789abcdef"


def message_req(**over: Any) -> OPS.MessageIn:
    base: dict[str, Any] = {"channel_id": CID, "password": "secret-pass", "title": "Hi"}
    return OPS.MessageIn(**{**base, **over})


def test_a_message_renders_to_the_flat_v1_payload():
    req = message_req(
        title=" Hi ", body="there", url="https://e.x/", images=["https://e.x/a.png"],
        tags=["t1", "t1", "t2"], metadata={"b": 2, "a": "x"}, severity="HIGH",
        ttl=NOW // 1000 + 3600, op_id="op-1", ciphertext="c1pher",
    )
    spec = OPS.message_spec(req)
    r = render(spec, op_id="op-1", entity_id=MID, now_ms=NOW, default_ttl_ms=DAY,
               base_url="https://gw.example/")
    assert r.data == {
        "url": "https://e.x/", "images": '["https://e.x/a.png"]', "ciphertext": "c1pher",
        "metadata": '{"a":"x","b":2}', "channel_id": CID, "schema_version": "1",
        "payload_version": "1", "op_id": "op-1", "ingested_at": str(NOW),
        "occurred_at": str(NOW), "sent_at": str(NOW), "entity_type": "message",
        "entity_id": MID, "title": "Hi", "body": "there", "severity": "high",
        "ttl": str(NOW + 3_600_000), "message_id": MID, "tags": '["t1","t2"]',
        "base_url": "https://gw.example",
    }
    assert (r.alert_title, r.alert_body) == ("Hi", "there")
    assert r.thread_id == f"message|channel={CID}"
    assert r.expires_at == NOW + 3_600_000


def test_a_minimal_message_renders_only_standard_keys_and_the_default_expiry():
    spec = OPS.message_spec(message_req(body="  ", url="", tags=[], metadata={}))
    r = render(spec, op_id="op-2", entity_id=MID, now_ms=NOW, default_ttl_ms=DAY)
    assert r.data == {
        "channel_id": CID, "schema_version": "1", "payload_version": "1", "op_id": "op-2",
        "ingested_at": str(NOW), "occurred_at": str(NOW), "sent_at": str(NOW),
        "entity_type": "message", "entity_id": MID, "title": "Hi", "severity": "normal",
        "message_id": MID,
    }
    assert (r.alert_title, r.alert_body, r.expires_at) == ("Hi", "", NOW + DAY)


def test_a_message_ttl_is_capped_at_30_days():
    spec = OPS.message_spec(message_req(ttl=NOW + 90 * DAY))
    r = render(spec, op_id="o", entity_id=MID, now_ms=NOW, default_ttl_ms=DAY)
    assert r.data["ttl"] == str(NOW + 30 * DAY)
    assert r.expires_at == NOW + 30 * DAY
    assert effective_expiry(OPS.message_spec(message_req()), NOW, 90 * DAY) == NOW + 30 * DAY


def test_an_event_create_renders_state_times_and_attrs():
    req = OPS.EventCreateIn(
        channel_id=CID, password="secret-pass", title="Disk", status="firing",
        message="disk full", severity="Critical", event_time=NOW // 1000, tags=["x"],
        attrs={"host": "db1", "gone": None}, thing_id="srv-1",
    )
    spec = OPS.event_spec(req, "create")
    r = render(spec, op_id="op-e", entity_id="evt-1", now_ms=NOW + 5, default_ttl_ms=DAY)
    assert r.data == {
        "channel_id": CID, "schema_version": "1", "payload_version": "1", "op_id": "op-e",
        "ingested_at": str(NOW + 5), "occurred_at": str(NOW), "sent_at": str(NOW + 5),
        "entity_type": "event", "entity_id": "evt-1", "body": "disk full",
        "event_id": "evt-1", "event_state": "ONGOING", "event_time": str(NOW),
        "thing_id": "srv-1", "status": "firing", "message": "disk full",
        "severity": "critical", "tags": '["x"]', "started_at": str(NOW),
        "attrs": '{"gone":null,"host":"db1"}', "title": "Disk",
    }
    assert (r.alert_title, r.alert_body) == ("Disk", "disk full")
    assert r.thread_id == f"event|channel={CID}|event=evt-1"
    assert r.expires_at == NOW + 5 + DAY


def test_an_event_close_is_closed_and_ends_at_its_event_time():
    req = OPS.EventCloseIn(channel_id=CID, event_id="evt-1", status="ok", message="fixed",
                           severity="low", event_time=NOW)
    spec = OPS.event_spec(req, "close")
    r = render(spec, op_id="op-c", entity_id="evt-1", now_ms=NOW, default_ttl_ms=DAY)
    assert r.data["event_state"] == "CLOSED"
    assert r.data["ended_at"] == str(NOW)
    assert "started_at" not in r.data
    assert r.data["title"] == "Event evt-1"
    assert r.alert_title == "Event evt-1"


def test_a_thing_update_renders_its_state_location_and_attribute_changes():
    req = OPS.ThingUpdateIn(
        channel_id=CID, password="secret-pass", thing_id="dev-7", observed_at=NOW,
        attrs={"name": "Pump", "temp": 21.5, "old": None}, external_ids={"SN": "123"},
        location_type="geo", location_value="1,2", primary_image="https://e.x/p.png",
        images=["https://e.x/p.png", "https://e.x/q.png"],
    )
    spec = OPS.thing_spec(req, "update")
    r = render(spec, op_id="op-t", entity_id="dev-7", now_ms=NOW + 1, default_ttl_ms=DAY)
    assert r.data == {
        "channel_id": CID, "schema_version": "1", "payload_version": "1", "op_id": "op-t",
        "ingested_at": str(NOW + 1), "occurred_at": str(NOW), "sent_at": str(NOW + 1),
        "entity_type": "thing", "entity_id": "dev-7", "thing_id": "dev-7",
        "attrs": '{"name":"Pump","temp":21.5}', "state": "active",
        "primary_image": "https://e.x/p.png", "images": '["https://e.x/q.png"]',
        "external_ids": '{"sn":"123"}', "location_type": "geo",
        "location_value": "1.000000,2.000000",
        "location": '{"type":"geo","value":"1.000000,2.000000"}',
        "title": "Pump", "body": "name=Pump\nold=null\ntemp=21.5",
    }
    assert (r.alert_title, r.alert_body) == ("更新: Pump", "name=Pump\nold=null\ntemp=21.5")
    assert r.thread_id == f"thing|channel={CID}|thing=dev-7"


def test_a_thing_delete_is_deleted_at_its_observed_time():
    req = OPS.ThingDeleteIn(channel_id=CID, thing_id="dev-7", observed_at=NOW)
    r = render(OPS.thing_spec(req, "delete"), op_id="o", entity_id="dev-7", now_ms=NOW,
               default_ttl_ms=DAY)
    assert (r.data["state"], r.data["deleted_at"]) == ("deleted", str(NOW))
    assert (r.alert_title, r.alert_body) == ("删除: Object dev-7", "Updated")


@given(st.dictionaries(st.text(max_size=10).filter(lambda k: k != "delivery_id"),
                       st.text(max_size=20), max_size=6),
       st.text(string.hexdigits.lower(), min_size=32, max_size=32))
def test_splicing_a_delivery_id_yields_the_map_plus_that_key(data, delivery_id):
    stored = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    spliced = with_delivery_id(stored, delivery_id)
    assert json.loads(spliced) == {**data, "delivery_id": delivery_id}


def test_a_rendered_payload_with_its_delivery_id_is_valid_json():
    spec = OPS.message_spec(message_req(body='quote " and \\ and\nnewline'))
    r = render(spec, op_id="o", entity_id=MID, now_ms=NOW, default_ttl_ms=DAY)
    spliced = with_delivery_id(r.payload_json(), "d" * 32)
    assert json.loads(spliced) == {**r.data, "delivery_id": "d" * 32}
    assert with_delivery_id("{}", "d" * 32) == '{"delivery_id":"' + "d" * 32 + '"}'


def test_the_wakeup_map_keeps_only_routing_keys_and_a_body_preview():
    spec = OPS.message_spec(message_req(body="\n first \n\n" + "x" * 300))
    r = render(spec, op_id="o", entity_id=MID, now_ms=NOW, default_ttl_ms=DAY)
    w = wakeup_data({**r.data, "delivery_id": "d" * 32})
    assert w["body"] == ("first\n" + "x" * 300)[:180]
    assert w["provider_mode"] == "wakeup"
    assert set(w) == {"title", "delivery_id", "channel_id", "entity_type", "entity_id",
                      "message_id", "op_id", "sent_at", "schema_version", "payload_version",
                      "body", "provider_mode", "provider_wakeup", "_skip_persist"}


# --- op_id fingerprint -------------------------------------------------------------------------

MESSAGE_BASE: dict[str, Any] = {
    "channel_id": CID, "password": "secret-pass", "op_id": "op-1", "title": "Hi",
    "body": "b", "thing_id": "t1", "occurred_at": NOW, "severity": "high", "ttl": NOW + DAY,
    "url": "https://e.x/", "images": ["https://e.x/i"], "ciphertext": "c", "tags": ["a"],
    "metadata": {"k": "v"},
}
MESSAGE_CHANGES: list[tuple[str, Any]] = [
    ("title", "Hello"), ("body", "c"), ("body", None), ("thing_id", "t2"), ("occurred_at", NOW + 1),
    ("severity", "low"), ("ttl", NOW + 2 * DAY), ("ttl", None), ("url", "https://e.x/2"),
    ("images", []), ("ciphertext", None), ("tags", ["a", "b"]), ("metadata", {"k": "w"}),
    ("metadata", {"k": 1}), ("metadata", None),
]
EVENT_BASE: dict[str, Any] = {
    "channel_id": CID, "password": "p", "op_id": "op-1", "event_id": "e1", "thing_id": "t1",
    "event_time": NOW, "title": "T", "description": "d", "status": "s", "message": "m",
    "severity": "high", "tags": ["a"], "images": ["https://e.x/i"], "ciphertext": "c",
    "attrs": {"a": 1}, "metadata": {"k": "v"},
}
EVENT_CHANGES: list[tuple[str, Any]] = [
    ("event_id", "e2"), ("thing_id", None), ("event_time", NOW + 1), ("title", "U"),
    ("description", None), ("status", "t"), ("message", "n"), ("severity", "low"),
    ("tags", None), ("images", []), ("ciphertext", "d"), ("attrs", {"a": None}),
    ("metadata", {}), ("ended_at", NOW + 5),
]
THING_BASE: dict[str, Any] = {
    "channel_id": CID, "password": "p", "op_id": "op-1", "thing_id": "t1", "observed_at": NOW,
    "title": "T", "description": "d", "tags": ["a"], "primary_image": "https://e.x/p",
    "images": ["https://e.x/i"], "external_ids": {"sn": "1"}, "location_type": "geo",
    "location_value": "1,2", "ciphertext": "c", "attrs": {"a": 1}, "metadata": {"k": "v"},
}
THING_CHANGES: list[tuple[str, Any]] = [
    ("thing_id", "t2"), ("observed_at", NOW + 1), ("title", None), ("description", "e"),
    ("tags", []), ("primary_image", None), ("images", ["https://e.x/j"]),
    ("external_ids", {"sn": None}), ("location_value", "1,3"), ("ciphertext", None),
    ("attrs", {"a": 2}), ("metadata", {"k": "w"}), ("deleted_at", NOW + 9),
]


def message_fp(**over: Any) -> str:
    return OPS.message_spec(OPS.MessageIn(**{**MESSAGE_BASE, **over})).fingerprint()


def event_fp(**over: Any) -> str:
    return OPS.event_spec(OPS.EventCloseIn(**{**EVENT_BASE, **over}), "close").fingerprint()


def thing_fp(**over: Any) -> str:
    return OPS.thing_spec(OPS.ThingDeleteIn(**{**THING_BASE, **over}), "delete").fingerprint()


def test_equal_requests_have_equal_fingerprints():
    assert message_fp() == message_fp()
    assert event_fp() == event_fp()
    assert thing_fp() == thing_fp()


def test_the_password_and_spelling_variants_do_not_change_a_fingerprint():
    base = message_fp()
    assert message_fp(password="another-pass") == base
    assert message_fp(title=" Hi ", severity="HIGH", tags=["a", " a"], body="b") == base
    assert message_fp(channel_id=CID.lower(), occurred_at=str(NOW)) == base
    assert message_fp(metadata={" k ": "v"}) == base
    assert message_fp(ttl=(NOW + DAY) // 1000) == base
    assert thing_fp(location_type="GEO", location_value="1.0,2.0") == thing_fp()


@pytest.mark.parametrize(("name", "value"), MESSAGE_CHANGES)
def test_a_message_fingerprint_changes_when_any_field_changes(name, value):
    assert message_fp(**{name: value}) != message_fp()


@pytest.mark.parametrize(("name", "value"), EVENT_CHANGES)
def test_an_event_fingerprint_changes_when_any_field_changes(name, value):
    assert event_fp(**{name: value}) != event_fp()


@pytest.mark.parametrize(("name", "value"), THING_CHANGES)
def test_a_thing_fingerprint_changes_when_any_field_changes(name, value):
    assert thing_fp(**{name: value}) != thing_fp()


def test_the_same_fields_on_another_route_have_another_fingerprint():
    update = OPS.event_spec(OPS.EventUpdateIn(**{**EVENT_BASE}), "update").fingerprint()
    assert update != event_fp()


message_titles = st.text(min_size=1, max_size=20).filter(lambda t: t.strip())


@given(message_titles, st.lists(st.sampled_from(["a", "b", "c"]), max_size=4),
       st.sampled_from(field_rules.SEVERITIES), st.one_of(st.none(), st.integers(0, 10**11)))
def test_fingerprints_are_a_function_of_the_validated_request(title, tags, severity, ttl):
    def fp(**over: Any) -> str:
        req = OPS.MessageIn(channel_id=CID, password="p", title=title, tags=tags,
                            severity=severity, ttl=ttl, **over)
        return OPS.message_spec(req).fingerprint()

    assert fp() == fp()
    assert fp(body="x") != fp()
    assert len(fp()) == 64
