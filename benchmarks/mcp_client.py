"""The one MCP load client for both ``mcp`` rows: ``initialize`` (2025-11-25, a session),
``notifications/initialized``, then ``tools/call pushgo.message.send`` from ``--concurrency``
workers for ``--seconds`` over HTTP/1.1 keep-alive (httpx), each call with its own JSON-RPC id;
answers may be JSON or SSE. Prints one JSON line: calls/s, p50/p99 ms, errors, its CPU seconds.

    python -m benchmarks.mcp_client --url http://127.0.0.1:6666/mcp --channel ID --password P
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import httpx

VERSION = "2025-11-25"


def _result(resp: httpx.Response) -> dict[str, Any]:
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        for line in resp.text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                doc = json.loads(line[5:])
                if "result" in doc or "error" in doc:
                    return doc  # type: ignore[no-any-return]
        raise ValueError("no JSON-RPC answer in the event stream")
    return resp.json()  # type: ignore[no-any-return]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    if args.token:
        headers["authorization"] = f"Bearer {args.token}"
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:
        init = await client.post(args.url, json={
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": VERSION, "capabilities": {},
                       "clientInfo": {"name": "pushgo-bench", "version": "1"}}})
        init.raise_for_status()
        session = init.headers.get("mcp-session-id")
        version = _result(init)["result"].get("protocolVersion", VERSION)
        client.headers["mcp-protocol-version"] = version
        if session:
            client.headers["mcp-session-id"] = session
        await client.post(args.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        arguments = {"channel_id": args.channel, "password": args.password,
                     "title": "Disk almost full", "body": "/var at 91% on db-1", "severity": "high"}
        latencies: list[float] = []
        state = {"id": 1, "errors": 0, "first_error": ""}
        stop_at = 0.0

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                rid = state["id"]
                state["id"] = rid + 1
                t = time.perf_counter()
                try:
                    resp = await client.post(args.url, json={
                        "jsonrpc": "2.0", "id": rid, "method": "tools/call",
                        "params": {"name": "pushgo.message.send", "arguments": arguments}})
                    doc = _result(resp)
                    ok = resp.status_code == 200 and "result" in doc and not doc["result"].get("isError")
                    if not ok and not state["first_error"]:
                        state["first_error"] = resp.text[:300]
                except Exception as exc:
                    ok = False
                    if not state["first_error"]:
                        state["first_error"] = repr(exc)[:300]
                if t >= measure_from:
                    latencies.append(time.perf_counter() - t)
                if not ok:
                    state["errors"] += 1

        now = time.perf_counter()
        measure_from = now + args.warmup
        stop_at = measure_from + args.seconds
        c0 = time.process_time()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        end = time.perf_counter()
        cpu = time.process_time() - c0
    lat = sorted(latencies)

    def pct(q: float) -> float:
        return lat[max(0, min(len(lat) - 1, round(q / 100 * len(lat) + 0.5) - 1))] * 1000 if lat else 0.0

    return {"n": len(lat), "rate": len(lat) / (end - measure_from) if end > measure_from else 0.0,
            "p50_ms": pct(50), "p99_ms": pct(99), "errors": state["errors"],
            "first_error": state["first_error"], "client_cpu_s": cpu, "wall_s": end - now}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.mcp_client")
    p.add_argument("--url", required=True)
    p.add_argument("--channel", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--token", default=None)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=0.5)
    args = p.parse_args()
    sys.stdout.write(json.dumps(asyncio.run(main_async(args))) + "\n")


if __name__ == "__main__":
    main()
