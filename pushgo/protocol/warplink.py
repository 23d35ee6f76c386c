"""warp-link frames: the private transport of the PushGo apps (over QUIC, TLS TCP and WSS).

Every frame is ``[type u8][flags u8][postcard body]``. The flags byte carries the codec in its
high nibble (1 = postcard) and the wire version in its low one; PushGo Gateway v1.2.9 speaks
wire version 2 (flags ``0x12``), earlier peers version 1 (``0x11``) with the same bodies.
A GoAway's body is its reason as raw UTF-8 text, Ping and Pong have none.

Inside a Deliver frame the payload is itself postcard: ``{payload_version u8, data map}``,
the same flat string map the SSE stream and ``/messages/pull`` carry.

Pure: bytes in, values out. A frame that cannot be read is a :class:`FrameError` value with a
stable code, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pushgo.protocol.postcard import PostcardError, Reader, Writer

CODEC_POSTCARD: Final = 1
WIRE_V1: Final = 1
WIRE_V2: Final = 2
#: Wire versions pushgo speaks, preferred first.
SUPPORTED_WIRE: Final = (WIRE_V2, WIRE_V1)
PAYLOAD_V1: Final = 1
SUPPORTED_PAYLOAD: Final = (PAYLOAD_V1,)

T_CLIENT_HELLO: Final = 1
T_SERVER_WELCOME: Final = 4
T_DELIVER: Final = 8
T_ACK: Final = 9
T_ERROR: Final = 10
T_PING: Final = 11
T_PONG: Final = 12
T_GOAWAY: Final = 13

#: Error-frame and GoAway codes pushgo sends (warp-link's spellings where it has one).
E_INVALID_FRAME: Final = "invalid_frame"
E_UNEXPECTED_FRAME: Final = "unexpected_frame"
E_AUTH_FAILED: Final = "auth_failed"
E_DEVICE_NOT_FOUND: Final = "device_not_found"
E_VERSION: Final = "version_incompatible"
E_FRAME_TOO_LARGE: Final = "frame_too_large"
E_TOO_BUSY: Final = "too_busy"
E_HELLO_TIMEOUT: Final = "hello_timeout"

ACK_STATUSES: Final = ("ok", "invalid_payload", "error")


def flags(version: int, codec: int = CODEC_POSTCARD) -> int:
    return ((codec & 0x0F) << 4) | (version & 0x0F)


@dataclass(frozen=True, slots=True)
class ClientHello:
    device_key: str
    gateway_token: str | None = None
    resume_token: str | None = None
    last_acked_seq: int | None = None
    supported_wire_versions: tuple[int, ...] = ()
    supported_payload_versions: tuple[int, ...] = ()
    perf_tier: str | None = None
    app_state: str | None = None


@dataclass(frozen=True, slots=True)
class ServerWelcome:
    session_id: str
    resume_token: str
    heartbeat_secs: int
    ping_interval_secs: int
    idle_timeout_secs: int
    max_backoff_secs: int
    max_frame_bytes: int
    negotiated_wire_version: int
    negotiated_payload_version: int
    auth_expires_at_unix_secs: int | None = None
    auth_refresh_before_secs: int = 0


@dataclass(frozen=True, slots=True)
class Deliver:
    seq: int
    delivery_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Ack:
    delivery_id: str
    status: str = "ok"
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Pong:
    pass


@dataclass(frozen=True, slots=True)
class GoAway:
    reason: str = ""


@dataclass(frozen=True, slots=True)
class FrameError:
    """A frame that cannot be read: ``code`` is what the Error frame answers."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Decoded:
    """A frame read from a peer, with the wire version its flags named."""

    frame: ClientHello | ServerWelcome | Deliver | Ack | ErrorFrame | Ping | Pong | GoAway
    version: int = WIRE_V2


Frame = ClientHello | ServerWelcome | Deliver | Ack | ErrorFrame | Ping | Pong | GoAway


def encode(frame: Frame, version: int = WIRE_V2) -> bytes:
    """One frame's bytes, flags naming ``version``."""
    ty, body = _body(frame)
    return bytes((ty, flags(version))) + body


def _body(frame: Frame) -> tuple[int, bytes]:
    w = Writer()
    match frame:
        case ClientHello():
            w.text(frame.device_key).opt_str(frame.gateway_token).opt_str(frame.resume_token)
            w.opt_u64(frame.last_acked_seq).u8_seq(list(frame.supported_wire_versions))
            w.u8_seq(list(frame.supported_payload_versions))
            w.opt_str(frame.perf_tier).opt_str(frame.app_state)
            return T_CLIENT_HELLO, w.output()
        case ServerWelcome():
            w.text(frame.session_id).text(frame.resume_token)
            for v in (frame.heartbeat_secs, frame.ping_interval_secs, frame.idle_timeout_secs,
                      frame.max_backoff_secs):
                w.varint(v, 16)
            w.opt_i64(frame.auth_expires_at_unix_secs).varint(frame.auth_refresh_before_secs, 16)
            w.varint(frame.max_frame_bytes, 32)
            w.u8(frame.negotiated_wire_version).u8(frame.negotiated_payload_version)
            return T_SERVER_WELCOME, w.output()
        case Deliver():
            w.varint(frame.seq, 64).text(frame.delivery_id).blob(frame.payload)
            return T_DELIVER, w.output()
        case Ack():
            w.opt_u64(frame.seq).text(frame.delivery_id).text(frame.status)
            return T_ACK, w.output()
        case ErrorFrame():
            w.text(frame.code).text(frame.message)
            return T_ERROR, w.output()
        case Ping():
            return T_PING, b""
        case Pong():
            return T_PONG, b""
        case GoAway():
            return T_GOAWAY, frame.reason.encode("utf-8")
    raise TypeError(f"not a frame: {frame!r}")


def decode(data: bytes) -> Decoded | FrameError:
    """A frame from its bytes (either direction), or why it cannot be read."""
    if len(data) < 2:
        return FrameError(E_INVALID_FRAME, "frame too short")
    ty, fl, body = data[0], data[1], data[2:]
    if (fl >> 4) & 0x0F != CODEC_POSTCARD:
        return FrameError(E_INVALID_FRAME, f"unsupported codec {(fl >> 4) & 0x0F}")
    version = fl & 0x0F
    if version not in SUPPORTED_WIRE:
        return FrameError(E_VERSION, f"unsupported wire version {version}")
    try:
        frame = _read(ty, body)
    except PostcardError as exc:
        return FrameError(E_INVALID_FRAME, f"malformed frame type {ty}: {exc}")
    if frame is None:
        return FrameError(E_INVALID_FRAME, f"unsupported frame type {ty}")
    return Decoded(frame, version)


def _read(ty: int, body: bytes) -> Frame | None:
    if ty == T_PING:
        return Ping()
    if ty == T_PONG:
        return Pong()
    if ty == T_GOAWAY:
        try:
            return GoAway(body.decode("utf-8").strip())
        except UnicodeDecodeError as exc:
            raise PostcardError("reason is not UTF-8") from exc
    r = Reader(body)
    frame: Frame
    if ty == T_CLIENT_HELLO:
        frame = ClientHello(r.text(), r.opt_str(), r.opt_str(), r.opt_u64(), tuple(r.u8_seq()),
                            tuple(r.u8_seq()), r.opt_str(), r.opt_str())
    elif ty == T_SERVER_WELCOME:
        frame = _read_welcome(r)
    elif ty == T_DELIVER:
        frame = Deliver(r.varint(64), r.text(), r.blob())
    elif ty == T_ACK:
        seq = r.opt_u64()
        frame = Ack(delivery_id=r.text(), status=r.text(), seq=seq)
    elif ty == T_ERROR:
        frame = ErrorFrame(r.text(), r.text())
    else:
        return None
    r.done()
    return frame


def _read_welcome(r: Reader) -> ServerWelcome:
    session_id, resume = r.text(), r.text()
    heartbeat, ping, idle, backoff = (r.varint(16) for _ in range(4))
    expires = r.opt_i64()
    refresh = r.varint(16)
    return ServerWelcome(session_id, resume, heartbeat, ping, idle, backoff,
                         max_frame_bytes=r.varint(32), negotiated_wire_version=r.u8(),
                         negotiated_payload_version=r.u8(),
                         auth_expires_at_unix_secs=expires, auth_refresh_before_secs=refresh)


def negotiate(preferred: int, client: tuple[int, ...], server: tuple[int, ...]) -> int | None:
    """The preferred version when both sides have it, else the highest common one (an empty
    client list means the preferred version, as warp-link's peers normalise it)."""
    offered = client or (preferred,)
    if preferred in offered and preferred in server:
        return preferred
    common = [v for v in offered if v in server]
    return max(common) if common else None


def encode_payload(data: dict[str, str], version: int = PAYLOAD_V1) -> bytes:
    """A Deliver frame's payload: the payload envelope around the flat string map."""
    return Writer().u8(version).str_map(data).output()


def decode_payload(payload: bytes) -> tuple[int, dict[str, str]]:
    r = Reader(payload)
    version = r.u8()
    data = r.str_map()
    r.done()
    return version, data


@dataclass(frozen=True, slots=True)
class Tuning:
    heartbeat_secs: int
    ping_interval_secs: int
    idle_timeout_secs: int
    max_backoff_secs: int


# (perf_tier, background) → intervals, as PushGo Gateway v1.2.9 resolves them; an unknown or
# missing tier is "balanced", a missing state "foreground".
_TUNING: Final = {
    ("high", False): Tuning(12, 6, 48, 8),
    ("high", True): Tuning(18, 9, 72, 10),
    ("low", False): Tuning(24, 12, 84, 16),
    ("low", True): Tuning(40, 20, 120, 24),
    ("balanced", False): Tuning(18, 9, 72, 10),
    ("balanced", True): Tuning(28, 14, 96, 14),
}


def tuning(perf_tier: str | None, app_state: str | None) -> Tuning:
    tier = (perf_tier or "balanced").strip().lower()
    if tier not in ("high", "low"):
        tier = "balanced"
    background = (app_state or "foreground").strip().lower() == "background"
    return _TUNING[(tier, background)]
