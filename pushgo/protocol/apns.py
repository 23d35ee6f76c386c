"""APNs provider API: request building (pre-encoded header blocks, payload templates built once
per operation) and response interpretation (the reason table).

Pure: the JWT and time are passed in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pushgo.protocol.h2headers import encode_header, encode_headers
from pushgo.protocol.outcomes import Delivered, Kind, ProviderOutcome, Rejected, retry_after

PAYLOAD_LIMIT = 4096
PRODUCTION_HOST = "api.push.apple.com"
SANDBOX_HOST = "api.sandbox.push.apple.com"

#: reason → (usual status, what to do)
REASONS: dict[str, tuple[int, Kind]] = {
    "BadCollapseId": (400, "permanent"),
    "BadDeviceToken": (400, "dead_token"),
    "BadExpirationDate": (400, "permanent"),
    "BadMessageId": (400, "permanent"),
    "BadPriority": (400, "permanent"),
    "BadTopic": (400, "permanent"),
    "DeviceTokenNotForTopic": (400, "dead_token"),
    "DuplicateHeaders": (400, "permanent"),
    "IdleTimeout": (400, "retry"),
    "InvalidPushType": (400, "permanent"),
    "MissingDeviceToken": (400, "permanent"),
    "MissingTopic": (400, "permanent"),
    "PayloadEmpty": (400, "permanent"),
    "TopicDisallowed": (400, "permanent"),
    "BadCertificate": (403, "permanent"),
    "BadCertificateEnvironment": (403, "permanent"),
    "ExpiredProviderToken": (403, "provider_token"),
    "Forbidden": (403, "permanent"),
    "InvalidProviderToken": (403, "permanent"),
    "MissingProviderToken": (403, "permanent"),
    "UnrelatedKeyIdInToken": (403, "permanent"),
    "BadEnvironmentKeyIdInToken": (403, "permanent"),
    "BadPath": (404, "permanent"),
    "MethodNotAllowed": (405, "permanent"),
    "ExpiredToken": (410, "dead_token"),
    "Unregistered": (410, "dead_token"),
    "PayloadTooLarge": (413, "permanent"),
    "TooManyProviderTokenUpdates": (429, "retry"),
    "TooManyRequests": (429, "retry"),
    "InternalServerError": (500, "retry"),
    "ServiceUnavailable": (503, "retry"),
    "Shutdown": (503, "retry"),
}

_BY_STATUS: dict[int, Kind] = {410: "dead_token", 429: "retry", 500: "retry", 503: "retry"}

INTERRUPTION = {"critical": "critical", "high": "time-sensitive", "normal": "active",
                "low": "passive"}
SOUND: dict[str, object] = {
    "critical": {"name": "alert.caf", "critical": 1, "volume": 1.0},
    "high": "level-up.caf",
    "normal": "bubble-pop.caf",
}


def interpret(status: int, headers: dict[bytes, bytes], body: bytes) -> ProviderOutcome:
    if status == 200:
        return Delivered(headers.get(b"apns-id", b"").decode())
    reason = ""
    timestamp = None
    try:
        doc = json.loads(body) if body else {}
        if isinstance(doc, dict):
            reason = str(doc.get("reason") or "")
            ts = doc.get("timestamp")
            timestamp = int(ts) if isinstance(ts, int | float) else None
    except ValueError:
        pass
    known = REASONS.get(reason)
    kind: Kind = known[1] if known else _BY_STATUS.get(status, "retry" if status >= 500
                                                        else "permanent")
    return Rejected(reason or f"HTTP {status}", status, kind, timestamp,
                    retry_after(headers.get(b"retry-after")))


def apns_id_of(delivery_id: str) -> str:
    """A delivery id (32 hex) as the UUID APNs wants: resends of one delivery share it."""
    d = delivery_id
    return f"{d[0:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:32]}"


def _literal_name(name: bytes) -> bytes:
    """The start of a literal-without-indexing field, up to its value's length."""
    return encode_header(name, b"")[:-1]


#: A value's length prefix, for the lengths requests use (HPACK 7-bit prefix, no Huffman).
_LENGTHS = [bytes([n]) for n in range(127)]
_PATH = _literal_name(b":path")
_APNS_ID = _literal_name(b"apns-id")
_COLLAPSE_ID = _literal_name(b"apns-collapse-id")


class HeaderBuilder:
    """Header blocks for one (authority, topic, JWT): the static part encoded once per JWT;
    per request only the device token, the ids and the expiry are written, as fixed name
    prefixes plus values (the bytes ``encode_headers`` would produce)."""

    def __init__(self, authority: str, topic: str, jwt: str, push_type: str = "alert") -> None:
        self.jwt = jwt
        # Pseudo-headers first (HTTP/2 requires it), :path is the per-request one among them.
        self._pseudo = encode_headers([
            (b":method", b"POST"), (b":scheme", b"https"), (b":authority", authority.encode()),
        ])
        self._static = encode_headers([
            (b"authorization", b"bearer " + jwt.encode()), (b"apns-topic", topic.encode()),
            (b"apns-push-type", push_type.encode()),
        ])
        self._prio = {p: encode_header(b"apns-priority", p) for p in (b"10", b"5")}
        self._expiration_s: int | None = None
        self._expiration = b""

    def block(self, device_token: str, delivery_id: str, *, low_priority: bool,
              expiration_s: int | None) -> bytes:
        path = b"/3/device/" + device_token.encode()
        collapse = delivery_id.encode()
        if len(path) >= 127 or len(collapse) >= 127:  # not a real token or id: the general way
            parts = [self._pseudo, encode_header(b":path", path), self._static,
                     encode_header(b"apns-id", apns_id_of(delivery_id).encode()),
                     encode_header(b"apns-collapse-id", collapse)]
        else:
            apns_id = apns_id_of(delivery_id).encode()
            parts = [self._pseudo, _PATH, _LENGTHS[len(path)], path, self._static,
                     _APNS_ID, _LENGTHS[len(apns_id)], apns_id,
                     _COLLAPSE_ID, _LENGTHS[len(collapse)], collapse]
        parts.append(self._prio[b"5" if low_priority else b"10"])
        if expiration_s is not None:
            if expiration_s != self._expiration_s:  # one operation's jobs share their expiry
                self._expiration = encode_header(b"apns-expiration", str(expiration_s).encode())
                self._expiration_s = expiration_s
            parts.append(self._expiration)
        return b"".join(parts)


#: Between the delivery id and the device key of a payload that names its device: the tail
#: then closes the key's string (it starts with the ``"`` that closes the delivery id's).
_DEVICE_KEY_FIELD = b'","provider_device_key":"'


@dataclass(frozen=True, slots=True)
class PayloadTemplate:
    """A payload with a hole for delivery_id: ``head + delivery_id + tail`` (bytes, built once
    per operation). ``wakeup`` is set when the full payload exceeds the limit."""

    head: bytes
    tail: bytes
    wakeup: bool

    def render(self, delivery_id: str, device_key: str | None = None) -> bytes:
        """The payload for one device. A direct (not wake-up) payload also names the device
        (``provider_device_key``) so that the v1.3 apps can acknowledge it with
        ``POST /messages/ack``; it is left out when it would not fit (the app then pulls)."""
        if device_key is None or self.wakeup:
            return self.head + delivery_id.encode() + self.tail
        # Device keys are ASCII letters and digits: no JSON escaping to do (the hot path).
        key = (device_key.encode() if device_key.isascii() and device_key.isalnum()
               else json.dumps(device_key, ensure_ascii=False).encode()[1:-1])
        named = b"".join((self.head, delivery_id.encode(), _DEVICE_KEY_FIELD, key, self.tail))
        if len(named) <= PAYLOAD_LIMIT:
            return named
        return self.head + delivery_id.encode() + self.tail

    @property
    def size(self) -> int:
        return len(self.head) + 32 + len(self.tail)


def _template(aps: dict[str, object], data: dict[str, str]) -> PayloadTemplate | None:
    doc: dict[str, object] = {"aps": aps}
    doc.update({k: v for k, v in data.items() if k not in ("aps", "delivery_id")})
    rest = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    # '{"aps":…}' → '{"delivery_id":"<id>",' + '"aps":…}'
    tpl = PayloadTemplate(b'{"delivery_id":"', b'",' + rest[1:].encode(), False)
    return tpl if tpl.size <= PAYLOAD_LIMIT else None


def build_payload(data: dict[str, str], *, title: str, body: str, severity: str,
                  thread_id: str, wakeup_data: dict[str, str]) -> PayloadTemplate | None:
    """The alert payload (gateway fields flattened beside ``aps``), or its wake-up form when it
    would exceed 4096 bytes; None when even the wake-up does not fit."""
    aps: dict[str, object] = {"alert": {"title": title, "body": body}}
    sound = SOUND.get(severity)
    if sound is not None:
        aps["sound"] = sound
    aps["mutable-content"] = 1
    aps["thread-id"] = thread_id
    aps["interruption-level"] = INTERRUPTION.get(severity, "active")
    full = _template(aps, data)
    if full is not None:
        return full
    wake_aps: dict[str, object] = {
        "alert": {"title": title, "body": wakeup_data.get("body", "")},
        "mutable-content": 1, "thread-id": data.get("channel_id", ""),
    }
    wake = _template(wake_aps, wakeup_data)
    return None if wake is None else PayloadTemplate(wake.head, wake.tail, True)
