"""A sans-I/O HTTP/2 client core for provider traffic (APNs, FCM).

Bytes in, events out, bytes to send: ``submit()`` queues a request and returns its stream id,
``receive_data()`` turns received bytes into events, ``data_to_send()`` hands back everything
to write in one piece. No I/O, no clock.

Why not python-hyper ``h2`` on this path: its per-request costs (outbound header validation,
HPACK encoding with Huffman of never-indexed values, an O(open streams) count per new stream)
bound it near 2k requests/s per core. Requests here are self-built and trusted, so their header
blocks are encoded once into bytes (literals, no dynamic table: nothing depends on encoder
state) and frames are written directly. Inbound header blocks are decoded with ``hpack`` since
peers do use their dynamic table. The state kept is what a client needs: stream ids, an O(1)
open-stream count, both flow-control windows, peer settings, GOAWAY.

The HPACK fast path (request literals, the response-block scan) lives in
:mod:`pushgo.protocol.h2headers`. Errors: :class:`H2ClientError` is the root;
:class:`ProtocolError` (and :class:`FlowControlError`, :class:`FrameSizeError`) carry the
HTTP/2 error code of the GOAWAY queued before they are raised; :class:`NoStreamAvailable` is a
caller's mistake (``submit()`` without checking ``available``). Imports ``hpack`` only.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from hpack import Decoder
from hpack.exceptions import HPACKError

from pushgo.protocol.h2headers import MAX_HEADER_BLOCK, Segment, decode_segments, scan_block

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

S_HEADER_TABLE_SIZE = 0x1
S_ENABLE_PUSH = 0x2
S_MAX_CONCURRENT_STREAMS = 0x3
S_INITIAL_WINDOW_SIZE = 0x4
S_MAX_FRAME_SIZE = 0x5
S_MAX_HEADER_LIST_SIZE = 0x6

NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
FLOW_CONTROL_ERROR = 0x3
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9

DEFAULT_WINDOW = 65_535
MAX_WINDOW = 2**31 - 1
MAX_STREAM_ID = 2**31 - 1
#: Our receive window: responses are small; a big window means we never throttle a peer.
RECEIVE_WINDOW = 1 << 24

_frame_header = struct.Struct(">HBBBL")  # length is 24 bits: split as 16 + 8


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _frame_header.pack(n >> 8, n & 0xFF, ftype, flags, stream_id) + payload


# --- events --------------------------------------------------------------------------------

class Response:
    """A complete response on a stream.

    ``headers`` (``:status`` excluded) may be decoded lazily: a 200 that ends its stream keeps
    the parts of its header block that need no decoder state (see :func:`scan_block`) and
    decodes them on first access, so a 200 nobody asks about costs no Huffman decoding."""

    __slots__ = ("_headers", "_segments", "body", "status", "stream_id")

    def __init__(self, stream_id: int, status: int, headers: dict[bytes, bytes] | None,
                 body: bytes = b"", *, segments: list[Segment] | None = None) -> None:
        self.stream_id = stream_id
        self.status = status
        self.body = body
        self._headers = headers
        self._segments = segments

    @property
    def headers(self) -> dict[bytes, bytes]:
        headers = self._headers
        if headers is None:
            headers = self._headers = decode_segments(self._segments or [])
            self._segments = None
        return headers

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Response):
            return NotImplemented
        return (self.stream_id, self.status, self.headers, self.body) == (
            other.stream_id, other.status, other.headers, other.body)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"Response(stream_id={self.stream_id}, status={self.status}, "
                f"headers={self.headers!r}, body={self.body!r})")


@dataclass(slots=True)
class StreamReset:
    """The peer reset the stream; REFUSED_STREAM means it was never processed."""

    stream_id: int
    error_code: int

    @property
    def refused(self) -> bool:
        return self.error_code == REFUSED_STREAM


@dataclass(slots=True)
class GoAway:
    """The peer is closing. Streams above ``last_stream_id`` were not processed (safe to resend
    elsewhere); ``unprocessed`` lists those that were open here."""

    last_stream_id: int
    error_code: int
    debug: bytes
    unprocessed: list[int]


@dataclass(slots=True)
class SettingsChanged:
    max_concurrent_streams: int


Event = Response | StreamReset | GoAway | SettingsChanged


class H2ClientError(Exception):
    """The root of this module's errors."""


class ProtocolError(H2ClientError):
    """The peer broke HTTP/2; the connection is unusable. ``error_code`` is the HTTP/2 error
    code the client's GOAWAY carried (queued in ``data_to_send()`` before this was raised)."""

    error_code = PROTOCOL_ERROR

    def __init__(self, message: str, error_code: int | None = None) -> None:
        super().__init__(message)
        if error_code is not None:
            self.error_code = error_code


class FlowControlError(ProtocolError):
    """The peer overflowed a flow-control window."""

    error_code = FLOW_CONTROL_ERROR


class FrameSizeError(ProtocolError):
    """A frame's payload has the wrong length for its type."""

    error_code = FRAME_SIZE_ERROR


class NoStreamAvailable(H2ClientError):
    """``submit()`` was called while ``available`` is 0 (the caller gates on it)."""


@dataclass(slots=True)
class _Stream:
    send_window: int
    headers: dict[bytes, bytes] | None = None
    status: int = 0
    body: bytearray = field(default_factory=bytearray)
    pending: memoryview | None = None  # request body bytes waiting for flow-control window


class H2Client:
    """Client side of one HTTP/2 connection."""

    def __init__(self, *, stream_cap: int = 1000, initial_streams: int = 1) -> None:
        self.stream_cap = stream_cap
        #: Until the peer's SETTINGS arrive we allow ``initial_streams`` (APNs admits one
        #: stream until its first success).
        self.peer_max_streams = initial_streams
        self.peer_initial_window = DEFAULT_WINDOW
        self.peer_max_frame = 16_384
        self.send_window = DEFAULT_WINDOW
        self.open_streams = 0
        self.goaway: GoAway | None = None
        self._next_id = 1
        self._streams: dict[int, _Stream] = {}
        self._blocked: dict[int, None] = {}  # ordered set of streams waiting for window
        self._decoder = Decoder()
        self._decoder.max_header_list_size = MAX_HEADER_BLOCK
        self._inbuf = bytearray()
        self._recv_unacked = 0
        self._hblock: bytearray | None = None  # a header block awaiting CONTINUATION
        self._hblock_stream = 0
        self._hblock_end_stream = False
        self._settings_seen = False
        # When in doubt use dict-dispatch (h2): one lookup per received frame.
        self._frame_dispatch: dict[int, Callable[[int, int, bytes, list[Event]], None]] = {
            DATA: self._on_data,
            HEADERS: self._on_headers,
            CONTINUATION: self._on_continuation,
            RST_STREAM: self._on_rst_stream,
            SETTINGS: self._on_settings,
            PING: self._on_ping,
            GOAWAY: self._on_goaway,
            WINDOW_UPDATE: self._on_window_update,
            PUSH_PROMISE: self._on_push_promise,
        }
        settings = struct.pack(">HLHLHL", S_ENABLE_PUSH, 0, S_INITIAL_WINDOW_SIZE,
                               RECEIVE_WINDOW, S_MAX_HEADER_LIST_SIZE, MAX_HEADER_BLOCK)
        self._out = bytearray(PREFACE)
        self._out += frame(SETTINGS, 0, 0, settings)
        self._out += frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", RECEIVE_WINDOW - DEFAULT_WINDOW))

    # -- sending -----------------------------------------------------------------------------

    @property
    def max_streams(self) -> int:
        return min(self.peer_max_streams, self.stream_cap)

    @property
    def available(self) -> int:
        """How many more requests may be submitted now."""
        if self.goaway is not None or self._next_id > MAX_STREAM_ID:
            return 0
        return max(0, self.max_streams - self.open_streams)

    def submit(self, header_block: bytes, body: bytes = b"") -> int:
        """Queue one request; ``header_block`` comes from ``encode_headers``."""
        if self.available <= 0:
            raise NoStreamAvailable("no stream available")
        sid = self._next_id
        self._next_id += 2
        stream = _Stream(self.peer_initial_window)
        self._streams[sid] = stream
        self.open_streams += 1
        out = self._out
        max_frame = self.peer_max_frame
        if len(header_block) <= max_frame:
            out += frame(HEADERS, END_HEADERS | (0 if body else END_STREAM), sid, header_block)
        else:
            out += frame(HEADERS, 0 if body else END_STREAM, sid, header_block[:max_frame])
            rest = memoryview(header_block)[max_frame:]
            while rest:
                chunk, rest = rest[:max_frame], rest[max_frame:]
                out += frame(CONTINUATION, 0 if rest else END_HEADERS, sid, bytes(chunk))
        if body:
            stream.pending = memoryview(body)
            self._send_body(sid, stream)
        return sid

    def _send_body(self, sid: int, stream: _Stream) -> None:
        data = stream.pending
        assert data is not None
        while data:
            room = min(self.send_window, stream.send_window, self.peer_max_frame)
            if room <= 0:
                stream.pending = data
                self._blocked[sid] = None
                return
            chunk, data = data[:room], data[room:]
            self.send_window -= len(chunk)
            stream.send_window -= len(chunk)
            self._out += frame(DATA, 0 if data else END_STREAM, sid, bytes(chunk))
        stream.pending = None
        self._blocked.pop(sid, None)

    def _flush_blocked(self) -> None:
        for sid in list(self._blocked):
            if self.send_window <= 0:
                return
            stream = self._streams.get(sid)
            if stream is None or stream.pending is None:
                self._blocked.pop(sid, None)
                continue
            self._send_body(sid, stream)

    def ping(self, opaque: bytes = b"pushgo!!") -> None:
        self._out += frame(PING, 0, 0, opaque[:8].ljust(8, b"\0"))

    def close(self, error_code: int = NO_ERROR) -> None:
        """Say goodbye (also how a connection error ends the connection, as h2's
        ``_terminate_connection`` does). The last stream id names the last stream the peer
        opened that we processed: a client with push disabled never has one, so it is 0."""
        self._out += frame(GOAWAY, 0, 0, struct.pack(">LL", 0, error_code))

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    # -- receiving ---------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """The events in ``data`` (a frame cut short waits for the rest). A connection error
        raises :class:`ProtocolError` after queueing GOAWAY with its code."""
        buf = self._inbuf
        buf += data
        events: list[Event] = []
        pos = 0
        end = len(buf)
        dispatch = self._frame_dispatch
        try:
            while end - pos >= 9:
                hi, lo, ftype, flags, sid = _frame_header.unpack_from(buf, pos)
                length = (hi << 8) | lo
                if end - pos - 9 < length:
                    break
                payload = bytes(buf[pos + 9 : pos + 9 + length])
                pos += 9 + length
                if self._hblock is not None and ftype != CONTINUATION:
                    raise ProtocolError("expected CONTINUATION")
                handler = dispatch.get(ftype)
                # PRIORITY and unknown frame types have no handler: ignored, as the protocol asks.
                if handler is not None:
                    handler(flags, sid & MAX_STREAM_ID, payload, events)
        except ProtocolError as exc:
            self.close(exc.error_code)
            raise
        del buf[:pos]
        if self._recv_unacked >= RECEIVE_WINDOW // 2:
            self._out += frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", self._recv_unacked))
            self._recv_unacked = 0
        return events

    def _on_data(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        self._recv_unacked += len(payload)
        if flags & PADDED:
            payload = _unpad(payload)
        stream = self._streams.get(sid)
        if stream is not None:
            stream.body += payload
            if flags & END_STREAM:
                self._finish(sid, stream, events)

    def _on_headers(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if flags & PADDED:
            payload = _unpad(payload)
        if flags & PRIORITY_FLAG:
            payload = payload[5:]
        self._hblock = bytearray(payload)
        self._hblock_stream = sid
        self._hblock_end_stream = bool(flags & END_STREAM)
        if flags & END_HEADERS:
            self._header_block_done(events)

    def _on_continuation(self, flags: int, sid: int, payload: bytes,
                         events: list[Event]) -> None:
        if self._hblock is None or sid != self._hblock_stream:
            raise ProtocolError("unexpected CONTINUATION")
        self._hblock += payload
        if len(self._hblock) > MAX_HEADER_BLOCK:
            raise ProtocolError("header block too large")
        if flags & END_HEADERS:
            self._header_block_done(events)

    def _on_rst_stream(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 4:
            raise FrameSizeError("bad RST_STREAM")
        if self._close_stream(sid):
            events.append(StreamReset(sid, struct.unpack(">L", payload)[0]))

    def _on_settings(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if flags & ACK:
            return
        self._apply_settings(payload, events)
        self._out += frame(SETTINGS, ACK, 0)

    def _on_ping(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if not flags & ACK:
            self._out += frame(PING, ACK, 0, payload)

    def _on_goaway(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if len(payload) < 8:
            raise FrameSizeError("bad GOAWAY")
        last, code = struct.unpack(">LL", payload[:8])
        last &= MAX_STREAM_ID
        unprocessed = [s for s in self._streams if s > last]
        for s in unprocessed:
            self._close_stream(s)
        self.goaway = GoAway(last, code, payload[8:], unprocessed)
        events.append(self.goaway)

    def _on_window_update(self, flags: int, sid: int, payload: bytes,
                          events: list[Event]) -> None:
        if len(payload) != 4:
            raise FrameSizeError("bad WINDOW_UPDATE")
        (inc,) = struct.unpack(">L", payload)
        inc &= MAX_WINDOW
        if sid == 0:
            self.send_window += inc
            if self.send_window > MAX_WINDOW:
                raise FlowControlError("connection window overflow")
        else:
            stream = self._streams.get(sid)
            if stream is None:
                return
            stream.send_window += inc
        if self._blocked:
            self._flush_blocked()

    def _on_push_promise(self, flags: int, sid: int, payload: bytes,
                         events: list[Event]) -> None:
        raise ProtocolError("push is disabled")

    def _header_block_done(self, events: list[Event]) -> None:
        block_buf, sid, end_stream = self._hblock, self._hblock_stream, self._hblock_end_stream
        self._hblock = None
        assert block_buf is not None
        block = bytes(block_buf)
        plan = scan_block(block)
        segments: list[Segment] = []
        status = -1
        if plan is None:
            for name, value in self._decode(block):
                if name == b":status":
                    status = int(value)
                segments.append((name, value))
        else:
            # Only what reads or changes the dynamic table goes through the shared decoder
            # (in order, so its state stays the peer encoder's); the rest waits, undecoded.
            spans, statuses = plan
            stateful = [block[a:b] for a, b, st in spans if st]
            decoded = iter(self._decode(b"".join(stateful)) if stateful else ())
            codes = dict(statuses)
            run_start = -1
            for i, (a, _end, st) in enumerate(spans):
                if st:
                    if run_start >= 0:
                        segments.append(block[run_start:a])
                        run_start = -1
                    name, value = next(decoded)
                    if name == b":status":
                        status = int(value)
                    segments.append((name, value))
                else:
                    if run_start < 0:
                        run_start = a
                    code = codes.get(i)
                    if code is not None:
                        status = code
            if run_start >= 0:
                segments.append(block[run_start:])
        stream = self._streams.get(sid)
        if stream is None:
            return  # a stream we already gave up on; the decoder state is kept in step
        if status == -1:
            status = stream.status
        if end_stream and status == 200 and stream.headers is None:
            # The steady state (an APNs 200): nothing but :status is decoded now.
            self._close_stream(sid)
            events.append(Response(sid, 200, None, bytes(stream.body), segments=segments))
            return
        headers: dict[bytes, bytes] = stream.headers if stream.headers is not None else {}
        headers.update(decode_segments(segments))
        if 100 <= status < 200 and not end_stream:
            return  # informational: the real response follows
        stream.status = status
        stream.headers = headers
        if end_stream:
            self._finish(sid, stream, events)

    def _decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        try:
            return [(bytes(n), bytes(v)) for n, v in self._decoder.decode(block, raw=True)]
        except HPACKError as exc:
            raise ProtocolError(f"HPACK: {exc}", COMPRESSION_ERROR) from None

    def _finish(self, sid: int, stream: _Stream, events: list[Event]) -> None:
        self._close_stream(sid)
        events.append(Response(sid, stream.status, stream.headers or {}, bytes(stream.body)))

    def _close_stream(self, sid: int) -> bool:
        if self._streams.pop(sid, None) is None:
            return False
        self.open_streams -= 1
        self._blocked.pop(sid, None)
        return True

    def _apply_settings(self, payload: bytes, events: list[Event]) -> None:
        if len(payload) % 6:
            raise FrameSizeError("bad SETTINGS length")
        max_streams = None
        for off in range(0, len(payload), 6):
            ident, value = struct.unpack_from(">HL", payload, off)
            if ident == S_MAX_CONCURRENT_STREAMS:
                max_streams = value
            elif ident == S_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise FlowControlError("initial window too large")
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self._streams.values():
                    stream.send_window += delta
            elif ident == S_MAX_FRAME_SIZE:
                if not 16_384 <= value <= 16_777_215:
                    raise ProtocolError("bad MAX_FRAME_SIZE")
                self.peer_max_frame = value
        if max_streams is None and not self._settings_seen:
            # The peer's first SETTINGS without a limit means no limit.
            max_streams = MAX_STREAM_ID
        self._settings_seen = True
        if max_streams is not None:
            self.peer_max_streams = max_streams
            events.append(SettingsChanged(max_streams))
        if self._blocked:
            self._flush_blocked()


def _unpad(payload: bytes) -> bytes:
    if not payload:
        raise ProtocolError("bad padding")
    pad = payload[0]
    if pad >= len(payload):
        raise ProtocolError("bad padding")
    return payload[1 : len(payload) - pad]
