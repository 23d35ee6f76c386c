"""``sender-fcm``: pushgo's FCM sender alone (no database) against the native mock (nginx,
HTTP/2, TLS) answering the FCM HTTP v1 API shape, side by side with a plain httpx HTTP/2 client
(what firebase-admin uses) and h2load in the same run.

Every request is ``POST /v1/projects/<project>/messages:send`` with a bearer access token and
the data message pushgo renders (token, delivery_id, android priority and TTL); the mock answers
``200`` with ``{"name": "projects/…/messages/…"}`` (HEADERS + DATA). Both Python clients read the
name from the JSON answer. FCM admits 100 concurrent streams a connection, so the pushgo rows keep
100 requests in flight per connection, and httpx the same 100 (and 400, as pushgo ×4).
Rounds are interleaved exactly as in ``sender`` (see its module docstring).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from benchmarks import sender as sender_bench
from benchmarks.harness import (
    Benchmark,
    Check,
    Column,
    Need,
    Options,
    Report,
    baseline_tree,
    median,
    register,
)
from benchmarks.nginx_mock import NginxMock

FCM_STREAMS = 100
COLUMNS = [
    Column("label", "client"),
    Column("rate", "messages/s"),
    Column("spread", "min–max /s", "{}"),
    Column("vs_httpx", "× httpx", "{:.2f}×"),
    Column("p50_ms", "p50 ms", "{:,.1f}"),
    Column("p99_ms", "p99 ms", "{:,.1f}"),
    Column("cpu_per_10k", "CPU s / 10k", "{:.3f}"),
    Column("rss_mb", "peak RSS MB", "{:,.1f}"),
    Column("mock_cpu_pct", "mock CPU %", "{:.0f}%"),
    Column("errors", "errors", "{:,}"),
]
NEEDS = (*(n for n in sender_bench.NEEDS if n.package != "aioapns>=4,<5"),
         Need("pip", "httpx[http2]>=0.27", "h2"))


def _h2load_setup(mock: NginxMock, workdir: Path, cpu: int | None) -> sender_bench.H2LoadSetup:
    from benchmarks.sender_client import FCM_ACCESS_TOKEN, FCM_PROJECT, device_tokens, fcm_templates

    full, _ = fcm_templates()
    body = workdir / "fcm.json"
    body.write_bytes(full.render(device_tokens()[7], f"{7:032x}", 86_400))
    headers = [("authorization", f"Bearer {FCM_ACCESS_TOKEN}"), ("content-type", "application/json")]
    return sender_bench.H2LoadSetup(body, headers, f"{mock.url}/v1/projects/{FCM_PROJECT}/messages:send", cpu,
                         workdir)


def run(opts: Options) -> Report:
    cores = len(os.sched_getaffinity(0))
    pin = opts.pin and cores >= 2
    mock_cpu, client_cpu = (1, 0) if pin else (None, None)
    clients: list[sender_bench.Client] = []
    for backend in opts.backends:
        clients.append(sender_bench.Client(f"pushgo {backend} ×1", "pushgo-fcm", backend, 1,
                                           window=FCM_STREAMS))
    clients.append(sender_bench.Client(f"pushgo {opts.backends[0]} ×4", "pushgo-fcm", opts.backends[0], 4,
                            window=4 * FCM_STREAMS))
    # httpx manages a few hundred a second here: a tenth of the round is plenty for its rate.
    clients.append(sender_bench.Client(f"httpx ×1, {FCM_STREAMS} in flight", "httpx-fcm", "asyncio", 1,
                            window=FCM_STREAMS, scale=10))
    clients.append(sender_bench.Client(f"h2load ×1 ({FCM_STREAMS} streams)", "h2load", "native", 1))
    workdir = Path(tempfile.mkdtemp(prefix="pushgo-bench-fcm-"))
    for i, rev in enumerate(opts.baseline):
        tree = baseline_tree(rev, workdir / f"baseline-{i}")
        name = Path(rev).name if Path(rev).is_dir() else rev
        clients.insert(0, sender_bench.Client(f"pushgo@{name} {opts.backends[0]} ×1", "pushgo-fcm",
                                   opts.backends[0], 1, window=FCM_STREAMS, tree=tree))
    report = Report(
        name="sender-fcm",
        description="FCM sender alone over TLS against nginx (HTTP/2, FCM v1 API shape)",
        params={"n": opts.n, "warmup": opts.warmup, "rounds": opts.rounds, "pinned": pin,
                "mock": "nginx 1 worker", "in_flight": "100 per pushgo connection; httpx 100",
                "httpx_n": max(500, opts.n // 10),
                "h2load": f"-c 1 -m {FCM_STREAMS} -t 1, pushgo's request"},
        columns=COLUMNS,
    )
    try:
        with NginxMock(cpu=mock_cpu) as mock:
            from pushgo.testing.mock_apns import APNsKey

            key = APNsKey.generate("BENCHKEY01", "BENCHTEAM1").write(workdir / "key.p8")
            setup = _h2load_setup(mock, workdir, client_cpu)
            report.params["tools"] = sender_bench._tool_versions()
            sender_bench.measure(clients, mock, key, setup, opts, client_cpu)
            errors = mock.error_log().strip()
            if errors:
                report.notes.append("nginx error.log: " + errors.splitlines()[-1][:200])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    peer_rates = [median([r["rate"] for r in c.rounds]) for c in clients
                  if c.impl == "httpx-fcm" and c.rounds]
    peer = max(peer_rates) if peer_rates else None
    report.rows = [sender_bench._row(c, peer, peer="httpx-fcm") for c in clients]
    for row in report.rows:
        if "vs_httpx-fcm" in row:
            row["vs_httpx"] = row.pop("vs_httpx-fcm")
        if row.get("failed"):
            report.notes.append(f"{row['label']} failed: {row['failed']}")
        if row.get("mock_saturated") and row["impl"] != "h2load":
            report.notes.append(f"{row['label']}: mock-bound (its worker at "
                                f"{row['mock_cpu_pct']:.0f}% of a core)")
    mine = [r for r in report.rows if r["impl"] == "pushgo-fcm" and "rate" in r
            and not r.get("baseline")]
    if peer and mine:
        report.checks.append(Check(
            "faster than a plain httpx HTTP/2 client (no target figure: reported)",
            all(r["rate"] > peer for r in mine),
            f"httpx (its best row) {peer:,.0f}/s; " + ", ".join(
                f"{r['label']} {r['rate'] / peer:.1f}×" for r in mine)))
    sender_bench.mock_note(report)
    report.notes.append(f"in flight: pushgo {FCM_STREAMS} per connection (FCM's stream limit); "
                        "latency: pushgo Job submission → Result, httpx per post; httpx measures "
                        f"{max(500, opts.n // 10):,} per round")
    report.chart = chart
    return report


def chart(report: Report, path: Path) -> None:
    sender_bench.chart(report, path, title=f"sender-fcm: {report.params['n']:,} messages/round, median of "
                                f"{report.params['rounds']} round(s), TLS → nginx (one pinned core)")


register(Benchmark(
    name="sender-fcm",
    description="pushgo's FCM sender vs a plain httpx HTTP/2 client on a native mock",
    needs=NEEDS,
    run=run,
))
