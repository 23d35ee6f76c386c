"""Web Push: a browser's push subscription as a device route.

- **Delivery (RFC 8030).** One ``POST`` to the subscription's endpoint per message, with
  ``TTL`` (seconds the push service may hold it), ``Urgency`` (very-low, low, normal, high: from
  the severity) and, for events and things, a ``Topic`` (a later message with the same topic
  replaces one not yet delivered). ``201 Created`` means the push service took it.
- **Content encoding (RFC 8188, ``aes128gcm``).** The body is a header (salt, record size,
  key id) followed by AES-128-GCM records; a key derived with HKDF-SHA-256 from the input
  keying material and the salt; each record's plaintext ends with a delimiter (2 for the last
  record, 1 for the others) and optional zero padding.
- **Message encryption (RFC 8291).** The input keying material comes from an ECDH agreement
  between a fresh P-256 key of the sender and the subscription's ``p256dh`` key, mixed with the
  subscription's 16-byte ``auth`` secret; the sender's public key is the header's key id. One
  record only, and the whole body at most 4096 bytes (what every push service must accept).
- **VAPID (RFC 8292).** ``Authorization: vapid t=<JWT>, k=<public key>``: an ES256 JWT with
  ``aud`` the endpoint's origin, ``exp`` within 24 hours and ``sub`` a ``mailto:`` or
  ``https:`` contact, signed by the gateway's P-256 key whose public point the browser was given
  as ``applicationServerKey``.

Pure: the time, the salt and the sender's ephemeral key are passed in (so RFC 8291's Appendix A
reproduces byte for byte). A subscription is stored as the route's provider token: its
canonical JSON (``{"endpoint": …, "keys": {"auth": …, "p256dh": …}}``, what a browser's
``PushSubscription.toJSON()`` gives, keys sorted, base64url without padding).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pushgo.protocol.outcomes import Delivered, Kind, ProviderOutcome, Rejected, retry_after

#: What every push service accepts (RFC 8030 §7.2): the whole encrypted body, header included.
MAX_BODY = 4096
#: The default (and only) record size the gateway writes.
RECORD_SIZE = 4096
SALT_LEN = 16
KEY_LEN = 16
NONCE_LEN = 12
TAG_LEN = 16
AUTH_LEN = 16
POINT_LEN = 65  # an uncompressed P-256 point: 0x04 || X || Y
#: The header of an RFC 8291 body: salt, record size, key id length, the sender's public key.
HEADER_LEN = SALT_LEN + 4 + 1 + POINT_LEN
#: The most plaintext one body carries: the header, the record's tag and its delimiter aside.
MAX_PLAINTEXT = MAX_BODY - HEADER_LEN - TAG_LEN - 1
CONTENT_ENCODING = "aes128gcm"
#: A VAPID JWT lives this long (RFC 8292 §2: at most 24 hours).
JWT_LIFETIME_S = 12 * 3600
#: Endpoints are URLs a push service hands out; longer ones are refused.
MAX_ENDPOINT_LEN = 2048
MAX_TOPIC_LEN = 32

_URGENCY = {"critical": "high", "high": "high", "normal": "normal", "low": "low"}

#: status → (reason, what to do); other 4xx are permanent, other 5xx retried.
ANSWERS: dict[int, tuple[str, Kind]] = {
    400: ("BadRequest", "permanent"),
    401: ("VapidRejected", "permanent"),
    403: ("VapidRejected", "permanent"),
    404: ("SubscriptionNotFound", "dead_token"),
    410: ("SubscriptionGone", "dead_token"),
    413: ("PayloadTooLarge", "permanent"),
    429: ("TooManyRequests", "retry"),
    500: ("InternalServerError", "retry"),
    502: ("BadGateway", "retry"),
    503: ("ServiceUnavailable", "retry"),
}


class SubscriptionError(ValueError):
    """A subscription that cannot be used; the message says which part (never a key)."""


# -- base64url ------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    """Base64url with or without padding (standard base64's ``+/`` accepted too)."""
    raw = text.strip().rstrip("=").replace("+", "-").replace("/", "_")
    if not raw or any(c not in _B64URL for c in raw) or len(raw) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


# -- RFC 8188: the aes128gcm content coding -------------------------------------------------


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA-256 (RFC 5869) for outputs of at most one hash block."""
    assert length <= 32
    prk = _hmac(salt, ikm)
    return _hmac(prk, info + b"\x01")[:length]


def content_keys(ikm: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """The content-encryption key and the base nonce for a salt (RFC 8188 §2.2, §2.3)."""
    cek = hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", KEY_LEN)
    nonce = hkdf(salt, ikm, b"Content-Encoding: nonce\x00", NONCE_LEN)
    return cek, nonce


def _record_nonce(base: bytes, seq: int) -> bytes:
    return (int.from_bytes(base, "big") ^ seq).to_bytes(NONCE_LEN, "big")


def ece_encrypt(plaintext: bytes, ikm: bytes, salt: bytes, *, rs: int = RECORD_SIZE,
                keyid: bytes = b"", pad: int = 0) -> bytes:
    """``plaintext`` in the aes128gcm coding: the header, then records of ``rs`` bytes (the
    last one shorter). ``pad`` zero bytes of padding go in the first records, as much as fits."""
    if len(salt) != SALT_LEN:
        raise ValueError("the salt is 16 bytes")
    if len(keyid) > 255:
        raise ValueError("the key id is at most 255 bytes")
    if not 18 <= rs < 2 ** 32:
        raise ValueError("record size out of range")
    cek, base = content_keys(ikm, salt)
    aead = AESGCM(cek)
    room = rs - TAG_LEN  # plaintext + delimiter + padding per record
    out = [salt, rs.to_bytes(4, "big"), bytes([len(keyid)]), keyid]
    pos, seq = 0, 0
    while True:
        padding = min(pad, room - 1)
        take = min(len(plaintext) - pos, room - 1 - padding)
        pad -= padding
        pos += take
        last = pos >= len(plaintext) and pad == 0
        chunk = plaintext[pos - take:pos] + (b"\x02" if last else b"\x01") + b"\x00" * padding
        out.append(aead.encrypt(_record_nonce(base, seq), chunk, None))
        seq += 1
        if last:
            return b"".join(out)


@dataclass(frozen=True, slots=True)
class EceHeader:
    salt: bytes
    rs: int
    keyid: bytes
    size: int  # the header's length in bytes


def ece_header(body: bytes) -> EceHeader:
    if len(body) < SALT_LEN + 5:
        raise ValueError("truncated header")
    idlen = body[SALT_LEN + 4]
    size = SALT_LEN + 5 + idlen
    if len(body) < size:
        raise ValueError("truncated key id")
    rs = int.from_bytes(body[SALT_LEN:SALT_LEN + 4], "big")
    if rs < 18:
        raise ValueError("record size too small")
    return EceHeader(body[:SALT_LEN], rs, body[SALT_LEN + 5:size], size)


def ece_decrypt(body: bytes, ikm_for: Callable[[bytes], bytes]) -> bytes:
    """The plaintext of an aes128gcm body; ``ikm_for(keyid)`` gives the input keying material.
    ValueError when the body is malformed or does not authenticate."""
    head = ece_header(body)
    cek, base = content_keys(ikm_for(head.keyid), head.salt)
    aead = AESGCM(cek)
    out: list[bytes] = []
    pos, seq = head.size, 0
    if pos >= len(body):
        raise ValueError("no records")
    while pos < len(body):
        record = body[pos:pos + head.rs]
        pos += len(record)
        try:
            plain = aead.decrypt(_record_nonce(base, seq), record, None)
        except InvalidTag:
            raise ValueError("a record does not authenticate") from None
        seq += 1
        stripped = plain.rstrip(b"\x00")
        if not stripped:
            raise ValueError("a record without its delimiter")
        delimiter = stripped[-1]
        last = pos >= len(body)
        if delimiter != (2 if last else 1):
            raise ValueError("wrong record delimiter")
        out.append(stripped[:-1])
    return b"".join(out)


# -- RFC 8291: message encryption -----------------------------------------------------------


def public_point(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    """The uncompressed point (65 bytes) of a P-256 key."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(serialization.Encoding.X962,
                               serialization.PublicFormat.UncompressedPoint)


def load_point(raw: bytes) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from its uncompressed point; ValueError when it is not one."""
    if len(raw) != POINT_LEN or raw[0] != 4:
        raise ValueError("not an uncompressed P-256 point")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)


def private_key(d: bytes) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from its 32-byte scalar."""
    return ec.derive_private_key(int.from_bytes(d, "big"), ec.SECP256R1())


def webpush_ikm(own: ec.EllipticCurvePrivateKey, peer_public: bytes, auth: bytes, *,
                ua_public: bytes, as_public: bytes) -> bytes:
    """RFC 8291 §3.4: the input keying material from the ECDH secret and the auth secret."""
    secret = own.exchange(ec.ECDH(), load_point(peer_public))
    info = b"WebPush: info\x00" + ua_public + as_public
    return hkdf(auth, secret, info, 32)


def encrypt(plaintext: bytes, ua_public: bytes, auth: bytes, *,
            as_private: ec.EllipticCurvePrivateKey, salt: bytes,
            rs: int = RECORD_SIZE) -> bytes:
    """One push message's body (RFC 8291 §4): ``as_private`` is the sender's fresh key (never
    the VAPID key), ``salt`` 16 random bytes; both new for every message."""
    if len(auth) != AUTH_LEN:
        raise ValueError("the auth secret is 16 bytes")
    if len(plaintext) > rs - TAG_LEN - 1:
        raise ValueError("the plaintext does not fit one record")
    as_public = public_point(as_private)
    ikm = webpush_ikm(as_private, ua_public, auth, ua_public=ua_public, as_public=as_public)
    return ece_encrypt(plaintext, ikm, salt, rs=rs, keyid=as_public)


def decrypt(body: bytes, ua_private: ec.EllipticCurvePrivateKey, auth: bytes) -> bytes:
    """The browser's side (tests): the plaintext of a push message body."""
    ua_public = public_point(ua_private)

    def ikm_for(keyid: bytes) -> bytes:
        return webpush_ikm(ua_private, keyid, auth, ua_public=ua_public, as_public=keyid)

    return ece_decrypt(body, ikm_for)


# -- subscriptions --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscription:
    endpoint: str
    p256dh: bytes
    auth: bytes

    def token(self) -> str:
        """The canonical JSON stored as the route's provider token."""
        return json.dumps({"endpoint": self.endpoint,
                           "keys": {"auth": b64url(self.auth), "p256dh": b64url(self.p256dh)}},
                          separators=(",", ":"), sort_keys=True)

    @property
    def audience(self) -> str:
        """The endpoint's origin: the VAPID JWT's ``aud``."""
        return origin_of(self.endpoint)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = {"https": 443, "http": 80}.get(parts.scheme)
    port = parts.port
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def _local_host(host: str) -> bool:
    """A host that names this machine or a private network: never a push service."""
    low = host.lower().rstrip(".")
    if low == "localhost" or low.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        ip = ipaddress.ip_address(low)
    except ValueError:
        return "." not in low  # a bare name resolves on the local network only
    return not ip.is_global


def check_endpoint(endpoint: str, *, allow_local: bool = False) -> str:
    """An endpoint the gateway may contact: an absolute https URL (no user info, no fragment),
    on a public host unless ``allow_local`` (tests reaching a mock on loopback)."""
    value = endpoint.strip()
    if not value or len(value) > MAX_ENDPOINT_LEN or not value.isprintable() or " " in value:
        raise SubscriptionError("endpoint is not a URL")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise SubscriptionError("endpoint is not a URL") from None
    if parts.scheme != "https":
        raise SubscriptionError("endpoint must be an https URL")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise SubscriptionError("endpoint must name a host without user info")
    if parts.fragment:
        raise SubscriptionError("endpoint must not carry a fragment")
    if not allow_local and _local_host(parts.hostname):
        raise SubscriptionError("endpoint must be on a public host")
    return value


def parse_subscription(doc: Any, *, allow_local: bool = False) -> Subscription:
    """A subscription from ``PushSubscription.toJSON()``'s shape (``expirationTime`` and other
    members ignored); SubscriptionError says what is wrong."""
    if not isinstance(doc, dict):
        raise SubscriptionError("subscription must be an object")
    endpoint = doc.get("endpoint")
    keys = doc.get("keys")
    if not isinstance(endpoint, str):
        raise SubscriptionError("subscription.endpoint is required")
    if not isinstance(keys, dict):
        raise SubscriptionError("subscription.keys is required")
    p256dh, auth = keys.get("p256dh"), keys.get("auth")
    if not isinstance(p256dh, str) or not isinstance(auth, str):
        raise SubscriptionError("subscription.keys.p256dh and .auth are required")
    try:
        point = unb64url(p256dh)
        load_point(point)
    except ValueError:
        raise SubscriptionError("keys.p256dh is not a P-256 public key") from None
    try:
        secret = unb64url(auth)
    except ValueError:
        secret = b""
    if len(secret) != AUTH_LEN:
        raise SubscriptionError("keys.auth is not a 16-byte secret")
    return Subscription(check_endpoint(endpoint, allow_local=allow_local), point, secret)


def parse_token(token: str, *, allow_local: bool = False) -> Subscription:
    """A stored provider token (or the JSON a device sent as one) as a subscription."""
    try:
        doc = json.loads(token)
    except ValueError:
        raise SubscriptionError("subscription is not JSON") from None
    return parse_subscription(doc, allow_local=allow_local)


# -- VAPID ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VapidKey:
    """The gateway's application server key."""

    private: ec.EllipticCurvePrivateKey

    @classmethod
    def from_pem(cls, pem: str) -> VapidKey:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("not a P-256 private key")
        return cls(key)

    @classmethod
    def from_scalar(cls, d: bytes) -> VapidKey:
        return cls(private_key(d))

    def pem(self) -> str:
        return self.private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()).decode()

    @property
    def public(self) -> bytes:
        return public_point(self.private)

    @property
    def application_server_key(self) -> str:
        """What a browser passes to ``pushManager.subscribe``: the public point, base64url."""
        return b64url(self.public)


def _jws_part(doc: dict[str, Any]) -> str:
    return b64url(json.dumps(doc, separators=(",", ":")).encode())


def vapid_jwt(key: VapidKey, audience: str, subject: str, expires_s: int) -> str:
    """An ES256 JWT (RFC 8292 §2): ``aud``, ``exp`` (seconds), ``sub``."""
    signing_input = (_jws_part({"typ": "JWT", "alg": "ES256"}) + "."
                     + _jws_part({"aud": audience, "exp": expires_s, "sub": subject}))
    der = key.private.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def verify_jwt(token: str, public: bytes) -> dict[str, Any]:
    """The claims of an ES256 JWT signed by ``public``'s key (tests); ValueError otherwise."""
    head, _, rest = token.partition(".")
    claims, _, sig = rest.partition(".")
    try:
        header = json.loads(unb64url(head))
        raw = unb64url(sig)
    except ValueError:
        raise ValueError("malformed JWT") from None
    if header.get("alg") != "ES256" or len(raw) != 64:
        raise ValueError("not an ES256 JWT")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        load_point(public).verify(der, f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ValueError("bad signature") from None
    doc: dict[str, Any] = json.loads(unb64url(claims))
    return doc


def authorization(key: VapidKey, audience: str, subject: str, now_s: int,
                  lifetime_s: int = JWT_LIFETIME_S) -> tuple[str, int]:
    """The ``Authorization`` header value for an audience, and when its JWT expires."""
    expires = now_s + lifetime_s
    return (f"vapid t={vapid_jwt(key, audience, subject, expires)}, "
            f"k={key.application_server_key}", expires)


def check_subject(raw: str) -> str:
    """A VAPID ``sub``: a ``mailto:`` address or an ``https:`` URL."""
    value = raw.strip()
    if value.startswith("mailto:") and "@" in value[7:] and " " not in value:
        return value
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    raise ValueError("expected mailto:address or an https URL")


# -- requests -------------------------------------------------------------------------------


def urgency(severity: str) -> str:
    """RFC 8030 §5.3 ``Urgency`` for a severity (unknown ones count as normal)."""
    return _URGENCY.get(severity.strip().lower(), "normal")


def topic_for(entity_id: str) -> str:
    """RFC 8030 §5.4 ``Topic``: at most 32 base64url characters naming what a message is about
    (an event or a thing), so a newer state replaces one the browser has not fetched yet."""
    return b64url(hashlib.sha256(entity_id.encode()).digest()[:24])


def headers(authorization_value: str, *, ttl_s: int, urgency_value: str,
            topic: str | None) -> dict[str, str]:
    out = {
        "authorization": authorization_value,
        "content-encoding": CONTENT_ENCODING,
        "content-type": "application/octet-stream",
        "ttl": str(max(0, ttl_s)),
        "urgency": urgency_value,
    }
    if topic:
        out["topic"] = topic
    return out


@dataclass(frozen=True, slots=True)
class PayloadTemplate:
    """An operation's JSON document for browsers, built once; per device only the delivery id
    is added. ``wakeup``: the short document sent when the full one does not fit."""

    data: dict[str, str]
    urgency: str
    topic: str | None
    wakeup: bool

    @classmethod
    def build(cls, data: dict[str, str], severity: str, *, wakeup: bool = False,
              ) -> PayloadTemplate:
        doc = {k: v for k, v in data.items() if k != "delivery_id" and not k.startswith("_")}
        entity = doc.get("event_id") or doc.get("thing_id")
        kind = doc.get("entity_type", "message")
        topic = topic_for(entity) if entity and kind in ("event", "thing") else None
        return cls(doc, urgency("high" if wakeup else severity), topic, wakeup)

    def render(self, delivery_id: str) -> bytes:
        return _json({"delivery_id": delivery_id, **self.data})


def _json(doc: dict[str, str]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def _truncated(template: PayloadTemplate, delivery_id: str) -> bytes | None:
    """The full document with its body cut to fit (``truncated: "1"``), or None."""
    body = template.data.get("body", "")
    doc = {"delivery_id": delivery_id, **template.data, "body": "", "truncated": "1"}
    room = MAX_PLAINTEXT - len(_json(doc))
    if room <= 0 or not body:
        return None
    raw = body.encode()
    cut = raw[:room]
    while cut:  # JSON escapes may grow the text: shrink until it fits
        text = cut.decode("utf-8", "ignore")
        out = _json({**doc, "body": text})
        if len(out) <= MAX_PLAINTEXT:
            return out
        cut = cut[:len(cut) - max(1, len(out) - MAX_PLAINTEXT)]
    return None


def choose(full: PayloadTemplate, wake: PayloadTemplate | None, delivery_id: str,
           ) -> tuple[bytes, PayloadTemplate] | None:
    """The plaintext to send: the full document when it fits, else the same with its body
    truncated, else the wake-up document (the page pulls the rest); None when nothing fits."""
    plain = full.render(delivery_id)
    if len(plain) <= MAX_PLAINTEXT:
        return plain, full
    cut = _truncated(full, delivery_id)
    if cut is not None:
        return cut, full
    if wake is not None:
        plain = wake.render(delivery_id)
        if len(plain) <= MAX_PLAINTEXT:
            return plain, wake
    return None


# -- answers --------------------------------------------------------------------------------


def interpret(status: int, answer: dict[bytes, bytes]) -> ProviderOutcome:
    """A push service's answer as an outcome. ``answer`` holds lower-case header names."""
    if status in (200, 201, 202):
        return Delivered((answer.get(b"location") or b"").decode("latin-1"))
    reason, kind = ANSWERS.get(status) or (
        f"HTTP {status}", "retry" if status >= 500 else "permanent")
    return Rejected(reason, status, kind, None, retry_after(answer.get(b"retry-after")))
