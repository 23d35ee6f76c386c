"""pushgo.protocol.webpush: the aes128gcm content coding against RFC 8188's examples, message
encryption against RFC 8291's Appendix A (byte for byte) and against the independent
`http-ece` package both ways, the VAPID JWT as the mock push service checks it, subscriptions
and endpoints, the payload's 4096-byte limit (truncation, the wake-up document), headers and
the answer table."""

from __future__ import annotations

import json

import http_ece
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from pushgo.protocol import webpush as W
from pushgo.protocol.outcomes import Delivered, Rejected
from pushgo.protocol.payload import wakeup_data
from pushgo.testing import mock_webpush as M

u = W.unb64url

# RFC 8188 §3.1 and §3.2.
WALRUS = b"I am the walrus"
R31 = {"ikm": "yqdlZ-tYemfogSmv7Ws5PQ", "salt": "I1BsxtFttlv3u_Oo94xnmw",
       "body": "I1BsxtFttlv3u_Oo94xnmwAAEAAA-NAVub2qFgBEuQKRapoZu-IxkIva3MEB1PD-ly8Thjg",
       "prk": "zyeH5phsIsgUyd4oiSEIy35x-gIi4aM7y0hCF8mwn9g", "cek": "_wniytB-ofscZDh4tbSjHw",
       "nonce": "Bcs8gkIRKLI8GeI8"}
R32 = {"ikm": "BO3ZVPxUlnLORbVGMpbT1Q", "salt": "uNCkWiNYzKTnBN9ji3-qWA",
       "body": "uNCkWiNYzKTnBN9ji3-qWAAAABkCYTHOG8chz_gnvgOqdGYovxyjuqRyJFjEDyoF1Fvkj6hQPdPHI51"
               "OEUKEpgz3SsLWIqS_uA"}
# RFC 8291 Appendix A.
A = {"plaintext": "V2hlbiBJIGdyb3cgdXAsIEkgd2FudCB0byBiZSBhIHdhdGVybWVsb24",
     "as_private": "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw",
     "as_public": "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqK"
                  "K6PBru3jl7A8",
     "ua_private": "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94",
     "ua_public": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6"
                  "SRpkNtoIAiw4",
     "salt": "DGv6ra1nlYgDCS1FRnbzlw", "auth": "BTBZMqHH6r4Tts7J_aSIgg",
     "body": M.RFC8291_BODY}


def test_rfc8188_example_1_encrypts_byte_for_byte_and_decrypts():
    ikm, salt = u(R31["ikm"]), u(R31["salt"])
    cek, nonce = W.content_keys(ikm, salt)
    assert (W.b64url(cek), W.b64url(nonce)) == (R31["cek"], R31["nonce"])
    body = W.ece_encrypt(WALRUS, ikm, salt, rs=4096)
    assert W.b64url(body) == R31["body"]
    assert W.ece_decrypt(body, lambda keyid: ikm) == WALRUS


def test_rfc8188_example_2_two_records_a_keyid_and_padding():
    ikm, salt = u(R32["ikm"]), u(R32["salt"])
    body = W.ece_encrypt(WALRUS, ikm, salt, rs=25, keyid=b"a1", pad=1)
    assert W.b64url(body) == R32["body"]
    head = W.ece_header(body)
    assert (head.rs, head.keyid) == (25, b"a1")
    seen: list[bytes] = []

    def ikm_for(keyid: bytes) -> bytes:
        seen.append(keyid)
        return ikm

    assert W.ece_decrypt(body, ikm_for) == WALRUS
    assert seen == [b"a1"]


def test_a_tampered_or_truncated_body_does_not_decrypt():
    ikm, salt = u(R32["ikm"]), u(R32["salt"])
    body = bytearray(u(R32["body"]))
    body[-1] ^= 1
    with pytest.raises(ValueError, match="authenticate"):
        W.ece_decrypt(bytes(body), lambda _k: ikm)
    # Dropping the last record leaves a record with the "more follows" delimiter last.
    with pytest.raises(ValueError, match="delimiter"):
        W.ece_decrypt(u(R32["body"])[:-25], lambda _k: ikm)
    with pytest.raises(ValueError):
        W.ece_decrypt(salt, lambda _k: ikm)


def test_rfc8291_appendix_a_reproduces_byte_for_byte():
    as_private = W.private_key(u(A["as_private"]))
    assert W.b64url(W.public_point(as_private)) == A["as_public"]
    body = W.encrypt(u(A["plaintext"]), u(A["ua_public"]), u(A["auth"]),
                     as_private=as_private, salt=u(A["salt"]))
    assert W.b64url(body) == A["body"]
    ua = W.private_key(u(A["ua_private"]))
    assert W.decrypt(body, ua, u(A["auth"])) == b"When I grow up, I want to be a watermelon"


def test_the_independent_decrypter_reproduces_appendix_a_too():
    M.check_decrypter()  # http-ece opens the RFC's message


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=1, max_size=W.MAX_PLAINTEXT))
def test_http_ece_opens_what_the_gateway_encrypts_and_the_reverse(plaintext):
    ua = ec.generate_private_key(ec.SECP256R1())
    auth = b"0123456789abcdef"
    body = W.encrypt(plaintext, W.public_point(ua), auth,
                     as_private=ec.generate_private_key(ec.SECP256R1()), salt=b"s" * 16)
    assert len(body) <= W.MAX_BODY
    assert http_ece.decrypt(body, private_key=ua, auth_secret=auth,
                            version="aes128gcm") == plaintext
    theirs = http_ece.encrypt(plaintext, private_key=ec.generate_private_key(ec.SECP256R1()),
                              dh=W.public_point(ua), auth_secret=auth, version="aes128gcm")
    assert W.decrypt(theirs, ua, auth) == plaintext


def test_one_record_at_most_and_sixteen_byte_secrets():
    ua = W.public_point(ec.generate_private_key(ec.SECP256R1()))
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValueError):
        W.encrypt(b"x" * (W.RECORD_SIZE - 16), ua, b"a" * 16, as_private=key, salt=b"s" * 16)
    with pytest.raises(ValueError):
        W.encrypt(b"x", ua, b"a" * 15, as_private=key, salt=b"s" * 16)


# -- VAPID


def test_the_vapid_jwt_verifies_and_carries_aud_exp_sub():
    key = W.VapidKey(ec.generate_private_key(ec.SECP256R1()))
    value, expires = W.authorization(key, "https://push.example.net", "mailto:ops@example.com",
                                     now_s=1_700_000_000)
    assert expires == 1_700_000_000 + W.JWT_LIFETIME_S
    assert value.startswith("vapid t=") and f", k={key.application_server_key}" in value
    token = value.removeprefix("vapid t=").split(",")[0]
    claims = W.verify_jwt(token, key.public)
    assert claims == {"aud": "https://push.example.net", "exp": expires,
                      "sub": "mailto:ops@example.com"}
    assert json.loads(u(token.split(".")[0])) == {"typ": "JWT", "alg": "ES256"}
    # The mock's own reading accepts it, and refuses what a push service would.
    checked = M.verify_vapid(value, audience="https://push.example.net",
                             now=1_700_000_000, expected_key=key.public)
    assert checked["sub"] == "mailto:ops@example.com"
    with pytest.raises(ValueError, match="aud"):
        M.verify_vapid(value, audience="https://other.example", now=1_700_000_000,
                       expected_key=None)
    with pytest.raises(ValueError, match="expired"):
        M.verify_vapid(value, audience="https://push.example.net", now=expires,
                       expected_key=None)
    with pytest.raises(PermissionError):
        M.verify_vapid(value, audience="https://push.example.net", now=1_700_000_000,
                       expected_key=W.public_point(ec.generate_private_key(ec.SECP256R1())))
    other = W.VapidKey(ec.generate_private_key(ec.SECP256R1()))
    forged = value.replace(key.application_server_key, other.application_server_key)
    with pytest.raises(ValueError, match="signature"):
        M.verify_vapid(forged, audience="https://push.example.net", now=1_700_000_000,
                       expected_key=None)
    too_long, _ = W.authorization(key, "https://push.example.net", "mailto:a@b", 0,
                                  lifetime_s=25 * 3600)
    with pytest.raises(ValueError, match="24 hours"):
        M.verify_vapid(too_long, audience="https://push.example.net", now=0, expected_key=None)


def test_the_vapid_key_round_trips_through_pem():
    key = W.VapidKey(ec.generate_private_key(ec.SECP256R1()))
    again = W.VapidKey.from_pem(key.pem())
    assert again.public == key.public and len(key.public) == 65 and key.public[0] == 4
    assert len(u(key.application_server_key)) == 65
    with pytest.raises(ValueError):
        W.VapidKey.from_pem(W.VapidKey(ec.generate_private_key(ec.SECP384R1())).pem())


@pytest.mark.parametrize(("raw", "ok"), [
    ("mailto:ops@example.com", True), ("https://example.com/contact", True),
    ("mailto:nobody", False), ("http://example.com", False), ("ops@example.com", False)])
def test_the_subject_is_mailto_or_https(raw, ok):
    if ok:
        assert W.check_subject(raw) == raw
    else:
        with pytest.raises(ValueError):
            W.check_subject(raw)


# -- subscriptions


def subscription(**over: object) -> dict[str, object]:
    ua = W.public_point(ec.generate_private_key(ec.SECP256R1()))
    doc: dict[str, object] = {"endpoint": "https://fcm.googleapis.com/fcm/send/abc:def",
                              "expirationTime": None,
                              "keys": {"p256dh": W.b64url(ua), "auth": W.b64url(b"k" * 16)}}
    doc.update(over)
    return doc


def test_a_subscription_is_stored_canonical():
    doc = subscription()
    keys = doc["keys"]
    assert isinstance(keys, dict)
    padded = {**doc, "keys": {"p256dh": keys["p256dh"] + "=", "auth": keys["auth"] + "=="}}
    sub = W.parse_subscription(padded)
    assert sub.audience == "https://fcm.googleapis.com"
    assert json.loads(sub.token()) == {"endpoint": doc["endpoint"], "keys": keys}
    assert W.parse_token(sub.token()) == sub


@pytest.mark.parametrize(("endpoint", "allowed"), [
    ("https://updates.push.services.mozilla.com/wpush/v2/gAAA", True),
    ("https://web.push.apple.com:443/QGuQyavXutnMH", True),
    ("http://updates.push.services.mozilla.com/wpush/v2/gAAA", False),
    ("https://user@push.example.com/x", False),
    ("https://push.example.com/x#frag", False),
    ("https://localhost/x", False), ("https://127.0.0.1:8443/x", False),
    ("https://192.168.1.2/x", False), ("https://[::1]/x", False),
    ("https://pushbox/x", False), ("https://printer.local/x", False),
    ("https://push.example.com/" + "a" * 2100, False), ("ftp://push.example.com/x", False),
])
def test_only_https_endpoints_on_public_hosts_are_contacted(endpoint, allowed):
    if allowed:
        assert W.check_endpoint(endpoint) == endpoint
    else:
        with pytest.raises(W.SubscriptionError):
            W.check_endpoint(endpoint)


def test_loopback_endpoints_only_when_allowed():
    assert W.check_endpoint("https://127.0.0.1:8443/push/x", allow_local=True)
    with pytest.raises(W.SubscriptionError):
        W.check_endpoint("http://127.0.0.1:8443/push/x", allow_local=True)


@pytest.mark.parametrize("doc", [
    [], {"endpoint": "https://push.example.com/x"},
    subscription(keys={"p256dh": "AAAA", "auth": W.b64url(b"k" * 16)}),
    subscription(keys={"p256dh": W.b64url(b"\x04" + b"\x01" * 64), "auth": W.b64url(b"k" * 16)}),
    subscription(keys={"p256dh": W.b64url(W.public_point(ec.generate_private_key(
        ec.SECP256R1()))), "auth": W.b64url(b"k" * 8)}),
    subscription(endpoint=7),
])
def test_malformed_subscriptions_are_refused(doc):
    with pytest.raises(W.SubscriptionError):
        W.parse_subscription(doc)


# -- the payload


DATA = {"entity_type": "message", "message_id": "m1", "op_id": "op-1", "channel_id": "c1",
        "title": "Disk", "body": "/var at 91%", "url": "https://status.example.com"}


def test_the_document_is_the_payload_with_its_delivery_id_first():
    full = W.PayloadTemplate.build(DATA, "high")
    plain, used = W.choose(full, None, "d1") or (b"", full)
    assert json.loads(plain) == {"delivery_id": "d1", **DATA}
    assert used is full and full.urgency == "high" and full.topic is None
    event = W.PayloadTemplate.build({**DATA, "entity_type": "event", "event_id": "e1"}, "low")
    assert event.urgency == "low" and event.topic == W.topic_for("e1")
    assert len(event.topic) <= W.MAX_TOPIC_LEN and set(event.topic) <= W._B64URL


def test_a_long_body_is_truncated_to_fit_else_the_wakeup_goes():
    big = {**DATA, "body": "€" * 3000}
    full = W.PayloadTemplate.build(big, "normal")
    wake = W.PayloadTemplate.build(wakeup_data(big), "normal", wakeup=True)
    plain, used = W.choose(full, wake, "d1") or (b"", full)
    doc = json.loads(plain)
    assert used is full and doc["truncated"] == "1" and big["body"].startswith(doc["body"])
    assert W.MAX_PLAINTEXT - 3 <= len(plain) <= W.MAX_PLAINTEXT
    # Without a body to cut, a too-large document gives way to the wake-up document.
    heavy = {**DATA, "body": "", "url": "https://x/" + "a" * 5000}
    plain, used = W.choose(W.PayloadTemplate.build(heavy, "normal"),
                           W.PayloadTemplate.build(wakeup_data(heavy), "normal", wakeup=True),
                           "d1") or (b"", full)
    assert used.wakeup and json.loads(plain)["provider_wakeup"] == "1"
    assert used.urgency == "high"


def test_headers_and_urgency():
    h = W.headers("vapid t=x, k=y", ttl_s=60, urgency_value=W.urgency("critical"), topic="t1")
    assert h == {"authorization": "vapid t=x, k=y", "content-encoding": "aes128gcm",
                 "content-type": "application/octet-stream", "ttl": "60", "urgency": "high",
                 "topic": "t1"}
    assert [W.urgency(s) for s in ("low", "normal", "odd")] == ["low", "normal", "normal"]
    assert "topic" not in W.headers("v", ttl_s=-5, urgency_value="low", topic=None)


@pytest.mark.parametrize(("status", "kind", "reason"), [
    (404, "dead_token", "SubscriptionNotFound"), (410, "dead_token", "SubscriptionGone"),
    (413, "permanent", "PayloadTooLarge"), (429, "retry", "TooManyRequests"),
    (503, "retry", "ServiceUnavailable"), (500, "retry", "InternalServerError"),
    (504, "retry", "HTTP 504"), (400, "permanent", "BadRequest"),
    (403, "permanent", "VapidRejected"), (418, "permanent", "HTTP 418")])
def test_the_answer_table(status, kind, reason):
    out = W.interpret(status, {b"retry-after": b"7"})
    assert isinstance(out, Rejected) and (out.kind, out.reason) == (kind, reason)
    assert out.retry_after_s == 7


def test_201_is_sent():
    assert W.interpret(201, {b"location": b"https://p/m/1"}) == Delivered("https://p/m/1")
