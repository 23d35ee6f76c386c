"""The gateway token's ``?token=`` fallback (PushGo Gateway v1.3), for senders that cannot set
headers: accepted when no Authorization header is sent, and never written anywhere — not in
a log line, an error message or a metrics label."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.helpers import PASSWORD, stored_channel

TOKEN = "q-token-7f3a9c2e51d84b06"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"token": TOKEN}


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record the gateway side wrote (the test's own HTTP client logs its URLs)."""
    return "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records
                     if not r.name.startswith(("httpx", "httpcore")))


async def test_the_token_in_the_query_opens_the_door_and_is_never_logged(
        client, gateway, caplog: pytest.LogCaptureFixture) -> None:
    cid = await stored_channel(gateway)
    with caplog.at_level(logging.DEBUG):
        sent = await client.post(f"/message?token={TOKEN}",
                                 json={"channel_id": cid, "password": PASSWORD, "title": "q"})
        assert sent.status_code == 200, sent.text
        op_id = sent.json()["data"]["op_id"]
        got = await client.get("/message", params={"channel_id": cid, "password": PASSWORD,
                                                   "title": "g", "token": TOKEN})
        assert got.status_code == 200, got.text
        status = await client.get(f"/send_status/{op_id}?token={TOKEN}")
        assert status.status_code == 200 and status.json()["data"]["op_id"] == op_id
        deliveries = await client.get(f"/deliveries/{op_id}", params={"token": TOKEN})
        assert deliveries.status_code == 200
        exists = await client.get("/channel/exists", params={"channel_id": cid, "token": TOKEN})
        assert exists.json()["data"]["exists"] is True
        bad_query = await client.get("/message", params={"token": TOKEN, "bogus": "1"})
        assert bad_query.status_code == 400 and TOKEN not in bad_query.text
        unknown = await client.get(f"/nowhere?token={TOKEN}")
        assert unknown.status_code == 404 and TOKEN not in unknown.text
    logged = everything_logged(caplog)
    assert "/message" in logged and "/send_status/" in logged  # the request lines are there
    assert TOKEN not in logged
    metrics = await client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert metrics.status_code == 200
    assert "/send_status/{op_id}" in metrics.text and TOKEN not in metrics.text


async def test_a_wrong_or_missing_token_is_refused(client, gateway, caplog) -> None:
    with caplog.at_level(logging.DEBUG):
        for url in ("/channel/exists?channel_id=x&token=wrong", "/channel/exists?channel_id=x",
                    "/channel/exists?channel_id=x&token="):
            resp = await client.get(url)
            assert resp.status_code == 401, url
            assert resp.json()["error_code"] == "authentication_failed"
        # the last one counts, as for headers
        resp = await client.get(f"/channel/exists?channel_id=x&token={TOKEN}&token=wrong")
        assert resp.status_code == 401
    assert TOKEN not in everything_logged(caplog)


async def test_the_authorization_header_comes_first(client, gateway) -> None:
    # A wrong header is not rescued by a right query token: the header is what was meant.
    resp = await client.get(f"/channel/exists?channel_id=x&token={TOKEN}",
                            headers={"authorization": "Bearer wrong"})
    assert resp.status_code == 401
    resp = await client.get("/channel/exists?channel_id=x&token=wrong",
                            headers={"authorization": f"Bearer {TOKEN}"})
    assert resp.status_code != 401
