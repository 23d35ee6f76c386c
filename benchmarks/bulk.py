"""``bulk``: ``POST /messages/bulk`` items/s and peak RSS — one NDJSON body of N channel
messages (20,000, ``--bulk-items``; 1,000 with ``--quick``; at most 3 rounds: a round of 20k
takes about a minute here) to a channel with one private-route device, timed
from the first byte sent to the last result line read — side by side with ``ingest``'s figure
(``POST /message`` one at a time, HTTP/1.1, 16 in flight, h2load) on the same server, same run.
``pushgo serve`` on SQLite, pinned to one CPU; the client on the other. When the endpoint does
not exist in this checkout the benchmark says so and measures nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import Benchmark, Check, Column, Need, Options, Report, median, register
from benchmarks.servers import PASSWORD, H2Load, ServerProcess, api, private_channel

MEMORY_LIMIT_MB = 256
NEEDS = (Need("apt", "nghttp2-client", "h2load"), Need("pip", "matplotlib>=3.8", "matplotlib"))
COLUMNS = [
    Column("label", "run"),
    Column("items", "items", "{:,}"),
    Column("rate", "items/s"),
    Column("spread", "min–max /s", "{}"),
    Column("vs_ingest", "× ingest", "{:.2f}×"),
    Column("p99_ms", "p99 ms", "{:,.1f}"),
    Column("server_cpu_pct", "server CPU %", "{:.0f}%"),
    Column("rss_mb", "peak RSS MB", "{:,.1f}"),
    Column("errors", "errors", "{:,}"),
]


def endpoint_missing() -> str | None:
    """Why /messages/bulk cannot be measured here, or None when it exists."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "pushgo" / "service" / "bulk.py").exists():
        return "pushgo/service/bulk.py is missing"
    app = (root / "pushgo" / "app.py").read_text()
    if "bulk" not in app:
        return "pushgo/app.py does not route /messages/bulk"
    return None


def _bulk_round(srv: ServerProcess, body: bytes, n: int) -> dict[str, Any]:
    c0 = srv.cpu_seconds()
    t0 = time.perf_counter()
    ok = errors = lines = 0
    first_error = ""
    with httpx.Client(timeout=600) as client, client.stream(
            "POST", srv.url + "/messages/bulk", content=body,
            headers={"content-type": "application/x-ndjson"}) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"/messages/bulk answered {resp.status_code}: {resp.read()[:300]!r}")
        for line in resp.iter_lines():
            if not line.strip():
                continue
            lines += 1
            doc = json.loads(line)
            if doc.get("ok"):
                ok += 1
            else:
                errors += 1
                first_error = first_error or line[:200]
    wall = time.perf_counter() - t0
    if lines != n:
        raise RuntimeError(f"{lines:,} result lines for {n:,} items (first error: {first_error})")
    return {"n": n, "rate": n / wall, "wall_s": wall, "errors": errors, "first_error": first_error,
            "server_cpu_pct": 100 * (srv.cpu_seconds() - c0) / wall}


def run(opts: Options) -> Report:
    cores = len(os.sched_getaffinity(0))
    pin = opts.pin and cores >= 2
    server_cpu, client_cpu = (0, 1) if pin else (None, None)
    items = opts.bulk_items or (1_000 if opts.quick else 20_000)
    rounds = min(opts.rounds, 3)
    report = Report(
        name="bulk",
        description="POST /messages/bulk (NDJSON) vs POST /message one at a time",
        params={"items": items, "rounds": rounds, "db": "SQLite", "pinned": pin,
                "ingest": "h2load --h1, 16 connections"},
        columns=COLUMNS,
    )
    missing = endpoint_missing()
    if missing:
        report.notes.append(f"missing: the bulk endpoint is not in this checkout ({missing}); "
                            "nothing measured")
        report.rows = [{"label": "pushgo /messages/bulk", "failed": missing}]
        return report
    workdir = Path(tempfile.mkdtemp(prefix="pushgo-bench-bulk-"))
    rows: dict[str, list[dict[str, Any]]] = {"bulk": [], "ingest": []}
    failed: dict[str, str] = {}
    srv = ServerProcess.pushgo(f"pushgo {opts.backends[0]}", {
        "PUSHGO_DB_URL": f"sqlite:///{workdir}/pushgo.db",
        "PUSHGO_ASYNC_BACKEND": opts.backends[0]}, log=workdir / "serve.log", cpu=server_cpu)
    rss = 0.0
    try:
        srv.start()
        _key, channel = private_channel(srv.url, PASSWORD)
        item = {"channel_id": channel, "password": PASSWORD, "title": "Disk almost full",
                "body": "/var at 91% on db-1", "severity": "high"}
        line = json.dumps(item).encode() + b"\n"
        body = line * items
        one = workdir / "message.json"
        one.write_bytes(line)
        api(srv.url, "/message", item)
        load = H2Load(srv.url + "/message", one, [("content-type", "application/json")], workdir,
                      client_cpu)
        _bulk_round(srv, line * min(items, 1000), min(items, 1000))  # warm-up
        for r in range(rounds):
            for kind in ("bulk", "ingest") if r % 2 == 0 else ("ingest", "bulk"):
                if kind in failed:
                    continue
                try:
                    if kind == "bulk":
                        res = _bulk_round(srv, body, items)
                    else:
                        res = load.run(proto="h1", clients=16, streams=1,
                                       seconds=1.0 if opts.quick else 3.0,
                                       warmup_s=0.3 if opts.quick else 1.0, server=srv)
                except Exception as exc:
                    failed[kind] = str(exc)
                    opts.log(f"  {kind} failed: {exc}")
                    continue
                rows[kind].append(res)
                opts.log(f"round {r + 1}/{rounds} {kind}: {res['rate']:,.0f}/s")
        rss = srv.rss_mb()
    except Exception as exc:
        failed.setdefault("bulk", str(exc))
    finally:
        srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    out: list[dict[str, Any]] = []
    for kind, label in (("bulk", "pushgo /messages/bulk"), ("ingest", "pushgo POST /message")):
        rs = rows[kind]
        d: dict[str, Any] = {"label": label, "impl": kind}
        if rs:
            d.update({"items": sum(x["n"] for x in rs) // len(rs),
                      "rate": median([x["rate"] for x in rs]),
                      "spread": f"{min(x['rate'] for x in rs):,.0f}–{max(x['rate'] for x in rs):,.0f}",
                      "server_cpu_pct": median([x["server_cpu_pct"] for x in rs]),
                      "errors": sum(x["errors"] for x in rs), "rss_mb": rss, "rounds": rs})
            if kind == "ingest":
                d["p99_ms"] = median([x["p99_ms"] for x in rs])
            first = next((x.get("first_error") for x in rs if x.get("first_error")), "")
            if first:
                report.notes.append(f"{label}: first error: {first}")
        if kind in failed:
            d["failed"] = failed[kind]
            report.notes.append(f"{label} failed: {failed[kind]}")
        out.append(d)
    if "rate" in out[0] and "rate" in out[1]:
        out[0]["vs_ingest"] = out[0]["rate"] / out[1]["rate"]
        report.checks.append(Check("bulk faster than one POST /message at a time (no "
                                   "target figure: reported)", out[0]["vs_ingest"] > 1,
                                   f"{out[0]['vs_ingest']:.2f}× ingest"))
    if "rate" in out[0]:
        report.checks.append(Check(
            f"memory: flat under load, bulk of {items:,} items under {MEMORY_LIMIT_MB} MB RSS"
            + ("" if items >= 1_000_000 else " (the 1M-item target: --bulk-items 1000000)"),
            rss < MEMORY_LIMIT_MB,
            f"server peak RSS {rss:,.0f} MB (the server's whole life, ingest rounds included)"))
    report.rows = out
    return report


register(Benchmark(
    name="bulk",
    description="POST /messages/bulk items/s and RSS vs POST /message one at a time",
    needs=NEEDS,
    run=run,
))
