"""MockWebPush: a real HTTP/1.1-over-TLS push service for Web Push (RFC 8030) that checks each
request as a browser vendor's push service would, and more: it also holds each subscription's
private key, so it decrypts every message.

`mock.subscribe()` makes a browser subscription (a P-256 key pair and a 16-byte auth secret of
the "browser", an endpoint `https://127.0.0.1:<port>/push/<id>` on this mock) and returns the
JSON a browser's `PushSubscription.toJSON()` gives; register it as the device's provider token.
The gateway reaches the mock because loopback endpoints are allowed
(`PUSHGO_WEBPUSH_ALLOW_LOOPBACK`) and its CA is trusted (`PUSHGO_PROVIDER_CA_FILE`).

Owns the request rules of a push message: `POST` only; `TTL` (required, seconds), `Urgency`
(very-low, low, normal, high) and `Topic` (at most 32 base64url characters) when present;
`Content-Encoding: aes128gcm`; a body of at most 4096 bytes (413 past it); the VAPID
`Authorization: vapid t=<JWT>, k=<key>` (RFC 8292): an ES256 JWT verified with `k` (which must
be the key the subscription was made with, when one was given), `aud` this service's origin,
`exp` in the future and at most 24 hours ahead, `sub` a mailto: or https: contact. Every
accepted body is decrypted by an implementation independent of the gateway's, the `http-ece`
package (checked against RFC 8291's Appendix A when the mock starts); a body it cannot decrypt
is refused (400). Scripted answers per subscription (410 expired, 404 unknown, any status) and
for the next N messages (429 with Retry-After, 5xx), the records and a CLI:

    python -m pushgo.testing.mock_webpush --port 0

Imports nothing from pushgo outside pushgo.testing.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from pushgo.protocol.ids import is_digits
from pushgo.testing.exchange import H2Settings, Outcome, Request, ResetStream, Response
from pushgo.testing.records import Recorder
from pushgo.testing.scripted import Reject, ScriptedAnswers, ScriptedMock
from pushgo.testing.tls import LocalCA

PUSH_PREFIX = "/push/"
MAX_BODY = 4096
MAX_JWT_LIFETIME_S = 24 * 3600
URGENCIES = frozenset({"very-low", "low", "normal", "high"})
REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 410: "Gone", 413: "Payload Too Large",
           429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable"}
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

#: RFC 8291 Appendix A: the browser's keys, the auth secret, the message and its plaintext.
RFC8291_UA_PRIVATE = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
RFC8291_AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
RFC8291_BODY = ("DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e"
                "3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwb"
                "uwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN")
RFC8291_PLAINTEXT = b"When I grow up, I want to be a watermelon"


def _unb64(text: str) -> bytes:
    raw = text.strip().rstrip("=")
    if any(c not in _B64URL for c in raw):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _point(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(serialization.Encoding.X962,
                               serialization.PublicFormat.UncompressedPoint)


def decrypt(body: bytes, private_key: ec.EllipticCurvePrivateKey, auth: bytes) -> bytes:
    """A push message's plaintext, by the `http-ece` package (ValueError when it fails)."""
    try:
        plain: bytes = http_ece.decrypt(body, private_key=private_key, auth_secret=auth,
                                        version="aes128gcm")
    except Exception as exc:  # http_ece raises its own ECEException, or cryptography's
        raise ValueError(f"cannot decrypt: {type(exc).__name__}") from None
    return plain


def check_decrypter() -> None:
    """The independent decrypter reproduces RFC 8291 Appendix A (AssertionError if not)."""
    private = ec.derive_private_key(int.from_bytes(_unb64(RFC8291_UA_PRIVATE), "big"),
                                    ec.SECP256R1())
    plain = decrypt(_unb64(RFC8291_BODY), private, _unb64(RFC8291_AUTH))
    assert plain == RFC8291_PLAINTEXT, "http-ece does not reproduce RFC 8291 Appendix A"


def verify_vapid(authorization: str | None, *, audience: str, now: float,
                 expected_key: bytes | None) -> dict[str, Any]:
    """The claims of a valid VAPID authorization (RFC 8292); ValueError saying what is wrong.
    An `expected_key` other than `k` is PermissionError (403: not the subscription's key)."""
    scheme, _, params = (authorization or "").partition(" ")
    if scheme.lower() != "vapid":
        raise ValueError("Authorization is not the vapid scheme")
    fields: dict[str, str] = {}
    for part in params.split(","):
        name, _, value = part.strip().partition("=")
        fields[name.strip().lower()] = value.strip()
    token, key_text = fields.get("t"), fields.get("k")
    if not token or not key_text:
        raise ValueError("vapid needs t= and k=")
    try:
        key_raw = _unb64(key_text)
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key_raw)
    except ValueError:
        raise ValueError("k is not a P-256 public key") from None
    if expected_key is not None and key_raw != expected_key:
        raise PermissionError("k is not the key the subscription was made with")
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("t is not a compact JWS")
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
        signature = _unb64(parts[2])
    except ValueError:
        raise ValueError("t is malformed") from None
    if not isinstance(header, dict) or header.get("alg") != "ES256":
        raise ValueError("the JWT is not ES256")
    if len(signature) != 64:
        raise ValueError("an ES256 signature is 64 bytes")
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                               int.from_bytes(signature[32:], "big"))
    try:
        public.verify(der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ValueError("the JWT signature does not verify with k") from None
    if not isinstance(claims, dict):
        raise ValueError("the JWT claims are not an object")
    if claims.get("aud") != audience:
        raise ValueError(f"aud must be {audience}")
    exp = claims.get("exp")
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise ValueError("exp must be a number of seconds")
    if exp <= now:
        raise ValueError("the JWT has expired")
    if exp > now + MAX_JWT_LIFETIME_S:
        raise ValueError("exp is more than 24 hours ahead")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not (
            (sub.startswith("mailto:") and "@" in sub) or sub.startswith("https://")):
        raise ValueError("sub must be a mailto: or https: contact")
    return claims


@dataclass(frozen=True)
class MockSubscription:
    """A browser's subscription on this mock: what the browser keeps (its private key, the
    auth secret) and what it hands to the application (`json`)."""

    id: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    application_server_key: bytes | None

    @property
    def p256dh(self) -> str:
        return _b64(_point(self.private_key))

    @property
    def json(self) -> dict[str, Any]:
        """`PushSubscription.toJSON()`."""
        return {"endpoint": self.endpoint, "expirationTime": None,
                "keys": {"p256dh": self.p256dh, "auth": _b64(self.auth)}}

    @property
    def token(self) -> str:
        """The same as a JSON string: the device route's provider token."""
        return json.dumps(self.json)


@dataclass(frozen=True)
class WebPushMessage:
    """One push message as the mock saw and answered it (`status` None: the connection was
    closed instead). `plaintext` is the decrypted body (None when refused before or at
    decryption)."""

    subscription: str  # the subscription id (the endpoint's last path segment)
    headers: dict[str, str]
    body: bytes
    connection_id: int
    status: int | None
    error: str | None
    plaintext: bytes | None = None
    claims: dict[str, Any] | None = None

    @property
    def accepted(self) -> bool:
        return self.status == 201

    @property
    def data(self) -> dict[str, Any]:
        """The decrypted JSON document ({} when there is none)."""
        if self.plaintext is None:
            return {}
        try:
            doc = json.loads(self.plaintext)
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}


class MockWebPush(ScriptedMock):
    """`async with mock.serving():`, then `mock.settings()` are the gateway's settings (field
    names) and `mock.env()` the same as variables."""

    def __init__(self, *, tls: LocalCA | None = None, host: str = "127.0.0.1", port: int = 0,
                 clock: Callable[[], float] = time.time,
                 on_message: Callable[[WebPushMessage], None] | None = None) -> None:
        super().__init__(self._handle, tls=tls, host=host, port=port, settings=H2Settings(),
                         alpn=("http/1.1",))
        check_decrypter()
        self.clock = clock
        self.on_message = on_message
        self.messages: Recorder[WebPushMessage] = Recorder()
        self.subscriptions: dict[str, MockSubscription] = {}
        self._answers = ScriptedAnswers(REASONS)

    def settings(self, ca_file: str | None = None) -> dict[str, Any]:
        """Gateway settings (Settings field names) that let it reach this mock."""
        return {"webpush_allow_loopback": True,
                "provider_ca_file": str(ca_file or self.ca_file)}

    def env(self, ca_file: str | None = None) -> dict[str, str]:
        return {"PUSHGO_WEBPUSH_ALLOW_LOOPBACK": "true",
                "PUSHGO_PROVIDER_CA_FILE": str(ca_file or self.ca_file)}

    # -- subscriptions

    def subscribe(self, application_server_key: str | None = None) -> MockSubscription:
        """A new browser subscription. With `application_server_key` (what the page passed to
        `pushManager.subscribe`), messages must be signed by that key (else 403)."""
        sid = secrets.token_urlsafe(24)
        key = _unb64(application_server_key) if application_server_key else None
        sub = MockSubscription(sid, f"{self.origin}{PUSH_PREFIX}{sid}",
                               ec.generate_private_key(ec.SECP256R1()), secrets.token_bytes(16),
                               key)
        self.subscriptions[sid] = sub
        return sub

    def answer(self, sub: MockSubscription, status: int, *, times: int | None = None,
               retry_after: int | None = None) -> None:
        """Messages to `sub` get `status` (`times` times, or for good)."""
        self._answers.answer(sub.id, status, retry_after=retry_after, times=times)

    def expire(self, sub: MockSubscription) -> None:
        """The browser unsubscribed: 410 Gone."""
        self.answer(sub, 410)

    def forget(self, sub: MockSubscription) -> None:
        """The push service does not know the subscription: 404 Not Found."""
        self.subscriptions.pop(sub.id, None)

    def fail_next(self, count: int = 1, status: int = 503, *,
                  retry_after: int | None = None) -> None:
        """The next `count` messages get `status` (503, 500, 429…)."""
        self._answers.fail_next(count, status, retry_after)

    def reset_behaviours(self) -> None:
        self._answers.clear()
        self.reset_faults()

    @property
    def accepted(self) -> list[WebPushMessage]:
        return self.messages.matching(lambda m: m.accepted)

    async def wait_for(self, count: int = 1,
                       predicate: Callable[[WebPushMessage], bool] | None = None, *,
                       within: float = 5.0) -> list[WebPushMessage]:
        return await self.messages.wait_for(count, predicate, within=within)

    # -- dispatch

    async def _handle(self, req: Request) -> Outcome:
        headers = {k: v for k, v in reversed(req.headers)}
        sid = req.path.split("?", 1)[0].removeprefix(PUSH_PREFIX)
        if self._refused():
            self._keep(WebPushMessage(sid, headers, req.body, req.connection_id, None, None))
            return ResetStream()
        plaintext: bytes | None = None
        claims: dict[str, Any] | None = None
        try:
            claims, plaintext = self._check(req, sid)
        except Reject as rej:
            out = [("content-type", "text/plain")]
            if rej.retry_after is not None:
                out.append(("retry-after", str(rej.retry_after)))
            response = Response(rej.status, out, rej.description.encode())
            note = WebPushMessage(sid, headers, req.body, req.connection_id, rej.status,
                                  rej.description, None, claims)
        else:
            response = Response(201, [("location", f"{self.origin}/message/"
                                                    f"{secrets.token_urlsafe(12)}"),
                                      ("ttl", headers.get("ttl", "0"))])
            note = WebPushMessage(sid, headers, req.body, req.connection_id, 201, None,
                                  plaintext, claims)
        if self.delay > 0:
            await anyio.sleep(self.delay)
        self._keep(note)
        return response

    def _keep(self, note: WebPushMessage) -> None:
        self.messages.append(note)
        if self.on_message is not None:
            self.on_message(note)

    def _check(self, req: Request, sid: str) -> tuple[dict[str, Any], bytes]:
        if req.method != "POST":
            raise Reject(405, "Only POST is allowed.")
        if not req.path.startswith(PUSH_PREFIX):
            raise Reject(404, "No such endpoint.")
        sub = self.subscriptions.get(sid)
        if sub is None:
            raise Reject(404, "No such subscription.")
        self._answers.check_next()
        try:
            claims = verify_vapid(req.header("authorization"), audience=self.origin,
                                  now=self.clock(), expected_key=sub.application_server_key)
        except PermissionError as exc:
            raise Reject(403, str(exc)) from None
        except ValueError as exc:
            raise Reject(401, str(exc)) from None
        ttl = req.header("ttl")
        if ttl is None or not is_digits(ttl):
            raise Reject(400, "TTL is required: a number of seconds.")
        urgency = req.header("urgency")
        if urgency is not None and urgency not in URGENCIES:
            raise Reject(400, "Urgency must be very-low, low, normal or high.")
        topic = req.header("topic")
        if topic is not None and (not topic or len(topic) > 32
                                  or any(c not in _B64URL for c in topic)):
            raise Reject(400, "Topic must be at most 32 base64url characters.")
        if req.header("content-encoding") != "aes128gcm":
            raise Reject(400, "Content-Encoding must be aes128gcm.")
        if len(req.body) > MAX_BODY:
            raise Reject(413, "The message is larger than 4096 bytes.")
        self._answers.check_key(sid)
        try:
            plaintext = decrypt(req.body, sub.private_key, sub.auth)
        except ValueError as exc:
            raise Reject(400, str(exc)) from None
        return claims, plaintext


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """Run a MockWebPush until Ctrl-C or SIGTERM (exit 0); print the gateway settings that let
    it reach the mock, one `export` line each, and one subscription to register."""
    import argparse
    import sys

    from pushgo.testing import mockcli

    parser = argparse.ArgumentParser(prog="python -m pushgo.testing.mock_webpush",
                                     description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="do not log each message")
    mockcli.add_common_arguments(parser)
    args = parser.parse_args(argv)

    def log(note: WebPushMessage) -> None:
        text = (note.plaintext or b"").decode("utf-8", "replace")
        print(f"{note.status or 'CLOSED'} subscription={note.subscription[:12]}… {text}",
              file=sys.stderr, flush=True)

    mock = MockWebPush(host=args.host, port=args.port, tls=mockcli.shared_ca(args),
                       on_message=None if args.quiet else log)

    async def run() -> None:
        async with mock.serving():
            print(f"# a subscription to register: {mock.subscribe().token}")
            mockcli.print_settings(mock.env())
            await mockcli.until_signal()

    return mockcli.run(run, args.backend)


if __name__ == "__main__":
    raise SystemExit(main())
