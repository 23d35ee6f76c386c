"""``mcp``: ``tools/call pushgo.message.send`` on pushgo's ``/mcp`` (legacy mode: the gateway
token as bearer, the channel password in the arguments) against the official MCP Python SDK
server hosting an equivalent tool (``benchmarks.mcp_sdk_server``: same arguments, same send
pipeline, its own database) — same client (``benchmarks.mcp_client``: a session in the
2025-11-25 era, 16 calls in flight over HTTP/1.1), same run, rounds interleaved. SQLite; one
private-route device on each channel. Servers pinned to one CPU, the client to the other.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import Benchmark, Check, Column, Need, Options, Report, median, register
from benchmarks.nginx_mock import free_port
from benchmarks.servers import PASSWORD, ROOT, ServerProcess, private_channel

TOKEN = "bench-gateway-token"  # noqa: S105 - a throwaway local gateway's
CONCURRENCY = 16
NEEDS = (Need("pip", "mcp>=2.3,<3", "mcp"), Need("pip", "uvicorn", "uvicorn"),
         Need("pip", "matplotlib>=3.8", "matplotlib"))

COLUMNS = [
    Column("label", "server"),
    Column("rate", "calls/s"),
    Column("spread", "min–max /s", "{}"),
    Column("vs_sdk", "× SDK", "{:.2f}×"),
    Column("p50_ms", "p50 ms", "{:,.1f}"),
    Column("p99_ms", "p99 ms", "{:,.1f}"),
    Column("server_cpu_pct", "server CPU %", "{:.0f}%"),
    Column("client_cpu_pct", "client CPU %", "{:.0f}%"),
    Column("rss_mb", "peak RSS MB", "{:,.1f}"),
    Column("errors", "errors", "{:,}"),
]


@dataclass
class Row:
    label: str
    impl: str
    server: ServerProcess
    url: str
    channel: str
    token: str | None
    rounds: list[dict[str, Any]] = field(default_factory=list)
    failed: str | None = None


def _client_round(row: Row, seconds: float, warm: float, cpu: int | None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.mcp_client", "--url", row.url, "--channel",
           row.channel, "--password", PASSWORD, "--concurrency", str(CONCURRENCY),
           "--seconds", str(seconds), "--warmup", str(warm)]
    if row.token:
        cmd += ["--token", row.token]
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu), *cmd]
    s0 = row.server.cpu_seconds()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # Our own command line: this interpreter and fixed arguments.
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT,  # noqa: S603
                          timeout=seconds + warm + 120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"client exited {done.returncode}: {done.stderr[-400:]}")
    res: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    res["server_cpu_pct"] = 100 * (row.server.cpu_seconds() - s0) / res["wall_s"]
    res["client_cpu_pct"] = 100 * res["client_cpu_s"] / res["wall_s"]
    if res["n"] == 0:
        raise RuntimeError(f"no call completed: {res.get('first_error')}")
    return res


def run(opts: Options) -> Report:
    cores = len(os.sched_getaffinity(0))
    pin = opts.pin and cores >= 2
    server_cpu, client_cpu = (0, 1) if pin else (None, None)
    seconds = 0.5 if opts.quick else 3.0
    warm = 0.2 if opts.quick else 1.0
    report = Report(
        name="mcp",
        description="tools/call pushgo.message.send: pushgo /mcp vs the official MCP SDK server",
        params={"seconds_per_round": seconds, "warmup_s": warm, "rounds": opts.rounds,
                "concurrency": CONCURRENCY, "client": "benchmarks.mcp_client (httpx, HTTP/1.1)",
                "era": "2025-11-25 session", "db": "SQLite", "pinned": pin},
        columns=COLUMNS,
    )
    workdir = Path(tempfile.mkdtemp(prefix="pushgo-bench-mcp-"))
    servers: list[ServerProcess] = []
    rows: list[Row] = []
    try:
        for backend in opts.backends[:1] if opts.quick else opts.backends:
            (workdir / backend).mkdir()
            srv = ServerProcess.pushgo(f"pushgo {backend}", {
                "PUSHGO_DB_URL": f"sqlite:///{workdir}/{backend}/pushgo.db",
                "PUSHGO_ASYNC_BACKEND": backend, "PUSHGO_MCP_ENABLED": "true",
                "PUSHGO_TOKEN": TOKEN}, log=workdir / f"pushgo-{backend}.log", cpu=server_cpu)
            servers.append(srv)
            srv.start()
            _key, channel = private_channel(srv.url, PASSWORD, TOKEN)
            rows.append(Row(f"pushgo /mcp ({backend})", "pushgo", srv, srv.url + "/mcp", channel,
                            TOKEN))
        # The SDK server's database gets its channel from a pushgo serve run on it first.
        (workdir / "sdk").mkdir()
        sdk_db = f"sqlite:///{workdir}/sdk/pushgo.db"
        with ServerProcess.pushgo("setup", {"PUSHGO_DB_URL": sdk_db},
                                  log=workdir / "setup.log") as setup:
            _key, sdk_channel = private_channel(setup.url, PASSWORD)
        port = free_port()
        sdk = ServerProcess("MCP SDK server", [sys.executable, "-m", "benchmarks.mcp_sdk_server",
                                               "--port", str(port), "--db", sdk_db], {},
                            port=port, log=workdir / "sdk.log", cpu=server_cpu)
        servers.append(sdk)
        sdk.start()
        rows.append(Row("MCP Python SDK server (uvicorn)", "sdk", sdk, sdk.url + "/mcp",
                        sdk_channel, None))
        for r in range(opts.rounds):
            order = rows[r % len(rows):] + rows[:r % len(rows)]
            for row in order:
                if row.failed:
                    continue
                try:
                    res = _client_round(row, seconds, warm, client_cpu)
                except Exception as exc:
                    row.failed = str(exc)
                    opts.log(f"  {row.label} failed: {exc}")
                    continue
                row.rounds.append(res)
                opts.log(f"round {r + 1}/{opts.rounds} {row.label}: {res['rate']:,.0f}/s "
                         f"p99 {res['p99_ms']:.1f} ms, errors {res['errors']}")
        rss = {id(s): s.rss_mb() for s in servers}
    finally:
        for srv in servers:
            srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    out: list[dict[str, Any]] = []
    for row in rows:
        d: dict[str, Any] = {"label": row.label, "impl": row.impl}
        rs = row.rounds
        if rs:
            d.update({
                "rate": median([x["rate"] for x in rs]),
                "spread": f"{min(x['rate'] for x in rs):,.0f}–{max(x['rate'] for x in rs):,.0f}",
                "p50_ms": median([x["p50_ms"] for x in rs]),
                "p99_ms": median([x["p99_ms"] for x in rs]),
                "server_cpu_pct": median([x["server_cpu_pct"] for x in rs]),
                "client_cpu_pct": median([x["client_cpu_pct"] for x in rs]),
                "rss_mb": rss.get(id(row.server)), "errors": sum(x["errors"] for x in rs),
                "rounds": rs,
            })
            first = next((x["first_error"] for x in rs if x.get("first_error")), "")
            if first:
                report.notes.append(f"{row.label}: first error: {first[:200]}")
        if row.failed:
            d["failed"] = row.failed
            report.notes.append(f"{row.label} failed: {row.failed}")
        out.append(d)
    report.rows = out
    sdk_row = next((d for d in out if d["impl"] == "sdk" and "rate" in d), None)
    mine = [d for d in out if d["impl"] == "pushgo" and "rate" in d]
    if sdk_row:
        for d in mine:
            d["vs_sdk"] = d["rate"] / sdk_row["rate"]
        report.checks.append(Check(
            "mcp ≥ 2× the official SDK server's calls/s at a lower p99",
            bool(mine) and all(d["vs_sdk"] >= 2 and d["p99_ms"] < sdk_row["p99_ms"] for d in mine),
            f"SDK {sdk_row['rate']:,.0f}/s p99 {sdk_row['p99_ms']:.1f} ms; " + ", ".join(
                f"{d['label']} {d['vs_sdk']:.2f}× p99 {d['p99_ms']:.1f} ms "
                f"{'✓' if d['vs_sdk'] >= 2 and d['p99_ms'] < sdk_row['p99_ms'] else '✗'}"
                for d in mine)))
    busy = [d for d in out if d.get("client_cpu_pct", 0) >= 90]
    report.notes.append(
        f"client: at most {max((d.get('client_cpu_pct', 0) for d in out), default=0):.0f}% of "
        "its core — " + ("below saturation: the servers set these figures" if not busy else
                        "saturated on " + ", ".join(d["label"] for d in busy)
                        + ": those rows are client-bound"))
    report.notes.append("the SDK server answers tools/call as SSE (its default), pushgo as JSON; "
                        "both tools run pushgo's send pipeline on SQLite")
    report.chart = chart
    return report


def chart(report: Report, path: Path) -> None:
    from benchmarks.ingest import chart as bars

    bars(report, path)


register(Benchmark(
    name="mcp",
    description="tools/call on pushgo /mcp vs the official MCP Python SDK server, same client",
    needs=NEEDS,
    run=run,
))
