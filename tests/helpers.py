"""Small HTTP helpers shared by the API tests."""

from __future__ import annotations

from typing import Any

import httpx

PASSWORD = "secret-pass-1"


async def call(client: httpx.AsyncClient, path: str, body: Any = None, *,
               expect: int = 200) -> dict[str, Any]:
    if body is None:
        resp = await client.get(path)
    else:
        resp = await client.post(path, json=body)
    assert resp.status_code == expect, (resp.status_code, resp.text)
    doc: dict[str, Any] = resp.json()
    if expect == 200:
        assert doc["success"] is True
        return doc["data"]  # type: ignore[no-any-return]
    assert doc["success"] is False
    assert doc["error_code"], doc
    return doc


async def register(client: httpx.AsyncClient, platform: str = "ios") -> str:
    data = await call(client, "/device/register", {"platform": platform})
    return str(data["device_key"])


async def new_channel(client: httpx.AsyncClient, device_key: str | None = None,
                      name: str = "ops", password: str = PASSWORD) -> str:
    key = device_key or await register(client)
    data = await call(client, "/channel/subscribe",
                      {"device_key": key, "channel_name": name, "password": password})
    return str(data["channel_id"])


async def send(client: httpx.AsyncClient, channel_id: str, **fields: Any) -> dict[str, Any]:
    body = {"channel_id": channel_id, "password": PASSWORD, "title": "hello", **fields}
    return await call(client, "/message", body)


async def pull(client: httpx.AsyncClient, device_key: str) -> list[dict[str, Any]]:
    data = await call(client, "/messages/pull", {"device_key": device_key})
    return list(data["items"])
