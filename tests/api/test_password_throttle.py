"""Hostile clients pay, not the gateway: wrong channel passwords are limited per client address
and per (channel, address) on every path that checks one, a request can cause only a few
password hashes, and an attacker never locks the owner out.

Every test floods a real Hypercorn server from several loopback source addresses (client
sockets bound to 127.0.0.2, 127.0.0.3, …), counts the KDF runs with a spy on the verifier, and
moves the gateway's injected clock to refill the buckets.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest

from pushgo.app import Gateway
from pushgo.service import passwords
from pushgo.service.throttle import ADDRESS_RULE, PAIR_RULE, REQUEST_FAILURES
from tests.conftest import make_settings
from tests.helpers import PASSWORD, call, stored_channel
from tests.live import hypercorn_server
from tests.mcp_helpers import AUTH as MCP_AUTH
from tests.mcp_helpers import modern_request
from tests.oauth_helpers import Clock

ATTACKER, OWNER, BYSTANDER = "127.0.0.2", "127.0.0.3", "127.0.0.4"
T0 = 1_710_000_000


@dataclass
class Live:
    gateway: Gateway
    base: str
    clock: Clock

    @asynccontextmanager
    async def client(self, address: str, **kw: Any) -> AsyncIterator[httpx.AsyncClient]:
        """An HTTP client whose connections come from ``address``."""
        transport = httpx.AsyncHTTPTransport(local_address=address)
        async with httpx.AsyncClient(transport=transport, base_url=self.base, **kw) as c:
            yield c


@asynccontextmanager
async def live(db_url: str, **overrides: Any) -> AsyncIterator[Live]:
    clock = Clock(frozen=True)
    gateway = Gateway(make_settings(db_url, **overrides), clock=clock)
    async with gateway.running(), hypercorn_server(gateway) as base:
        yield Live(gateway, base, clock)


@pytest.fixture
def kdf_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords the KDF was run on (every verification that did hashing work)."""
    runs: list[str] = []
    real = passwords.verify_password_sync

    def spy(password: str, stored: str) -> bool:
        runs.append(password)
        return real(password, stored)

    monkeypatch.setattr(passwords, "verify_password_sync", spy)
    return runs


def message(cid: str, password: str = PASSWORD, **fields: Any) -> dict[str, Any]:
    return {"channel_id": cid, "password": password, "title": "hello", **fields}


def refused(resp: httpx.Response) -> int:
    """The Retry-After of a 429 rate_limited answer."""
    assert resp.status_code == 429, (resp.status_code, resp.text)
    doc = resp.json()
    assert (doc["success"], doc["error_code"]) == (False, "rate_limited"), doc
    assert doc["problem"]["retryable"] is True
    return int(resp.headers["retry-after"])


def mismatch(resp: httpx.Response) -> None:
    assert resp.status_code == 403, (resp.status_code, resp.text)
    assert resp.json()["error_code"] == "password_mismatch"


async def test_an_attacker_is_refused_before_hashing_while_the_owner_keeps_sending(
        db_url: str, kdf_runs: list[str]) -> None:
    async with live(db_url) as srv:
        cid = await stored_channel(srv.gateway)
        other = await stored_channel(srv.gateway)
        async with srv.client(OWNER) as owner, srv.client(ATTACKER) as attacker:
            await call(owner, "/message", message(cid))  # the owner's password is cached now
            for i in range(PAIR_RULE.burst):
                mismatch(await attacker.post("/message", json=message(cid, f"guess-no-{i}")))
            hashed = len(kdf_runs)
            assert hashed == PAIR_RULE.burst + 1

            # The next guesses, on every sending path, are answered before any hashing; the
            # right password too (a cache hit must not tell the attacker it guessed right).
            assert refused(await attacker.post("/message", json=message(cid, "guess-no-x"))) \
                == PAIR_RULE.every_s
            refused(await attacker.post("/message", json=message(cid)))
            refused(await attacker.get("/message", params=message(cid, "guess-by-get")))
            refused(await attacker.post("/event/create", json=message(
                cid, "guess-event", status="Open", message="door", severity="high",
                event_time=T0)))
            refused(await attacker.post("/thing/create", json=message(
                cid, "guess-thing", observed_at=T0)))
            refused(await attacker.post("/channel/rename", json={
                "channel_id": cid, "password": "guess-rename", "channel_name": "mine"}))
            assert len(kdf_runs) == hashed

            # The owner, from another address, is not locked out; nor is the attacker on
            # another channel (only this channel's guesses are used up).
            for _ in range(3):
                await call(owner, "/message", message(cid))
            mismatch(await attacker.post("/message", json=message(other, "guess-other")))

            # One more guess a minute (the injected clock, not a sleep).
            srv.clock.advance(PAIR_RULE.every_s - 1)
            assert refused(await attacker.post("/message", json=message(cid, "a"*8))) == 1
            srv.clock.advance(1)
            mismatch(await attacker.post("/message", json=message(cid, "guess-late")))
            refused(await attacker.post("/message", json=message(cid, "guess-later")))


async def test_an_address_has_a_budget_across_channels_and_a_success_gives_its_token_back(
        db_url: str, kdf_runs: list[str]) -> None:
    async with live(db_url) as srv:
        a, b, c, d, fresh = [await stored_channel(srv.gateway) for _ in range(5)]
        async with srv.client(ATTACKER) as attacker, srv.client(OWNER) as owner, \
                srv.client(BYSTANDER) as bystander:
            key = await private_device(attacker)
            below = PAIR_RULE.burst - 1
            for i in range(below):
                mismatch(await attacker.post("/message", json=message(a, f"guess-{i}-a")))
            # A right password costs the address nothing and forgets the channel's count:
            # as many wrong ones again are still answered 403, not 429.
            await call(attacker, "/message", message(a))
            for i in range(below):
                mismatch(await attacker.post("/message", json=message(a, f"guess-{i}-a2")))
            spent = 2 * below
            for cid in (b, c, d):
                for i in range(min(below, ADDRESS_RULE.burst - spent)):
                    mismatch(await attacker.post("/message", json=message(cid, f"guess-no-{i}")))
                    spent += 1
            assert spent == ADDRESS_RULE.burst
            hashed = len(kdf_runs)
            assert refused(await attacker.post("/message", json=message(fresh, "guess-fr"))) \
                == ADDRESS_RULE.every_s
            refused(await attacker.post("/channel/subscribe", json={
                "device_key": key, "channel_id": fresh, "password": "guess-sub"}))
            assert len(kdf_runs) == hashed

            # Other addresses are untouched, on the same channels.
            mismatch(await bystander.post("/message", json=message(fresh, "typo-pass")))
            await call(owner, "/message", message(fresh))

            srv.clock.advance(ADDRESS_RULE.every_s)
            mismatch(await attacker.post("/message", json=message(fresh, "guess-again")))
            refused(await attacker.post("/message", json=message(fresh, "guess-more")))


async def private_device(client: httpx.AsyncClient) -> str:
    key = str((await call(client, "/device/register", {"platform": "android"}))["device_key"])
    await call(client, "/channel/device", {"device_key": key, "channel_type": "private"})
    return key


async def test_a_sync_with_200_wrong_passwords_hashes_only_a_few(db_url: str,
                                                                 kdf_runs: list[str]) -> None:
    async with live(db_url) as srv:
        channels = [await stored_channel(srv.gateway) for _ in range(10)]
        async with srv.client(ATTACKER) as attacker, srv.client(OWNER) as owner:
            key = await private_device(attacker)
            items = [{"channel_id": channels[i % 10], "password": f"wrong-password-{i}"}
                     for i in range(200)]
            data = await call(attacker, "/channel/sync", {"device_key": key,
                                                          "channels": items})
            codes = [entry.get("error_code") for entry in data["channels"]]
            assert codes == (["password_mismatch"] * REQUEST_FAILURES
                             + ["rate_limited"] * (200 - REQUEST_FAILURES))
            assert (data["total"], data["success"], data["failed"]) == (200, 0, 200)
            assert "not checked" in data["channels"][-1]["error"]
            assert len(kdf_runs) == REQUEST_FAILURES

            # A sync with the right passwords (the owner's, or the attacker's own next one)
            # still works: the request's budget died with the request.
            owner_key = await private_device(owner)
            data = await call(owner, "/channel/sync", {"device_key": owner_key, "channels": [
                {"channel_id": cid, "password": PASSWORD} for cid in channels]})
            assert (data["success"], data["failed"]) == (10, 0)


def ndjson(items: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


async def test_a_bulk_body_of_200_wrong_passwords_hashes_only_a_few(db_url: str,
                                                                    kdf_runs: list[str]) -> None:
    async with live(db_url) as srv:
        channels = [await stored_channel(srv.gateway) for _ in range(10)]
        async with srv.client(ATTACKER) as attacker, srv.client(OWNER) as owner:
            body = ndjson([message(channels[i % 10], f"wrong-password-{i}", op_id=f"op-{i}")
                           for i in range(200)])
            resp = await attacker.post("/messages/bulk", content=body,
                                       headers={"content-type": "application/x-ndjson"})
            assert resp.status_code == 200, resp.text
            lines = [json.loads(line) for line in resp.text.splitlines()]
            assert [line["index"] for line in lines] == list(range(200))
            assert [(line["error_code"], line["status"]) for line in lines] == (
                [("password_mismatch", 403)] * REQUEST_FAILURES
                + [("rate_limited", 429)] * (200 - REQUEST_FAILURES))
            assert lines[-1]["op_id"] == "op-199" and lines[-1]["ok"] is False
            assert len(kdf_runs) == REQUEST_FAILURES

            resp = await owner.post("/messages/bulk", content=ndjson([message(channels[0])]),
                                    headers={"content-type": "application/x-ndjson"})
            assert json.loads(resp.text.splitlines()[0])["ok"] is True


async def tool_call(client: httpx.AsyncClient, cid: str, password: str) -> dict[str, Any]:
    body, headers = modern_request("tools/call", {
        "name": "pushgo.message.send",
        "arguments": {"channel_id": cid, "password": password, "title": "hi"}})
    resp = await client.post("/mcp", content=body, headers=headers)
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()["result"]
    return result


async def test_legacy_mcp_tool_calls_are_limited_like_the_api(db_url: str,
                                                              kdf_runs: list[str]) -> None:
    async with live(db_url, mcp_enabled=True, token=MCP_AUTH["authorization"].split()[1],
                    mcp_auth_mode="legacy") as srv:
        cid = await stored_channel(srv.gateway)
        async with srv.client(ATTACKER) as attacker, srv.client(OWNER) as owner:
            for i in range(PAIR_RULE.burst):
                result = await tool_call(attacker, cid, f"guess-mcp-{i}")
                assert result["structuredContent"]["error_code"] == "password_mismatch"
            result = await tool_call(attacker, cid, PASSWORD)
            assert result["isError"] is True
            assert result["structuredContent"]["error_code"] == "rate_limited"
            assert result["structuredContent"]["status"] == 429
            assert result["structuredContent"]["retry_after"] == PAIR_RULE.every_s
            assert len(kdf_runs) == PAIR_RULE.burst
            ok = await tool_call(owner, cid, PASSWORD)
            assert ok["isError"] is False and ok["structuredContent"]["accepted"] is True


async def test_x_forwarded_for_names_the_client_only_behind_a_trusted_proxy(
        db_url: str, kdf_runs: list[str]) -> None:
    async with live(db_url, trusted_proxies=("127.0.0.1/32",)) as srv:
        cid = await stored_channel(srv.gateway)
        async with srv.client("127.0.0.1") as proxy, srv.client(ATTACKER) as direct:
            def via(client_ip: str) -> dict[str, str]:
                return {"x-forwarded-for": client_ip}

            for i in range(PAIR_RULE.burst):
                mismatch(await proxy.post("/message", json=message(cid, f"guess-{i}-xff"),
                                          headers=via("198.51.100.7")))
            refused(await proxy.post("/message", json=message(cid, "guess-xff"),
                                     headers=via("198.51.100.7")))
            # What the client wrote left of it proves nothing: still 198.51.100.7.
            refused(await proxy.post("/message", json=message(cid, "guess-xff"),
                                     headers=via("203.0.113.9, 198.51.100.7")))
            # Another client behind the same proxy has its own budget, and so has the proxy.
            mismatch(await proxy.post("/message", json=message(cid, "typo-xff"),
                                      headers=via("198.51.100.8")))
            mismatch(await proxy.post("/message", json=message(cid, "typo-no-xff")))
            # A peer that is not a trusted proxy cannot choose its address.
            for i in range(PAIR_RULE.burst):
                mismatch(await direct.post("/message", json=message(cid, f"guess-{i}-dir"),
                                           headers=via(f"192.0.2.{i}")))
            refused(await direct.post("/message", json=message(cid, "guess-dir"),
                                      headers=via("192.0.2.99")))


async def test_without_trusted_proxies_x_forwarded_for_is_ignored(db_url: str,
                                                                  kdf_runs: list[str]) -> None:
    async with live(db_url) as srv:
        cid = await stored_channel(srv.gateway)
        async with srv.client("127.0.0.1") as proxy, srv.client(OWNER) as owner:
            for i in range(PAIR_RULE.burst):
                mismatch(await proxy.post("/message", json=message(cid, f"guess-{i}-xff"),
                                          headers={"x-forwarded-for": f"198.51.100.{i}"}))
            refused(await proxy.post("/message", json=message(cid, "guess-xff"),
                                     headers={"x-forwarded-for": "198.51.100.200"}))
            await call(owner, "/message", message(cid))
            assert len(kdf_runs) == PAIR_RULE.burst + 1


@pytest.fixture
def blocked_kdf(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event,
                                                                 threading.Semaphore]]:
    """The KDF waits for ``release`` (at most 5 s); ``started`` counts the runs begun."""
    release, started = threading.Event(), threading.Semaphore(0)

    def blocked(password: str, stored: str) -> bool:
        started.release()
        release.wait(5)
        return False

    monkeypatch.setattr(passwords, "verify_password_sync", blocked)
    monkeypatch.setattr(passwords, "KDF_WAITING", 2)
    try:
        yield release, started
    finally:
        release.set()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_health_answers_while_the_kdf_is_busy_and_its_queue_is_bounded(
        db_url: str, blocked_kdf: tuple[threading.Event, threading.Semaphore]) -> None:
    release, started = blocked_kdf
    async with live(db_url) as srv:
        channels = [await stored_channel(srv.gateway) for _ in range(5)]
        answers: list[httpx.Response] = []
        async with srv.client(ATTACKER) as attacker, srv.client(OWNER) as owner:
            async def guess(i: int) -> None:
                answers.append(await attacker.post("/message", json=message(
                    channels[i], f"guess-busy-{i}")))

            async with anyio.create_task_group() as tg:
                for i in range(4):  # 2 hashing, 2 waiting
                    tg.start_soon(guess, i)
                for _ in range(2):
                    await anyio.to_thread.run_sync(started.acquire)
                # Both KDF threads are taken: health and readiness do not wait on them...
                assert (await owner.get("/healthz")).status_code == 200
                assert (await owner.get("/readyz")).status_code == 200
                # ...and a check past the bounded queue is answered at once, not queued.
                with anyio.fail_after(5):
                    while len(srv.gateway.ctx.verifier._running) < 4:
                        await anyio.sleep(0.01)
                busy = await owner.post("/message", json=message(channels[4], "typo-busy"))
                assert busy.status_code == 503
                assert busy.json()["error_code"] == "server_busy"
                assert busy.headers["retry-after"] == "1"
                release.set()
            assert sorted(r.status_code for r in answers) == [403] * 4
