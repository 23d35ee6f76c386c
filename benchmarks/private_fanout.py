"""``private``: ``pushgo serve`` end to end — one ``POST /message`` to a channel of N connected
private devices (1,000; 200 with ``--quick``) over each private transport: warp-link over WSS,
warp-link over TCP (plain, as behind a TLS-offloading proxy), and the SSE stream. Timed from
the request until the last device has its delivery; deliveries/s = N / that time. Memory per
idle connection = the server's resident set with N idle connections open minus before, / N.

Setup (not timed): the N devices and their subscriptions through the API. The clients run in
this process on Trio (pushgo's warp-link client; raw HTTP/1.1 for SSE), the server on the
backends asked; SQLite.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx

from benchmarks.harness import Benchmark, Column, Options, Report, median, register
from benchmarks.nginx_mock import free_port
from benchmarks.servers import PASSWORD, ServerProcess
from pushgo.protocol import warplink as W
from pushgo.testing.warplink_client import WarpLinkClient, connect

TRANSPORTS = ("wss", "tcp", "sse")
#: How long a round may take before it counts as failed.
ROUND_TIMEOUT_S = 120.0

COLUMNS = [
    Column("label", "run"),
    Column("devices", "devices", "{:,}"),
    Column("rate", "deliveries/s"),
    Column("last_ms", "time to last device ms", "{:,.0f}"),
    Column("kb_per_conn", "KB per idle connection", "{:,.1f}"),
    Column("rss_mb", "server RSS MB", "{:,.1f}"),
]


def rss_mb(pid: int) -> float:
    """The process's current resident set (VmRSS), MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _devices(base: str, n: int) -> tuple[str, list[str]]:
    """N private devices subscribed to one new channel: (channel_id, device keys)."""
    keys: list[str] = []
    channel = ""
    with httpx.Client(base_url=base, timeout=30) as c:
        for _ in range(n):
            key = c.post("/device/register", json={"platform": "android"}).json()["data"][
                "device_key"]
            c.post("/channel/device", json={"device_key": key, "channel_type": "private"})
            body: dict[str, Any] = {"device_key": key, "password": PASSWORD}
            body.update({"channel_id": channel} if channel else {"channel_name": "bench"})
            doc = c.post("/channel/subscribe", json=body).json()
            channel = channel or doc["data"]["channel_id"]
            keys.append(key)
    return channel, keys


_EVENT_ID = re.compile(rb"(?:^|\n)id: ([0-9a-f]+)\n")


class _Sse:
    """One SSE stream on a raw socket (HTTP/1.1, chunked): waits for an event's id line."""

    def __init__(self, stream: anyio.abc.SocketStream, key: str) -> None:
        self.stream = stream
        self.key = key
        self.buf = b""
        self.ids: list[str] = []

    async def next_event(self) -> None:
        while (m := _EVENT_ID.search(self.buf)) is None:
            self.buf += await self.stream.receive()
        self.ids.append(m.group(1).decode())
        self.buf = self.buf[m.end():]


async def _open(transport: str, port: int, tcp_port: int, key: str,
                opened: list[Any], stack: Any) -> None:
    if transport == "sse":
        sock = await stack.enter_async_context(await anyio.connect_tcp("127.0.0.1", port))
        await sock.send(f"GET /private/stream?device_key={key} HTTP/1.1\r\n"
                        f"Host: 127.0.0.1\r\n\r\n".encode())
        opened.append(_Sse(sock, key))
        return
    url = (f"ws://127.0.0.1:{port}/private/ws" if transport == "wss"
           else f"tcp://127.0.0.1:{tcp_port}")
    client: WarpLinkClient = await stack.enter_async_context(connect(url))
    answer = await client.hello(key)
    if not isinstance(answer, W.ServerWelcome):
        raise RuntimeError(f"{transport}: refused: {answer}")
    opened.append(client)


async def _receive(conn: Any) -> None:
    if isinstance(conn, _Sse):
        await conn.next_event()
        return
    frame = await conn.next_frame()
    if not isinstance(frame, W.Deliver):
        raise RuntimeError(f"expected a Deliver, got {frame}")
    await conn.ack(frame)


async def _round(server: ServerProcess, transport: str, tcp_port: int, channel: str,
                 keys: list[str]) -> dict[str, Any]:
    before = rss_mb(server.pid)
    opened: list[Any] = []
    async with AsyncExitStack() as stack:
        with anyio.fail_after(ROUND_TIMEOUT_S):
            for key in keys:
                await _open(transport, server.port, tcp_port, key, opened, stack)
            await anyio.sleep(0.5)  # the streams' first reads are done
            idle = rss_mb(server.pid)
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
                started = time.perf_counter()
                resp = await c.post("/message", json={"channel_id": channel,
                                                      "password": PASSWORD, "title": "bench"})
                resp.raise_for_status()
                async with anyio.create_task_group() as tg:
                    for conn in opened:
                        tg.start_soon(_receive, conn)
                last = time.perf_counter() - started
                for conn in opened:  # SSE leaves its deliveries pending: ack them (untimed)
                    if isinstance(conn, _Sse):
                        for delivery_id in conn.ids:
                            await c.post("/messages/ack", json={"device_key": conn.key,
                                                                "delivery_id": delivery_id})
    n = len(keys)
    return {"rate": n / last, "last_ms": last * 1000,
            "kb_per_conn": max(0.0, idle - before) * 1024 / n, "rss_mb": idle}


def run(opts: Options) -> Report:
    devices = 200 if opts.quick else 1000
    report = Report("private", "one message to N connected private devices: WSS, TCP, SSE",
                    {"devices": devices, "rounds": opts.rounds}, COLUMNS)
    workdir = Path(tempfile.mkdtemp(prefix="pushgo-bench-private-"))
    try:
        for backend in opts.backends:
            tcp_port = free_port()
            env = {"PUSHGO_DB_URL": f"sqlite:///{workdir}/{backend}.db",
                   "PUSHGO_ASYNC_BACKEND": backend, "PUSHGO_PRIVATE_TRANSPORTS": "tcp,wss",
                   "PUSHGO_PRIVATE_TCP_BIND": f"127.0.0.1:{tcp_port}",
                   "PUSHGO_PRIVATE_TCP_TLS_OFFLOAD": "true",
                   "PUSHGO_TOKEN_SERVICE_URL": "off"}
            with ServerProcess.pushgo(f"pushgo {backend}", env,
                                      log=workdir / f"{backend}.log") as server:
                channel, keys = _devices(server.url, devices)
                for transport in TRANSPORTS:
                    rounds = []
                    for _ in range(opts.rounds):
                        rounds.append(anyio.run(_round, server, transport, tcp_port, channel,
                                                keys, backend="trio"))
                    row = {"label": f"{transport} ({backend})", "devices": devices,
                           **{k: median([r[k] for r in rounds]) for k in rounds[0]}}
                    opts.log(f"{row['label']}: {row['rate']:,.0f}/s, last at "
                             f"{row['last_ms']:,.0f} ms, {row['kb_per_conn']:.1f} KB/conn")
                    report.rows.append(row)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report.notes.append("deliveries/s = devices / (POST /message sent → the last device has "
                        "it); warp-link clients ack each Deliver; TCP is plain (TLS offloaded)")
    return report


register(Benchmark(
    name="private",
    description="pushgo serve: one message to N connected private devices over WSS, TCP, SSE",
    needs=(),
    run=run,
))
