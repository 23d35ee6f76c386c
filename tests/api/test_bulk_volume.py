"""The high-volume operator's done-when: 100,000 direct-token notifications through
POST /messages/bulk reach APNs exactly once each, with the gateway's memory bounded.

One run (Trio, SQLite): `pushgo serve` in a child process (its own core and its own RSS),
and in this process CountingAPNs — a real HTTP/2-over-TLS APNs endpoint that only counts
per token. MockAPNs, which records and validates every request, answers a few hundred to two
thousand requests a second on this kind of machine; 100k would take minutes.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

from pushgo.protocol.sse import SSEParser
from pushgo.testing.counting_apns import CountingAPNs
from pushgo.testing.mock_apns import APNsKey
from pushgo.testing.tls import LocalCA
from tests.live import ServerProcess

N = 100_000
PER_LINE = 1000
TOKEN = "operator-token-1"
#: The bulk path's memory bound (benchmarks/README.md, the bulk row).
RSS_LIMIT_MB = 256


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


async def final_status(c: httpx.AsyncClient, op_id: str) -> dict[str, Any]:
    """The operation's status once done: its SSE stream sends one document per change and
    ends with the first that is done."""
    parser = SSEParser()
    last: dict[str, Any] | None = None
    async with c.stream("GET", f"/deliveries/{op_id}/stream") as resp:
        assert resp.status_code == 200
        async for chunk in resp.aiter_bytes():
            for event in parser.feed(chunk):
                last = json.loads(event.data)
    assert last is not None and last["done"], last
    return last


def _memory_mb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) // 1024
    return out


@pytest.mark.slow
async def test_100k_direct_notifications_arrive_exactly_once_with_bounded_memory(tmp_path):
    ca, key = LocalCA(), APNsKey.generate()
    apns = CountingAPNs(tls=ca)
    async with apns.serving():
        server = ServerProcess({
            "PUSHGO_DB_URL": f"sqlite:///{tmp_path}/volume.db", "PUSHGO_TOKEN": TOKEN,
            "PUSHGO_APNS_KEY_FILE": str(key.write(tmp_path / "apns.p8")),
            "PUSHGO_APNS_KEY_ID": key.key_id, "PUSHGO_APNS_TEAM_ID": key.team_id,
            "PUSHGO_APNS_TOPIC": "com.example.pushgo", "PUSHGO_APNS_ENDPOINT": apns.origin,
            "PUSHGO_PROVIDER_CA_FILE": str(ca.write_ca_file(tmp_path / "ca.pem")),
            "PUSHGO_LOG_LEVEL": "warning", "PUSHGO_ASYNC_BACKEND": "trio",
        }, str(tmp_path / "server.log"))
        await anyio.to_thread.run_sync(server.start)
        try:
            assert server.proc is not None
            tokens = [secrets.token_hex(32) for _ in range(N)]

            async def body() -> AsyncIterator[bytes]:
                for start in range(0, N, PER_LINE):
                    yield json.dumps({"route": "apns", "tokens": tokens[start:start + PER_LINE],
                                      "title": "maintenance tonight", "op_id": "volume-1"}
                                     ).encode() + b"\n"

            async with httpx.AsyncClient(base_url=server.url, timeout=120,
                                         headers={"authorization": f"Bearer {TOKEN}"}) as c:
                with anyio.fail_after(120):
                    resp = await c.post("/messages/bulk", content=body(),
                                        headers={"content-type": "application/x-ndjson"})
                    results = [json.loads(line) for line in resp.text.splitlines()]
                    assert [r["index"] for r in results] == list(range(N // PER_LINE))
                    assert all(r["ok"] and r["recipients"] == PER_LINE for r in results)
                    await apns.wait_for(N, within=110)
                    status = await final_status(c, "volume-1")
            memory = _memory_mb(server.proc.pid)
        finally:
            server.stop()
    assert apns.requests == N
    assert set(apns.counts) == set(tokens)
    assert max(apns.counts.values()) == 1
    assert status["states"] == {"queued": 0, "sent": N, "failed": 0, "expired": 0}
    assert status["total"] == N and status["operations"] == N // PER_LINE
    assert memory["VmHWM"] < RSS_LIMIT_MB, memory


async def test_the_counting_mock_reads_paths_through_hpack_indexing_and_huffman():
    """CountingAPNs parses HPACK itself: a general client (httpx over h2: Huffman, the
    dynamic table, paths repeated) must be counted exactly."""
    ca = LocalCA()
    apns = CountingAPNs(tls=ca)
    tokens = [secrets.token_hex(32) for _ in range(5)]
    sent = [*tokens, tokens[0], tokens[0], tokens[3]]
    async with apns.serving(), httpx.AsyncClient(http2=True, verify=ca.client_context()) as c:

        async def post(token: str) -> None:
            resp = await c.post(f"{apns.origin}/3/device/{token}", content=b'{"aps":{}}',
                                headers={"authorization": "bearer x.y.z",
                                         "apns-topic": "com.example.pushgo"})
            assert (resp.status_code, resp.http_version) == (200, "HTTP/2")

        for token in sent[:2]:
            await post(token)
        async with anyio.create_task_group() as tg:
            for token in sent[2:]:
                tg.start_soon(post, token)
    assert apns.requests == len(sent)
    assert apns.counts == Counter(sent)
    assert apns.summary()["duplicated_tokens"] == 2
