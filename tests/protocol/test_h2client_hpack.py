"""The HTTP/2 client's response-header fast path: a header block is split into the parts that
read or change the HPACK dynamic table (decoded at once by the shared decoder) and the rest
(decoded only when someone reads ``Response.headers``). Whatever the peer's encoder does, the
client must see exactly what a full ``hpack`` decode of the same blocks gives, and its decoder
must stay in step with the peer's encoder."""

from __future__ import annotations

import hpack
import pytest
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hypothesis import given, settings
from hypothesis import strategies as st

from pushgo.protocol import h2client
from pushgo.protocol.h2client import (
    END_HEADERS,
    END_STREAM,
    HEADERS,
    H2Client,
    ProtocolError,
    Response,
    frame,
)
from pushgo.protocol.h2headers import MAX_HEADER_BLOCK, encode_headers, scan_block

HUFFMAN = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
#: A 200 exactly as nginx 1.22 sends it: :status from the static table, content-length with
#: incremental indexing (a dynamic-table insertion), apns-id as a Huffman literal not indexed.
NGINX_200 = bytes.fromhex("885c013000851d752163499a089969b71d796089969608996960899696"
                          "089969b71d79f0045f")
APNS_ID = b"12345678-1234-1234-1234-123456789012"


def open_client(n: int) -> tuple[H2Client, list[int]]:
    client = H2Client(stream_cap=10_000, initial_streams=10_000)
    sids = [client.submit(encode_headers([(b":method", b"POST"), (b":path", b"/")]))
            for _ in range(n)]
    client.data_to_send()
    return client, sids


def respond(client: H2Client, sid: int, block: bytes) -> list[h2client.Event]:
    return client.receive_data(frame(HEADERS, END_HEADERS | END_STREAM, sid, block))


def response(client: H2Client, sid: int, block: bytes) -> Response:
    """The one event a complete header block gives: a response."""
    (resp,) = respond(client, sid, block)
    assert isinstance(resp, Response), resp
    return resp


def _prefixed(value: int, prefix_bits: int, first: int) -> bytes:
    out = hpack.hpack.encode_integer(value, prefix_bits)
    out[0] |= first
    return bytes(out)


def _string(value: bytes, huffman: bool) -> bytes:
    if huffman:
        coded = HUFFMAN.encode(value)
        return _prefixed(len(coded), 7, 0x80) + coded
    return _prefixed(len(value), 7, 0x00) + value


STATIC_NAMES = {b":status": 8, b"content-length": 28, b"retry-after": 53, b"content-type": 31}


def literal_not_indexed(name: bytes, value: bytes, *, huffman: bool, never: bool,
                        by_index: bool) -> bytes:
    """A literal without indexing (nginx's choice for most headers) or never indexed."""
    first = 0x10 if never else 0x00
    index = STATIC_NAMES.get(name) if by_index else None
    if index is not None:
        return _prefixed(index, 4, first) + _string(value, huffman)
    return bytes([first]) + _string(name, huffman) + _string(value, huffman)


# --- examples -----------------------------------------------------------------------------


def test_nginx_200_decodes_only_status_and_keeps_the_decoder_in_step():
    client, (sid1, sid2) = open_client(2)
    resp = response(client, sid1, NGINX_200)
    assert resp.status == 200 and resp.body == b""
    assert resp._headers is None  # nothing but :status decoded yet
    assert resp.headers == {b"content-length": b"0", b"apns-id": APNS_ID}
    # content-length went into the dynamic table (index 62): a block that refers to it
    # decodes only if the client's decoder saw the insertion.
    resp2 = response(client, sid2, bytes([0x88, 0x80 | 62]))
    assert resp2.headers == {b"content-length": b"0"}


def test_scan_splits_nginx_block_into_stateful_and_plain_parts():
    plan = scan_block(NGINX_200)
    assert plan is not None
    spans, statuses = plan
    assert [st for _a, _b, st in spans] == [False, True, False]
    assert statuses == [(0, 200)]


@pytest.mark.parametrize("block", [
    bytes([0x3F, 0xE1, 0x1F, 0x88]),  # table size update → full decoder
    bytes([0x08, 0x83]) + HUFFMAN.encode(b"200"),  # Huffman-coded literal :status
    bytes([0x08, 0x03]) + b"2x0",  # non-numeric :status
    bytes([0x00, 0x85]) + HUFFMAN.encode(b":status") + bytes([0x83]) + HUFFMAN.encode(b"404"),
    bytes([0x88, 0x00, 0x05]) + b"ab",  # truncated
])
def test_scan_leaves_unusual_blocks_to_the_full_decoder(block):
    assert scan_block(block) is None


def test_long_blocks_take_the_full_decoder():
    block = bytes([0x88]) + literal_not_indexed(b"x-big", b"v" * 2000, huffman=False,
                                                 never=False, by_index=False)
    assert scan_block(block) is None
    client, (sid,) = open_client(1)
    resp = response(client, sid, block)
    assert resp.status == 200 and resp.headers == {b"x-big": b"v" * 2000}


def test_a_huffman_literal_status_name_is_recognised():
    block = bytes([0x00, 0x85]) + HUFFMAN.encode(b":status") + bytes([0x03]) + b"404"
    assert scan_block(block) == ([(0, len(block), False)], [(0, 404)])


def test_a_literal_status_name_overrides_like_the_full_decoder():
    # :status 200 from the static table, then a later literal ":status: 404" (raw name): the
    # last one wins, as a full decode would say.
    block = bytes([0x88, 0x00, 0x07]) + b":status" + bytes([0x03]) + b"404"
    client, (sid,) = open_client(1)
    resp = response(client, sid, block)
    assert resp.status == 404


def test_a_broken_huffman_value_in_a_plain_200_costs_only_its_headers():
    bad = bytes([0x88, 0x00, 0x01]) + b"x" + bytes([0x81, 0x00])  # value: invalid Huffman
    client, (sid,) = open_client(1)
    resp = response(client, sid, bad)
    assert resp.status == 200 and resp.headers == {}


def test_a_broken_stateful_part_ends_the_connection():
    client, (sid,) = open_client(1)
    with pytest.raises(ProtocolError):
        respond(client, sid, bytes([0x88, 0x80 | 70]))  # dynamic index that does not exist


# --- the fast path agrees with hpack ------------------------------------------------------

names = st.sampled_from([b"apns-id", b"content-length", b"retry-after", b"content-type",
                         b"x-a", b"server", b"date", b"apns-unique-id", b":status"])
values = st.binary(min_size=0, max_size=40).map(lambda b: bytes(c % 94 + 33 for c in b))
statuses = st.sampled_from([b"200", b"200", b"200", b"204", b"400", b"404", b"410", b"429",
                            b"500", b"503", b"201"])
#: how one field is encoded: by the peer's stateful encoder (incremental indexing or, for
#: sensitive ones, never indexed), or as a literal without indexing (raw or Huffman name/value)
how = st.sampled_from(["encoder", "encoder-huffman", "encoder-never", "plain", "plain-huffman",
                       "plain-index", "never-plain"])
field = st.tuples(names, values, how)
block_spec = st.tuples(statuses, how, st.lists(field, max_size=6),
                       st.sampled_from([None, None, None, 0, 256, 4096]))


def encode_block(encoder: hpack.Encoder, spec) -> bytes:
    status, status_how, fields, table_size = spec
    if table_size is not None:
        encoder.header_table_size = table_size  # the next encode starts with a size update
    out = b""
    for name, value, kind in [(b":status", status, status_how), *fields]:
        if kind.startswith("encoder"):
            header = (hpack.NeverIndexedHeaderTuple(name, value) if kind == "encoder-never"
                      else (name, value))
            out += encoder.encode([header], huffman=kind == "encoder-huffman")
        else:
            out += literal_not_indexed(name, value, huffman=kind == "plain-huffman",
                                       never=kind == "never-plain", by_index=kind == "plain-index")
    return out


def reference(decoder: hpack.Decoder, block: bytes) -> tuple[int, dict[bytes, bytes]]:
    status = -1
    headers: dict[bytes, bytes] = {}
    for name, value in decoder.decode(block, raw=True):
        if name == b":status":
            status = int(value)
        else:
            headers[bytes(name)] = bytes(value)
    return status, headers


@settings(max_examples=300, deadline=None)
@given(st.lists(block_spec, min_size=1, max_size=12))
def test_fast_path_and_full_hpack_agree(specs):
    encoder = hpack.Encoder()
    decoder = hpack.Decoder()
    decoder.max_header_list_size = MAX_HEADER_BLOCK
    client, sids = open_client(len(specs))
    for spec, sid in zip(specs, sids, strict=True):
        block = encode_block(encoder, spec)
        try:
            expected = reference(decoder, block)
        except (hpack.HPACKError, ValueError):
            with pytest.raises((ProtocolError, ValueError)):
                respond(client, sid, block)
            return  # the connection is unusable from here on, for both
        resp = response(client, sid, block)
        assert (resp.status, resp.headers) == expected


# --- request header blocks ----------------------------------------------------------------

tokens = st.one_of(st.integers(0, 2**256 - 1).map(lambda i: f"{i:064x}"),
                   st.text("0123456789abcdef", min_size=1, max_size=200))


@settings(max_examples=200, deadline=None)
@given(tokens, st.integers(0, 2**128 - 1).map(lambda i: f"{i:032x}"), st.booleans(),
       st.one_of(st.none(), st.integers(0, 2**40)), st.integers(0, 2**40))
def test_apns_header_block_is_the_plain_encoding_of_its_headers(token, did, low, exp, exp2):
    from pushgo.protocol import apns

    hb = apns.HeaderBuilder("api.push.apple.com", "com.example", "h.p.s")
    for expiration in (exp, exp2, exp):  # the cached expiry is replaced when it changes
        expected = encode_headers([
            (b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"api.push.apple.com"),
            (b":path", b"/3/device/" + token.encode()), (b"authorization", b"bearer h.p.s"),
            (b"apns-topic", b"com.example"), (b"apns-push-type", b"alert"),
            (b"apns-id", apns.apns_id_of(did).encode()), (b"apns-collapse-id", did.encode()),
            (b"apns-priority", b"5" if low else b"10"),
            *([] if expiration is None else [(b"apns-expiration", str(expiration).encode())]),
        ])
        assert hb.block(token, did, low_priority=low, expiration_s=expiration) == expected
        decoded = hpack.Decoder().decode(expected, raw=True)
        assert (b":path", b"/3/device/" + token.encode()) in list(decoded)
