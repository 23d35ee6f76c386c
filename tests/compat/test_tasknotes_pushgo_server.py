"""The sender tasknotes-pushgo-server (Self-Command/tasknotes-pushgo-server, ``src/worker.ts``):
``POST {gateway}/message`` with ``Authorization: Bearer`` and a canonical JSON body (sorted
keys): its own ``op_id``, ``severity``, ``ttl`` as the absolute deadline in epoch ms, ``url``,
``tags`` and a small ``metadata``. It reads ``success === true`` and ``data.message_id``;
anything but 2xx is retried later with the same ``op_id``."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from tests.compat.client_shapes import data_of
from tests.helpers import PASSWORD, stored_channel

TOKEN = "tasknotes-gateway-token"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"token": TOKEN}


def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


async def test_a_checkin_reminder_and_its_retry(client, gateway):
    auth = {"authorization": f"Bearer {TOKEN}"}
    key = (await client.post("/device/register", json={"platform": "ios"},
                             headers=auth)).json()["data"]["device_key"]
    cid = await stored_channel(gateway, key)
    deadline = int(time.time() * 1000) + 3_600_000
    body = {"channel_id": cid, "password": PASSWORD, "op_id": str(uuid.uuid4()),
            "title": "开始打卡 · 晨跑", "body": "任务 2026-12-07 07:00–07:30。请打开页面拍照提交。",
            "severity": "high", "ttl": deadline,
            "url": "https://tasks.example.test/tasks/t1?checkpoint=start",
            "tags": ["TaskNotes", "开始打卡"],
            "metadata": {"tasknotes_action": "checkin", "tasknotes_checkpoint": "start"}}
    headers = {**auth, "content-type": "application/json"}
    first = await client.post("/message", content=canonical(body), headers=headers)
    data = data_of(first)
    assert first.json()["success"] is True and data["message_id"]
    # a retry after a lost answer: the same op_id and body answer the same message
    again = data_of(await client.post("/message", content=canonical(body), headers=headers))
    assert again["message_id"] == data["message_id"]
    pulled = await client.post("/v2/messages/pull", json={"device_key": key}, headers=auth)
    (item,) = pulled.json()["data"]["items"]
    assert item["payload"]["ttl"] == str(deadline)
    assert json.loads(item["payload"]["metadata"])["tasknotes_action"] == "checkin"


async def test_without_the_token_it_is_not_ok(client, gateway):
    resp = await client.post("/message", content=canonical({"channel_id": "x"}),
                             headers={"content-type": "application/json"})
    assert resp.status_code == 401 and not resp.is_success  # `!res.ok`: retried later
