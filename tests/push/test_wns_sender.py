"""The WNS sender against MockWNS (real TLS, HTTP/1.1): one result per job with the
notification's headers and binary map, the answer table as outcomes (a dead channel, throttling
with Retry-After, 5xx), a refused access token renewed once, a 413 answered with the wake-up
map, channel URIs off notify.windows.com never contacted, expired jobs never sent, a closed
connection resent here; and in memory on Trio's mock clock, a WNS that never answers ends each
try at its deadline. Also the client-credentials token source."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from pushgo.delivery.providers import _token_poster
from pushgo.protocol import wns as W
from pushgo.protocol.outcomes import Delivered, Rejected
from pushgo.protocol.payload import wakeup_data
from pushgo.push.connection import Liveness
from pushgo.push.credentials import CredentialError, WnsTokenSource
from pushgo.push.sender import LOCAL_TRIES, Expired, Job, Result, ResultBuffer, TransportFailure
from pushgo.push.wns import WnsSender, ssl_context
from pushgo.testing.mock_wns import MockWNS
from tests.push.h2peer import on_mock_clock

pytestmark = pytest.mark.anyio

NOW_MS = 1_700_000_000_000
DATA = {"title": "Disk", "body": "/var at 91%", "message_id": "m1", "channel_id": "c1"}


def templates(data: dict[str, str] = DATA, severity: str = "normal",
              ) -> tuple[W.PayloadTemplate, W.PayloadTemplate]:
    return (W.PayloadTemplate.build(data, W.priority(severity)),
            W.PayloadTemplate.build(wakeup_data(data), W.priority("high"), wakeup=True))


def job(uri: str, seq: int = 1, *, expires_at_ms: int = NOW_MS + 3_600_000,
        template: Any = None) -> Job:
    return Job(seq, f"delivery{seq:024d}", "device-1", uri, template or templates(),
               expires_at_ms, False)


class StaticToken:
    def __init__(self, token: str = "not-issued-by-wns") -> None:
        self.value = token
        self.invalidated: list[str] = []

    async def token(self) -> str:
        return self.value

    def invalidate(self, token: str) -> None:
        self.invalidated.append(token)


async def take(results: ResultBuffer, n: int = 1, within: float = 10) -> list[Result]:
    got: list[Result] = []
    with anyio.fail_after(within):
        while len(got) < n:
            got += await results.take()
    return got


@asynccontextmanager
async def sending(mock: MockWNS, tokens: Any = None, **kw: Any,
                  ) -> AsyncIterator[tuple[WnsSender, ResultBuffer]]:
    results = ResultBuffer()
    ctx = ssl_context(str(mock.ca_file))
    async with mock.serving(), anyio.create_task_group() as tg:
        source = tokens or WnsTokenSource(mock.client_id, mock.client_secret, mock.token_url,
                                          W.SCOPE, _token_poster(ctx))
        sender = WnsSender(results, source, endpoint=mock.origin, ssl_context=ctx,
                           clock_ms=lambda: NOW_MS, **kw)
        await tg.start(sender.run)
        yield sender, results
        await sender.aclose(1.0)


async def test_a_notification_carries_the_raw_headers_and_the_map():
    mock = MockWNS()
    uri = mock.channel_uri()
    async with sending(mock) as (sender, results):
        await sender.jobs_in.send(job(uri, template=templates(severity="critical")))
        [result] = await take(results)
    assert isinstance(result.outcome, Delivered) and result.outcome.provider_id
    [note] = mock.notifications.items
    assert note.channel == "/w/?" + uri.split("?", 1)[1]  # the channel URI's own path and query
    h = note.headers
    assert h["x-wns-type"] == "wns/raw" and h["content-type"] == "application/octet-stream"
    assert h["x-wns-priority"] == "1"
    assert h["x-wns-ttl"] == "3600"
    assert h["authorization"] == f"Bearer {mock.token_grants[0].access_token}"
    assert note.data == {"delivery_id": "delivery" + "0" * 23 + "1", **DATA}
    assert [g.scope for g in mock.token_grants] == ["notify.windows.com"]


async def test_many_notifications_share_one_access_token():
    mock = MockWNS()
    async with sending(mock) as (sender, results):
        for seq in range(1, 41):
            await sender.jobs_in.send(job(mock.channel_uri(), seq))
        got = await take(results, 40)
    assert all(isinstance(r.outcome, Delivered) for r in got)
    assert len(mock.token_grants) == 1 and len(mock.accepted) == 40


@pytest.mark.parametrize(("status", "reason"), [(410, "ChannelExpired"), (404, "ChannelNotFound")])
async def test_a_dead_channel_is_a_dead_token(status, reason):
    mock = MockWNS()
    uri = mock.channel_uri()
    mock.answer(uri, status)
    async with sending(mock) as (sender, results):
        await sender.jobs_in.send(job(uri))
        [result] = await take(results)
    assert result.outcome == Rejected(reason, status, "dead_token")


async def test_throttling_and_5xx_are_retryable_with_retry_after():
    mock = MockWNS()
    mock.throttle_next(1, retry_after=7)
    mock.fail_next(1, 503)
    async with sending(mock) as (sender, results):
        await sender.jobs_in.send(job(mock.channel_uri(), 1))
        [first] = await take(results)
        await sender.jobs_in.send(job(mock.channel_uri(), 2))
        [second] = await take(results)
    assert first.outcome == Rejected("Throttled", 406, "retry", None, 7.0)
    assert second.outcome == Rejected("ServiceUnavailable", 503, "retry")


async def test_a_revoked_access_token_is_renewed_once():
    mock = MockWNS()
    async with sending(mock) as (sender, results):
        await sender.jobs_in.send(job(mock.channel_uri(), 1))
        await take(results)
        mock.revoke_access_tokens()
        await sender.jobs_in.send(job(mock.channel_uri(), 2))
        [result] = await take(results)
    assert isinstance(result.outcome, Delivered)
    assert [n.status for n in mock.notifications] == [200, 401, 200]
    assert len(mock.token_grants) == 2


async def test_a_token_refused_twice_ends_the_delivery():
    mock = MockWNS()
    tokens = StaticToken()
    async with sending(mock, tokens) as (sender, results):
        await sender.jobs_in.send(job(mock.channel_uri()))
        [result] = await take(results)
    assert result.outcome == Rejected("Unauthorized", 401, "permanent")
    assert tokens.invalidated == ["not-issued-by-wns"]
    assert [n.status for n in mock.notifications] == [401, 401]


async def test_a_413_to_the_full_map_sends_the_wakeup_map():
    mock = MockWNS()
    uri = mock.channel_uri()
    mock.answer(uri, 413, times=1)
    async with sending(mock) as (sender, results):
        await sender.jobs_in.send(job(uri))
        [result] = await take(results)
    assert isinstance(result.outcome, Delivered)
    first, second = mock.notifications.items
    assert first.status == 413 and first.data["body"] == DATA["body"]
    assert second.status == 200 and second.data["provider_wakeup"] == "1"
    assert second.headers["x-wns-priority"] == "1"


async def test_a_payload_over_5kb_goes_as_the_wakeup_map():
    mock = MockWNS()
    big = {**DATA, "body": "y" * 8000}
    async with sending(mock) as (sender, results):
        await sender.jobs_in.send(job(mock.channel_uri(), template=templates(big)))
        [result] = await take(results)
    assert isinstance(result.outcome, Delivered)
    [note] = mock.notifications.items
    assert len(note.body) < 5120 and note.data["provider_wakeup"] == "1"
    assert note.data["message_id"] == "m1"


@pytest.mark.parametrize("uri", ["https://127.0.0.1:1/w/?token=x",
                                 "https://notify.windows.com.attacker.example/?token=x",
                                 "http://db5p.notify.windows.com/?token=x"])
async def test_a_channel_uri_off_notify_windows_com_is_never_contacted(uri):
    mock = MockWNS()
    async with sending(mock) as (sender, results):
        await sender.jobs_in.send(job(uri))
        [result] = await take(results)
    assert result.outcome == Rejected("InvalidChannelUri", 0, "dead_token")
    assert len(mock.notifications) == 0 and len(mock.token_grants) == 0


async def test_an_expired_job_is_never_sent():
    mock = MockWNS()
    async with sending(mock) as (sender, results):
        await sender.jobs_in.send(job(mock.channel_uri(), expires_at_ms=NOW_MS))
        [result] = await take(results)
    assert isinstance(result.outcome, Expired) and len(mock.notifications) == 0


async def test_a_closed_connection_is_resent_here():
    mock = MockWNS()
    mock.refuse_next(1)  # HTTP/1.1: the connection is closed without an answer
    async with sending(mock) as (sender, results):
        await sender.jobs_in.send(job(mock.channel_uri()))
        [result] = await take(results)
    assert isinstance(result.outcome, Delivered)
    assert [n.status for n in mock.notifications] == [None, 200]
    assert sender.resent == 1


class WrongSecret:
    """The client-credentials source with a wrong secret, built once the mock listens."""

    def __init__(self, mock: MockWNS) -> None:
        self.mock = mock
        self.source: WnsTokenSource | None = None

    async def token(self) -> str:
        if self.source is None:
            self.source = WnsTokenSource(
                self.mock.client_id, "wrong-secret-value", self.mock.token_url, W.SCOPE,
                _token_poster(ssl_context(str(self.mock.ca_file))))
        return await self.source.token()

    def invalidate(self, token: str) -> None:
        pass


async def test_wrong_client_credentials_are_a_transport_failure_without_the_secret():
    mock = MockWNS()
    tokens = WrongSecret(mock)
    async with sending(mock, tokens) as (sender, results):
        await sender.jobs_in.send(job(mock.channel_uri()))
        [result] = await take(results)
    assert isinstance(result.outcome, TransportFailure)
    assert "wrong-secret-value" not in result.outcome.reason
    assert [g.error for g in mock.token_grants] == ["invalid_client"]


# -- in memory, on the mock clock ----------------------------------------------------------


@on_mock_clock()
async def test_a_wns_that_never_answers_ends_each_try_at_its_deadline():
    seen: list[httpx.Request] = []

    async def silent(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        await anyio.sleep_forever()
        raise AssertionError

    results = ResultBuffer()
    sender = WnsSender(results, StaticToken(), transport=httpx.MockTransport(silent),
                       clock_ms=lambda: NOW_MS, liveness=Liveness(response_s=30.0))
    async with anyio.create_task_group() as tg:
        await tg.start(sender.run)
        await sender.jobs_in.send(job("https://db5p.notify.windows.com/?token=abc"))
        [result] = await take(results, within=1000)  # virtual seconds
        await sender.aclose(0)
    assert result.outcome == TransportFailure("timeout")
    assert len(seen) == LOCAL_TRIES and sender.pool.unresponsive == LOCAL_TRIES
    assert str(seen[0].url) == "https://db5p.notify.windows.com/?token=abc"


# -- the token source ----------------------------------------------------------------------


class FakeEndpoint:
    def __init__(self) -> None:
        self.forms: list[dict[str, str]] = []
        self.answer: dict[str, Any] = {"access_token": "t1", "expires_in": 3600}

    async def __call__(self, url: str, form: dict[str, str]) -> dict[str, Any]:
        self.forms.append(form)
        answer = dict(self.answer)
        if "access_token" in answer:
            answer["access_token"] = f"t{len(self.forms)}"
        return answer


async def test_the_token_is_cached_until_shortly_before_expiry_and_renewed_once_refused():
    now = [1000.0]
    endpoint = FakeEndpoint()
    source = WnsTokenSource("sid", "secret", "https://login.example/token", W.SCOPE, endpoint,
                            clock=lambda: now[0])
    assert await source.token() == "t1"
    assert endpoint.forms == [{"grant_type": "client_credentials", "client_id": "sid",
                               "client_secret": "secret", "scope": "notify.windows.com"}]
    now[0] += 3600 - 301
    assert await source.token() == "t1"
    now[0] += 2
    assert await source.token() == "t2"  # within 5 minutes of expiry: renewed
    source.invalidate("t1")  # an old token refused: nothing to do
    assert await source.token() == "t2"
    source.invalidate("t2")
    assert await source.token() == "t3"
    endpoint.answer = {"error": "invalid_client"}
    source.invalidate("t3")
    with pytest.raises(CredentialError) as info:
        await source.token()
    assert "secret" not in str(info.value)
