"""The mock providers in pushgo.testing, driven by real HTTP/2 clients over TLS (httpx with h2,
and a raw h2 client where the frames themselves matter): APNs answers and rules, scripted
rejections, REFUSED_STREAM, GOAWAY, drops, MAX_CONCURRENT_STREAMS 1 -> 1000, FCM's OAuth
token flow (HTTP/2 and HTTP/1.1), sends, 401 after revocation and scripted errors."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    PingAckReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes

from pushgo.testing.exchange import Delay, Drop, GoAway, Request, ResetStream, Response
from pushgo.testing.h2server import H2Server
from pushgo.testing.mock_apns import APNsKey, MockAPNs, generate_apns_key
from pushgo.testing.mock_fcm import JWT_BEARER, MockFCM, ServiceAccount
from pushgo.testing.records import Recorder
from pushgo.testing.tls import LocalCA

TOKEN = "ab" * 32
OTHER = "cd" * 32


@pytest.fixture(scope="module")
def ca() -> LocalCA:
    return LocalCA()


@pytest.fixture(scope="module")
def apns_key() -> APNsKey:
    return APNsKey.generate()


@pytest.fixture(scope="module")
def service_account() -> ServiceAccount:
    return ServiceAccount.generate("pushgo-test")


def client_for(ca: LocalCA, *, http2: bool = True) -> httpx.AsyncClient:
    verify = ssl.create_default_context(cafile=str(ca.ca_file))
    return httpx.AsyncClient(http2=http2, verify=verify, timeout=5)


@pytest.fixture
async def apns(ca: LocalCA, apns_key: APNsKey) -> AsyncIterator[MockAPNs]:
    mock = MockAPNs(topic="com.example.app", key=apns_key, tls=ca)
    async with mock.serving():
        yield mock


@pytest.fixture
async def fcm(ca: LocalCA, service_account: ServiceAccount) -> AsyncIterator[MockFCM]:
    mock = MockFCM(project_id="pushgo-test", service_account=service_account, tls=ca)
    async with mock.serving():
        yield mock


@pytest.fixture
async def http(ca: LocalCA) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(ca) as c:
        yield c


def push_headers(mock: MockAPNs, **overrides: str | None) -> dict[str, str]:
    headers: dict[str, str | None] = {
        "authorization": f"bearer {mock.key.token()}",
        "apns-topic": mock.topic,
        "apns-push-type": "alert",
        "apns-priority": "10",
        "apns-expiration": str(int(time.time()) + 3600),
    }
    headers.update(overrides)
    return {k: v for k, v in headers.items() if v is not None}


PAYLOAD = json.dumps({"aps": {"alert": {"title": "t", "body": "b"}}}).encode()


async def push(http: httpx.AsyncClient, mock: MockAPNs, token: str = TOKEN, body: bytes = PAYLOAD,
               **headers: str | None) -> httpx.Response:
    return await http.post(f"{mock.origin}/3/device/{token}", content=body,
                           headers=push_headers(mock, **headers))


# --------------------------------------------------------------------------- raw h2 client


class RawH2:
    """A bare h2 client: the test sees every frame-level event."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        self.events: list[Event] = []
        self.closed = False

    @classmethod
    async def connect(cls, origin_host: str, port: int, ca: LocalCA) -> RawH2:
        stream = await anyio.connect_tcp(origin_host, port, ssl_context=ca.client_context(),
                                         tls_standard_compatible=False)
        client = cls(stream)
        client.h2.initiate_connection()
        await client.flush()
        return client

    async def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            await self.stream.send(data)

    def request(self, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> int:
        sid = self.h2.get_next_available_stream_id()
        fields = [(":method", "POST"), (":scheme", "https"), (":authority", "127.0.0.1"), (":path", path),
                  *(headers or {}).items()]
        self.h2.send_headers(sid, fields, end_stream=not body)
        if body:
            self.h2.send_data(sid, body, end_stream=True)
        return sid

    async def until(self, done: Callable[[list[Event]], bool]) -> list[Event]:
        with anyio.fail_after(5):
            while not done(self.events):
                try:
                    data = await self.stream.receive()
                    for event in self.h2.receive_data(data):
                        self.events.append(event)
                        if isinstance(event, DataReceived):
                            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    await self.flush()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    self.closed = True
                    return self.events
        return self.events

    async def until_closed(self) -> list[Event]:
        return await self.until(lambda _: False)

    def of(self, kind: type[Any], sid: int | None = None) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and (sid is None or e.stream_id == sid)]

    def status(self, sid: int) -> int | None:
        for event in self.of(ResponseReceived, sid):
            return int(dict(event.headers)[":status"])
        return None

    async def aclose(self) -> None:
        await self.stream.aclose()


def has(kind: type[Any], sid: int | None = None, count: int = 1) -> Callable[[list[Event]], bool]:
    return lambda events: sum(isinstance(e, kind) and (sid is None or e.stream_id == sid)
                              for e in events) >= count


def settings_mcs(events: list[Event]) -> list[int]:
    return [e.changed_settings[SettingCodes.MAX_CONCURRENT_STREAMS].new_value
            for e in events if isinstance(e, RemoteSettingsChanged)
            and SettingCodes.MAX_CONCURRENT_STREAMS in e.changed_settings]


# --------------------------------------------------------------------------- APNs


async def test_accept_all_answers_200_with_echoed_apns_id_and_an_empty_body(apns: MockAPNs, http):
    apns_id = "123e4567-e89b-12d3-a456-426614174000"
    resp = await push(http, apns, body=PAYLOAD, **{"apns-id": apns_id})
    assert (resp.http_version, resp.status_code, resp.content) == ("HTTP/2", 200, b"")
    assert resp.headers["apns-id"] == apns_id
    fresh = await push(http, apns, token=OTHER, body=b"not even json", authorization=None)
    assert fresh.status_code == 200 and len(fresh.headers["apns-id"]) == 36
    notes = await apns.wait_for(2)
    assert [n.token for n in notes] == [TOKEN, OTHER]
    assert notes[0].payload == {"aps": {"alert": {"title": "t", "body": "b"}}}
    assert notes[0].headers["apns-topic"] == "com.example.app"
    assert notes[0].apns_id == apns_id and all(n.accepted for n in notes)


async def test_a_200_is_one_headers_frame_with_end_stream_and_no_data(apns: MockAPNs, ca: LocalCA):
    raw = await RawH2.connect(apns.host, apns.port, ca)
    sid = raw.request(f"/3/device/{TOKEN}", PAYLOAD, {"apns-topic": apns.topic})
    await raw.flush()
    await raw.until(has(StreamEnded, sid))
    [response] = raw.of(ResponseReceived, sid)
    assert response.stream_ended is not None
    assert dict(response.headers)[":status"] == "200" and "apns-id" in dict(response.headers)
    assert raw.of(DataReceived, sid) == []
    await raw.aclose()


async def test_validating_mock_accepts_a_well_formed_push(apns: MockAPNs, http):
    apns.validate = True
    resp = await push(http, apns, body=PAYLOAD, **{"apns-collapse-id": "c" * 64, "apns-priority": "5"})
    assert resp.status_code == 200, resp.text
    voip = await push(http, apns, body=json.dumps({"aps": {}, "x": "y" * 4900}).encode(),
                      **{"apns-push-type": "voip", "apns-topic": "com.example.app.voip"})
    assert voip.status_code == 200, voip.text


async def test_validating_mock_rejects_each_of_apples_rules(apns: MockAPNs, http):
    apns.validate = True
    key = apns.key
    forged = APNsKey.generate(key.key_id, key.team_id).token()
    stranger = APNsKey.generate(team_id=key.team_id).token()
    wrong_team = APNsKey(key.key_id, "TEAM000000", key.private_key_pem).token()
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("no token", {"authorization": None}, 403, "MissingProviderToken"),
        ("bad signature", {"authorization": f"bearer {forged}"}, 403, "InvalidProviderToken"),
        ("unknown kid", {"authorization": f"bearer {stranger}"}, 403, "InvalidProviderToken"),
        ("wrong iss", {"authorization": f"bearer {wrong_team}"}, 403, "InvalidProviderToken"),
        ("old iat", {"authorization": f"bearer {key.token(iat=time.time() - 3700)}"}, 403,
         "ExpiredProviderToken"),
        ("no topic", {"apns-topic": None}, 400, "MissingTopic"),
        ("bad topic", {"apns-topic": "com example"}, 400, "BadTopic"),
        ("other topic", {"apns-topic": "com.other.app"}, 400, "DeviceTokenNotForTopic"),
        ("push type", {"apns-push-type": "shout"}, 400, "InvalidPushType"),
        ("priority", {"apns-priority": "7"}, 400, "BadPriority"),
        ("expiration in ms", {"apns-expiration": str(int(time.time() * 1000))}, 400, "BadExpirationDate"),
        ("expiration text", {"apns-expiration": "soon"}, 400, "BadExpirationDate"),
        ("collapse id", {"apns-collapse-id": "c" * 65}, 400, "BadCollapseId"),
        ("apns-id", {"apns-id": "not-a-uuid"}, 400, "BadMessageId"),
        ("device token", {"token": "xyz"}, 400, "BadDeviceToken"),
        ("short token", {"token": "ab" * 31}, 400, "BadDeviceToken"),
        ("empty payload", {"body": b""}, 400, "PayloadEmpty"),
        ("too large", {"body": json.dumps({"aps": {}, "x": "y" * 4100}).encode()}, 413, "PayloadTooLarge"),
        ("not json", {"body": b"{nope"}, 400, "BadPayload"),
        ("no aps", {"body": b'{"a": 1}'}, 400, "BadPayload"),
    ]
    for name, change, status, reason in cases:
        token = change.pop("token", TOKEN)
        body = change.pop("body", PAYLOAD)
        resp = await push(http, apns, token=token, body=body, **change)
        assert (resp.status_code, resp.json()) == (status, {"reason": reason}), name
        assert "apns-id" in resp.headers, name
    wrong_method = await http.get(f"{apns.origin}/3/device/{TOKEN}", headers=push_headers(apns))
    assert (wrong_method.status_code, wrong_method.json()["reason"]) == (405, "MethodNotAllowed")
    bad_path = await http.post(f"{apns.origin}/3/devices/{TOKEN}", content=PAYLOAD,
                               headers=push_headers(apns))
    assert (bad_path.status_code, bad_path.json()["reason"]) == (404, "BadPath")
    missing = await http.post(f"{apns.origin}/3/device/", content=PAYLOAD, headers=push_headers(apns))
    assert (missing.status_code, missing.json()["reason"]) == (400, "MissingDeviceToken")
    twice = [*push_headers(apns).items(), ("apns-topic", apns.topic)]
    dup = await http.post(f"{apns.origin}/3/device/{TOKEN}", content=PAYLOAD, headers=twice)
    assert (dup.status_code, dup.json()["reason"]) == (400, "DuplicateHeaders")
    assert not apns.accepted


async def test_token_refresh_faster_than_the_minimum_interval_is_throttled(apns: MockAPNs, http):
    apns.validate = True
    apns.min_token_refresh_interval = 1200
    assert (await push(http, apns, authorization=f"bearer {apns.key.token(iat=time.time() - 10)}")).is_success
    again = await push(http, apns, authorization=f"bearer {apns.key.token(iat=time.time() - 5)}")
    assert (again.status_code, again.json()["reason"]) == (429, "TooManyProviderTokenUpdates")


async def test_scripted_410_carries_a_timestamp_and_other_tokens_still_pass(ca: LocalCA, apns_key: APNsKey):
    mock = MockAPNs(key=apns_key, tls=ca, rejections={OTHER: (400, "BadDeviceToken")})
    mock.unregister(TOKEN, timestamp_ms=1_700_000_000_000)
    dead = "ef" * 32
    mock.reject(dead, 410, "Unregistered")
    async with mock.serving(), client_for(ca) as http:
        gone = await push(http, mock, TOKEN)
        assert gone.status_code == 410
        assert gone.json() == {"reason": "Unregistered", "timestamp": 1_700_000_000_000}
        now_ms = time.time() * 1000
        assert abs((await push(http, mock, dead)).json()["timestamp"] - now_ms) < 60_000
        bad = await push(http, mock, OTHER)
        assert (bad.status_code, bad.json()) == (400, {"reason": "BadDeviceToken"})
        mock.reject("01" * 32, 400, "BadDeviceToken", times=1)
        assert (await push(http, mock, "01" * 32)).status_code == 400
        assert (await push(http, mock, "01" * 32)).status_code == 200
        assert [n.reason for n in mock.notifications] == ["Unregistered", "Unregistered", "BadDeviceToken",
                                                         "BadDeviceToken", None]


async def test_transient_failures_carry_retry_after_then_pushes_pass(apns: MockAPNs, http):
    apns.throttle_next(1, retry_after=7)
    apns.fail_next(1, 503, "ServiceUnavailable")
    apns.fail_next(1, 500, "InternalServerError")
    first = await push(http, apns)
    assert (first.status_code, first.headers["retry-after"]) == (429, "7")
    assert first.json() == {"reason": "TooManyRequests"}
    assert (await push(http, apns)).json() == {"reason": "ServiceUnavailable"}
    assert (await push(http, apns)).status_code == 500
    assert (await push(http, apns)).status_code == 200


async def test_refused_streams_get_rst_stream_refused_then_the_retry_is_accepted(apns: MockAPNs, ca: LocalCA):
    apns.refuse_next(1)
    raw = await RawH2.connect(apns.host, apns.port, ca)
    sid = raw.request(f"/3/device/{TOKEN}", PAYLOAD)
    await raw.flush()
    await raw.until(has(StreamReset, sid))
    assert raw.of(StreamReset, sid)[0].error_code == ErrorCodes.REFUSED_STREAM
    retry = raw.request(f"/3/device/{TOKEN}", PAYLOAD)
    await raw.flush()
    await raw.until(has(StreamEnded, retry))
    assert raw.status(retry) == 200
    assert [n.status for n in apns.notifications] == [None, 200]
    await raw.aclose()


async def test_max_concurrent_streams_starts_at_1_and_rises_to_1000_after_the_first_success(
        apns: MockAPNs, ca: LocalCA):
    raw = await RawH2.connect(apns.host, apns.port, ca)
    await raw.until(lambda events: bool(settings_mcs(events)))
    assert raw.h2.remote_settings.max_concurrent_streams == 1
    sid = raw.request(f"/3/device/{TOKEN}", PAYLOAD)
    await raw.flush()
    await raw.until(lambda events: has(StreamEnded, sid)(events) and len(settings_mcs(events)) >= 2)
    assert settings_mcs(raw.events) == [1, 1000]
    assert raw.h2.remote_settings.max_concurrent_streams == 1000
    await raw.aclose()


async def test_a_rejection_drops_the_limit_back_to_1_when_configured(ca: LocalCA, apns_key: APNsKey):
    mock = MockAPNs(key=apns_key, tls=ca, lower_after_rejection=True)
    mock.unregister(OTHER)
    async with mock.serving():
        raw = await RawH2.connect(mock.host, mock.port, ca)
        for token in (TOKEN, OTHER, TOKEN):
            sid = raw.request(f"/3/device/{token}", PAYLOAD)
            await raw.flush()
            await raw.until(has(StreamEnded, sid))
        await raw.until(lambda events: len(settings_mcs(events)) >= 4)
        assert settings_mcs(raw.events) == [1, 1000, 1, 1000]
        await raw.aclose()


async def test_streams_opened_over_the_limit_are_refused_and_the_connection_survives(apns: MockAPNs, ca):
    raw = await RawH2.connect(apns.host, apns.port, ca)
    sids = [raw.request(f"/3/device/{TOKEN}", PAYLOAD) for _ in range(3)]  # before reading SETTINGS
    await raw.flush()
    await raw.until(lambda events: has(StreamEnded, sids[0])(events)
                    and all(has(StreamReset, s)(events) for s in sids[1:]))
    assert raw.status(sids[0]) == 200
    assert {raw.of(StreamReset, s)[0].error_code for s in sids[1:]} == {ErrorCodes.REFUSED_STREAM}
    later = raw.request(f"/3/device/{TOKEN}", PAYLOAD)
    await raw.flush()
    await raw.until(has(StreamEnded, later))
    assert raw.status(later) == 200
    [info] = apns.server.connections
    assert (info.requests, info.refused_over_limit) == (2, 2)
    await raw.aclose()


async def test_goaway_after_n_answers_up_to_last_stream_id_then_closes(ca: LocalCA, apns_key: APNsKey):
    mock = MockAPNs(key=apns_key, tls=ca, initial_max_concurrent_streams=100, max_concurrent_streams=100)
    mock.goaway_after(2, debug_data=b'{"reason":"Shutdown"}')
    async with mock.serving():
        raw = await RawH2.connect(mock.host, mock.port, ca)
        await raw.until(lambda events: bool(settings_mcs(events)))
        sids = [raw.request(f"/3/device/{TOKEN}", PAYLOAD) for _ in range(3)]
        await raw.flush()
        await raw.until_closed()
        [goaway] = raw.of(ConnectionTerminated)
        assert (goaway.last_stream_id, goaway.error_code) == (sids[1], ErrorCodes.NO_ERROR)
        assert json.loads(goaway.additional_data) == {"reason": "Shutdown"}
        assert [raw.status(s) for s in sids] == [200, 200, None]
        assert raw.closed and len(mock.notifications) == 2


async def test_goaway_sent_first_precedes_the_answers_it_still_owes(ca: LocalCA, apns_key: APNsKey):
    mock = MockAPNs(key=apns_key, tls=ca, initial_max_concurrent_streams=100, max_concurrent_streams=100)
    mock.delay = 0.01
    async with mock.serving():
        raw = await RawH2.connect(mock.host, mock.port, ca)
        await raw.until(lambda events: bool(settings_mcs(events)))
        sids = [raw.request(f"/3/device/{TOKEN}", PAYLOAD) for _ in range(2)]
        await raw.flush()
        await mock.server.requests.wait_for(2)
        mock.goaway_now(send_first=True)
        await raw.until(has(ConnectionTerminated))
        assert raw.of(ConnectionTerminated)[0].last_stream_id == sids[1]
        assert raw.of(ResponseReceived) == []
        with pytest.raises(ProtocolError):  # python-h2 cannot take answers after a GOAWAY
            await raw.until_closed()
        await mock.wait_for(2)


async def test_after_goaway_httpx_reconnects_and_the_next_push_lands_on_a_new_connection(
        ca: LocalCA, apns_key: APNsKey):
    mock = MockAPNs(key=apns_key, tls=ca)
    mock.goaway_after(1)
    async with mock.serving(), client_for(ca) as http:
        assert (await push(http, mock)).status_code == 200
        await mock.server.connections.wait_for(1, lambda c: c.closed)
        assert (await push(http, mock)).status_code == 200
        assert [n.connection_id for n in mock.notifications] == [1, 2]


async def test_drop_after_n_closes_the_connection_without_goaway(apns: MockAPNs, http):
    apns.drop_after(1)
    assert (await push(http, apns)).status_code == 200
    with pytest.raises(httpx.TransportError):
        await push(http, apns)
    assert len(apns.notifications) == 1
    assert not apns.server.connections[0].goaway_sent
    assert (await push(http, apns)).status_code == 200  # a fresh connection


async def test_slow_responses_are_delayed_and_recorded_once_answered(apns: MockAPNs, http):
    apns.delay = 0.05
    start = anyio.current_time()
    assert (await push(http, apns)).status_code == 200
    assert anyio.current_time() - start >= 0.05
    assert len(apns.notifications) == 1


def test_key_helper_writes_a_pkcs8_p8_file(tmp_path):
    key = generate_apns_key(tmp_path / "AuthKey.p8")
    text = (tmp_path / "AuthKey.p8").read_text()
    assert text.startswith("-----BEGIN PRIVATE KEY-----")
    assert len(key.key_id) == 10 and len(key.team_id) == 10
    env = MockAPNs(key=key).env(tmp_path / "k.p8")
    assert env["PUSHGO_APNS_KEY_ID"] == key.key_id and env["PUSHGO_APNS_KEY_FILE"].endswith("k.p8")


# --------------------------------------------------------------------------- generic server


async def test_generic_server_actions_and_flow_control(ca: LocalCA):
    async def handler(req: Request):
        if req.path == "/big":
            return Response(200, [("x-len", str(len(req.body)))], b"z" * 200_000)
        if req.path == "/reset":
            return ResetStream(ErrorCodes.CANCEL)
        if req.path == "/slow":
            return Delay(0.01, Response(204))
        if req.path == "/goaway":
            return GoAway(response=Response(202), debug_data=b"bye")
        return Drop(reset=True)

    server = H2Server(handler, ssl_context=ca.server_context())
    async with server.serving():
        async with client_for(ca) as http:  # both directions beyond the 64 KiB initial windows
            big = await http.post(f"{server.origin}/big", content=b"a" * 150_000)
        assert (big.headers["x-len"], big.content) == ("150000", b"z" * 200_000)
        raw = await RawH2.connect(server.host, server.port, ca)
        reset, slow = raw.request("/reset"), raw.request("/slow")
        raw.h2.ping(b"12345678")
        await raw.flush()
        await raw.until(lambda ev: has(StreamReset, reset)(ev) and has(StreamEnded, slow)(ev)
                        and has(PingAckReceived)(ev))
        assert raw.of(StreamReset, reset)[0].error_code == ErrorCodes.CANCEL
        assert raw.status(slow) == 204
        gone = raw.request("/goaway")
        await raw.flush()
        await raw.until_closed()
        assert raw.status(gone) == 202
        assert raw.of(ConnectionTerminated)[0].last_stream_id == gone
        dropped = await RawH2.connect(server.host, server.port, ca)
        dropped.request("/drop")
        await dropped.flush()
        await dropped.until_closed()
        assert dropped.closed and not dropped.of(ResponseReceived)
    assert [r.path for r in server.requests] == ["/big", "/reset", "/slow", "/goaway", "/drop"]


async def test_recorder_waits_for_matching_items_and_times_out():
    rec: Recorder[int] = Recorder()
    async with anyio.create_task_group() as tg:
        async def feed() -> None:
            for i in range(5):
                rec.append(i)
                await anyio.lowlevel.checkpoint()
        tg.start_soon(feed)
        assert await rec.wait_for(2, lambda i: i % 2 == 1) == [1, 3]
    with pytest.raises(TimeoutError):
        await rec.wait_for(1, lambda i: i > 10, within=0.01)


# --------------------------------------------------------------------------- FCM


async def get_token(http: httpx.AsyncClient, fcm: MockFCM, assertion: str | None = None) -> httpx.Response:
    assertion = assertion or fcm.service_account.assertion(fcm.token_uri)
    return await http.post(fcm.token_uri, data={"grant_type": JWT_BEARER, "assertion": assertion})


async def fcm_send(http: httpx.AsyncClient, fcm: MockFCM, access_token: str | None, message: dict[str, Any],
                   project: str = "pushgo-test") -> httpx.Response:
    headers = {"authorization": f"Bearer {access_token}"} if access_token else {}
    return await http.post(f"{fcm.origin}/v1/projects/{project}/messages:send", json={"message": message},
                           headers=headers)


MESSAGE = {"token": "fcm-token-1", "data": {"k": "v"}, "android": {"priority": "high", "ttl": "3600s"}}


async def test_fcm_token_flow_send_and_401_after_revocation(fcm: MockFCM, http):
    grant = await get_token(http, fcm)
    assert grant.http_version == "HTTP/2" and grant.status_code == 200
    doc = grant.json()
    assert doc["token_type"] == "Bearer" and doc["expires_in"] == 3600
    sent = await fcm_send(http, fcm, doc["access_token"], MESSAGE)
    assert sent.status_code == 200
    assert sent.json()["name"].startswith("projects/pushgo-test/messages/")
    fcm.revoke_access_tokens()
    denied = await fcm_send(http, fcm, doc["access_token"], MESSAGE)
    assert (denied.status_code, denied.json()["error"]["status"]) == (401, "UNAUTHENTICATED")
    assert "invalid_token" in denied.headers["www-authenticate"]
    fresh = (await get_token(http, fcm)).json()["access_token"]
    assert (await fcm_send(http, fcm, fresh, MESSAGE)).status_code == 200
    fcm.expire_access_tokens()
    assert (await fcm_send(http, fcm, fresh, MESSAGE)).status_code == 401
    notes = await fcm.wait_for(4)
    assert [n.status for n in notes] == [200, 401, 200, 401]
    assert notes[0].token == "fcm-token-1" and notes[0].data == {"k": "v"}
    assert [g.status for g in fcm.token_grants] == [200, 200]


async def test_fcm_token_endpoint_speaks_http11_too(fcm: MockFCM, ca: LocalCA):
    async with client_for(ca, http2=False) as http1:
        grant = await get_token(http1, fcm)
        again = await get_token(http1, fcm)
    assert grant.http_version == "HTTP/1.1" and grant.status_code == 200 and again.status_code == 200
    assert [(g.http_version, g.connection_id) for g in fcm.token_grants] == [("1.1", 1), ("1.1", 1)]


async def test_fcm_token_endpoint_rejects_bad_assertions(fcm: MockFCM, http):
    sa = fcm.service_account
    other_key = ServiceAccount.generate(sa.project_id, sa.client_email)
    checks: list[tuple[str, int, str]] = [
        (other_key.assertion(fcm.token_uri), 400, "invalid_grant"),
        (sa.assertion("https://oauth2.googleapis.com/token"), 400, "invalid_grant"),
        (sa.assertion(fcm.token_uri, iat=time.time() - 7200), 400, "invalid_grant"),
        (sa.assertion(fcm.token_uri, lifetime=7200), 400, "invalid_grant"),
        (sa.assertion(fcm.token_uri, scope="https://www.googleapis.com/auth/userinfo.email"), 400,
         "invalid_scope"),
        ("not.a.jwt", 400, "invalid_grant"),
    ]
    for assertion, status, error in checks:
        resp = await get_token(http, fcm, assertion)
        assert (resp.status_code, resp.json()["error"]) == (status, error), assertion[:40]
    wrong_grant = await http.post(fcm.token_uri, data={"grant_type": "client_credentials"})
    assert wrong_grant.json()["error"] == "unsupported_grant_type"
    assert fcm.valid_access_tokens == []


async def test_fcm_send_validation(fcm: MockFCM, http):
    token = fcm.issue_access_token()
    bad_data = await fcm_send(http, fcm, token, {"token": "t", "data": {"n": 12}})
    error = bad_data.json()["error"]
    assert (bad_data.status_code, error["status"]) == (400, "INVALID_ARGUMENT")
    assert error["message"] == "Invalid value at 'message.data[0].value' (TYPE_STRING), 12"
    assert error["details"][0]["fieldViolations"][0]["field"] == "message.data[0].value"
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"token": "t", "bogus": 1}, 400, "INVALID_ARGUMENT"),
        ({"data": {"k": "v"}}, 400, "INVALID_ARGUMENT"),
        ({"token": "t", "android": {"ttl": "3600"}}, 400, "INVALID_ARGUMENT"),
        ({"token": "t", "android": {"ttl": f"{29 * 86400}s"}}, 400, "INVALID_ARGUMENT"),
        ({"token": "t", "android": {"priority": "urgent"}}, 400, "INVALID_ARGUMENT"),
        ({"token": "t", "data": {"google.x": "v"}}, 400, "INVALID_ARGUMENT"),
        ({"token": "t", "data": {"k": "v" * 4096}}, 400, "INVALID_ARGUMENT"),
    ]
    for message, status, grpc in cases:
        resp = await fcm_send(http, fcm, token, message)
        assert (resp.status_code, resp.json()["error"]["status"]) == (status, grpc), message
    assert (await fcm_send(http, fcm, None, MESSAGE)).status_code == 401
    other_project = await fcm_send(http, fcm, token, MESSAGE, project="someone-else")
    assert (other_project.status_code, other_project.json()["error"]["status"]) == (403, "PERMISSION_DENIED")
    dry = await http.post(f"{fcm.origin}/v1/projects/pushgo-test/messages:send",
                          json={"message": MESSAGE, "validate_only": True},
                          headers={"authorization": f"Bearer {token}"})
    assert dry.json() == {"name": "projects/pushgo-test/messages/fake_message_id"}


async def test_fcm_scripted_errors_use_the_fcm_error_body(fcm: MockFCM, http):
    token = fcm.issue_access_token()
    fcm.unregister("dead")
    fcm.reject("bad", "INVALID_ARGUMENT")
    fcm.reject("busy", "QUOTA_EXCEEDED", retry_after=30, times=1)
    expected = {"dead": (404, "NOT_FOUND", "UNREGISTERED"),
                "bad": (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
                "busy": (429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED")}
    for device, (status, grpc, code) in expected.items():
        resp = await fcm_send(http, fcm, token, {"token": device, "data": {}})
        error = resp.json()["error"]
        assert (resp.status_code, error["code"], error["status"]) == (status, status, grpc), device
        assert error["details"] == [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                                     "errorCode": code}]
    assert (await fcm_send(http, fcm, token, {"token": "busy"})).status_code == 200
    fcm.fail_next(1, "UNAVAILABLE", retry_after=5)
    fcm.fail_next(1, "INTERNAL")
    unavailable = await fcm_send(http, fcm, token, MESSAGE)
    assert (unavailable.status_code, unavailable.headers["retry-after"]) == (503, "5")
    assert (await fcm_send(http, fcm, token, MESSAGE)).status_code == 500
    assert (await fcm_send(http, fcm, token, MESSAGE)).status_code == 200
    assert [m.error_code for m in fcm.messages][:3] == ["UNREGISTERED", "INVALID_ARGUMENT", "QUOTA_EXCEEDED"]


async def test_fcm_offers_100_streams_and_refuses_on_request(fcm: MockFCM, ca: LocalCA):
    fcm.refuse_next(1)
    raw = await RawH2.connect(fcm.host, fcm.port, ca)
    await raw.until(lambda events: bool(settings_mcs(events)))
    assert raw.h2.remote_settings.max_concurrent_streams == 100
    sid = raw.request("/v1/projects/pushgo-test/messages:send", json.dumps({"message": MESSAGE}).encode())
    await raw.flush()
    await raw.until(has(StreamReset, sid))
    assert raw.of(StreamReset, sid)[0].error_code == ErrorCodes.REFUSED_STREAM
    assert fcm.messages[0].status is None and fcm.messages[0].token == "fcm-token-1"
    await raw.aclose()


def test_service_account_file_points_at_the_mock(tmp_path, service_account: ServiceAccount):
    mock = MockFCM(service_account=service_account)
    mock.server.port = 8443
    path = mock.write_service_account(tmp_path / "sa.json")
    info = json.loads(path.read_text())
    assert info["type"] == "service_account" and info["project_id"] == "pushgo-test"
    assert info["token_uri"] == "https://127.0.0.1:8443/token"
    assert info["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert info["client_email"] == service_account.client_email
    assert info["private_key_id"] == service_account.private_key_id
