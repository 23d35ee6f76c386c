"""HPACK for the provider client's fast path: request header blocks encoded as plain literals
(no dynamic table, no Huffman: nothing depends on encoder state, so a block is built once and
reused as bytes), and a scan of response header blocks that decodes only what must be decoded
now.

Why apart from ``h2client``: these are pure functions of bytes with no connection state (the
one shared decoder stays in :class:`pushgo.protocol.h2client.H2Client`), and the request
builders (``apns``, ``fcm``) need the encoder without the connection. Imports ``hpack`` only.
"""

from __future__ import annotations

from hpack import Decoder
from hpack.exceptions import HPACKError

#: The largest header list we accept (also what we advertise as SETTINGS_MAX_HEADER_LIST_SIZE).
MAX_HEADER_BLOCK = 64 * 1024

# --- HPACK encoding: literals only (no dynamic table), no Huffman ---------------------------

def _hpack_int(value: int, prefix_bits: int, first_byte: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte | value])
    out = bytearray([first_byte | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _hpack_str(value: bytes) -> bytes:
    return _hpack_int(len(value), 7, 0x00) + value


#: HPACK static table entries we use by index.
_STATIC_FULL = {(b":method", b"POST"): 3, (b":method", b"GET"): 2, (b":scheme", b"https"): 7,
                (b":scheme", b"http"): 6, (b":path", b"/"): 4}
_STATIC_NAME = {b":authority": 1, b":path": 4, b"authorization": 23, b"content-type": 31,
                b"content-length": 28, b"user-agent": 58, b"accept": 19}
#: Sensitive headers go as "never indexed" so no intermediary stores them.
_SENSITIVE = {b"authorization"}


def encode_header(name: bytes, value: bytes) -> bytes:
    """One header field as a self-contained HPACK representation."""
    full = _STATIC_FULL.get((name, value))
    if full is not None:
        return bytes([0x80 | full])
    first = 0x10 if name in _SENSITIVE else 0x00  # never-indexed vs without-indexing
    index = _STATIC_NAME.get(name)
    if index is not None:
        return _hpack_int(index, 4, first) + _hpack_str(value)
    return bytes([first]) + _hpack_str(name) + _hpack_str(value)


def encode_headers(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(encode_header(n, v) for n, v in headers)



# --- HPACK decoding fast path ----------------------------------------------------------------

#: Static-table indices whose entry is ``:status`` (RFC 7541 Appendix A) and their values.
_STATIC_STATUS = {8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500}
_STATIC_ENTRIES = 61
#: ``:status`` Huffman-coded (RFC 7541 Appendix B): a string decodes to ``:status`` only if
#: it is these bytes.
_HUFFMAN_STATUS = b"\xb8\x84\x8d6\xa3"
#: Blocks longer than this always take the full decoder (it also enforces the header list
#: size limit, which a scan that skips Huffman strings cannot measure).
SCAN_LIMIT = 1024


def _int_at(block: bytes | bytearray, pos: int, prefix_bits: int) -> tuple[int, int]:
    """An HPACK integer at ``pos`` → (value, next position); (-1, pos) when truncated."""
    limit = (1 << prefix_bits) - 1
    value = block[pos] & limit
    pos += 1
    if value < limit:
        return value, pos
    shift = 0
    end = len(block)
    while pos < end:
        b = block[pos]
        pos += 1
        value += (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos
        if shift > 28:
            break
    return -1, pos


#: A decoded block in order: runs of representations that need no decoder state (kept as
#: bytes, decoded on demand by a fresh decoder) and fields the shared decoder produced.
Segment = bytes | tuple[bytes, bytes]


def scan_block(block: bytes) -> tuple[list[tuple[int, int, bool]], list[tuple[int, int]]] | None:
    """Split a header block into representations without decoding any string.

    Returns ``(spans, statuses)``: ``spans`` are ``(start, end, stateful)`` — stateful when the
    representation reads or changes the dynamic table (an index above the static table, or a
    literal with incremental indexing), which only the shared decoder can decode; ``statuses``
    are ``(span number, code)`` for each ``:status`` given by the static table or as a plain
    literal. None when the block must take the full decoder: a table size update, a
    Huffman-coded or non-numeric literal ``:status``, anything malformed, or a block longer
    than ``SCAN_LIMIT`` (so the header list size limit cannot be passed unseen: a 1 KiB block
    decodes to well under 64 KiB)."""
    end = len(block)
    if end > SCAN_LIMIT:
        return None
    pos = 0
    spans: list[tuple[int, int, bool]] = []
    statuses: list[tuple[int, int]] = []
    while pos < end:
        start = pos
        b = block[pos]
        if b & 0x80:  # indexed field
            index, pos = _int_at(block, pos, 7)
            if index <= 0:
                return None
            if index > _STATIC_ENTRIES:
                spans.append((start, pos, True))
                continue
            code = _STATIC_STATUS.get(index)
            if code is not None:
                statuses.append((len(spans), code))
            spans.append((start, pos, False))
            continue
        if b & 0xE0 == 0x20:  # dynamic table size update
            return None
        incremental = b & 0xC0 == 0x40
        index, pos = _int_at(block, pos, 6 if incremental else 4)
        if index < 0:
            return None
        stateful = incremental or index > _STATIC_ENTRIES
        status_name = index in _STATIC_STATUS
        if index == 0:  # literal name
            if pos >= end:
                return None
            name_huffman = block[pos] & 0x80
            length, pos = _int_at(block, pos, 7)
            if length < 0 or pos + length > end:
                return None
            if block[pos:pos + length] == (_HUFFMAN_STATUS if name_huffman else b":status"):
                status_name = True
            pos += length
        if pos >= end:
            return None
        huffman = block[pos] & 0x80
        length, pos = _int_at(block, pos, 7)
        if length < 0 or pos + length > end:
            return None
        if status_name and not stateful:
            digits = block[pos:pos + length]
            if huffman or length != 3 or not digits.isdigit():
                return None
            statuses.append((len(spans), int(digits)))
        pos += length
        spans.append((start, pos, stateful))
    return spans, statuses


def decode_segments(segments: list[Segment]) -> dict[bytes, bytes]:
    """The regular headers of a scanned block (``:status`` left out; a repeated name keeps its
    last value). Stateless runs are decoded by a fresh decoder; one that does not decode (a
    peer's broken Huffman string in an otherwise plain response) contributes no headers."""
    headers: dict[bytes, bytes] = {}
    for seg in segments:
        if isinstance(seg, tuple):
            if seg[0] != b":status":
                headers[seg[0]] = seg[1]
            continue
        decoder = Decoder()
        decoder.max_header_list_size = MAX_HEADER_BLOCK
        try:
            fields = decoder.decode(seg, raw=True)
        except HPACKError:
            continue
        for name, value in fields:
            if name != b":status":
                headers[bytes(name)] = bytes(value)
    return headers

