"""``private``: ``pushgo serve`` end to end — one ``POST /message`` to a channel of N connected
private devices (10,000; 300 with ``--quick``) over each private transport: warp-link over WSS,
warp-link over TCP (plain, as behind a TLS-offloading proxy), and the SSE stream. Timed from
the request until the last device has its delivery; deliveries/s = N / that time. Memory per
idle connection = the server's resident set with N idle connections open minus before, / N.

Setup (not timed): the N devices and their subscriptions through the API. The connections are
opened by client processes (``python -m benchmarks.private_fanout --worker``, 2,500 devices
each, on Trio: pushgo's warp-link client acking every Deliver, raw HTTP/1.1 for SSE), so the
load generator is not one Python process's event loop; each reports when its last device had
its delivery (CLOCK_MONOTONIC, shared by the processes) and its CPU time, so the table shows
whether the clients kept up. The server on the backends asked; SQLite. The open-files limit is
raised to its hard limit; the server's connection and session caps to N.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.abc
import httpx

from benchmarks.harness import (
    RESULTS,
    Benchmark,
    Check,
    Column,
    Options,
    Report,
    executable,
    median,
    register,
    start_pyspy,
    stop_pyspy,
)
from benchmarks.nginx_mock import free_port
from benchmarks.sender import pyspy_summary
from benchmarks.servers import PASSWORD, ServerProcess
from pushgo.protocol import warplink as W
from pushgo.testing.warplink_client import WarpLinkClient, connect

TRANSPORTS = ("wss", "tcp", "sse")
DEVICES = 10_000
QUICK_DEVICES = 300
#: Devices per client process.
PER_WORKER = 2_500
#: How long opening the connections, or the fan-out, may take before the round fails.
ROUND_TIMEOUT_S = 600.0
#: The issue's targets: the last device has it within, and idle memory per connection under.
TARGET_LAST_S = 2.0
TARGET_KB = 20.0
#: Requests in flight while setting up the devices (and acking SSE deliveries).
SETUP_CONCURRENCY = 16

COLUMNS = [
    Column("label", "run"),
    Column("devices", "devices", "{:,}"),
    Column("rate", "deliveries/s"),
    Column("last_ms", "time to last device ms", "{:,.0f}"),
    Column("kb_per_conn", "KB per idle connection", "{:,.1f}"),
    Column("rss_mb", "server RSS MB", "{:,.1f}"),
    Column("client_cpu_pct", "clients CPU %", "{:.0f}%"),
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


def raise_open_files(needed: int) -> int:
    """The open-files soft limit raised to the hard one (inherited by the server and the
    clients); returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard and (hard == resource.RLIM_INFINITY or soft < needed):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


async def _devices(base: str, n: int) -> tuple[str, list[str]]:
    """N private devices subscribed to one new channel: (channel_id, device keys)."""
    keys: list[str] = [""] * n
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:

        async def one(i: int, channel: str) -> str:
            key = (await c.post("/device/register", json={"platform": "android"})).json()[
                "data"]["device_key"]
            await c.post("/channel/device", json={"device_key": key, "channel_type": "private"})
            body: dict[str, Any] = {"device_key": key, "password": PASSWORD}
            body.update({"channel_id": channel} if channel else {"channel_name": "bench"})
            doc = (await c.post("/channel/subscribe", json=body)).json()
            keys[i] = key
            return str(doc["data"]["channel_id"])

        channel = await one(0, "")
        todo = iter(range(1, n))

        async def worker() -> None:
            for i in todo:
                await one(i, channel)

        async with anyio.create_task_group() as tg:
            for _ in range(SETUP_CONCURRENCY):
                tg.start_soon(worker)
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
    while isinstance(frame := await conn.next_frame(), W.Pong):
        pass  # the answers to the keep-alive pings
    if not isinstance(frame, W.Deliver):
        raise RuntimeError(f"expected a Deliver, got {frame}")
    await conn.ack(frame)


#: How often an idle warp-link connection pings, as the apps do (the server's idle timeout
#: is at least 48 s).
PING_EVERY_S = 15.0


async def _keep_alive(opened: list[Any], stop: anyio.Event) -> None:
    """Ping every warp-link connection every PING_EVERY_S until ``stop``; never in the middle
    of a send when it returns."""
    while not stop.is_set():
        with anyio.move_on_after(PING_EVERY_S):
            await stop.wait()
        for conn in list(opened):
            if stop.is_set():
                return
            if not isinstance(conn, _Sse):
                await conn.send(W.Ping())


# --------------------------------------------------------------------------- client process


async def _client(cfg: dict[str, Any]) -> None:
    """One client process: open its connections, say ``open``, wait for one delivery on
    each, say ``done <monotonic time of the last> <CPU seconds>``, ack SSE deliveries."""
    transport, keys = cfg["transport"], cfg["keys"]
    opened: list[Any] = []
    async with AsyncExitStack() as stack:
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_keep_alive, opened, stop)
            with anyio.fail_after(ROUND_TIMEOUT_S):
                for key in keys:
                    await _open(transport, cfg["port"], cfg["tcp_port"], key, opened, stack)
            print("open", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)  # "go": the fan-out starts
            stop.set()
        cpu0 = time.process_time()
        last = 0.0

        async def receive(conn: Any) -> None:
            nonlocal last
            await _receive(conn)
            last = max(last, time.monotonic())

        with anyio.fail_after(ROUND_TIMEOUT_S):
            async with anyio.create_task_group() as tg:
                for conn in opened:
                    tg.start_soon(receive, conn)
        print(f"done {last!r} {time.process_time() - cpu0!r}", flush=True)
        if transport == "sse":  # SSE leaves its deliveries pending: ack them (untimed)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{cfg['port']}",
                                         timeout=60) as c:
                todo = iter(opened)

                async def acker() -> None:
                    for conn in todo:
                        for delivery_id in conn.ids:
                            await c.post("/messages/ack", json={
                                "device_key": conn.key, "delivery_id": delivery_id})

                async with anyio.create_task_group() as tg:
                    for _ in range(SETUP_CONCURRENCY):
                        tg.start_soon(acker)
        print("finished", flush=True)


def _client_main() -> None:
    cfg = json.loads(sys.stdin.readline())  # then "go" on the next line
    if cfg.get("cpu") is not None:
        os.sched_setaffinity(0, {cfg["cpu"]})
    anyio.run(_client, cfg, backend="trio")


def _expect(proc: subprocess.Popen[str], word: str) -> list[str]:
    out: IO[str] | None = proc.stdout
    assert out is not None
    line = out.readline().split()
    if not line or line[0] != word:
        raise RuntimeError(f"client process: expected {word!r}, got {line!r} "
                           f"(exit {proc.poll()})")
    return line[1:]


def _round(server: ServerProcess, transport: str, tcp_port: int, channel: str,
           keys: list[str], cpu: int | None, spy_to: Path | None = None) -> dict[str, Any]:
    before = rss_mb(server.pid)
    parts = [keys[i:i + PER_WORKER] for i in range(0, len(keys), PER_WORKER)]
    procs: list[subprocess.Popen[str]] = []
    try:
        for part in parts:
            # Our own command line: this interpreter and this module.
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.private_fanout", "--client"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"transport": transport, "port": server.port,
                                         "tcp_port": tcp_port, "keys": part,
                                         "cpu": cpu}) + "\n")
            proc.stdin.flush()
            procs.append(proc)
        for proc in procs:
            _expect(proc, "open")
        time.sleep(1.0)  # the streams' first reads are done
        idle = rss_mb(server.pid)
        for proc in procs:  # the clients stop pinging, and wait for their deliveries
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.close()
        time.sleep(0.5)
        pyspy = executable("py-spy") if spy_to is not None else None
        spy = start_pyspy(pyspy, server.pid, spy_to) if pyspy and spy_to else None
        try:
            started = time.monotonic()
            resp = httpx.post(server.url + "/message", json={
                "channel_id": channel, "password": PASSWORD, "title": "bench"},
                timeout=ROUND_TIMEOUT_S)
            resp.raise_for_status()
            done = [_expect(proc, "done") for proc in procs]
        finally:
            stop_pyspy(spy)
        last = max(float(d[0]) for d in done) - started
        client_cpu = sum(float(d[1]) for d in done)
        for proc in procs:
            _expect(proc, "finished")
            proc.wait(timeout=60)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    n = len(keys)
    return {"rate": n / last, "last_ms": last * 1000,
            "kb_per_conn": max(0.0, idle - before) * 1024 / n, "rss_mb": idle,
            "client_cpu_pct": 100 * client_cpu / last}


def run(opts: Options) -> Report:
    # PUSHGO_BENCH_PRIVATE_DEVICES / _TRANSPORTS: a smaller or partial run, to profile one
    # transport (e.g. 3000 and wss, with py-spy attached to the server).
    devices = int(os.environ.get("PUSHGO_BENCH_PRIVATE_DEVICES", "0")) or (
        QUICK_DEVICES if opts.quick else DEVICES)
    transports = [t for t in os.environ.get("PUSHGO_BENCH_PRIVATE_TRANSPORTS", "").split(",")
                  if t in TRANSPORTS] or list(TRANSPORTS)
    rounds = opts.rounds if opts.quick else 1  # each full round opens 10,000 connections
    limit = raise_open_files(devices + 1024)
    cores = len(os.sched_getaffinity(0))
    pin = opts.pin and cores >= 2
    server_cpu, client_cpu = (0, 1) if pin else (None, None)
    report = Report("private", "one message to N connected private devices: WSS, TCP, SSE",
                    {"devices": devices, "rounds": rounds, "clients": -(-devices // PER_WORKER),
                     "open_files": limit, "pinned": pin}, COLUMNS)
    workdir = Path(tempfile.mkdtemp(prefix="pushgo-bench-private-"))
    try:
        for backend in opts.backends:
            tcp_port = free_port()
            env = {"PUSHGO_DB_URL": f"sqlite:///{workdir}/{backend}.db",
                   "PUSHGO_ASYNC_BACKEND": backend, "PUSHGO_PRIVATE_TRANSPORTS": "tcp,wss",
                   "PUSHGO_PRIVATE_TCP_BIND": f"127.0.0.1:{tcp_port}",
                   "PUSHGO_PRIVATE_TCP_TLS_OFFLOAD": "true",
                   "PUSHGO_HTTP_MAX_CONNECTIONS": str(devices + 256),
                   "PUSHGO_PRIVATE_MAX_SESSIONS": str(devices + 256),
                   "PUSHGO_CHANNEL_SUBSCRIBER_LIMIT": str(max(devices, 10_000)),
                   "PUSHGO_TOKEN_SERVICE_URL": "off"}
            channel, keys = "", []
            for transport in transports:
                # A fresh server per transport (the devices stay in the database): memory
                # the previous transport's sessions freed would otherwise take the new ones.
                with ServerProcess.pushgo(f"pushgo {backend} {transport}", env,
                                          log=workdir / f"{backend}-{transport}.log",
                                          cpu=server_cpu) as server:
                    if not keys:
                        opts.log(f"private ({backend}): setting up {devices:,} devices")
                        channel, keys = anyio.run(_devices, server.url, devices,
                                                  backend="trio")
                    spy_to = (RESULTS / f"private-{opts.stamp}-{transport}-{backend}.pyspy.txt"
                              if opts.profile else None)
                    if spy_to is not None:
                        RESULTS.mkdir(parents=True, exist_ok=True)
                    results = [_round(server, transport, tcp_port, channel, keys, client_cpu,
                                      spy_to if i == 0 else None)
                               for i in range(rounds)]
                    if spy_to is not None and spy_to.exists():
                        report.extra.setdefault("pyspy", {})[f"{transport}-{backend}"] = (
                            pyspy_summary(spy_to))
                        opts.log(f"py-spy of the server's fan-out: {spy_to}")
                row = {"label": f"{transport} ({backend})", "devices": devices,
                       **{k: median([r[k] for r in results]) for k in results[0]}}
                opts.log(f"{row['label']}: {row['rate']:,.0f}/s, last at "
                         f"{row['last_ms']:,.0f} ms, {row['kb_per_conn']:.1f} KB/conn, "
                         f"clients {row['client_cpu_pct']:.0f}% CPU")
                report.rows.append(row)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for done in report.rows:
        last_s, kb = float(done["last_ms"]) / 1000, float(done["kb_per_conn"])
        report.checks.append(Check(f"{done['label']}: last device within {TARGET_LAST_S:g} s",
                                   last_s <= TARGET_LAST_S, f"{last_s:,.1f} s"))
        report.checks.append(Check(f"{done['label']}: < {TARGET_KB:g} KB per idle connection",
                                   kb < TARGET_KB, f"{kb:.1f} KB"))
    report.notes.append("deliveries/s = devices / (POST /message sent → the last device has "
                        "it); warp-link clients ack each Deliver; TCP is plain (TLS offloaded); "
                        f"{report.params['clients']} client processes of {PER_WORKER:,} devices; "
                        "clients CPU % = their CPU time during the fan-out / its wall time "
                        "(100% = one core)")
    return report


register(Benchmark(
    name="private",
    description="pushgo serve: one message to N connected private devices over WSS, TCP, SSE",
    needs=(),
    run=run,
))


if __name__ == "__main__" and sys.argv[1:] == ["--client"]:
    _client_main()
