"""``ingest``: ``POST /message`` requests/s and p99 against a running ``pushgo serve`` (SQLite,
one private-route device on the channel, so each request writes the message and one delivery),
side by side with a bare Hypercorn + Starlette echo app (``benchmarks.echo_app``) on the same
backend — how much pushgo adds over its server. HTTP/1.1 and h2c, Trio and asyncio.

h2load drives every row (native, pinned to the other CPU: the client is never what is measured)
for a fixed time per round: 16 requests in flight — 16 HTTP/1.1 connections, or 4 h2c
connections × 4 streams. All servers start first; the rounds are interleaved across rows.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import Benchmark, Check, Column, Need, Options, Report, median, register
from benchmarks.nginx_mock import free_port
from benchmarks.servers import PASSWORD, H2Load, ServerProcess, api, private_channel

IN_FLIGHT = 16
PROTOS = {"h1": (IN_FLIGHT, 1), "h2c": (4, IN_FLIGHT // 4)}  # connections, streams each
NEEDS = (Need("apt", "nghttp2-client", "h2load"), Need("pip", "matplotlib>=3.8", "matplotlib"))

COLUMNS = [
    Column("label", "server"),
    Column("rate", "requests/s"),
    Column("spread", "min–max /s", "{}"),
    Column("vs_echo", "× echo", "{:.2f}×"),
    Column("p50_ms", "p50 ms", "{:,.1f}"),
    Column("p99_ms", "p99 ms", "{:,.1f}"),
    Column("server_cpu_pct", "server CPU %", "{:.0f}%"),
    Column("client_cpu_pct", "h2load CPU %", "{:.0f}%"),
    Column("rss_mb", "peak RSS MB", "{:,.1f}"),
    Column("errors", "errors", "{:,}"),
]


@dataclass
class Row:
    label: str
    impl: str  # pushgo | echo
    backend: str
    proto: str
    server: ServerProcess
    load: H2Load
    rounds: list[dict[str, Any]] = field(default_factory=list)
    failed: str | None = None


def run(opts: Options) -> Report:
    cores = len(os.sched_getaffinity(0))
    pin = opts.pin and cores >= 2
    server_cpu, client_cpu = (0, 1) if pin else (None, None)
    seconds = 0.5 if opts.quick else 3.0
    warm = 0.2 if opts.quick else 1.0
    report = Report(
        name="ingest",
        description="POST /message on pushgo serve vs a bare Hypercorn+Starlette echo app",
        params={"seconds_per_round": seconds, "warmup_s": warm, "rounds": opts.rounds,
                "in_flight": IN_FLIGHT, "h1": f"{IN_FLIGHT} connections",
                "h2c": "4 connections × 4 streams", "db": "SQLite", "pinned": pin,
                "device": "one private-route device subscribed to the channel"},
        columns=COLUMNS,
    )
    workdir = Path(tempfile.mkdtemp(prefix="pushgo-bench-ingest-"))
    servers: list[ServerProcess] = []
    rows: list[Row] = []
    try:
        body_doc = {"title": "Disk almost full", "body": "/var at 91% on db-1", "severity": "high"}
        for backend in opts.backends:
            data = workdir / f"pushgo-{backend}"
            data.mkdir()
            pg = ServerProcess.pushgo(f"pushgo {backend}", {
                "PUSHGO_DB_URL": f"sqlite:///{data}/pushgo.db", "PUSHGO_ASYNC_BACKEND": backend,
            }, log=workdir / f"pushgo-{backend}.log", cpu=server_cpu)
            port = free_port()
            echo = ServerProcess(f"echo {backend}", [sys.executable, "-m", "benchmarks.echo_app",
                                                     "--backend", backend, "--port", str(port)],
                                 {}, port=port, log=workdir / f"echo-{backend}.log", cpu=server_cpu)
            for srv in (pg, echo):
                servers.append(srv)
                srv.start()
            _key, channel = private_channel(pg.url, PASSWORD)
            pg_body = workdir / f"pushgo-{backend}.json"
            pg_body.write_text(json.dumps({"channel_id": channel, "password": PASSWORD, **body_doc}))
            # The request the rounds repeat must succeed (h2load cannot tell over HTTP/1.1).
            api(pg.url, "/message", json.loads(pg_body.read_text()))
            echo_body = workdir / f"echo-{backend}.json"
            echo_body.write_text(json.dumps({"channel_id": channel, "password": PASSWORD, **body_doc}))
            headers = [("content-type", "application/json")]
            for proto in PROTOS:
                rows.append(Row(f"pushgo {backend} {proto}", "pushgo", backend, proto, pg,
                                H2Load(pg.url + "/message", pg_body, headers, workdir, client_cpu)))
                rows.append(Row(f"echo {backend} {proto}", "echo", backend, proto, echo,
                                H2Load(echo.url + "/message", echo_body, headers, workdir,
                                       client_cpu)))
        opts.log(f"ingest: {len(servers)} servers up; {opts.rounds} round(s) of {seconds:g} s per row")
        for r in range(opts.rounds):
            order = rows[r % len(rows):] + rows[:r % len(rows)]
            for row in order:
                if row.failed:
                    continue
                conns, streams = PROTOS[row.proto]
                try:
                    res = row.load.run(proto=row.proto, clients=conns, streams=streams,
                                       seconds=seconds, warmup_s=warm, server=row.server)
                except Exception as exc:
                    row.failed = str(exc)
                    opts.log(f"  {row.label} failed: {exc}")
                    continue
                row.rounds.append(res)
                opts.log(f"round {r + 1}/{opts.rounds} {row.label}: {res['rate']:,.0f}/s "
                         f"p99 {res['p99_ms']:.1f} ms, server CPU {res['server_cpu_pct']:.0f}%")
        rss = {id(s): s.rss_mb() for s in servers}
        for srv in servers:
            if srv.proc is not None and srv.proc.poll() is not None:
                report.notes.append(f"{srv.label} exited ({srv.proc.returncode}) during the run: "
                                    + srv.log_tail(300).replace("\n", " "))
    finally:
        for srv in servers:
            srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    out: list[dict[str, Any]] = []
    for row in rows:
        rs = row.rounds
        d: dict[str, Any] = {"label": row.label, "impl": row.impl, "backend": row.backend,
                             "proto": row.proto}
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
        if row.failed:
            d["failed"] = row.failed
            report.notes.append(f"{row.label} failed: {row.failed}")
        out.append(d)
    by_key = {(d["impl"], d["backend"], d["proto"]): d for d in out}
    for d in out:
        peer = by_key.get(("echo", d["backend"], d["proto"]))
        if d["impl"] == "pushgo" and peer and "rate" in d and "rate" in peer:
            d["vs_echo"] = d["rate"] / peer["rate"]
    report.rows = out
    pairs = [d for d in out if "vs_echo" in d]
    if pairs:
        report.checks.append(Check(
            "ingest ≥ 50% of the bare echo app on the same backend",
            all(d["vs_echo"] >= 0.5 for d in pairs),
            ", ".join(f"{d['label']} {100 * d['vs_echo']:.0f}% {'✓' if d['vs_echo'] >= 0.5 else '✗'}"
                      for d in pairs)))
    busy = [d for d in out if d.get("client_cpu_pct", 0) >= 90]
    report.notes.append(
        "load generator: h2load at most "
        f"{max((d.get('client_cpu_pct', 0) for d in out), default=0):.0f}% of its core — "
        + ("below saturation: the servers set these figures" if not busy else
           "saturated on " + ", ".join(d["label"] for d in busy)))
    report.notes.append("server CPU % is the server process's share of one core (pushgo's "
                        "includes its database threads); errors are non-2xx answers or failures "
                        "(over HTTP/1.1 only failures: h2load's HTTP/1.1 parser cannot read "
                        "Hypercorn's empty reason phrase, so the request is checked once before "
                        "the rounds and the h2c rows see every status)")
    report.chart = chart
    return report


def chart(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report.rows if "rate" in r]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.5 * len(rows) + 2), sharey=True)
    y = list(range(len(rows)))[::-1]
    colors = ["#2b6cb0" if r["impl"] == "pushgo" else "#718096" for r in rows]
    for ax, key, title in ((axes[0], "rate", "per second"), (axes[1], "p99_ms", "p99 ms")):
        values = [float(r.get(key) or 0) for r in rows]
        ax.barh(y, values, color=colors)
        ax.set_title(title)
        for yi, v in zip(y, values, strict=True):
            ax.text(v, yi, f" {v:,.0f}" if v >= 10 else f" {v:.1f}", va="center", fontsize=8)
        ax.margins(x=0.25)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels([r["label"] for r in rows])
    what = "POST /message" if report.name == "ingest" else "tools/call"
    fig.suptitle(f"{report.name}: {what}, {IN_FLIGHT} in flight, median of "
                 f"{report.params['rounds']} round(s) of {report.params['seconds_per_round']:g} s",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


register(Benchmark(
    name="ingest",
    description="POST /message on pushgo serve vs a bare Hypercorn+Starlette app (h1, h2c)",
    needs=NEEDS,
    run=run,
))
