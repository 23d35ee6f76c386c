"""The sans-I/O HTTP/2 client: exact bytes where we produce them, and interop with
python-hyper h2 as the server for everything a provider may send."""

from __future__ import annotations

import struct
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pushgo.protocol import h2client
from pushgo.protocol.h2client import (
    FlowControlError,
    FrameSizeError,
    GoAway,
    H2Client,
    H2ClientError,
    NoStreamAvailable,
    ProtocolError,
    Response,
    SettingsChanged,
    StreamReset,
)
from pushgo.protocol.h2headers import MAX_HEADER_BLOCK, encode_header, encode_headers

REQ = [(b":method", b"POST"), (b":scheme", b"https"), (b":path", b"/3/device/ab"),
       (b":authority", b"api.push.apple.com"), (b"authorization", b"bearer abc.def"),
       (b"apns-topic", b"com.example")]


class Server:
    """python-hyper h2 as the provider, driven in memory."""

    def __init__(self, max_streams: int | None = 1000, window: int | None = None) -> None:
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.conn.initiate_connection()
        upd: dict[h2.settings.SettingCodes | int, int] = {}
        if max_streams is not None:
            upd[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = max_streams
        if window is not None:
            upd[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = window
        if upd:
            self.conn.update_settings(upd)
        self.requests: dict[int, dict[str, Any]] = {}
        self.ended: list[int] = []

    def feed(self, data: bytes) -> None:
        for ev in self.conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                self.requests[ev.stream_id] = {"headers": ev.headers, "body": b""}
            elif isinstance(ev, h2.events.DataReceived):
                self.requests[ev.stream_id]["body"] += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.ended.append(ev.stream_id)

    def out(self) -> bytes:
        return self.conn.data_to_send()


def exchange(client: H2Client, server: Server, rounds: int = 4) -> list[h2client.Event]:
    events: list[h2client.Event] = []
    for _ in range(rounds):
        data = client.data_to_send()
        if data:
            server.feed(data)
        back = server.out()
        if back:
            events += client.receive_data(back)
    return events


def test_the_connection_opens_with_the_preface_our_settings_and_a_big_receive_window():
    out = H2Client().data_to_send()
    assert out.startswith(h2client.PREFACE)
    rest = out[len(h2client.PREFACE):]
    settings_frame = h2client.frame(h2client.SETTINGS, 0, 0, struct.pack(
        ">HLHLHL", h2client.S_ENABLE_PUSH, 0, h2client.S_INITIAL_WINDOW_SIZE, h2client.RECEIVE_WINDOW,
        h2client.S_MAX_HEADER_LIST_SIZE, MAX_HEADER_BLOCK))
    update = h2client.frame(h2client.WINDOW_UPDATE, 0, 0,
                     struct.pack(">L", h2client.RECEIVE_WINDOW - h2client.DEFAULT_WINDOW))
    assert rest == settings_frame + update


def test_header_fields_encode_as_exact_hpack_literals():
    assert encode_header(b":method", b"POST") == b"\x83"
    assert encode_header(b":scheme", b"https") == b"\x87"
    assert encode_header(b":path", b"/x") == b"\x04\x02/x"
    assert encode_header(b"authorization", b"t") == b"\x1f\x08\x01t"  # never indexed, idx 23
    assert encode_header(b"apns-topic", b"a") == b"\x00\x0aapns-topic\x01a"
    long = b"v" * 200
    assert encode_header(b"x", long)[:5] == b"\x00\x01x\x7f\x49"  # 200 = 127 + 73


@given(st.lists(st.tuples(st.binary(min_size=1, max_size=40).map(lambda b: b.lower()),
                          st.binary(max_size=300)), max_size=12))
def test_any_header_list_decodes_back_with_a_standard_hpack_decoder(fields):
    block = encode_headers(fields)
    assert hpack.Decoder().decode(block, raw=True) == fields


def test_a_request_is_one_headers_frame_and_one_data_frame_with_end_stream():
    client = H2Client(initial_streams=10)
    client.data_to_send()
    block = encode_headers(REQ)
    sid = client.submit(block, b"{}")
    assert sid == 1
    assert client.data_to_send() == (h2client.frame(h2client.HEADERS, h2client.END_HEADERS, 1, block)
                                     + h2client.frame(h2client.DATA, h2client.END_STREAM, 1, b"{}"))
    assert client.submit(block) == 3
    assert client.data_to_send() == h2client.frame(
        h2client.HEADERS, h2client.END_HEADERS | h2client.END_STREAM, 3, block)


def test_h2_server_receives_the_request_and_the_client_gets_a_headers_only_200():
    client, server = H2Client(), Server()
    exchange(client, server)
    sid = client.submit(encode_headers(REQ), b'{"aps":{}}')
    exchange(client, server)
    assert server.requests[sid]["body"] == b'{"aps":{}}'
    assert dict(server.requests[sid]["headers"])[b":path"] == b"/3/device/ab"
    server.conn.send_headers(sid, [(":status", "200"), ("apns-id", "X")], end_stream=True)
    events = exchange(client, server)
    assert events == [Response(sid, 200, {b"apns-id": b"X"}, b"")]
    assert client.open_streams == 0


def test_an_error_body_arrives_with_its_status():
    client, server = H2Client(), Server()
    exchange(client, server)
    sid = client.submit(encode_headers(REQ), b"{}")
    exchange(client, server)
    server.conn.send_headers(sid, [(":status", "410")])
    server.conn.send_data(sid, b'{"reason":"Unregistered"}', end_stream=True)
    assert exchange(client, server) == [Response(sid, 410, {}, b'{"reason":"Unregistered"}')]


def test_the_stream_gate_follows_the_peer_max_concurrent_streams():
    client, server = H2Client(initial_streams=1), Server(max_streams=1)
    assert client.available == 1
    events = exchange(client, server)
    assert SettingsChanged(1) in events
    client.submit(encode_headers(REQ))
    assert client.available == 0
    with pytest.raises(NoStreamAvailable):
        client.submit(encode_headers(REQ))
    server.conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 500})
    assert SettingsChanged(500) in exchange(client, server)
    assert client.available == 499
    client.stream_cap = 100
    assert client.available == 99


def test_refused_stream_is_reported_as_refused():
    client, server = H2Client(), Server()
    exchange(client, server)
    sid = client.submit(encode_headers(REQ))
    exchange(client, server)
    server.conn.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
    events = exchange(client, server)
    assert events == [StreamReset(sid, h2client.REFUSED_STREAM)]
    assert isinstance(events[0], StreamReset)
    assert events[0].refused and client.open_streams == 0


def test_goaway_lists_the_streams_the_peer_did_not_process():
    client, server = H2Client(initial_streams=10), Server(max_streams=10)
    exchange(client, server)
    sids = [client.submit(encode_headers(REQ)) for _ in range(4)]
    exchange(client, server)
    server.conn.close_connection(last_stream_id=sids[1], additional_data=b"bye")
    events = exchange(client, server)
    goaway = next(e for e in events if isinstance(e, GoAway))
    assert goaway.last_stream_id == sids[1]
    assert goaway.unprocessed == sids[2:]
    assert goaway.debug == b"bye"
    assert client.available == 0


def test_a_body_larger_than_the_peer_window_waits_for_window_updates():
    client, server = H2Client(), Server(window=100)
    exchange(client, server)
    body = bytes(range(256)) * 2
    sid = client.submit(encode_headers(REQ), body)
    for _ in range(10):
        exchange(client, server)
    assert server.requests[sid]["body"] == body
    assert sid in server.ended


def test_large_header_blocks_are_split_into_continuation_frames():
    client, server = H2Client(), Server()
    exchange(client, server)
    headers = [*REQ, (b"x-big", b"v" * 40_000)]
    sid = client.submit(encode_headers(headers), b"{}")
    exchange(client, server)
    assert dict(server.requests[sid]["headers"])[b"x-big"] == b"v" * 40_000


def test_pings_are_acknowledged_with_the_same_payload():
    client, server = H2Client(), Server()
    exchange(client, server)
    server.conn.ping(b"12345678")
    client.receive_data(server.out())
    assert h2client.frame(h2client.PING, h2client.ACK, 0, b"12345678") in client.data_to_send()


def test_server_push_is_a_protocol_error():
    client = H2Client()
    with pytest.raises(ProtocolError):
        client.receive_data(h2client.frame(h2client.PUSH_PROMISE, h2client.END_HEADERS, 1, b"\0\0\0\2"))


def test_submit_without_a_free_stream_raises_no_stream_available_and_queues_nothing():
    client = H2Client(initial_streams=1)
    client.data_to_send()
    block = encode_headers(REQ)
    client.submit(block)
    sent = client.data_to_send()
    with pytest.raises(NoStreamAvailable) as caught:
        client.submit(block)
    assert isinstance(caught.value, H2ClientError)
    assert not isinstance(caught.value, ProtocolError)
    assert sent == h2client.frame(h2client.HEADERS, h2client.END_HEADERS | h2client.END_STREAM, 1, block)
    assert client.data_to_send() == b"" and client.open_streams == 1


def test_protocol_errors_carry_their_http2_error_code():
    assert ProtocolError("x").error_code == h2client.PROTOCOL_ERROR
    assert ProtocolError("x", h2client.COMPRESSION_ERROR).error_code == h2client.COMPRESSION_ERROR
    assert FlowControlError("x").error_code == h2client.FLOW_CONTROL_ERROR
    assert FrameSizeError("x").error_code == h2client.FRAME_SIZE_ERROR
    assert issubclass(FlowControlError, ProtocolError)
    assert issubclass(FrameSizeError, ProtocolError)
    assert issubclass(ProtocolError, H2ClientError)
    assert issubclass(NoStreamAvailable, H2ClientError)


RUDE_FRAMES = {
    "server push": (h2client.frame(h2client.PUSH_PROMISE, h2client.END_HEADERS, 1, b"\0\0\0\2"),
                    ProtocolError, h2client.PROTOCOL_ERROR),
    "connection window overflow": (h2client.frame(h2client.WINDOW_UPDATE, 0, 0,
                                                  struct.pack(">L", h2client.MAX_WINDOW)),
                                   FlowControlError, h2client.FLOW_CONTROL_ERROR),
    "short RST_STREAM": (h2client.frame(h2client.RST_STREAM, 0, 1, b"\0\0\0"), FrameSizeError,
                         h2client.FRAME_SIZE_ERROR),
    "short GOAWAY": (h2client.frame(h2client.GOAWAY, 0, 0, b"\0\0\0\0"), FrameSizeError,
                     h2client.FRAME_SIZE_ERROR),
    "bad SETTINGS length": (h2client.frame(h2client.SETTINGS, 0, 0, b"\0\3\0"), FrameSizeError,
                            h2client.FRAME_SIZE_ERROR),
    "huge initial window": (h2client.frame(h2client.SETTINGS, 0, 0,
                                           struct.pack(">HL", h2client.S_INITIAL_WINDOW_SIZE, 2**31)),
                            FlowControlError, h2client.FLOW_CONTROL_ERROR),
    "undecodable header block": (h2client.frame(h2client.HEADERS,
                                                h2client.END_HEADERS | h2client.END_STREAM, 1, b"\x80"),
                                 ProtocolError, h2client.COMPRESSION_ERROR),
    "missing CONTINUATION": (h2client.frame(h2client.HEADERS, 0, 1, b"\x88")
                             + h2client.frame(h2client.DATA, 0, 1, b"x"),
                             ProtocolError, h2client.PROTOCOL_ERROR),
}


@pytest.mark.parametrize("rude", RUDE_FRAMES.values(), ids=list(RUDE_FRAMES))
def test_a_connection_error_queues_goaway_with_its_code_before_raising(rude):
    wire, error, code = rude
    client, server = H2Client(), Server()
    exchange(client, server)
    client.submit(encode_headers(REQ))
    server.feed(client.data_to_send())
    with pytest.raises(error) as caught:
        client.receive_data(wire)
    assert type(caught.value) is error and caught.value.error_code == code
    goaway = client.data_to_send()
    assert goaway == h2client.frame(h2client.GOAWAY, 0, 0, struct.pack(">LL", 0, code))
    terminated = [e for e in server.conn.receive_data(goaway)
                  if isinstance(e, h2.events.ConnectionTerminated)]
    assert [(t.error_code, t.last_stream_id) for t in terminated] == [(code, 0)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=50))
def test_responses_parse_the_same_however_the_bytes_are_chunked(cuts):
    client, server = H2Client(initial_streams=100), Server(max_streams=100)
    exchange(client, server)
    sids = [client.submit(encode_headers(REQ), b"{}") for _ in range(3)]
    server.feed(client.data_to_send())
    for i, sid in enumerate(sids):
        server.conn.send_headers(sid, [(":status", "200" if i != 1 else "400")])
        server.conn.send_data(sid, b'{"n":%d}' % i, end_stream=True)
    wire = server.out()
    events, pos, k = [], 0, 0
    while pos < len(wire):
        step = cuts[k % len(cuts)]
        events += client.receive_data(wire[pos:pos + step])
        pos += step
        k += 1
    responses = [e for e in events if isinstance(e, Response)]
    assert [(r.stream_id, r.status, r.body) for r in responses] == [
        (sids[0], 200, b'{"n":0}'), (sids[1], 400, b'{"n":1}'), (sids[2], 200, b'{"n":2}')]
