"""MockAPNs checks Live Activity pushes against ActivityKit's rules (validating mode) and
records them apart."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from pushgo.testing.mock_apns import MockAPNs
from pushgo.testing.tls import LocalCA
from tests.testing.test_mock_providers import client_for, push


@pytest.fixture(scope="module")
def local_ca() -> LocalCA:
    return LocalCA()


@pytest.fixture
async def mock(local_ca: LocalCA) -> AsyncIterator[MockAPNs]:
    apns = MockAPNs(topic="com.example.app", tls=local_ca, validate=True)
    async with apns.serving():
        yield apns


@pytest.fixture
async def client(local_ca: LocalCA) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(local_ca) as c:
        yield c

LIVE = {"apns-push-type": "liveactivity", "apns-topic": "com.example.app.push-type.liveactivity"}
NOW = int(time.time())


def start(**aps: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event": "start", "timestamp": NOW, "content-state": {"title": "Door", "state": "ONGOING"},
        "attributes-type": "PushGoEventActivityAttributes",
        "attributes": {"eventID": "e1", "channelID": "c1"},
        "alert": {"title": "Door", "body": "open"}, "stale-date": NOW + 3600,
    }
    base.update(aps)
    return {"aps": {k: v for k, v in base.items() if v is not None}}


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


async def test_well_formed_start_update_and_end_are_accepted_and_recorded(
        mock: MockAPNs, client: httpx.AsyncClient) -> None:
    state = {"title": "Door", "state": "CLOSED"}
    bodies = [
        start(),
        {"aps": {"event": "update", "timestamp": NOW, "content-state": state,
                 "stale-date": NOW + 60}},
        {"aps": {"event": "end", "timestamp": NOW, "content-state": state,
                 "dismissal-date": NOW + 900}},
    ]
    for body in bodies:
        resp = await push(client, mock, body=encode(body), **LIVE)
        assert resp.status_code == 200, resp.text
    await push(client, mock)  # an alert: not a Live Activity push
    assert [n.payload["aps"]["event"] for n in mock.live_activities] == ["start", "update", "end"]
    assert len(mock.accepted) == 4


async def test_each_live_activity_rule_is_enforced_with_a_400_and_its_reason(
        mock: MockAPNs, client: httpx.AsyncClient) -> None:
    update = {"event": "update", "timestamp": NOW, "content-state": {"state": "ONGOING"}}
    cases: list[tuple[str, dict[str, str], bytes, int, str]] = [
        ("topic without suffix", {**LIVE, "apns-topic": "com.example.app"}, encode(start()),
         400, "BadTopic"),
        ("suffix on an alert", {"apns-topic": "com.example.app.push-type.liveactivity"},
         encode({"aps": {"alert": "x"}}), 400, "BadTopic"),
        ("no event", LIVE, encode(start(event=None)), 400, "BadLiveActivityEvent"),
        ("unknown event", LIVE, encode(start(event="pause")), 400, "BadLiveActivityEvent"),
        ("timestamp in ms as text", LIVE, encode(start(timestamp=str(NOW * 1000))), 400,
         "BadLiveActivityTimestamp"),
        ("fractional timestamp", LIVE, encode(start(timestamp=NOW + 0.5)), 400,
         "BadLiveActivityTimestamp"),
        ("no content-state", LIVE, encode(start(**{"content-state": None})), 400,
         "MissingContentState"),
        ("start without attributes", LIVE, encode(start(attributes=None)), 400,
         "MissingAttributes"),
        ("start without attributes-type", LIVE, encode(start(**{"attributes-type": None})),
         400, "MissingAttributes"),
        ("attributes on update", LIVE,
         encode({"aps": {**update, "attributes": {"eventID": "e1"}}}), 400, "BadAttributes"),
        ("dismissal-date on update", LIVE,
         encode({"aps": {**update, "dismissal-date": NOW}}), 400, "BadDismissalDate"),
        ("stale-date as text", LIVE, encode({"aps": {**update, "stale-date": "later"}}), 400,
         "BadStaleDate"),
        ("over 4096 bytes", LIVE,
         encode(start(**{"content-state": {"title": "x" * 4100}})), 413, "PayloadTooLarge"),
    ]
    for name, headers, body, status, reason in cases:
        resp = await push(client, mock, body=body, **headers)
        assert (resp.status_code, resp.json()) == (status, {"reason": reason}), name
    assert not mock.accepted
    assert len(mock.live_activities) == len(cases) - 1  # all but the alert with the suffix
