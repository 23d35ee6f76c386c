"""Small HTTP helpers shared by the API tests, and waiting on a condition."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import httpx
import pytest
from trio.testing import MockClock

T = TypeVar("T")

#: The longest pause between two looks at a condition: a test waits on what it expects, not
#: on the clock.
MAX_POLL_S = 0.05

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


def assert_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """An error envelope with exactly this status and error_code, and a ``problem`` whose
    request_id is the response's x-request-id."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    doc: dict[str, Any] = resp.json()
    assert doc["success"] is False
    assert doc["error_code"] == code, doc
    assert "data" not in doc
    assert isinstance(doc["error"], str) and doc["error"]
    problem = doc["problem"]
    assert problem["code"] == code
    assert problem["status"] == status
    assert problem["request_id"] == resp.headers["x-request-id"]
    return doc


async def fails(client: httpx.AsyncClient, path: str, body: Any, status: int,
                code: str) -> dict[str, Any]:
    """POST ``body`` (GET when None) and expect an error envelope with ``status``/``code``."""
    resp = await (client.get(path) if body is None else client.post(path, json=body))
    return assert_error(resp, status, code)


# --- added for the send / events / things / inbox API tests -----------------------------------


async def fail(client: httpx.AsyncClient, path: str, body: Any, status: int,
               code: str) -> dict[str, Any]:
    """POST ``body`` (a dict) to ``path`` and check the error envelope: exact status and code."""
    resp = await client.post(path, json=body)
    assert (resp.status_code, _code_of(resp)) == (status, code), resp.text
    doc: dict[str, Any] = resp.json()
    assert doc["success"] is False and "data" not in doc
    return doc


def _code_of(resp: httpx.Response) -> str | None:
    try:
        return str(resp.json().get("error_code"))
    except ValueError:
        return None


_HASHES: dict[str, str] = {}


async def stored_channel(gateway: Any, *device_keys: str, name: str = "ops",
                         password: str = PASSWORD) -> str:
    """A channel written straight into the store (no KDF on the request path), with these
    devices subscribed. The first send still verifies the password once."""
    import secrets as _secrets

    from pushgo.protocol.ids import encode_channel_id
    from pushgo.service.passwords import hash_password_sync
    from pushgo.store import channels as channel_store

    if password not in _HASHES:
        _HASHES[password] = hash_password_sync(password)
    cid = encode_channel_id(_secrets.token_bytes(16))
    now = gateway.ctx.now()

    def work(conn: Any) -> None:
        channel_store.create(conn, cid, name, _HASHES[password], now)
        for key in device_keys:
            channel_store.subscribe(conn, cid, key, now, 10_000)

    await gateway.store.run(work)
    return cid


async def rows(gateway: Any, table: Any, **where: Any) -> list[Any]:
    """Rows of a pushgo.store.schema table matching column == value for each keyword."""
    import sqlalchemy as _sa

    query = _sa.select(table).where(*[table.c[k] == v for k, v in where.items()])
    found: list[Any] = await gateway.store.read(lambda conn: list(conn.execute(query).all()))
    return found


async def refusals(client: httpx.AsyncClient, path: str,
                   cases: list[tuple[str, dict[str, Any], int, str]]) -> list[str]:
    """POST each case's body to ``path``; one line per case not refused with exactly its
    (status, error_code), so a table of validation rules runs on one gateway."""
    wrong: list[str] = []
    for name, body, status, code in cases:
        resp = await client.post(path, json=body)
        got = (resp.status_code, _code_of(resp))
        if got != (status, code) or resp.json().get("success") is not False:
            wrong.append(f"{name}: want {status} {code}, got {got[0]} {got[1]}: {resp.text[:300]}")
    return wrong


async def eventually(check: Callable[[], Awaitable[T]], *, timeout: float = 5.0,
                     interval: float = 0.01) -> T:
    """Await ``check()`` until it gives a truthy value, and return that value; the test fails
    (TimeoutError) after ``timeout`` seconds. For conditions nothing signals, such as rows a
    background task writes or another process's state."""
    assert interval <= MAX_POLL_S
    with anyio.fail_after(timeout):
        while True:
            value = await check()
            if value:
                return value
            await anyio.sleep(interval)


def eventually_sync(check: Callable[[], T], *, timeout: float = 5.0, interval: float = 0.01,
                    what: Callable[[], str] | None = None) -> T:
    """``eventually`` for synchronous code (child processes, their logs and files): an
    AssertionError naming ``what()`` after ``timeout`` seconds."""
    assert interval <= MAX_POLL_S
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout} s" + (f": {what()}" if what else ""))
        time.sleep(interval)


def on_mock_clock() -> pytest.MarkDecorator:
    """Run a test on Trio only, on a fresh ``MockClock(autojump_threshold=0)``: the clock is
    Trio's (anyio hands it to ``trio.run``), and with autojump minutes of pings, timeouts and
    backoff pass at once. Waits in such a test count virtual seconds."""
    return pytest.mark.parametrize(
        "anyio_backend", [("trio", {"clock": MockClock(autojump_threshold=0)})],
        ids=["trio-mockclock"])


async def tick(step_s: float) -> None:
    """On a MockClock: keeps the next deadline at most ``step_s`` away, so that while a store
    thread or a socket does real work the clock moves in small steps instead of leaping to a
    far deadline."""
    while True:
        await anyio.sleep(step_s)
