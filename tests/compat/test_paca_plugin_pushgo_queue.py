"""The sender paca-plugin-pushgo-queue (Self-Command/paca-plugin-pushgo-queue,
``internal/worker/gateway.go`` and ``card.go``): ``POST {gateway}/message`` with
``Authorization: Bearer``, its saved payload plus ``channel_id``, ``password`` and its own
``op_id``; task cards travel as metadata (``task_card_version``, ``task_card``: a JSON text of
a few KiB, past v1.2.9's 512 bytes). A 2xx counts only when ``success`` is true,
``data.op_id`` is its op_id and ``data.message_id`` is not empty; 429 and 5xx are retried after
``Retry-After`` (whole seconds, 1..300), other answers stop the job."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.compat.client_shapes import data_of
from tests.helpers import PASSWORD, stored_channel

TOKEN = "paca-gateway-token"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"token": TOKEN}


def task_card() -> dict[str, str]:
    card = {"title": "模板任务", "number": "#42", "created": "2026-12-01T08:00:00Z",
            "content": "完整任务说明" * 300, "start": None, "due": "2026-12-08T18:00:00Z",
            "priority": "高", "status": "进行中", "tags": ["ops"], "source": "任务中心",
            "timezone": "Asia/Shanghai"}
    return {"task_card_version": "1", "task_card": json.dumps(card, ensure_ascii=False)}


async def test_a_task_card_is_acknowledged_with_its_op_id(client, gateway):
    auth = {"authorization": f"Bearer {TOKEN}"}
    key = await register_with(client, auth)
    cid = await stored_channel(gateway, key)
    op = str(uuid.uuid4())
    saved: dict[str, Any] = {"title": "任务提醒 · 模板任务", "body": "截止 2026-12-08 18:00",
                             "severity": "high", "metadata": task_card()}
    assert len(saved["metadata"]["task_card"].encode()) > 5000
    body = {**saved, "channel_id": cid, "password": PASSWORD, "op_id": op}
    resp = await client.post("/message", content=json.dumps(body).encode(),
                             headers={**auth, "content-type": "application/json"})
    data = data_of(resp)
    assert resp.json()["success"] is True
    assert data["op_id"] == op and data["message_id"] != ""


async def test_a_wrong_password_stops_the_job(client, gateway):
    auth = {"authorization": f"Bearer {TOKEN}"}
    cid = await stored_channel(gateway)
    body = {"title": "x", "channel_id": cid, "password": "not-the-password", "op_id": "op-1"}
    resp = await client.post("/message", json=body, headers=auth)
    # neither 2xx nor 429/5xx: "Gateway rejected configuration or request"
    assert resp.status_code == 403 and "retry-after" not in resp.headers


async def register_with(client: Any, auth: dict[str, str]) -> str:
    resp = await client.post("/device/register", json={"platform": "android"}, headers=auth)
    return str(data_of(resp)["device_key"])

