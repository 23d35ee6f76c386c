"""warp-link frames and their postcard bodies, byte for byte against the golden vectors of
warp-link's PushGo wire profile, and malformed input as error values."""

from __future__ import annotations

import pytest

from pushgo.protocol import warplink as W
from pushgo.protocol.postcard import PostcardError, Reader, Writer

# Test data: the golden vectors of AldenClark/warp-link,
# crates/pushgo-warp-profile/src/lib.rs (test frame_encoding_golden_vectors_stable), wire
# version 1 (flags 0x11). Version 2 frames carry the same bodies behind flags 0x12.
GOLDEN_HELLO = bytes.fromhex(
    "0111056465762d310105746f6b656e0106726573756d65012a01010101010862616c616e636564"
    "010a6261636b67726f756e64")
GOLDEN_WELCOME = bytes.fromhex("04110273310272740c06301e00008080020101")
GOLDEN_DELIVER = bytes.fromhex("08110703642d37077061796c6f6164")
GOLDEN_ACK = bytes.fromhex("0911010703642d37026f6b")

HELLO = W.ClientHello("dev-1", "token", "resume", 42, (1,), (1,), "balanced", "background")
WELCOME = W.ServerWelcome("s1", "rt", 12, 6, 48, 30, 32 * 1024, 1, 1)
DELIVER = W.Deliver(7, "d-7", b"payload")
ACK = W.Ack("d-7", "ok", 7)


@pytest.mark.parametrize(("frame", "golden"), [
    (HELLO, GOLDEN_HELLO), (WELCOME, GOLDEN_WELCOME), (DELIVER, GOLDEN_DELIVER),
    (ACK, GOLDEN_ACK)])
def test_golden_vectors_encode_and_decode(frame: W.Frame, golden: bytes) -> None:
    assert W.encode(frame, W.WIRE_V1) == golden
    decoded = W.decode(golden)
    assert isinstance(decoded, W.Decoded)
    assert decoded.frame == frame and decoded.version == W.WIRE_V1


@pytest.mark.parametrize("golden", [GOLDEN_HELLO, GOLDEN_WELCOME, GOLDEN_DELIVER, GOLDEN_ACK])
def test_wire_v2_is_the_same_body_behind_flags_0x12(golden: bytes) -> None:
    v2 = golden[:1] + b"\x12" + golden[2:]
    decoded = W.decode(v2)
    assert isinstance(decoded, W.Decoded) and decoded.version == W.WIRE_V2
    assert W.encode(decoded.frame) == v2


# Test data: the frames of the wire-version-2 revisions of the same profile (its tests
# profile_roundtrips_client_hello_and_ack and decode_server_frame_rejects_*): the bodies are
# version 1's, every frame is flagged 0x12, a hello's empty version lists stand for [2] and [1].
# Bytes written out from postcard's rules (varint lengths, 0/1 option tags), not by pushgo.
V2_HELLO = bytes.fromhex(
    "0112" "0a6465766963652d6b6579" "0105746f6b656e" "0106726573756d65" "012a" "0102" "0101"
    "010862616c616e636564" "010a666f726567726f756e64")
V2_ACK = bytes.fromhex("0912" "0107" "0a64656c69766572792d31" "0f696e76616c69645f7061796c6f6164")


def test_wire_v2_vectors_as_the_apps_send_them() -> None:
    hello = W.ClientHello("device-key", "token", "resume", 42, (2,), (1,), "balanced",
                          "foreground")
    ack = W.Ack("delivery-1", "invalid_payload", 7)
    for frame, golden in ((hello, V2_HELLO), (ack, V2_ACK)):
        assert W.encode(frame, W.WIRE_V2) == golden
        decoded = W.decode(golden)
        assert isinstance(decoded, W.Decoded) and decoded.version == W.WIRE_V2
        assert decoded.frame == frame
    # a codec other than postcard is an invalid frame, an unknown version incompatible
    assert W.decode(bytes((W.T_PING, W.flags(W.WIRE_V2, codec=0)))) == W.FrameError(
        W.E_INVALID_FRAME, "unsupported codec 0")
    bad = W.decode(bytes((W.T_PING, W.flags(9))))
    assert isinstance(bad, W.FrameError) and bad.code == W.E_VERSION


def test_control_frames() -> None:
    assert W.encode(W.Ping()) == b"\x0b\x12"
    assert W.encode(W.Pong()) == b"\x0c\x12"
    assert W.encode(W.GoAway("shutdown")) == b"\x0d\x12shutdown"
    decoded = W.decode(b"\x0d\x12 superseded ")
    assert isinstance(decoded, W.Decoded) and decoded.frame == W.GoAway("superseded")
    err = W.encode(W.ErrorFrame("auth_failed", "token invalid"))
    back = W.decode(err)
    assert isinstance(back, W.Decoded)
    assert back.frame == W.ErrorFrame("auth_failed", "token invalid")


@pytest.mark.parametrize(("data", "code"), [
    (b"", W.E_INVALID_FRAME),
    (b"\x01", W.E_INVALID_FRAME),
    (b"\x63\x12", W.E_INVALID_FRAME),                 # unknown type
    (b"\x0b\x22", W.E_INVALID_FRAME),                 # codec 2
    (b"\x0b\x19", W.E_VERSION),                       # wire version 9
    (GOLDEN_HELLO[:-3], W.E_INVALID_FRAME),           # truncated
    (GOLDEN_ACK + b"\x00", W.E_INVALID_FRAME),        # trailing bytes
    (b"\x09\x12\x02", W.E_INVALID_FRAME),             # option tag 2
    (b"\x09\x12\x01" + b"\xff" * 11, W.E_INVALID_FRAME),  # varint too long
    (b"\x09\x12\x00\x02\xff\xfe\x02ok", W.E_INVALID_FRAME),  # id not UTF-8
    (b"\x01\x12\xff\xff\xff\xff\x0f", W.E_INVALID_FRAME),    # length past the body
])
def test_malformed_frames_are_error_values(data: bytes, code: str) -> None:
    result = W.decode(data)
    assert isinstance(result, W.FrameError)
    assert result.code == code and result.message


def test_payload_envelope_round_trip() -> None:
    data = {"title": "hi", "delivery_id": "d1", "body": "élan"}
    raw = W.encode_payload(data)
    assert raw[:2] == b"\x01\x03"
    assert W.decode_payload(raw) == (1, data)


def test_postcard_varints_and_signed() -> None:
    assert Writer().varint(300).output() == b"\xac\x02"
    assert Writer().varint(32768, 32).output() == b"\x80\x80\x02"
    assert Writer().i64(-1).output() == b"\x01"
    assert Writer().i64(1).output() == b"\x02"
    assert Reader(Writer().i64(-(1 << 63)).output()).i64() == -(1 << 63)
    assert Reader(b"\xff\xff\x03").varint(16) == 0xFFFF
    with pytest.raises(PostcardError):
        Reader(b"\xff\xff\x04").varint(16)
    with pytest.raises(PostcardError):
        Writer().varint(1 << 16, 16)


def test_negotiation_prefers_v2_then_highest_common() -> None:
    assert W.negotiate(2, (), W.SUPPORTED_WIRE) == 2
    assert W.negotiate(2, (1, 2), W.SUPPORTED_WIRE) == 2
    assert W.negotiate(2, (1,), W.SUPPORTED_WIRE) == 1
    assert W.negotiate(2, (9,), W.SUPPORTED_WIRE) is None


def test_tuning_by_tier_and_state() -> None:
    assert W.tuning(None, None) == W.Tuning(18, 9, 72, 10)
    assert W.tuning("HIGH", "foreground") == W.Tuning(12, 6, 48, 8)
    assert W.tuning("low", "background") == W.Tuning(40, 20, 120, 24)
    assert W.tuning("weird", "background") == W.Tuning(28, 14, 96, 14)
