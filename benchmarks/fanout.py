"""``fanout``: ``pushgo serve`` end to end — one ``POST /message`` to a channel of N APNs
devices (10,000; 1,000 with ``--quick``), timed from the request until the native mock (nginx,
HTTP/2, TLS) has received all N sends; deliveries/s, on SQLite and on PostgreSQL — side by side
with the ``sender`` figure (pushgo's APNs sender alone, one connection, same backend, same mock,
same run): the difference is what the database and dispatcher cost.

Setup (not timed): the channel is created through the API; the N devices (APNs route, distinct
tokens) and their subscriptions are written straight into the gateway's database with pushgo's
schema, which through the API would take minutes. ``pushgo serve`` runs with one provider
connection (as the sender row), pinned to one CPU, nginx to the other; PostgreSQL runs where
the system puts it. The mock's request counter (nginx ``stub_status``) tells when all have
arrived. A full run ends with one round to a channel of 100,000 devices on SQLite for the
memory target (peak RSS under 256 MB).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks import sender as sender_bench
from benchmarks.harness import Benchmark, Check, Column, Need, Options, Report, median, register
from benchmarks.nginx_mock import NginxMock
from benchmarks.servers import PASSWORD, ServerProcess, api

TOPIC = "com.example.bench"
PG_ADMIN_URL = os.environ.get("PUSHGO_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MEMORY_DEVICES = 100_000
MEMORY_LIMIT_MB = 256
NEEDS = (*sender_bench.NEEDS[:3], Need("pip", "trustme>=1.1", "trustme"),
         Need("pip", "matplotlib>=3.8", "matplotlib"))

COLUMNS = [
    Column("label", "run"),
    Column("devices", "devices", "{:,}"),
    Column("rate", "deliveries/s"),
    Column("spread", "min–max /s", "{}"),
    Column("vs_sender", "× sender", "{:.2f}"),
    Column("accept_ms", "POST /message ms", "{:,.0f}"),
    Column("total_s", "all delivered s", "{:,.2f}"),
    Column("cpu_per_10k", "server CPU s / 10k", "{:.3f}"),
    Column("rss_mb", "peak RSS MB", "{:,.1f}"),
    Column("mock_cpu_pct", "mock CPU %", "{:.0f}%"),
]


@dataclass
class Target:
    label: str
    db: str
    backend: str
    devices: int
    server: ServerProcess | None = None
    channel: str = ""
    rounds: list[dict[str, Any]] = field(default_factory=list)
    failed: str | None = None


def _pg_database(name: str, create: bool) -> str | None:
    """Create (or drop) a scratch PostgreSQL database; its URL, or None without PostgreSQL."""
    try:
        import psycopg
    except ImportError:
        return None
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            if create:
                conn.execute(f'CREATE DATABASE "{name}"')
    except Exception:
        return None
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


def _populate(db_url: str, channel: str, n: int, first: int) -> None:
    """N devices on the APNs route with distinct tokens, all subscribed to ``channel``."""
    import sqlalchemy as sa

    from pushgo.store.engine import Store
    from pushgo.store.schema import devices, subscriptions

    store = Store(db_url)
    now = int(time.time() * 1000)
    try:
        with store.engine.begin() as conn:
            for start in range(0, n, 5000):
                keys = [f"{first + i:032x}" for i in range(start, min(n, start + 5000))]
                conn.execute(devices.insert(), [
                    {"device_key": k, "platform": "ios", "channel_type": "apns",
                     "provider_token": k * 2, "created_at": now, "updated_at": now}
                    for k in keys])
                conn.execute(subscriptions.insert(), [
                    {"channel_id": channel, "device_key": k, "created_at": now} for k in keys])
            count = conn.execute(sa.select(sa.func.count()).select_from(subscriptions).where(
                subscriptions.c.channel_id == channel)).scalar_one()
        if count < n:
            raise RuntimeError(f"only {count} subscribers written")
    finally:
        store.dispose()


def _fanout_round(t: Target, mock: NginxMock) -> dict[str, Any]:
    assert t.server is not None
    before = mock.requests_served()
    polls = 1
    c0, m0 = t.server.cpu_seconds(), mock.cpu_seconds()
    body = {"channel_id": t.channel, "password": PASSWORD, "title": "Disk almost full",
            "body": "/var at 91% on db-1", "severity": "high"}
    t0 = time.perf_counter()
    resp = httpx.post(t.server.url + "/message", json=body, timeout=120)
    accepted = time.perf_counter()
    if resp.status_code != 200:
        raise RuntimeError(f"POST /message answered {resp.status_code}: {resp.text[:200]}")
    deadline = t0 + max(60.0, t.devices / 500)
    while True:
        got = mock.requests_served() - before - polls
        polls += 1
        if got >= t.devices:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the mock had {got:,} of {t.devices:,} after "
                               f"{time.perf_counter() - t0:.0f} s")
        time.sleep(0.01)
    done = time.perf_counter()
    wall = done - t0
    return {"n": t.devices, "rate": t.devices / wall, "wall_s": wall,
            "accept_ms": (accepted - t0) * 1000, "cpu_s": t.server.cpu_seconds() - c0,
            "mock_cpu_s": mock.cpu_seconds() - m0}


def run(opts: Options) -> Report:
    cores = len(os.sched_getaffinity(0))
    pin = opts.pin and cores >= 2
    mock_cpu, server_cpu = (1, 0) if pin else (None, None)
    devices = 1000 if opts.quick else 10_000
    backend = opts.backends[0]
    report = Report(
        name="fanout",
        description="one POST /message to a channel of APNs devices until the mock has them all",
        params={"devices": devices, "rounds": opts.rounds, "backend": backend, "pinned": pin,
                "provider_connections": 1, "mock": "nginx 1 worker (sender's mock)"},
        columns=COLUMNS,
    )
    workdir = Path(tempfile.mkdtemp(prefix="pushgo-bench-fanout-"))
    pg_name = f"pushgo_bench_{opts.stamp.lower()}"
    targets = [Target(f"pushgo serve {backend}, SQLite", "sqlite", backend, devices),
               Target(f"pushgo serve {backend}, PostgreSQL", "postgresql", backend, devices)]
    if not opts.quick:
        targets.append(Target(f"pushgo serve {backend}, SQLite, {MEMORY_DEVICES:,} devices",
                              "sqlite", backend, MEMORY_DEVICES))
    sender = sender_bench.Client(f"sender: pushgo {backend} ×1 (alone)", "pushgo", backend, 1)
    pg_url: str | None = None
    try:
        with NginxMock(cpu=mock_cpu) as mock:
            from pushgo.testing.mock_apns import APNsKey

            key = APNsKey.generate("BENCHKEY01", "BENCHTEAM1").write(workdir / "key.p8")
            for i, t in enumerate(targets):
                if t.db == "sqlite":
                    (workdir / f"db{i}").mkdir()
                    url = f"sqlite:///{workdir}/db{i}/pushgo.db"
                else:
                    pg_url = _pg_database(pg_name, create=True)
                    if pg_url is None:
                        t.failed = (f"PostgreSQL is not reachable at {PG_ADMIN_URL} (set "
                                    "PUSHGO_BENCH_PG_URL, or apt-get install postgresql)")
                        continue
                    url = pg_url
                t.server = ServerProcess.pushgo(t.label, {
                    "PUSHGO_DB_URL": url, "PUSHGO_ASYNC_BACKEND": t.backend,
                    "PUSHGO_APNS_KEY_FILE": str(key), "PUSHGO_APNS_KEY_ID": "BENCHKEY01",
                    "PUSHGO_APNS_TEAM_ID": "BENCHTEAM1", "PUSHGO_APNS_TOPIC": TOPIC,
                    "PUSHGO_APNS_ENDPOINT": mock.url, "PUSHGO_PROVIDER_CA_FILE": str(mock.ca_file),
                    "PUSHGO_PROVIDER_CONNECTIONS": "1",
                    "PUSHGO_CHANNEL_SUBSCRIBER_LIMIT": str(t.devices + 10),
                }, log=workdir / f"serve{i}.log", cpu=server_cpu)
                try:
                    t.server.start()
                    owner = str(api(t.server.url, "/device/register", {"platform": "ios"})["device_key"])
                    api(t.server.url, "/channel/device", {"device_key": owner, "channel_type": "private"})
                    t.channel = str(api(t.server.url, "/channel/subscribe", {
                        "device_key": owner, "channel_name": "fanout", "password": PASSWORD})["channel_id"])
                    api(t.server.url, "/channel/unsubscribe", {"device_key": owner,
                                                               "channel_id": t.channel})
                    opts.log(f"fanout: writing {t.devices:,} devices for {t.label}")
                    _populate(url, t.channel, t.devices, first=1 << 100)
                except Exception as exc:
                    t.failed = str(exc)
                    opts.log(f"  {t.label} failed: {exc}")
            sender.proc = sender_bench._spawn(sender_bench._client_cmd(sender, mock, key, opts, server_cpu,
                                                 n=devices))
            sender_bench._ask(sender.proc, None)
            try:
                sender.warmup = sender_bench._ask(sender.proc, "warmup")
                main_targets = [t for t in targets if t.devices == devices]
                for t in main_targets:  # warm-up: connections, TLS, JIT-less caches
                    if not t.failed:
                        _try(t, mock, opts, warm=True)
                for r in range(opts.rounds):
                    for t in main_targets:
                        if not t.failed:
                            _try(t, mock, opts)
                    res = sender_bench._ask(sender.proc, "round")
                    sender.rounds.append(res)
                    opts.log(f"round {r + 1}/{opts.rounds} {sender.label}: {res['rate']:,.0f}/s")
                for t in targets:
                    if t.devices != devices and not t.failed:
                        _try(t, mock, opts)
            finally:
                sender_bench._quit(sender.proc)
            rss = {t.label: (t.server.rss_mb() if t.server else 0.0) for t in targets}
            for t in targets:
                if t.server is not None:
                    if t.server.proc is not None and t.server.proc.poll() is not None:
                        report.notes.append(f"{t.label} exited ({t.server.proc.returncode}): "
                                            + t.server.log_tail(300).replace("\n", " "))
                    t.server.stop()
    finally:
        for t in targets:
            if t.server is not None:
                t.server.stop()
        if pg_url is not None:
            _pg_database(pg_name, create=False)
        shutil.rmtree(workdir, ignore_errors=True)

    sender_rate = median([r["rate"] for r in sender.rounds]) if sender.rounds else None
    rows: list[dict[str, Any]] = []
    for t in targets:
        row: dict[str, Any] = {"label": t.label, "impl": "pushgo serve", "db": t.db,
                               "devices": t.devices}
        if t.rounds:
            rs = t.rounds
            row.update({
                "rate": median([x["rate"] for x in rs]),
                "spread": f"{min(x['rate'] for x in rs):,.0f}–{max(x['rate'] for x in rs):,.0f}",
                "accept_ms": median([x["accept_ms"] for x in rs]),
                "total_s": median([x["wall_s"] for x in rs]),
                "cpu_per_10k": median([x["cpu_s"] / x["n"] * 10_000 for x in rs]),
                "rss_mb": rss.get(t.label), "rounds": rs,
                "mock_cpu_pct": median([100 * x["mock_cpu_s"] / x["wall_s"] for x in rs]),
            })
            if sender_rate:
                row["vs_sender"] = row["rate"] / sender_rate
        if t.failed:
            row["failed"] = t.failed
            report.notes.append(f"{t.label}: not measured — {t.failed}")
        rows.append(row)
    srow = sender_bench._row(sender, None)
    srow.update({"devices": devices, "impl": "sender"})
    rows.append(srow)
    report.rows = rows
    measured = [r for r in rows if "vs_sender" in r and r["devices"] == devices]
    if measured and sender_rate:
        report.checks.append(Check(
            "fanout ≥ 70% of the sender figure (database + dispatcher cost ≤ 30%)",
            all(r["vs_sender"] >= 0.7 for r in measured),
            f"sender {sender_rate:,.0f}/s; " + ", ".join(
                f"{r['label']} {100 * r['vs_sender']:.0f}% {'✓' if r['vs_sender'] >= 0.7 else '✗'}"
                for r in measured)))
    big = next((r for r in rows if r["devices"] == MEMORY_DEVICES and "rss_mb" in r), None)
    if big is not None:
        report.checks.append(Check(
            f"memory: fan-out of {MEMORY_DEVICES:,} devices under {MEMORY_LIMIT_MB} MB RSS",
            big["rss_mb"] < MEMORY_LIMIT_MB, f"peak RSS {big['rss_mb']:,.0f} MB"))
    elif opts.quick:
        report.notes.append(f"memory target ({MEMORY_DEVICES:,} devices < {MEMORY_LIMIT_MB} MB) "
                            "is measured by a full run only")
    sender_bench.mock_note(report)
    report.notes.append("deliveries/s = devices / (POST /message sent → the mock has counted all "
                        "of them); the sender row is notifications/s with 1000 in flight")
    report.chart = chart
    return report


def _try(t: Target, mock: NginxMock, opts: Options, *, warm: bool = False) -> None:
    try:
        res = _fanout_round(t, mock)
    except Exception as exc:
        t.failed = str(exc)
        opts.log(f"  {t.label} failed: {exc}")
        return
    if not warm:
        t.rounds.append(res)
    opts.log(f"{'warm-up' if warm else 'round'} {t.label}: {res['rate']:,.0f}/s "
             f"(accepted in {res['accept_ms']:,.0f} ms, all in {res['wall_s']:.2f} s)")


def chart(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report.rows if "rate" in r]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.6 * len(rows) + 2), sharey=True)
    y = list(range(len(rows)))[::-1]
    colors = ["#2b6cb0" if r["impl"] == "pushgo serve" else "#718096" for r in rows]
    for ax, key, title in ((axes[0], "rate", "deliveries/s"), (axes[1], "rss_mb", "peak RSS MB")):
        values = [float(r.get(key) or 0) for r in rows]
        ax.barh(y, values, color=colors)
        ax.set_title(title)
        for yi, v in zip(y, values, strict=True):
            ax.text(v, yi, f" {v:,.0f}", va="center", fontsize=8)
        ax.margins(x=0.25)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels([r["label"] for r in rows])
    fig.suptitle(f"fanout: one message to {report.params['devices']:,} APNs devices, median of "
                 f"{report.params['rounds']} round(s)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


register(Benchmark(
    name="fanout",
    description="pushgo serve: one message to a channel of N APNs devices vs the sender alone",
    needs=NEEDS,
    run=run,
))
